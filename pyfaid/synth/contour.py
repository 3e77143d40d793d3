"""The two 68-point landmark conventions of a posed face, from the face model's geometry.

* **3D-style** (AFLW2000-3D, 3DDFA, DECA's 3D landmarks): the model's 68 landmark vertices,
  projected where they fall, also when hidden (the far jaw of a turned face lies inside it).
* **2D-style** (300-W, COFW, WFLW, AFW: what people draw): the jaw points 0-16 lie on the visible
  outline of the head at every pose, on both sides; the outer brow points (17, 18, 25, 26) move
  onto the outline where the head hides them; every other point is the 3D-style point.

:class:`LandmarkMarching` computes the 2D-style points by *landmark marching* (3DDFA / HPEN): once
per face model, every marched landmark gets a *line* on the surface of the head at the mean shape:
the section of the head by the plane through the landmark that holds the view axis (z) and the
jaw curve's outward normal in the frontal x-y plane, from ``reach_in`` inside the landmark to
``reach_out`` outside it. The line runs over the face mesh and, beyond the face mesh's edge, over
the head around it (:mod:`pyfaid.synth.context`: the cheek strip in front of the ears; not the
ears, the neck or anything behind the ears), because the face mesh's edge is not the head's
outline: on a frontal face the head's outline lies a little outside it beside the ears, and on the
near side of a turned face the visible face reaches to the ear. Each line is stored as points on
mesh edges (two vertex indices and a weight), so it moves exactly with any shape and pose.

Per posed face, a line's *silhouette point* is its point furthest out along the line's outward
direction as seen in the picture (the posed outward normal, projected). A jaw point is always its
line's silhouette point; an outer brow point takes it only when the brow vertex is hidden by the
face (depth test against the face's rasterization). The same code, differentiable, gives fitting
its contour correspondences (:mod:`pyfaid.reconstruct.fitting`).
"""

from __future__ import annotations

import weakref
from typing import Optional

import numpy as np
import torch
from scipy.spatial import ConvexHull, QhullError

from pyfaid.render import camera as cam
from pyfaid.synth.context import load_context

__all__ = ["LandmarkMarching", "marching_for", "JAW", "BROW_ENDS", "MARCHED"]

#: The jaw line (always on the outline in the 2D-style convention).
JAW = tuple(range(17))
#: The outer brow points that move onto the outline where the head hides them.
BROW_ENDS = (17, 18, 25, 26)
#: Every marched landmark, in line order.
MARCHED = JAW + BROW_ENDS


def _context_region(ctx, face_mean: np.ndarray, landmark_idx: np.ndarray) -> np.ndarray:
    """Context vertices a line may cross: the head's skin in front of the ears, between the chin
    and the brows (no ears, neck, torso or back of the head)."""
    C = ctx.vertices.astype(np.float64)
    ear = ctx.ear > 0.25
    ear_front = C[ctx.ear > 0.5, 2].max() if (ctx.ear > 0.5).any() else -np.inf
    lm = face_mean[landmark_idx]
    top = lm[[19, 24], 1].max() + 0.1
    bottom = lm[8, 1] - 0.1
    return ((ctx.head_weight >= 0.999) & ~ear & (C[:, 2] >= ear_front - 0.1)
            & (C[:, 1] <= top) & (C[:, 1] >= bottom))


class _Surface:
    """A triangle mesh's unique edges and, per triangle, its three edge ids (for plane sections)."""

    def __init__(self, points: np.ndarray, triangles: np.ndarray, offset: int = 0) -> None:
        tri = np.asarray(triangles, np.int64)
        e = np.stack([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]], 1).reshape(-1, 2)
        e = np.sort(e, axis=1)
        self.edges, inverse = np.unique(e, axis=0, return_inverse=True)
        self.tri_edges = inverse.reshape(-1, 3)
        self.points = points
        self.offset = offset  # index of this mesh's first vertex in the lines' vertex numbering

    def section(self, p: np.ndarray, tangent: np.ndarray):
        """Crossings of the plane through ``p`` with normal ``(tangent, 0)``: ``(edge ids, weights,
        positions, neighbours)``; ``neighbours[i]`` lists the crossings sharing a triangle with ``i``."""
        s = (self.points[:, :2] - p[:2]) @ tangent
        sa, sb = s[self.edges[:, 0]], s[self.edges[:, 1]]
        cross = ((sa < 0) & (sb >= 0)) | ((sa >= 0) & (sb < 0))
        ids = np.flatnonzero(cross)
        w = sa[ids] / (sa[ids] - sb[ids])
        x = self.points[self.edges[ids, 0]] * (1 - w[:, None]) + self.points[self.edges[ids, 1]] * w[:, None]
        local = np.full(len(self.edges), -1, np.int64)
        local[ids] = np.arange(len(ids))
        te = local[self.tri_edges]  # [F, 3] crossing numbers (-1: edge not crossed)
        two = te[(te >= 0).sum(1) == 2]
        pairs = np.sort(two, axis=1)[:, 1:]  # the two crossed edges of each crossed triangle
        neighbours = [[] for _ in ids]
        for a, b in pairs:
            neighbours[a].append(b)
            neighbours[b].append(a)
        return ids, w, x, neighbours


