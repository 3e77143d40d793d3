"""The rendered face's outline, softened so it has gradients, and a term pulling it to a target region.

A rasterized mask is piecewise constant in the vertex positions: moving the outline changes which
pixels are covered, not how much, so the mask alone gives fitting no gradient at the outline.
:class:`SoftEdge` softens the outline: a pixel within a few pixels of the rendered outline gets the
coverage ``sigmoid(+-d / sigma)``, ``d`` its distance to the nearest outline edge of the projected
mesh (+ inside the rendered face, - outside), which is differentiable in that edge's two vertices;
every other pixel keeps its hard coverage. The outline edges are the mesh's silhouette edges (mesh
border edges of front-facing triangles, and edges between a front- and a back-facing triangle)
that lie on the rendered mask's edge.

It sits behind a small interface, ``edge(verts_px, rast) -> (coverage [B, 1, H, W], band [B, 1, H,
W])`` (and ``edge.loss(verts_px, rast, target)``, the same term on the band's pixels only), so that
an antialiasing op of the renderer (``pyfaid.render.antialias``) can replace it.

:func:`silhouette_loss` compares the soft coverage with a target region (the face segmenter's
probability that a pixel shows the face) in the band where the soft coverage has gradients.
"""

from __future__ import annotations

import weakref

import cv2
import numpy as np
import torch
from scipy.spatial import cKDTree

__all__ = ["SoftEdge", "silhouette_loss", "mesh_edges"]

_EDGES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def mesh_edges(face_model) -> tuple[torch.Tensor, torch.Tensor]:
    """Unique edges of a face model's mesh and their faces: ``(edges [E, 2], faces [E, 2])``, the
    second face -1 on the mesh's border (built once per model)."""
    if face_model not in _EDGES:
        tri = face_model.triangles.detach().cpu().numpy().astype(np.int64)
        e = np.sort(np.stack([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]], 1).reshape(-1, 2), axis=1)
        edges, inverse = np.unique(e, axis=0, return_inverse=True)
        face_of = np.repeat(np.arange(len(tri)), 3)
        order = np.argsort(inverse, kind="stable")
        counts = np.bincount(inverse, minlength=len(edges))
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        faces = np.full((len(edges), 2), -1, np.int64)
        faces[:, 0] = face_of[order[starts]]
        two = counts >= 2
        faces[two, 1] = face_of[order[starts[two] + 1]]
        _EDGES[face_model] = (torch.from_numpy(edges), torch.from_numpy(faces))
    return _EDGES[face_model]


