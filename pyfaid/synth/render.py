"""Rendering pieces of :class:`pyfaid.synth.faces.SyntheticFaces`: the key light's cast shadows
and highlights on the face, the context around it (head, ears, neck, clothes, hair), the 2-D
hair drawn over the picture, the pasted occluders and the camera effects.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial import cKDTree

from pyfaid.facemodel.builder.meshops import boundary_vertices
from pyfaid.occlusion import occlude_arrays
from pyfaid.render import camera as cam_mod
from pyfaid.render import interpolate
from pyfaid.render.camera import euler_rotation
from pyfaid.synth import hair as H
from pyfaid.synth.lighting import key_light_residual
from pyfaid.synth.photo import apply_effects
from pyfaid.synth.sampling import S_CONTEXT, S_HAIR2D, S_LIGHT, S_SCENE, item_rng

__all__ = ["SyntheticRendering", "cam_rotation"]


class SyntheticRendering:
    """The key-light residual, context renders, 2-D hair layers, occluders and camera effects of
    :class:`~pyfaid.synth.faces.SyntheticFaces` (a base class of it).
    """

    def _paste_occluders(self, idx: list, hairies, hair_masks: np.ndarray, lm2d: torch.Tensor):
        """With ``occlusion``, the occluded pictures and occluder masks ``(images, occ)`` (hair over
        the face and pasted occluders), else ``(None, None)``."""
        images = occ = None
        if self.occlusion:
            B = len(idx)
            np.clip(hairies, 0, 1, out=hairies)
            images, occ = hairies, hair_masks
            pasted = [b for b, i in enumerate(idx)
                      if self.occlusion_prob >= 1.0 or item_rng(self.seed, i, S_SCENE + 20).random() < self.occlusion_prob]
            if len(pasted) == B:  # all of them (the default): draw in place
                _, got_occ = occlude_arrays(images, seed=self.seed, indices=idx, landmarks=lm2d.numpy(), copy=False,
                                            **self.occlusion_kwargs)
                np.maximum(occ, got_occ, out=occ)
            elif pasted:
                sel = np.asarray(pasted)
                got, got_occ = occlude_arrays(hairies[sel], seed=self.seed, indices=[idx[b] for b in pasted],
                                              landmarks=lm2d.numpy()[sel], copy=False, **self.occlusion_kwargs)
                images[sel] = got
                occ[sel] = np.maximum(got_occ, hair_masks[sel])
        self._tick("occlusion")
        return images, occ

    def _camera_effects(self, cleans: np.ndarray, images, occ, fxs: list, cover_np: np.ndarray):
        """Camera effects, the same camera for the clean and the occluded picture: ``(image, clean,
        face mask, occluder mask)`` tensors ``[B, C, H, W]``."""
        B, size = cleans.shape[0], self.image_size
        clean_u8 = np.empty((B, size, size, 3), np.uint8)
        image_u8 = np.empty((B, size, size, 3), np.uint8) if self.occlusion else clean_u8
        for b in range(B):
            clean_u8[b] = apply_effects(cleans[b], fxs[b])
            if self.occlusion:
                image_u8[b] = apply_effects(images[b], fxs[b])
        clean = torch.from_numpy(clean_u8).permute(0, 3, 1, 2).float().div_(255.0).contiguous()
        image = torch.from_numpy(image_u8).permute(0, 3, 1, 2).float().div_(255.0).contiguous() \
            if self.occlusion else clean.clone()
        face = torch.from_numpy(cover_np)[:, None].contiguous()
        occ = torch.from_numpy(occ)[:, None].contiguous() if self.occlusion else torch.zeros_like(face)
        return image, clean, face, occ

    def _light_residual(self, plans: list, colors: list, out) -> np.ndarray:
        """The key light's cast shadows and highlights on the face, per pixel ``[B, H, W, 3]``."""
        shadows = self._part("shadows")
        painter = self._part("painter")
        if not hasattr(self, "_seam_fade"):
            # highlights by region (oily T-zone, glossy lips, wet eyes), and a fade to zero at the
            # face's outer edge, where the context (which has no cast shadows) takes over
            self._gloss_skin = ((0.25 + 0.75 * np.maximum(painter.forehead, painter.nose)) * painter.skin_free).astype(np.float32)
            self._gloss_wet = (0.5 * painter.lips + 1.2 * painter.eye).astype(np.float32)
            self._seam_fade = _seam_fade(self.face_model)
        normals = out.mesh.normals_world.float().cpu().numpy()
        angles = np.stack([p["coeffs"][self.face_model.layout.slice("angle")] for p in plans])
        rot = cam_rotation(angles)  # [B, 3, 3]
        res = np.zeros((len(plans),) + normals.shape[1:], np.float32)
        for b, p in enumerate(plans):
            key = p["key"]
            if key.strength < 0.3:  # a soft key light: its shadows and highlights are faint, skip them
                continue
            rng = item_rng(self.seed, p["index"], S_LIGHT)
            d_model = rot[b].T @ key.direction  # the light in the head's frame
            vis = shadows.visibility(d_model).astype(np.float32)
            oil = rng.uniform(0.1, 1.0)
            gloss = (oil * self._gloss_skin + self._gloss_wet) * self._seam_fade
            res[b] = key_light_residual(colors[b], normals[b], vis * self._seam_fade + (1 - self._seam_fade), key,
                                        gloss, shininess=float(rng.uniform(5, 25)), specular=float(rng.uniform(0.03, 0.2)))
        attr = torch.from_numpy(res)  # [B, V, 3]
        return interpolate(attr.contiguous(), out.rast.float().cpu().contiguous(), self.face_model.topology).numpy()

    def _render_context(self, scene, plans, verts_cam, parts, styles, colors, face_normals) -> dict:
        """Context renders of the batch: colour, coverage, depth and hair weight per pixel."""
        # model-space face shapes at the context's anchors, from the camera-space vertices (undo the pose)
        rot = cam_mod.euler_rotation(parts["angle"].float())
        anchors = torch.as_tensor(scene.ctx.anchors)
        world = cam_mod.to_camera(verts_cam[:, anchors], self.renderer.camera_distance)  # its own inverse
        shapes = (world - parts["trans"].float()[:, None]) @ rot
        torso = torch.from_numpy(np.stack([p["torso"] for p in plans]))
        ctx_world, _model, hair_w = scene.context_world(shapes, parts, styles, torso)
        albedo = np.stack([scene.context_albedo(item_rng(self.seed, p["index"], S_CONTEXT), colors[b], hair_w[b], styles[b])
                           for b, p in enumerate(plans)])
        shaded, _normals = scene.shade(ctx_world, torch.from_numpy(albedo), parts["gamma"], face_normals)
        rast_c = scene.rasterize(ctx_world)
        attr = torch.cat([shaded, torch.from_numpy(hair_w)[..., None]], -1).contiguous()
        pix = interpolate(attr, rast_c, scene.topo).numpy()  # [B, H, W, 4]
        rast_np = rast_c.numpy()
        cover = (rast_np[..., 3] > 0).astype(np.float32)
        rgb = np.ascontiguousarray(pix[..., :3])
        hair = np.ascontiguousarray(pix[..., 3])
        tri = scene.ctx.triangles
        dirs = scene.ctx.direction
        for b, p in enumerate(plans):
            m = (hair[b] > 0.02) & (cover[b] > 0)
            if not m.any():
                continue
            # hair-flow directions at the hair pixels, from the barycentrics
            r = rast_np[b][m]
            t = tri[r[:, 3].astype(np.int64) - 1]
            u, v = r[:, 0:1], r[:, 1:2]
            d = u * dirs[t[:, 0]] + v * dirs[t[:, 1]] + (1 - u - v) * dirs[t[:, 2]]
            facing = np.clip(d @ (rot[b].numpy().T @ p["key"].direction), 0, 1)
            f = scene.hair_texture.shade(d, item_rng(self.seed, p["index"], S_HAIR2D), styles[b], facing)
            w = hair[b][m]
            rgb[b][m] = rgb[b][m] * (1 + w * (f - 1))[:, None]
        np.clip(rgb, 0, 1, out=rgb)
        return {"rgb": rgb, "cover": cover, "depth": np.ascontiguousarray(rast_np[..., 2]), "hair": hair,
                "world": ctx_world, "hair_w": hair_w}

    def _hair_layers(self, scene, b: int, index: int, style, ctx: dict, lm2d: np.ndarray, lm3d: np.ndarray) -> list:
        """2-D hair drawn on the picture, in drawing order: flyaway strands on the cap's outline,
        long-hair curtains (behind the face), a fringe and strands along the hairline (over it).

        Returns:
            list of ``(premultiplied colour, alpha, box, behind_face)``.
        """
        size = self.image_size
        if style.bald or style.length <= 0:
            return []
        rng = item_rng(self.seed, index, S_HAIR2D + 10)
        # the face's "down" in the picture: from between the eyes to the chin
        down = lm3d[8] - lm3d[27]
        down = down / max(float(np.linalg.norm(down)), 1e-6)
        points, flow = scene.hair_points(ctx["world"], ctx["hair_w"], b)
        layers = []
        if style.length > 0.1:
            n = int(rng.integers(20, 90) * size / 224)
            layers.append((H.silhouette_strands(rng, ctx["hair"][b], ctx["cover"][b], style.colour, size, n), False))
        if style.length >= 0.6:
            layers.append((H.curtains(rng, lm2d[:17], scene.temples(ctx["world"], b), down, style, size,
                                      scene.hair_texture), True))
        if style.fringe > 0 and len(points) >= 2:
            brow_y = lm2d[17:27] @ down
            reach = float(brow_y.mean() - (points @ down).mean()) * rng.uniform(0.6, 1.25)
            if reach > 2:
                layers.append((H.fringe(rng, points, down, reach, style, size), False))
        if len(points) and style.length > 0.04:
            n = int(rng.integers(10, 60))
            layers.append((H.hairline_strands(rng, points, flow, style.colour, size, n), False))
        return [(ly[0], ly[1], ly[2], behind) for ly, behind in layers if ly is not None]


def cam_rotation(angles: np.ndarray) -> np.ndarray:
    """Deep3DFaceRecon rotation matrices ``[B, 3, 3]`` from Euler angles ``[B, 3]`` (numpy)."""
    return euler_rotation(torch.from_numpy(np.asarray(angles, np.float64))).numpy()


def _seam_fade(face_model, width: float = 0.12) -> np.ndarray:
    """Per vertex, 0 on the mesh's outer boundary rising to 1 ``width`` model units inside it."""
    V = face_model.mean_shape.detach().double().cpu().numpy()
    ring = boundary_vertices(face_model.triangles.cpu().numpy().astype(np.int64))
    d, _ = cKDTree(V[ring]).query(V)
    t = np.clip(d / width, 0, 1)
    return (t * t * (3 - 2 * t)).astype(np.float32)