def _walk(neighbours: list, start: int, first: int) -> list:
    """Crossings from ``start`` through ``first`` onward, following the section (a path or loop)."""
    out, prev, cur = [start], start, first
    while cur >= 0 and cur != start:
        out.append(cur)
        nxt = [n for n in neighbours[cur] if n != prev]
        prev, cur = cur, (nxt[0] if nxt else -1)
    return out


def _oriented(neighbours: list, u: np.ndarray, start: int) -> list:
    """The section through ``start`` as one list, ordered by increasing ``u`` at ``start``."""
    sides = [_walk(neighbours, start, n) for n in neighbours[start][:2]]
    if not sides:
        return [start]
    if len(sides) == 1:
        path = sides[0]
        return path if len(path) < 2 or u[path[1]] >= u[start] else path[::-1]
    a, b = sides
    inward, outward = (a, b) if u[a[min(1, len(a) - 1)]] < u[b[min(1, len(b) - 1)]] else (b, a)
    return inward[::-1] + outward[1:]


def _line_path(face: _Surface, ctx: Optional[_Surface], p: np.ndarray, normal: np.ndarray, tangent: np.ndarray,
               reach_in: float, reach_out: float, features: Optional[list]):
    """One landmark's line, ordered from inside to outside: ``(vertex a [K], vertex b [K], weight [K])``.

    The face mesh's section through the landmark, from ``reach_in`` inside it to ``reach_out``
    outside it (cut where it enters the nose, mouth or eyes when ``features`` are given), continued
    beyond the face mesh's edge by the context's section when ``ctx`` is given."""
    ids, w, x, nb = face.section(p, tangent)
    if not len(ids):
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    u = (x[:, :2] - p[:2]) @ normal
    path = _oriented(nb, u, int(np.argmin(np.linalg.norm(x - p, axis=1))))
    path = np.asarray(path, np.int64)
    bad = (u[path] < -reach_in) | (u[path] > reach_out)
    if features is not None:
        bad |= _inside_any(features, x[path, :2])
    mid = int(np.argmin(np.linalg.norm(x[path] - p, axis=1)))
    lo = mid - int(np.argmax(bad[:mid + 1][::-1])) if bad[:mid + 1].any() else -1
    hi = mid + int(np.argmax(bad[mid:])) if bad[mid:].any() else len(path)
    sel = path[lo + 1:hi]
    a = [face.edges[ids[sel], 0]]
    b = [face.edges[ids[sel], 1]]
    ww = [w[sel]]
    if ctx is not None and hi == len(path) and len(sel):  # the face mesh ended: continue on the head
        end, u_end = x[sel[-1]], u[sel[-1]]
        cids, cw, cx, cnb = ctx.section(p, tangent)
        if len(cids):
            cu = (cx[:, :2] - p[:2]) @ normal
            d = np.linalg.norm(cx - end, axis=1)
            if d.min() < 0.06:
                cpath = np.asarray(_oriented(cnb, cu, int(np.argmin(d))), np.int64)
                cpath = cpath[int(np.argmin(np.linalg.norm(cx[cpath] - end, axis=1))):]
                out = np.flatnonzero(cu[cpath] > reach_out)
                cpath = cpath[:out[0]] if len(out) else cpath
                cpath = cpath[cu[cpath] > u_end]
                a.append(ctx.edges[cids[cpath], 0] + ctx.offset)
                b.append(ctx.edges[cids[cpath], 1] + ctx.offset)
                ww.append(cw[cpath])
    return np.concatenate(a), np.concatenate(b), np.concatenate(ww)


