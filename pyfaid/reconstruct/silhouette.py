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
W])``, so that an antialiasing op of the renderer (``pyfaid.render.antialias``) can replace it.

:func:`silhouette_loss` compares the soft coverage with a target region (the face segmenter's
probability that a pixel shows the face) in the band where the soft coverage has gradients.
"""

from __future__ import annotations

import weakref

import cv2
import numpy as np
import torch

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
        self.triangles = face_model.triangles.long()
        self.edges, self.edge_faces = mesh_edges(face_model)
        self.sigma, self.band = float(sigma), float(band)

    def _outline_edges(self, verts_px: torch.Tensor, covered: np.ndarray, seen: torch.Tensor) -> torch.Tensor:
        """Indices of the silhouette edges that lie on the rendered mask's edge (one face; ``seen``:
        ids of triangles the render shows)."""
        dev = verts_px.device
        tri = self.triangles.to(dev)
        p = verts_px.detach()
        a, b, c = p[tri[:, 0]], p[tri[:, 1]], p[tri[:, 2]]
        area = (b - a)[:, 0] * (c - a)[:, 1] - (b - a)[:, 1] * (c - a)[:, 0]  # [F], screen orientation
        faces = self.edge_faces.to(dev)
        f0 = area[faces[:, 0]]
        f1 = torch.where(faces[:, 1] >= 0, area[faces[:, 1].clamp_min(0)], torch.zeros_like(f0))
        # the rendered triangles tell which orientation faces the camera
        front_sign = 1.0 if float(torch.sign(area[seen]).sum()) >= 0 else -1.0
        front0, front1 = f0 * front_sign > 0, f1 * front_sign > 0
        border = faces[:, 1] < 0
        sil = (border & front0) | (~border & (front0 != front1))
        idx = torch.nonzero(sil).flatten()
        e = self.edges.to(dev)[idx]
        mid = 0.5 * (p[e[:, 0]] + p[e[:, 1]])
        # keep those within 1.5 px of the mask's edge
        edge = covered ^ cv2.erode(covered, np.ones((3, 3), np.uint8))
        dist = cv2.distanceTransform((1 - edge).astype(np.uint8), cv2.DIST_L2, 3)
        h, w = covered.shape
        col = mid[:, 0].round().long().clamp(0, w - 1).cpu().numpy()
        row = mid[:, 1].round().long().clamp(0, h - 1).cpu().numpy()
        keep = torch.from_numpy(dist[row, col] <= 1.5).to(dev)
        return idx[keep]

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
        B, H, W = rast.shape[:3]
        hard = (rast[..., 3] > 0).to(verts_px.dtype)
        covs, bands = [], []
        ys, xs = torch.meshgrid(torch.arange(H, device=rast.device), torch.arange(W, device=rast.device), indexing="ij")
        for b in range(B):
            covered = (hard[b] > 0).cpu().numpy().astype(np.uint8)
            cov = hard[b].clone()
            band = torch.zeros_like(cov)
            tid = rast[b, ..., 3]
            seen = (tid[tid > 0] - 1).long().unique().to(verts_px.device)
            idx = self._outline_edges(verts_px[b], covered, seen)
            if len(idx):
                outline = covered ^ cv2.erode(covered, np.ones((3, 3), np.uint8))
                near = cv2.distanceTransform((1 - outline).astype(np.uint8), cv2.DIST_L2, 3) <= self.band
                sel = torch.from_numpy(near).to(rast.device)
                pix = torch.stack([xs[sel], ys[sel]], -1).to(verts_px.dtype)  # [P, 2]
                e = self.edges.to(rast.device)[idx]
                a, c = verts_px[b][e[:, 0]], verts_px[b][e[:, 1]]  # [E, 2]
                with torch.no_grad():
                    nearest = torch.cat([_segment_distance(chunk[:, None], a.detach()[None], c.detach()[None]).argmin(1)
                                         for chunk in pix.split(4096)])
                d = _segment_distance(pix, a[nearest], c[nearest])
                sign = hard[b][sel] * 2 - 1
                cov = cov.masked_scatter(sel, torch.sigmoid(sign * d / self.sigma))
                band = band.masked_fill(sel, 1.0)
            covs.append(cov)
            bands.append(band)
        return torch.stack(covs)[:, None], torch.stack(bands)[:, None]


def silhouette_loss(coverage: torch.Tensor, band: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of the soft coverage and a target region over the soft band.

    Args:
        coverage: ``[B, 1, H, W]`` from :class:`SoftEdge`. band: ``[B, 1, H, W]`` its band.
        target: ``[B, 1, H, W]`` probability that a pixel belongs to the region (e.g. a face
            segmenter's visible-face probability).
    """
    w = band.detach()
    return ((coverage - target.detach()) ** 2 * w).sum() / w.sum().clamp_min(1.0)