def _segment_distance(p: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Distance of points ``p [..., 2]`` to segments ``a``-``b`` ``[..., 2]``."""
    ab = b - a
    t = (((p - a) * ab).sum(-1) / (ab * ab).sum(-1).clamp_min(1e-12)).clamp(0, 1)
    return (p - (a + t[..., None] * ab)).norm(dim=-1).clamp_min(1e-6)


class SoftEdge:
    """Soft coverage at the rendered outline of a face model's mesh (see the module).

    Args:
        face_model: the ``MorphableModel`` whose mesh is rendered.
        sigma: softness in pixels (at the render's size).
        band: half-width in pixels of the band around the outline that gets soft coverage.
    """

    def __init__(self, face_model, sigma: float = 1.0, band: float = 4.0) -> None:
        edges, faces = mesh_edges(face_model)
        self.triangles_np = face_model.triangles.detach().cpu().numpy().astype(np.int64)
        self.edges_np, self.faces_np = edges.numpy(), faces.numpy()
        self.sigma, self.band_px = float(sigma), float(band)

    def _outline_edges(self, p: np.ndarray, dist: np.ndarray, seen: np.ndarray) -> np.ndarray:
        """Indices of the silhouette edges on the rendered mask's edge: ``p [V, 2]`` the projected
        vertices, ``dist`` each pixel's distance to the mask's edge, ``seen`` ids of triangles the
        render shows at that edge."""
        h, w = dist.shape
        pix = np.clip(np.rint(p), 0, [w - 1, h - 1]).astype(np.int64)
        near = dist[pix[:, 1], pix[:, 0]] <= 2.0  # [V] vertices by the outline
        edges, faces = self.edges_np, self.faces_np
        idx = np.flatnonzero(near[edges[:, 0]] & near[edges[:, 1]])
        tri = self.triangles_np

        def area(f):  # screen orientation of triangles f (0 for -1)
            t = tri[np.maximum(f, 0)]
            a, b, c = p[t[..., 0]], p[t[..., 1]], p[t[..., 2]]
            out = (b - a)[..., 0] * (c - a)[..., 1] - (b - a)[..., 1] * (c - a)[..., 0]
            return np.where(f >= 0, out, 0.0)

        front_sign = 1.0 if np.sign(area(seen)).sum() >= 0 else -1.0  # the rendered ones face the camera
        f = faces[idx]
        front0, front1 = area(f[:, 0]) * front_sign > 0, area(f[:, 1]) * front_sign > 0
        border = f[:, 1] < 0
        idx = idx[(border & front0) | (~border & (front0 != front1))]
        mid = np.clip(np.rint(0.5 * (p[edges[idx, 0]] + p[edges[idx, 1]])), 0, [w - 1, h - 1]).astype(np.int64)
        return idx[dist[mid[:, 1], mid[:, 0]] <= 1.5]

    def band(self, verts_px: torch.Tensor, rast: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The soft coverage of one render's band: ``(band [H, W] bool, coverage [P])`` for the band's
        pixels in row-major order (``verts_px [V, 2]``, ``rast [H, W, 4]``)."""
        H, W = rast.shape[:2]
        tid = rast[..., 3].detach()
        covered = (tid > 0).cpu().numpy().astype(np.uint8)
        outline = covered ^ cv2.erode(covered, np.ones((3, 3), np.uint8))
        dist = cv2.distanceTransform(1 - outline, cv2.DIST_L2, 3)
        seen = np.unique(tid.cpu().numpy()[outline.astype(bool)]).astype(np.int64) - 1
        seen = seen[seen >= 0]
        sel = dist <= self.band_px
        p = verts_px.detach().cpu().double().numpy()
        idx = self._outline_edges(p, dist, seen) if len(seen) else seen
        if not len(idx) or not sel.any():
            return torch.zeros(H, W, dtype=torch.bool, device=rast.device), verts_px.new_zeros(0)
        rows, cols = np.nonzero(sel)
        pix_np = np.stack([cols, rows], -1).astype(np.float64)
        e = self.edges_np[idx]
        a_np, c_np = p[e[:, 0]], p[e[:, 1]]
        # the nearest edge: among those of the 4 nearest samples along the edges
        t = np.array([0.0, 0.25, 0.5, 0.75, 1.0])[:, None, None]
        samples = (a_np[None] * (1 - t) + c_np[None] * t).reshape(-1, 2)
        _, near = cKDTree(samples).query(pix_np, k=min(4, len(samples)))
        cand = np.asarray(near).reshape(len(pix_np), -1) % len(e)  # [P, k]
        d_c = _segment_distance(torch.from_numpy(pix_np)[:, None], torch.from_numpy(a_np[cand]),
                                torch.from_numpy(c_np[cand]))
        nearest = torch.from_numpy(cand).gather(1, d_c.argmin(1, keepdim=True))[:, 0]
        ends = torch.from_numpy(e).to(verts_px.device)[nearest.to(verts_px.device)]  # [P, 2] vertex ids
        pix = torch.from_numpy(pix_np).to(device=verts_px.device, dtype=verts_px.dtype)
        d = _segment_distance(pix, verts_px[ends[:, 0]], verts_px[ends[:, 1]])
        sign = torch.from_numpy(covered[rows, cols].astype(np.float64) * 2 - 1).to(d)
        return torch.from_numpy(sel).to(rast.device), torch.sigmoid(sign * d / self.sigma)

    def __call__(self, verts_px: torch.Tensor, rast: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Soft coverage of a render.

        Args:
            verts_px: ``[B, V, 2]`` the mesh's vertices projected to the render's pixels (pixel
                centres at integers, y down), differentiable.
            rast: ``[B, H, W, 4]`` the render's rasterization (rows top first).

        Returns:
            ``(coverage [B, 1, H, W], band [B, 1, H, W])``: coverage in [0, 1], soft (with
            gradients to ``verts_px``) where ``band`` is 1, the hard coverage elsewhere.
        """
        covs, bands = [], []
        for b in range(rast.shape[0]):
            sel, soft = self.band(verts_px[b], rast[b])
            cov = (rast[b, ..., 3] > 0).to(verts_px.dtype)
            covs.append(cov.masked_scatter(sel, soft) if len(soft) else cov)
            bands.append(sel.to(verts_px.dtype))
        return torch.stack(covs)[:, None], torch.stack(bands)[:, None]

    def loss(self, verts_px: torch.Tensor, rast: torch.Tensor, target: torch.Tensor,
             where: torch.Tensor | None = None) -> torch.Tensor:
        """:func:`silhouette_loss` of a render against ``target [B, 1, H, W]``, computed on the band
        pixels only (what :meth:`__call__` then :func:`silhouette_loss` give, without full-size maps);
        ``where [B, 1, H, W]`` (bool), if given, limits it to those pixels."""
        total, count = verts_px.new_zeros(()), 0
        for b in range(rast.shape[0]):
            sel, soft = self.band(verts_px[b], rast[b])
            if len(soft):
                err = (soft - target[b, 0][sel].to(soft.dtype).detach()) ** 2
                if where is not None:
                    err = err[where[b, 0][sel]]
                total = total + err.sum()
                count += len(err)
        return total / max(count, 1)


def silhouette_loss(coverage: torch.Tensor, band: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of the soft coverage and a target region over the soft band.

    Args:
        coverage: ``[B, 1, H, W]`` from :class:`SoftEdge`. band: ``[B, 1, H, W]`` its band.
        target: ``[B, 1, H, W]`` probability that a pixel belongs to the region (e.g. a face
            segmenter's visible-face probability).
    """
    w = band.detach()
    return ((coverage - target.detach()) ** 2 * w).sum() / w.sum().clamp_min(1.0)