def _feature_hulls(lm: np.ndarray, margin: float = 0.06) -> list:
    """Half-plane equations ``[E, 3]`` of the nose, mouth and eye outlines in the frontal x-y plane
    (convex hulls of their landmarks, ``margin`` model units wider)."""
    hulls = []
    for idx in (range(27, 36), range(48, 60), range(36, 42), range(42, 48)):
        try:
            eq = ConvexHull(lm[list(idx), :2]).equations.copy()  # n . p + d <= 0 inside
        except QhullError:  # degenerate landmarks (a toy model): no region to stop at
            continue
        eq[:, 2] -= margin
        hulls.append(eq)
    return hulls


def _inside_any(hulls: list, p: np.ndarray) -> np.ndarray:
    inside = np.zeros(len(p), bool)
    for eq in hulls:
        inside |= ((p @ eq[:, :2].T + eq[:, 2]) <= 0).all(1)
    return inside


class LandmarkMarching:
    """2D-style landmarks of posed faces by marching along lines on the head (see the module).

    Args:
        face_model: the ``MorphableModel`` (its mean shape, triangles and 68 landmark indices).
        context: the head around the face (:class:`pyfaid.synth.context.HeadContext`), or
            None to march over the face mesh alone (its edge is then the outline).
        reach_in: how far each line runs inward from its landmark (model units, 0.55 = 5.5 cm).
        reach_out: how far each line runs outward from its landmark (model units).

    Attributes:
        line_of: ``{landmark: line number}`` for :data:`MARCHED`.
        edge_a, edge_b, weight, valid: ``[L, K]`` the lines' points, ordered from inside to outside
            (``valid``: not padding): ``(1 - w) * X[a] + w * X[b]`` over the vertices ``X`` of the
            face (``0..V-1``) followed by the context's (``V..``).
    """

    def __init__(self, face_model, context=None, reach_in: float = 0.55, reach_out: float = 0.3,
                 fold_px: float = 0.5) -> None:
        V = face_model.mean_shape.detach().double().cpu().numpy()
        lm = face_model.landmark_idx.cpu().numpy().astype(np.int64)
        self.num_face = len(V)
        self.face_mean = torch.from_numpy(V).float()  # what the context's follow() deforms from
        self.landmark_idx = lm
        self.context = context
        self.fold_px = float(fold_px)
        face = _Surface(V, face_model.triangles.cpu().numpy())
        ctx = None
        if context is not None:
            allowed = _context_region(context, V, lm)
            tri = context.triangles[allowed[context.triangles].all(1)]
            ctx = _Surface(context.vertices.astype(np.float64), tri, offset=len(V))
        features = _feature_hulls(V[lm])
        self.outward = np.zeros((len(MARCHED), 3))  # model-space outward direction of each line
        lines = []
        for k, j in enumerate(MARCHED):
            normal, tangent = self._directions(V[lm], j)
            self.outward[k, :2] = normal
            rin = reach_in if j in JAW else 0.6 * reach_in
            path = _line_path(face, ctx, V[lm[j]], normal, tangent, rin, reach_out,
                              features if j in JAW else None)
            if not len(path[0]):  # a mesh without surface there (e.g. a coarse model): the vertex itself
                path = (np.array([lm[j]]), np.array([lm[j]]), np.zeros(1))
            lines.append(path)
        kmax = max(len(a) for a, _, _ in lines)
        self.edge_a = torch.full((len(MARCHED), kmax), 0, dtype=torch.int64)
        self.edge_b = torch.full((len(MARCHED), kmax), 0, dtype=torch.int64)
        self.weight = torch.zeros(len(MARCHED), kmax, dtype=torch.float64)
        self.valid = torch.zeros(len(MARCHED), kmax, dtype=torch.bool)
        for k, (a, b, w) in enumerate(lines):
            n = len(a)
            self.edge_a[k, :n], self.edge_b[k, :n] = torch.from_numpy(a), torch.from_numpy(b)
            self.weight[k, :n], self.valid[k, :n] = torch.from_numpy(w), True
        self.line_of = {j: k for k, j in enumerate(MARCHED)}
        # the context vertices the lines use: their indices after the face's, and how they follow a face
        used = torch.unique(torch.cat([self.edge_a[self.valid], self.edge_b[self.valid]]))
        self.ctx_rows = used[used >= self.num_face] - self.num_face  # [R] context vertex ids
        if context is not None and len(self.ctx_rows):
            remap = torch.arange(self.num_face + len(context.vertices))
            remap[self.num_face + self.ctx_rows] = self.num_face + torch.arange(len(self.ctx_rows))
            self.edge_a, self.edge_b = remap[self.edge_a], remap[self.edge_b]
            rows = self.ctx_rows.numpy()
            self.anchors = torch.as_tensor(context.anchors)
            self.anchor_mean = self.face_mean[self.anchors]  # [A, 3]
            self.ctx_rest = torch.from_numpy(context.vertices[rows]).float()  # [R, 3]
            # the anchors' residual spread as HeadContext.follow spreads it (its k largest weights per row)
            spread = np.zeros((len(rows), len(context.anchors)), np.float32)
            srows, scols, sw = context._sparse_weights
            at = {int(r): i for i, r in enumerate(srows)}
            for i, r in enumerate(rows):
                if int(r) in at:
                    spread[i, scols[at[int(r)]]] = sw[at[int(r)]]
            self.ctx_spread = torch.from_numpy(spread)  # [R, A]
        # the face vertices the lines use: posing gathers them (and the context's) only, not the whole mesh
        self.face_rows = torch.unique(torch.cat([self.edge_a.reshape(-1), self.edge_b.reshape(-1)]))
        self.face_rows = self.face_rows[self.face_rows < self.num_face]  # [U] face vertex ids
        local = torch.full((self.num_face + len(self.ctx_rows),), -1, dtype=torch.int64)
        local[self.face_rows] = torch.arange(len(self.face_rows))
        local[self.num_face:] = len(self.face_rows) + torch.arange(len(self.ctx_rows))
        self.local_a, self.local_b = local[self.edge_a].reshape(-1), local[self.edge_b].reshape(-1)

    @staticmethod
    def _directions(lm: np.ndarray, j: int) -> tuple[np.ndarray, np.ndarray]:
        """``(outward normal, tangent)`` unit 2-D vectors of landmark ``j``'s line (frontal x-y plane)."""
        centre = lm[[27, 30, 33, 51, 57], :2].mean(0)
        if j in JAW:
            a, b = lm[max(j - 1, 0), :2], lm[min(j + 1, 16), :2]
            tangent = (b - a) / max(np.linalg.norm(b - a), 1e-9)
            normal = np.array([-tangent[1], tangent[0]])
            if normal @ (lm[j, :2] - centre) < 0:
                normal = -normal
        else:  # outer brow points march horizontally, outward
            normal = np.array([np.sign(lm[j, 0] - centre[0]) or 1.0, 0.0])
        tangent = np.array([-normal[1], normal[0]])
        return normal, tangent

    # ------------------------------------------------------------------------------ posing
    @staticmethod
    def _unposed(points_cam: torch.Tensor, rotation: torch.Tensor, translation: torch.Tensor,
                 camera_distance: float) -> torch.Tensor:
        """Camera-space points ``[B, N, 3]`` back in model space (the pose undone)."""
        world = cam.to_camera(points_cam, camera_distance)  # its own inverse
        return (world - translation[:, None].to(world.dtype)) @ rotation.to(world.dtype)

    def _context_points(self, verts_cam: torch.Tensor, rotation: torch.Tensor, translation: torch.Tensor,
                        camera_distance: float) -> torch.Tensor:
        """Camera-space positions ``[B, R, 3]`` of the context vertices the lines use, following the
        face (:meth:`pyfaid.synth.context.HeadContext.follow`, for these rows only)."""
        dev, dt = verts_cam.device, verts_cam.dtype
        src = self.anchor_mean.to(dev, dt)  # [A, 3]
        dst = self._unposed(verts_cam[:, self.anchors.to(dev)], rotation, translation, camera_distance)  # [B, A, 3]
        sm, dm = src - src.mean(0), dst - dst.mean(1, keepdim=True)
        scale = ((sm[None] * dm).sum(1) / (sm * sm).sum(0).clamp_min(1e-9)).clamp(0.85, 1.15)  # [B, 3]
        shift = dst.mean(1) - scale * src.mean(0)
        resid = dst - (src[None] * scale[:, None] + shift[:, None])  # [B, A, 3]
        model = self.ctx_rest.to(dev, dt)[None] * scale[:, None] + shift[:, None] + self.ctx_spread.to(dev, dt) @ resid
        return cam.to_camera(cam.apply_pose(model, rotation.to(dt), translation.to(dt)), camera_distance)

    def posed_points(self, verts_cam: torch.Tensor, rotation: torch.Tensor, translation: torch.Tensor,
                     camera_distance: float) -> torch.Tensor:
        """Camera-space positions ``[B, L * K, 3]`` of the lines' points (differentiable).

        Args:
            verts_cam: ``[B, V, 3]`` the posed face's camera-space vertices (the renderer's ``vertices``).
            rotation: ``[B, 3, 3]`` its rotation (:func:`pyfaid.render.camera.euler_rotation`).
            translation: ``[B, 3]`` its translation.
            camera_distance: the renderer's camera distance.
        """
        dev, dt = verts_cam.device, verts_cam.dtype
        verts = verts_cam[:, self.face_rows.to(dev)]  # [B, U, 3]: the face vertices the lines use
        if self.context is not None and len(self.ctx_rows):
            verts = torch.cat([verts, self._context_points(verts_cam, rotation, translation, camera_distance)], 1)
        a, b = self.local_a.to(dev), self.local_b.to(dev)
        w = self.weight.to(dev, dt).reshape(1, -1, 1)
        return verts[:, a] * (1 - w) + verts[:, b] * w

    def outward_px(self, verts_cam: torch.Tensor, rotation: torch.Tensor, translation: torch.Tensor,
                   renderer) -> torch.Tensor:
        """Each line's outward direction in the picture ``[B, L, 2]`` (unit; 0 where the line
        points at the camera)."""
        idx = torch.as_tensor(self.landmark_idx[list(MARCHED)], device=verts_cam.device)
        lm = self._unposed(verts_cam[:, idx], rotation, translation, renderer.camera_distance)  # [B, L, 3]
        step = torch.as_tensor(self.outward, device=lm.device, dtype=lm.dtype) * 0.05
        both = torch.cat([lm, lm + step], 1)
        px = renderer.project_points(cam.to_camera(cam.apply_pose(both, rotation.to(lm.dtype), translation.to(lm.dtype)),
                                                   renderer.camera_distance))
        d = px[:, len(MARCHED):] - px[:, :len(MARCHED)]
        n = d.norm(dim=-1, keepdim=True)
        return torch.where(n > 1e-3, d / n.clamp_min(1e-9), torch.zeros_like(d))

    def silhouette(self, verts_cam: torch.Tensor, rotation: torch.Tensor, translation: torch.Tensor,
                   renderer) -> tuple[torch.Tensor, torch.Tensor]:
        """Every line's silhouette point in the picture (differentiable in the chosen point), for
        the posed faces ``verts_cam [B, V, 3]`` (camera space) of rotation ``[B, 3, 3]`` and
        translation ``[B, 3]``.

        Returns:
            ``(points [B, L, 2] pixels, chosen [B, L] index along each line)``; the choice
            itself carries no gradient.
        """
        pts_cam = self.posed_points(verts_cam, rotation, translation, renderer.camera_distance)
        L, K = self.valid.shape
        px = renderer.project_points(pts_cam).reshape(-1, L, K, 2)
        with torch.no_grad():
            d = self.outward_px(verts_cam.detach(), rotation.detach(), translation.detach(), renderer)  # [B, L, 2]
            valid = self.valid.to(px.device)[None]
            score = (px.detach() * d[:, :, None]).sum(-1).masked_fill(~valid, -float("inf"))  # [B, L, K]
            # walking outward, the line passes the outline where it first folds back by more than
            # fold_px (what lies beyond, e.g. the throat below the chin, is another surface)
            best = score.cummax(-1).values
            tol = self.fold_px * renderer.image_size / 224.0
            folded = ((best - score) > tol) & valid
            first = torch.where(folded.any(-1), folded.float().argmax(-1), torch.full_like(folded[..., 0], K, dtype=torch.long))
            k = torch.arange(K, device=px.device)
            chosen = score.masked_fill(k[None, None] >= first[..., None], -float("inf")).argmax(-1)  # [B, L]
        pts = px.gather(2, chosen[..., None, None].expand(-1, -1, 1, 2))[:, :, 0]
        return pts, chosen

    def points_at(self, verts_cam: torch.Tensor, rotation: torch.Tensor, translation: torch.Tensor, renderer,
                  chosen: torch.Tensor) -> torch.Tensor:
        """The points ``chosen [B, L]`` (from :meth:`silhouette`) of the lines, in the picture
        ``[B, L, 2]`` for another shape and pose (differentiable): the same surface points."""
        pts_cam = self.posed_points(verts_cam, rotation, translation, renderer.camera_distance)
        L, K = self.valid.shape
        px = renderer.project_points(pts_cam).reshape(-1, L, K, 2)
        return px.gather(2, chosen.to(px.device)[..., None, None].expand(-1, -1, 1, 2))[:, :, 0]

    # ------------------------------------------------------------------------------ labels
    @torch.no_grad()
    def compute(self, landmarks: torch.Tensor, vertices_cam: torch.Tensor, rotation: torch.Tensor,
                translation: torch.Tensor, rast: torch.Tensor, renderer) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """2D-style landmarks and their visibility for a rendered batch.

        Args:
            landmarks: ``[B, 68, 2]`` the 3D-style points (the landmark vertices projected, pixels).
            vertices_cam: ``[B, V, 3]`` camera-space vertices (the renderer's ``vertices``).
            rotation: ``[B, 3, 3]`` the faces' rotations; translation ``[B, 3]``.
            rast: ``[B, H, W, 4]`` the face's rasterization (for the depth test).
            renderer: the ``Renderer``.

        Returns:
            ``(landmarks_2d [B, 68, 2] float32, visible [B, 68] bool, visible_3d [B, 68] bool)``:
            whether each 2D-style / 3D-style point is seen (not hidden by the face itself, inside the
            picture; marched points are seen by construction).
        """
        size = rast.shape[1]
        lm2d = landmarks.detach().float().cpu().clone()
        sil, _ = self.silhouette(vertices_cam.float(), rotation.float(), translation.float(), renderer)
        sil = sil.float().cpu()
        visible = self.depth_visible(vertices_cam, rast, renderer).cpu()
        inside_3d = (landmarks >= -0.5).all(-1).cpu() & (landmarks <= size - 0.5).all(-1).cpu()
        visible_3d = visible & inside_3d
        for k, j in enumerate(MARCHED):
            move = torch.ones_like(visible[:, j]) if j in JAW else ~visible[:, j]
            lm2d[move, j] = sil[move, k]
            visible[move, j] = True
        inside = (lm2d >= -0.5).all(-1) & (lm2d <= size - 0.5).all(-1)
        return lm2d, visible & inside, visible_3d

    def depth_visible(self, vertices_cam: torch.Tensor, rast: torch.Tensor, renderer) -> torch.Tensor:
        """``[B, 68]`` whether each landmark vertex is the front-most surface at its pixel (5 mm slack)."""
        c = renderer.camera
        size = rast.shape[1]
        pts = vertices_cam[:, torch.as_tensor(self.landmark_idx, device=vertices_cam.device)].to(rast.device)
        clip = cam.clip_space(pts, c.focal, c.center, size, c.near, c.far)
        ndc_z = clip[..., 2] / clip[..., 3]
        px = renderer.project_points(pts)
        col = px[..., 0].round().long().clamp(0, size - 1)
        row = px[..., 1].round().long().clamp(0, size - 1)
        bidx = torch.arange(pts.shape[0], device=rast.device)[:, None].expand_as(col)
        z = rast[bidx, row, col, 2]
        covered = rast[bidx, row, col, 3] > 0
        # 5 mm of slack in depth, in NDC units near the face (d ndc / d z = 2 f n / ((f - n) z^2))
        slack = 0.05 * 2.0 * c.far * c.near / ((c.far - c.near) * c.distance ** 2)
        return (~covered) | (ndc_z <= z + slack)


_BY_MODEL: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def marching_for(face_model, context: Optional[bool] = None) -> LandmarkMarching:
    """The :class:`LandmarkMarching` of a face model, built once per model.

    Args:
        face_model: the ``MorphableModel``.
        context: march over the head around the face (:func:`pyfaid.synth.context.load_context`);
            None: when the model has a context (the default model, or any model the context can be
            moved onto), else over the face alone.
    """
    key = bool(True if context is None else context)
    per_model = _BY_MODEL.setdefault(face_model, {})
    if key not in per_model:
        ctx = None
        if key:
            try:
                ctx = load_context(face_model)
            except (OSError, ValueError, ImportError):
                if context:
                    raise
                ctx = None
        per_model[key] = LandmarkMarching(face_model, ctx)
    return per_model[key]
