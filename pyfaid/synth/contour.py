"""300-W-style 2-D landmarks: jaw points on the visible silhouette, and per-point visibility.

A morphable model's 68 landmarks are fixed vertices; projected, the jaw points 0-16 follow the 3-D
jaw line. Human annotators of 300-W (and every dataset in its convention, AFLW2000-3D's 2-D points,
AFW, ...) put jaw points on the *occluding contour* instead: on a turned face the far-side jaw
line is hidden behind the cheek, and the annotated points lie on the cheek's outline.
:class:`JawContour` reproduces that ("landmark marching", as in 3DDFA / HPEN):

* once per model, each jaw landmark ``j`` gets a line of candidate vertices on the mean face:
  those within ``band`` of the line through the landmark along the jaw curve's inward normal (in
  the frontal x-y plane), from the landmark towards the face's interior;
* per face, the candidates are projected with the face's shape and pose; the silhouette point
  is the candidate furthest out along the outward normal of the projected jaw curve. The 2-D
  landmark moves there when the 3-D landmark is hidden (a depth test against the rasterized face)
  or when the silhouette lies more than ``tolerance_px`` outside it; otherwise it stays.

On a frontal face the jaw landmarks are on the outline, so ``landmarks_2d == landmarks``; on a
turned face the far-side points slide onto the cheek's contour. ``visible`` says, for all 68
points, whether the point is seen (not hidden by the face itself, inside the picture); jaw points
moved to the silhouette are seen by construction.
"""

from __future__ import annotations

import numpy as np
import torch

from pyfaid.render import camera as cam_mod

__all__ = ["JawContour"]


class JawContour:
    """Silhouette jaw landmarks for one face model.

    Args:
        face_model: the ``MorphableModel``.
        band: half-width of each candidate line (model units; 0.012 = 1.2 mm).
        reach: how far inward each line goes (model units).
        tolerance_px: how far (pixels at 224, scaled with the picture) the silhouette must lie
            outside a visible 3-D landmark before the 2-D point moves to it.
    """

    def __init__(self, face_model, band: float = 0.012, reach: float = 0.55, tolerance_px: float = 1.0) -> None:
        V = face_model.mean_shape.detach().double().cpu().numpy()
        lm = face_model.landmark_idx.cpu().numpy()
        jaw = V[lm[:17], :2]
        centre = V[lm[[27, 30, 33, 51, 57]], :2].mean(0)
        self.tolerance_px = float(tolerance_px)
        cands = []
        outward = []
        for j in range(17):
            a, b = jaw[max(j - 1, 0)], jaw[min(j + 1, 16)]
            tangent = (b - a) / max(np.linalg.norm(b - a), 1e-9)
            normal = np.array([-tangent[1], tangent[0]])
            if normal @ (centre - jaw[j]) < 0:
                normal = -normal  # inward
            rel = V[:, :2] - jaw[j]
            t = rel @ normal
            off = np.abs(rel @ tangent)
            sel = np.flatnonzero((off < band) & (t >= 0) & (t <= reach))
            sel = np.union1d(sel, [lm[j]])
            cands.append(sel.astype(np.int64))
            outward.append(np.array([-normal[0], -normal[1], 0.0]))
        self.candidates = cands
        self.outward = np.stack(outward)  # [17, 3] model-space outward direction of each line
        self.flat = np.concatenate(cands)
        self.split = np.cumsum([len(c) for c in cands])[:-1]
        self.landmark_idx = lm.astype(np.int64)

    def compute(self, landmarks: torch.Tensor, vertices_cam: torch.Tensor, rast: torch.Tensor,
                renderer, rotation: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """300-W landmarks and visibility for a rendered batch.

        Args:
            landmarks: ``[B, 68, 2]`` projected model landmarks (pixels).
            vertices_cam: ``[B, V, 3]`` camera-space vertices (the renderer's ``vertices``).
            rast: ``[B, H, W, 4]`` the face's rasterization (for the depth test).
            renderer: the ``Renderer`` (camera).
            rotation: ``[B, 3, 3]`` the faces' rotations (``pyfaid.render.euler_rotation``).

        Returns:
            ``(landmarks_2d [B, 68, 2] float32, visible [B, 68] bool)``.
        """
        B = landmarks.shape[0]
        size = rast.shape[1]
        lm2d = landmarks.detach().float().cpu().numpy().copy()
        cand_px = renderer.project_points(vertices_cam[:, torch.as_tensor(self.flat)]).float().cpu().numpy()
        visible = self._depth_visible(vertices_cam, rast, renderer).numpy()
        tol = self.tolerance_px * size / 224.0
        # each line's outward direction, posed and seen in the picture (x right, y down)
        dirs = rotation.detach().double().cpu().numpy() @ self.outward.T  # [B, 3, 17]
        dirs = np.stack([dirs[:, 0], -dirs[:, 1]], -1)  # [B, 17, 2]
        for b in range(B):
            P = lm2d[b]
            groups = np.split(cand_px[b], self.split)
            for j in range(17):
                out = dirs[b, j]
                n = np.linalg.norm(out)
                if n < 1e-3:  # the line points at the camera: no silhouette along it
                    continue
                out = out / n
                g = groups[j]
                k = int(np.argmax(g @ out))
                if (not visible[b, j]) or (g[k] @ out > P[j] @ out + tol):
                    lm2d[b, j] = g[k]
                    visible[b, j] = True
        inside = (lm2d >= -0.5).all(-1) & (lm2d <= size - 0.5).all(-1)
        return torch.from_numpy(lm2d), torch.from_numpy(visible & inside)

    def _depth_visible(self, vertices_cam: torch.Tensor, rast: torch.Tensor, renderer) -> torch.Tensor:
        """Whether each of the 68 landmark vertices is the front-most surface at its pixel."""
        c = renderer.camera
        size = rast.shape[1]
        pts = vertices_cam[:, torch.as_tensor(self.landmark_idx)]
        clip = cam_mod.clip_space(pts, c.focal, c.center, size, c.near, c.far)
        ndc_z = clip[..., 2] / clip[..., 3]
        px = renderer.project_points(pts)
        col = px[..., 0].round().long().clamp(0, size - 1)
        row = px[..., 1].round().long().clamp(0, size - 1)
        bidx = torch.arange(pts.shape[0])[:, None].expand_as(col)
        z = rast[bidx, row, col, 2]
        covered = rast[bidx, row, col, 3] > 0
        # 5 mm of slack in depth, in NDC units near the face (d ndc / d z = 2 f n / ((f - n) z^2))
        slack = 0.05 * 2.0 * c.far * c.near / ((c.far - c.near) * c.distance ** 2)
        return (~covered) | (ndc_z <= z + slack)
