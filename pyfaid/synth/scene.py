"""Everything around the face in a synthetic picture: head, ears, neck, clothes, hair, background.

:class:`SceneRenderer` renders, for a batch of faces already rendered by
:class:`~pyfaid.render.Renderer`, the context mesh of :mod:`pyfaid.synth.context` (deformed to
each face's outline, posed with the head, the torso turning less than the head), with a skin that
continues the face's albedo at the seam, a hair cap (:mod:`pyfaid.synth.hair`), ears and clothes,
lit by the face's own SH coefficients. It then composites, per item, background -> long hair ->
context -> face -> hair that falls over the face, and returns the two pictures an item needs:

* ``clean``: the face fully visible (face pixels always show the face);
* ``hairy``: the same picture with the hair that covers face pixels drawn over them, and the mask
  of those face pixels (they are occluders: ``mask`` excludes them).

The face's own pixels are exactly the renderer's (plus, when lighting extras are on, the key
light's cast shadow and highlight, :mod:`pyfaid.synth.lighting`); only the silhouette is softened
against what lies behind it.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from pyfaid.render import camera as cam
from pyfaid.render import rasterize, sh_shading, vertex_normals
from pyfaid.render.topology import MeshTopology
from pyfaid.synth import hair as H
from pyfaid.synth.context import load_context

__all__ = ["SceneRenderer", "lerp", "soften"]

_CLOTHES = np.array(
    [
        [0.08, 0.08, 0.09], [0.85, 0.85, 0.83], [0.15, 0.2, 0.35], [0.45, 0.45, 0.47], [0.55, 0.1, 0.1],
        [0.2, 0.35, 0.2], [0.6, 0.5, 0.35], [0.3, 0.15, 0.35], [0.7, 0.6, 0.2], [0.25, 0.5, 0.7],
        [0.9, 0.6, 0.55], [0.35, 0.22, 0.12],
    ],
    np.float32,
)


class SceneRenderer:
    """Context, hair and compositing for one face model and picture size.

    Args:
        face_model: the ``MorphableModel``.
        renderer: the face ``Renderer`` (its camera is used for the context too).
    """

    def __init__(self, face_model, renderer) -> None:
        self.face_model = face_model
        self.renderer = renderer
        self.ctx = load_context(face_model)
        self.topo = MeshTopology(torch.from_numpy(self.ctx.triangles.astype(np.int64)), self.ctx.num_vertices)
        verts = torch.from_numpy(self.ctx.vertices)
        self.rest_normals = vertex_normals(verts, self.topo).numpy()  # [N, 3] for the hair displacement
        self.hair_texture = H.HairTexture()
        d = self.ctx.direction
        self.azimuth = np.arctan2(d[:, 0], d[:, 2]).astype(np.float32)
        self.elevation = np.arcsin(np.clip(d[:, 1], -1, 1)).astype(np.float32)
        fm = face_model
        self.face_mean = fm.mean_shape.detach().float().cpu()
        # the face's outer boundary ring, for the context skin's colour at the seam
        self.seam_vertex = torch.as_tensor(self.ctx.seam_vertex)
        # fixed parts of the context's skin: ears redder, the neck under the chin in shade
        ctx = self.ctx
        under = np.clip((-ctx.height - 0.05) / 0.3, 0, 1) * np.clip(ctx.direction[:, 2] * 1.5, 0, 1) * (1 - ctx.torso)
        self._skin_factor = ((1 - ctx.ear[:, None] * np.array([0.02, 0.1, 0.12], np.float32))
                             * (1 - 0.12 * under[:, None])).astype(np.float32)
        self._ring = np.unique(ctx.seam_vertex)
        self._seam_w = torch.from_numpy(np.clip(ctx.seam * 1.3, 0, 1))[None, :, None].float()
        # hair never grows on the context's strip along the face's cheeks and jaw (the strip tucks
        # under the face's edge: a hair cap there would stand in front of the face), and the cap's
        # volume tapers to nothing within a few millimetres of the face's edge
        dist = 0.25 * np.sqrt(-np.log(np.clip(ctx.seam, 1e-12, 1.0)))  # distance to the face's edge
        face_y = face_model.mean_shape.detach().cpu().numpy()[:, 1]
        seam_y = face_y[ctx.seam_vertex]
        below_top = seam_y < face_y.max() - 0.3
        self._hair_allow = (1 - np.exp(-((dist / 0.08) ** 2)) * below_top).astype(np.float32)
        self._volume_taper = (1 - np.exp(-((dist / 0.1) ** 2))).astype(np.float32)
        self._px = (ctx.vertices[:, 0] - ctx.pivot[0]).astype(np.float32)
        self._pz = (ctx.vertices[:, 2] - ctx.pivot[2]).astype(np.float32)
        # two vertices on the head's vertical axis (lowest and highest head vertex near x = 0, z = 0)
        head = np.flatnonzero((np.abs(ctx.vertices[:, 0] - ctx.pivot[0]) < 0.1) & (ctx.head_weight > 0.99))
        self._up_pair = (int(head[np.argmin(ctx.vertices[head, 1])]), int(head[np.argmax(ctx.vertices[head, 1])]))
        # where long hair falls from: above and in front of each ear
        self._temple_idx = []
        for side in (-1.0, 1.0):
            score = (self.azimuth - side * 1.25) ** 2 + (self.elevation - 0.5) ** 2 + 10 * ctx.ear + 10 * ctx.torso
            self._temple_idx.append(int(np.argmin(score)))
        # candidate hairline vertices: the front half of the head, not the ears
        self._front = np.flatnonzero((np.abs(self.azimuth) < 1.45) & (self.ctx.ear < 0.2) & (self.ctx.torso < 0.1)
                                     & (self.ctx.head_weight > 0.99))

    # ------------------------------------------------------------------------------ geometry
    def context_world(self, shapes: torch.Tensor, parts: dict, styles: list, torso_angles: torch.Tensor):
        """Context vertices in world space and their hair weights.

        Args:
            shapes: ``[B, A, 3]`` model-space face vertices at the context's anchors
                (``ctx.anchors``), or ``[B, V, 3]`` whole face shapes.
            parts: the split coefficients (``angle``, ``trans``).
            styles: B hair styles.
            torso_angles: ``[B, 3]`` Euler angles of the torso (radians).

        Returns:
            ``(world [B, N, 3], model [B, N, 3], hair weights [B, N] numpy)``.
        """
        model = self.ctx.follow(shapes.float(), self.face_mean.to(shapes.device), anchors_only=shapes.shape[1] != self.face_mean.shape[0])
        hw = np.stack([H.hair_weights(self.azimuth, self.elevation, s, self.ctx.ear) for s in styles])  # [B, N]
        hw *= self._hair_allow
        vol = np.array([s.volume for s in styles], np.float32)[:, None]
        # the cap swells with the hair's volume, more on top, tapering to nothing at the hairline
        top = 0.55 + 0.45 * np.clip(self.ctx.direction[:, 1], 0, 1)
        disp = vol * (hw ** 0.7) * (top * self._volume_taper)[None]  # [B, N]
        model = model + torch.from_numpy(disp[..., None] * self.rest_normals[None]).to(model)
        rot = cam.euler_rotation(parts["angle"].float())
        torso = cam.euler_rotation(torso_angles.float())
        world = self.ctx.pose(model, rot, parts["trans"].float(), torso)
        return world, model, hw

    def rasterize(self, world: torch.Tensor) -> torch.Tensor:
        """``[B, H, W, 4]`` rasterization of posed context vertices with the face's camera."""
        c = self.renderer.camera
        pos = cam.clip_space(cam.to_camera(world, c.distance), c.focal, c.center, c.image_size, c.near, c.far)
        return rasterize(pos.contiguous(), self.topo, (c.image_size, c.image_size))

    # ------------------------------------------------------------------------------ colours
    def context_albedo(self, rng: np.random.Generator, face_albedo: np.ndarray, hair_w: np.ndarray,
                       style: H.HairStyle) -> np.ndarray:
        """Per-vertex albedo ``[N, 3]`` of one item's context: skin continuing the face, ears, hair, clothes."""
        ctx = self.ctx
        # the face's typical skin, away from make-up and beards: its boundary ring's median colour
        skin_ref = np.median(face_albedo[self._ring], axis=0).astype(np.float32)
        w = ctx.seam[:, None]
        skin = face_albedo[ctx.seam_vertex] * w + skin_ref * (1 - w)
        skin *= self._skin_factor
        # clothes on the torso below a neckline (crew or V), sometimes bare shoulders
        cloth_col = _CLOTHES[rng.integers(len(_CLOTHES))] * np.exp(rng.normal(0, 0.15)) + rng.normal(0, 0.03, 3)
        cloth_col = np.clip(cloth_col, 0.02, 0.95).astype(np.float32)
        x, z = self._px, self._pz
        depth_v = rng.uniform(0.0, 0.45) if rng.random() < 0.35 else 0.0
        line = rng.uniform(-0.62, -0.45) + 0.2 * np.clip(np.abs(x) / 0.8, 0, 1) \
            - depth_v * np.clip(1 - np.abs(x) / 0.35, 0, 1) * (z > 0) + 0.12 * (z < -0.1)
        cloth = (np.clip((line - ctx.height) / 0.04, 0, 1) * float(rng.random() > 0.06)).astype(np.float32)
        clothes = np.broadcast_to(cloth_col, skin.shape)
        if rng.random() < 0.25:  # stripes
            clothes = clothes * (1 + 0.25 * np.sign(np.sin(ctx.height * rng.uniform(20, 60))))[:, None]
        A = skin + (clothes - skin) * cloth[:, None]
        A += (style.colour[None] - A) * hair_w[:, None]
        return np.clip(A, 0, 1).astype(np.float32)

    def shade(self, world: torch.Tensor, albedo: torch.Tensor, gamma: torch.Tensor,
              face_normals: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """SH-shaded per-vertex colours ``[B, N, 3]`` (the face's lights) and the normals used.

        Near the seam the context takes the face's own normals (blended by the seam weight), so
        the shading runs on across the seam without a step.
        """
        normals = vertex_normals(world.contiguous(), self.topo)
        if face_normals is not None:
            w = self._seam_w
            normals = torch.nn.functional.normalize(
                normals * (1 - w) + face_normals[:, self.seam_vertex].to(normals) * w, dim=-1)
        return sh_shading(normals.contiguous(), albedo.contiguous(), self.renderer.lit_gamma(gamma.float())), normals

    # ------------------------------------------------------------------------------ 2-D hair
    def hair_points(self, world: torch.Tensor, hair_w: np.ndarray, b: int):
        """Projected front-hairline points (left to right) and the pixel directions hair falls there.

        Args:
            world: ``[B, N, 3]`` posed context vertices (world space).
            hair_w: ``[B, N]`` hair weights.
            b: the item.

        Returns:
            ``(points [P, 2], flow [P, 2])`` in pixels, ordered by azimuth (image-left first for a
            frontal face).
        """
        idx = self._front
        w = hair_w[b, idx]
        sel = idx[(w > 0.25) & (w < 0.75)]
        if len(sel) < 4:
            return np.zeros((0, 2)), np.zeros((0, 2))
        dist = self.renderer.camera_distance
        p = world[b, torch.as_tensor(sel)]
        # the flow: down the head's own vertical axis, a few millimetres
        up_dir = world[b, torch.as_tensor(self._up_pair[1])] - world[b, torch.as_tensor(self._up_pair[0])]
        up_dir = up_dir / up_dir.norm().clamp_min(1e-9)
        px = self.renderer.project_points(cam.to_camera(p, dist)[None])[0].numpy()
        px2 = self.renderer.project_points(cam.to_camera(p - 0.05 * up_dir, dist)[None])[0].numpy()
        flow = px2 - px
        flow /= np.maximum(np.linalg.norm(flow, axis=1, keepdims=True), 1e-6)
        order = np.argsort(self.azimuth[sel])
        return px[order], flow[order]

    def temples(self, world: torch.Tensor, b: int) -> np.ndarray:
        """Projected points above the two ears, image-left side of the face first, ``[2, 2]``."""
        p = world[b, torch.as_tensor(self._temple_idx)]
        return self.renderer.project_points(cam.to_camera(p, self.renderer.camera_distance)[None])[0].numpy()

    # ------------------------------------------------------------------------------ composite
    def composite(self, background: np.ndarray, face_rgb: np.ndarray, face_cover: np.ndarray,
                  face_depth: np.ndarray, ctx_rgb: np.ndarray, ctx_cover: np.ndarray, ctx_depth: np.ndarray,
                  ctx_hair: np.ndarray, layers: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Composite one item: background, context, 2-D hair layers, face, hair over the face.

        Args:
            background: ``[H, W, 3]`` float32 (overwritten).
            face_rgb / ctx_rgb: ``[H, W, 3]`` renders; face_cover / ctx_cover: ``[H, W]`` 0/1.
            face_depth / ctx_depth: ``[H, W]`` NDC depth.
            ctx_hair: ``[H, W]`` hair weight of the context render.
            layers: 2-D hair layers ``(premultiplied colour [h, w, 3], alpha [h, w], box, behind)``,
                in drawing order (long hair, fringe, strands); ``behind`` layers (long hair) fall
                behind the face and cover it only along its outline.

        Returns:
            ``(clean [H, W, 3], hairy [H, W, 3], hair_over_face [H, W] 0/1)``: in ``clean`` face
            pixels always show the face; ``hairy`` also shows the hair in front of face pixels,
            whose mask is the third output.
        """
        scene = background
        lerp(scene, ctx_rgb, soften(ctx_cover))
        for colour, alpha, box, _behind in layers:
            sl = _sl(box)
            part = scene[sl]
            part *= (1 - alpha)[..., None]
            part += colour
        fa = soften(face_cover)
        clean = scene.copy()
        lerp(clean, face_rgb, fa)
        cap = (ctx_cover > 0) & (ctx_hair > 0.5) & (face_cover > 0) & (ctx_depth < face_depth - 2e-4)
        over = cap.astype(np.float32)
        if not cap.any() and not layers:
            return clean, clean, over
        face_hair = face_rgb.copy()
        lerp(face_hair, ctx_rgb, over)
        rim = None
        for colour, alpha, box, behind in layers:
            sl = _sl(box)
            if behind:  # only along the face's outline (a few pixels in)
                if rim is None:
                    k = max(3, int(round(face_cover.shape[0] / 224 * 3)) | 1)
                    rim = face_cover - cv2.erode(face_cover, np.ones((k, k), np.uint8))
                keep = rim[sl]
                colour = colour * keep[..., None]
                alpha = alpha * keep
            part = face_hair[sl]
            part *= (1 - alpha)[..., None]
            part += colour
            np.maximum(over[sl], alpha, out=over[sl])
        hairy = scene
        lerp(hairy, face_hair, fa)
        over = ((over > 0.5) & (face_cover > 0)).astype(np.float32)
        return clean, hairy, over


def _sl(box):
    x, y, w, h = box
    return slice(y, y + h), slice(x, x + w)


def lerp(dst: np.ndarray, src: np.ndarray, weight: np.ndarray) -> None:
    """``dst = dst * (1 - w) + src * w`` in place, with ``w [H, W]`` (only where w > 0)."""
    rows = np.flatnonzero(weight.any(1))
    if len(rows) == 0:
        return
    sl = slice(rows[0], rows[-1] + 1)
    d, w = dst[sl], weight[sl][..., None]
    d += (src[sl] - d) * w


def soften(cover: np.ndarray) -> np.ndarray:
    """Silhouette anti-aliasing from inside: edge pixels of a 0/1 coverage become partial."""
    return cv2.blur(cover, (3, 3)) * cover
