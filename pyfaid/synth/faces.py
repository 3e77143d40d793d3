"""Synthetic training faces rendered from the morphable model, with exact ground truth.

``SyntheticFaces`` draws, for every ``(seed, index)``, a face and a photo around it:

* the face: random identity, expression (blendshape activations, eyes often a little wide open)
  and basis albedo, plus texture the basis cannot hold (:mod:`pyfaid.synth.skin`: skin detail at
  several scales, freckles, moles, age spots, scars, tan lines, hair-stroke eyebrows, stubble and
  beards, make-up, lip colour, irises, lash lines, teeth); ``colors`` is the exact albedo rendered;
* its pose and framing: yaw up to +-80 degrees, moderate pitch and roll, and the crop an MTCNN
  alignment would make of it (:mod:`pyfaid.synth.alignment`: the five true points aligned onto the
  template, with MTCNN's measured error);
* light: coloured ambient, a key light (harsh with few ambient light sometimes) and fills, as exact
  SH coefficients (:mod:`pyfaid.synth.lighting`), plus the key light's cast shadows and highlights;
* context: head, ears, neck, shoulders and clothes from the MakeHuman base mesh, following the
  face's outline and pose (:mod:`pyfaid.synth.context`), and hair (:mod:`pyfaid.synth.hair`:
  a cap on the scalp, strands along the hairline, fringes, long hair); hair over the face hides
  face pixels and counts as an occluder;
* a background (:mod:`pyfaid.synth.backgrounds`), random occluders (:func:`pyfaid.occlusion.occlude`)
  and camera effects on the finished picture (:mod:`pyfaid.synth.photo`: blur, chromatic
  aberration, vignetting, exposure, noise, white balance, gamma, JPEG).

Items carry the occluded and the clean picture, the visible-face, face and occluder masks, the
coefficients, camera-space vertices, albedo, the 68 landmarks in both conventions (3D-style: the
model's landmark vertices projected; 2D-style: the jaw on the head's outline) with visibility, and
the generator's labels.

Whole batches render in one ``Renderer`` call: use ``SyntheticFaces.batch(indices)``, or a
``DataLoader`` (the dataset implements ``__getitems__``, which the loader's batched fetch uses).
What an item draws before rendering, and its labels, are in :mod:`pyfaid.synth.sampling`;
the key light's residual, the context and the 2-D hair are rendered by :mod:`pyfaid.synth.render`.
"""

from __future__ import annotations

import contextlib
import math
import time
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from pyfaid import facemodel
from pyfaid.render import camera as cam_mod
from pyfaid.render.camera import FOCAL_AT_224
from pyfaid.render.renderer import Renderer
from pyfaid.synth import hair as H
from pyfaid.synth.alignment import AlignmentJitter
from pyfaid.synth.backgrounds import BACKGROUND_KINDS, background
from pyfaid.synth.contour import marching_for
from pyfaid.synth.lighting import ShadowMaps
from pyfaid.synth.photo import sample_effects
from pyfaid.synth.render import SyntheticRendering
from pyfaid.synth.sampling import S_HAIR, S_SCENE, S_SKIN, SyntheticSampling, item_rng
from pyfaid.synth.scene import SceneRenderer, lerp, soften
from pyfaid.synth.skin import APPEARANCE_LABELS, SkinPainter
from pyfaid.synth.views import faces_of, items_of_faces, views_of

__all__ = ["SyntheticFaces", "FRAMINGS"]

#: How items are framed: ``"mtcnn"`` (aligned like MTCNN aligns a photo, with its measured
#: errors), ``"exact"`` (aligned by the true five points), ``"random"`` (a plain random jitter).
FRAMINGS = ("mtcnn", "exact", "random")


class SyntheticFaces(SyntheticSampling, SyntheticRendering, Dataset):
    """Random faces rendered from a morphable model, deterministic per ``(seed, index)``.

    Items are reproducible: the same ``(seed, index)`` and options give the same sample, bit for
    bit when requested in the same batch composition, and up to float rounding of the batched
    shape matmuls (a few silhouette pixels at most) across different batch compositions.

    Args:
        seed: base seed; item ``i`` depends only on ``(seed, i)`` and the options below.
        length: number of items.
        face_model: a ``pyfaid.facemodel.MorphableModel``; ``None`` loads
            ``pyfaid.facemodel.load("default")`` on first use.
        image_size: output size in pixels (the camera's focal length and centre scale with it, so
            a face fills the same fraction of the image as at 224).
        occlusion: paste random occluders into ``image`` and let hair fall over the face
            (``clean`` never has either).
        id_scale: standard deviation of the identity coefficients.
        exp_scale: expression strength: the standard deviation of the expression coefficients,
            or, for a model with blendshape weights, a factor ``exp_scale / 0.6`` on the weights.
        tex_scale: standard deviation of the albedo coefficients.
        max_yaw: yaw limit in degrees.
        max_pitch: pitch limit in degrees.
        max_roll: roll limit in degrees.
        harsh_light_prob: probability of a strong key light with little ambient light.
        tint_prob: probability of strongly coloured lights.
        blur_prob: probability of a defocus blur of the whole picture (camera effects).
        noise_prob: probability of sensor noise (camera effects).
        occlusion_kwargs: extra keyword arguments for ``occlude`` (``kinds``, ``max_occluders``,
            ``coverage``).
        occlusion_prob: with ``occlusion``, the probability that an item gets pasted occluders
            (hair may cover the face either way).
        device: where to render (``"cpu"`` by default); returned tensors are on the CPU.
        texture_detail: paint skin detail, brows, beards, make-up and eyes over the basis albedo.
        context: render head, ears, neck, clothes and hair around the face.
        lighting_extras: add the key light's cast shadows and highlights (not expressible in SH).
        camera_effects: strength of the camera effects (0: none, 1: the default mix).
        framing: one of :data:`FRAMINGS`.
        face_scale: face size relative to the aligned crop (1 for training crops; 0.5 gives a
            photo-like frame with the face at half size, used to measure MTCNN's errors).
        background_kinds: restrict backgrounds to these kinds of
            :data:`pyfaid.synth.backgrounds.BACKGROUND_KINDS` (default: all).
        yaw: every item at this absolute yaw in degrees (even indices turned one way, odd ones the
            other; everything else drawn as usual), or None for random poses (the default).
        views: items per rendered face (:mod:`pyfaid.synth.views`): item ``i`` shows
            face ``i // views`` with its own occluders and camera; 1 (default): one face per item.
        threads: torch's intra-op threads while a batch is generated (the process's setting is
            restored after it), 0: the process's setting. Its tensors are small (a few MB): with 2
            threads on a shared CPU each op waits for the second thread to be scheduled, which
            costs more than it saves (2-3x the CPU time per face). With 1, a batch has the bits a
            1-thread process (a DataLoader worker) gives it, whatever the process's threads
            (BLAS may round the batched shape matmuls differently with another thread count).

    Each item is a dict:
        ``image [3, H, W]`` occluded picture in [0, 1] (same as ``clean`` when ``occlusion`` is off),
        ``clean [3, H, W]``, ``mask [1, H, W]`` face pixels not covered by occluders or hair (0/1),
        ``face_mask [1, H, W]`` all face pixels, ``occluder_mask [1, H, W]`` (pasted occluders
        anywhere, and hair where it covers the face), ``coeffs [layout.size]``, ``vertices [V, 3]``
        (camera space), ``colors [V, 3]`` the exact albedo rendered, ``landmarks_3d [68, 2]``
        (3D-style: the model's landmark vertices projected, also where hidden; pixels, y down;
        ``landmarks`` is the same tensor), ``landmarks_2d [68, 2]`` (2D-style, 300-W's convention:
        the jaw on the head's visible outline at every pose, the outer brow points on it where the
        head hides them; :mod:`pyfaid.synth.contour`), ``landmark_visible [68]`` and
        ``landmark_3d_visible [68]`` (bool: the 2D-style / 3D-style point is not hidden by the face
        itself and inside the picture), ``index`` (int64 scalar), and
        ``labels``: a dict with ``id [n_id]``, ``exp [n_exp]``, ``tex [n_tex]``, ``angles [3]``
        (radians), ``skin_tone`` (scalar: mean luma of the albedo over the skin region), the
        appearance scalars of :data:`pyfaid.synth.skin.APPEARANCE_LABELS` and
        :data:`pyfaid.synth.hair.HAIR_LABELS` (see :meth:`label_names` ``["appearance"]``), and one
        entry per phenotype map the face model carries (for the default model: ``id_targets
        [221]`` MakeHuman slider values, ``exp_targets [52]`` blendshape weights, and scalars
        ``macro_gender``, ``macro_age``, ``macro_muscle``, ``macro_weight``, ``macro_african``,
        ``macro_asian``, ``macro_caucasian``; see ``phenotype_labels`` and ``label_names``).
    """

    def __init__(
        self,
        seed: int = 0,
        length: int = 10000,
        face_model: torch.nn.Module | None = None,
        image_size: int = 224,
        occlusion: bool = True,
        id_scale: float = 1.0,
        exp_scale: float = 0.6,
        tex_scale: float = 1.0,
        max_yaw: float = 80.0,
        max_pitch: float = 20.0,
        max_roll: float = 15.0,
        harsh_light_prob: float = 0.25,
        tint_prob: float = 0.2,
        blur_prob: float = 0.4,
        noise_prob: float = 0.6,
        occlusion_kwargs: dict | None = None,
        device: str | torch.device = "cpu",
        occlusion_prob: float = 1.0,
        texture_detail: bool = True,
        context: bool = True,
        lighting_extras: bool = True,
        camera_effects: float = 1.0,
        framing: str = "mtcnn",
        face_scale: float = 1.0,
        background_kinds: Sequence[str] | None = None,
        yaw: float | None = None,
        views: int = 1,
        threads: int = 1,
    ) -> None:
        for name, n, low in (("length", length, 0), ("seed", seed, 0), ("image_size", image_size, 16),
                             ("views", views, 1), ("threads", threads, 0)):
            if int(n) < low:
                raise ValueError(f"SyntheticFaces: `{name}` must be >= {low}, got {n}")
        if framing not in FRAMINGS:
            raise ValueError(f"SyntheticFaces: `framing` must be one of {FRAMINGS}, got {framing!r}")
        if not 0.1 <= float(face_scale) <= 2.0:
            raise ValueError(f"SyntheticFaces: `face_scale` must be in [0.1, 2], got {face_scale}")
        if not 0.0 <= float(camera_effects) <= 2.0:
            raise ValueError(f"SyntheticFaces: `camera_effects` must be in [0, 2], got {camera_effects}")
        for name, p in (("harsh_light_prob", harsh_light_prob), ("tint_prob", tint_prob),
                        ("blur_prob", blur_prob), ("noise_prob", noise_prob), ("occlusion_prob", occlusion_prob)):
            if not 0.0 <= float(p) <= 1.0:
                raise ValueError(f"SyntheticFaces: `{name}` must be a probability in [0, 1], got {p}")
        if background_kinds is not None:
            bad = [k for k in background_kinds if k not in BACKGROUND_KINDS]
            if bad or not background_kinds:
                raise ValueError(f"SyntheticFaces: unknown or empty `background_kinds` {bad or background_kinds}; "
                                 f"choose from {', '.join(BACKGROUND_KINDS)}")
        self.seed = int(seed)
        self.length = int(length)
        self.image_size = int(image_size)
        self.occlusion = bool(occlusion)
        self.id_scale, self.exp_scale, self.tex_scale = float(id_scale), float(exp_scale), float(tex_scale)
        self.max_yaw, self.max_pitch, self.max_roll = float(max_yaw), float(max_pitch), float(max_roll)
        self.harsh_light_prob, self.tint_prob = float(harsh_light_prob), float(tint_prob)
        self.blur_prob, self.noise_prob = float(blur_prob), float(noise_prob)
        self.occlusion_kwargs = dict(occlusion_kwargs or {})
        self.occlusion_prob = float(occlusion_prob)
        self.device = torch.device(device)
        self.texture_detail = bool(texture_detail)
        self.context = bool(context)
        self.lighting_extras = bool(lighting_extras)
        self.camera_effects = float(camera_effects)
        self.framing = framing
        self.face_scale = float(face_scale)
        self.background_kinds = None if background_kinds is None else tuple(background_kinds)
        self.yaw = None if yaw is None else float(yaw)
        self.views = int(views)
        self.threads = int(threads)
        self._face_model = face_model
        self._renderer = None
        self._parts = {}
        #: CPU seconds spent per generation stage, summed over calls (see ``benchmarks/bm_synthetic.py``)
        self.stage_seconds: dict[str, float] = {}
        self._t = 0.0

    def _tick(self, stage: str | None) -> None:
        """Add the CPU time since the previous tick to ``stage_seconds[stage]`` (None: start)."""
        now = time.process_time()
        if stage is not None:
            self.stage_seconds[stage] = self.stage_seconds.get(stage, 0.0) + now - self._t
        self._t = now

    # ------------------------------------------------------------------------------ plumbing
    @property
    def face_model(self) -> torch.nn.Module:
        """The morphable model (the default one is loaded on first use)."""
        if self._face_model is None:
            self._face_model = facemodel.load("default")
        return self._face_model

    @property
    def renderer(self) -> torch.nn.Module:
        """The ``Renderer`` used (Deep3DFaceRecon's camera scaled to ``image_size``; with
        ``face_scale != 1`` the focal length is scaled by ``face_scale`` too, a wider view)."""
        if self._renderer is None:
            if self.face_scale == 1.0:
                self._renderer = Renderer(self.image_size)
            else:
                self._renderer = Renderer(self.image_size, focal=FOCAL_AT_224 * self.image_size / 224.0 * self.face_scale)
        return self._renderer

    def _part(self, name: str):
        """Helpers built once per dataset (painter, scene, contour, shadows, alignment table)."""
        if name not in self._parts:
            fm = self.face_model
            if name == "painter":
                self._parts[name] = SkinPainter(fm)
            elif name == "scene":
                self._parts[name] = SceneRenderer(fm, self.renderer)
            elif name == "contour":
                self._parts[name] = marching_for(fm, context=self.context)
            elif name == "shadows":
                self._parts[name] = ShadowMaps(fm)
            elif name == "jitter":
                self._parts[name] = AlignmentJitter()
            elif name == "landmark_bases":
                idx = fm.landmark_idx.cpu()
                rows = (idx[:, None] * 3 + torch.arange(3)[None]).reshape(-1)
                self._parts[name] = (fm.mean_shape.detach().cpu()[idx].double().numpy(),
                                     fm.id_base.detach().cpu()[rows].double().numpy(),
                                     fm.exp_base.detach().cpu()[rows].double().numpy())
            else:  # pragma: no cover
                raise KeyError(name)
        return self._parts[name]

    def __len__(self) -> int:
        return self.length

    def _check_index(self, index: int) -> int:
        i = int(index)
        if i < 0:
            i += self.length
        if not 0 <= i < self.length:
            raise IndexError(f"SyntheticFaces: index {index} out of range for length {self.length}")
        return i

    # ------------------------------------------------------------------------------ batches
    @torch.no_grad()
    def batch(self, indices: Sequence[int]) -> dict:
        """Generate several items at once (one renderer call).

        Args:
            indices: item indices.

        Returns:
            dict of stacked tensors (the item keys with a leading batch dimension; ``labels`` is
            a dict of stacked tensors too).
        """
        idx = [self._check_index(i) for i in indices]
        if not idx:
            raise ValueError("SyntheticFaces.batch: `indices` is empty")
        with torch_threads(self.threads):
            return self._batch(idx)

    def _batch(self, idx: list) -> dict:
        fm = self.face_model
        self._tick(None)
        faces = faces_of(idx, self.views)  # the faces to render (idx itself with one view per face)
        plans = [self._plan(i) for i in faces]
        self._tick("plan")
        coeffs = torch.from_numpy(np.stack([p["coeffs"] for p in plans]))  # [B, layout.size]
        parts = fm.split_coeffs(coeffs)
        pheno = self.phenotype_labels(parts["id"], parts["exp"])
        model = fm.to(self.device) if next(iter(fm.buffers())).device != self.device else fm
        styles, colors, appearance = self._paint_albedo(model, faces, parts, pheno)
        colors_t = torch.from_numpy(np.stack(colors))  # [B, V, 3]
        self._tick("albedo")
        face = self._render_face(model, coeffs, colors_t, plans, colors, parts)
        cleans, hairies, hair_masks, fxs = self._compose_scenes(faces, plans, parts, styles, colors, face)
        lm2d, cover, at = face["lm2d"], face["cover"], None
        if self.views > 1:  # each item: its face's pictures, its own occluders and camera
            at, cleans, hairies, hair_masks, fxs = views_of(self, idx, faces, cleans, hairies, hair_masks)
            lm2d, cover = lm2d[torch.from_numpy(at)], cover[at]
            self._tick("views")
        images, occ = self._paste_occluders(idx, hairies, hair_masks, lm2d)
        image, clean, face_mask, occ = self._camera_effects(cleans, images, occ, fxs, cover)
        visible = face_mask * (1 - occ)
        self._tick("camera")
        labels = self._batch_labels(parts, colors_t, appearance, pheno)
        self._tick("labels")
        out = {
            "image": image,
            "clean": clean,
            "mask": visible.contiguous(),
            "face_mask": face_mask.contiguous(),
            "occluder_mask": occ.contiguous(),
            "coeffs": coeffs,
            "vertices": face["verts"],
            "colors": colors_t,
            "landmarks": torch.from_numpy(face["lm3d"]),
            "landmarks_3d": torch.from_numpy(face["lm3d"]),
            "landmarks_2d": face["lm2d"].float(),
            "landmark_visible": face["lm_vis"],
            "landmark_3d_visible": face["lm_vis3d"],
            "index": torch.tensor(idx, dtype=torch.int64),
            "labels": labels,
        }
        return out if at is None else items_of_faces(out, at)

    # ------------------------------------------------------------------------------ batch stages
    def _paint_albedo(self, model, idx: list, parts: dict, pheno: dict) -> tuple[list, list, list]:
        """Albedo: the basis, then painted detail; per item its hair style, albedo ``[V, 3]`` and
        appearance labels."""
        fm = self.face_model
        base = model.texture(parts["tex"].to(self.device)).float().cpu().numpy()  # [B, V, 3]
        styles, colors, appearance = [], [], []
        for b, i in enumerate(idx):
            male, age = self._sex_age(pheno, b)
            tex0 = float(parts["tex"][b, 0]) if fm.n_tex else 0.0
            skin_light = float(np.clip(0.55 - 0.22 * tex0, 0, 1))
            style = H.sample_hair(item_rng(self.seed, i, S_HAIR), skin_light, male, age)
            styles.append(style)
            if self.texture_detail:
                # the skin tone follows the albedo's first direction (melanin for the default model)
                tone = 9.0 * float(_normal_cdf(tex0)) if fm.n_tex else None
                a, lab = self._part("painter").paint(base[b], item_rng(self.seed, i, S_SKIN), style.colour, male, age,
                                                     tone=tone)
            else:
                a, lab = np.clip(base[b], 0, 1).astype(np.float32), {k: 0.0 for k in APPEARANCE_LABELS}
            colors.append(a)
            lab.update(self._hair_labels(style) if self.context else {k: 0.0 for k in H.HAIR_LABELS})
            appearance.append(lab)
        return styles, colors, appearance

    def _render_face(self, model, coeffs, colors_t, plans: list, colors: list, parts: dict) -> dict:
        """The face render, its light extras and 2-D landmarks.

        Returns:
            dict: ``out`` (the renderer's :class:`~pyfaid.render.Render`), ``rast``, ``image [B, H, W, 3]`` and ``cover
            [B, H, W]`` (numpy), ``verts`` (camera space), ``lm3d`` (numpy), ``lm2d``, ``lm_vis``.
        """
        out = self.renderer(model, coeffs.to(self.device), colors=colors_t.to(self.device))
        rast = out.rast.float().cpu()
        face_np = out.image.float().cpu().permute(0, 2, 3, 1).contiguous().numpy()  # [B, H, W, 3]
        cover_np = rast[..., 3].gt(0).float().numpy()  # [B, H, W]
        verts_cam = out.vertices_cam.float().cpu()
        self._tick("face")
        if self.lighting_extras:
            face_np += self._light_residual(plans, colors, out) * cover_np[..., None]
        self._tick("light")
        lm3d = out.landmarks_px.float().cpu()
        lm2d, lm_vis, lm_vis3d = self._landmarks_2d(lm3d, verts_cam, rast, parts)
        self._tick("landmarks_2d")
        return {"out": out, "rast": rast, "image": face_np, "cover": cover_np, "verts": verts_cam,
                "lm3d": lm3d.numpy(), "lm2d": lm2d, "lm_vis": lm_vis, "lm_vis3d": lm_vis3d}

    def _landmarks_2d(self, landmarks: torch.Tensor, verts_cam: torch.Tensor, rast: torch.Tensor, parts: dict):
        """2D-style landmarks (:mod:`pyfaid.synth.contour`: the jaw on the head's outline, marched over
        the head around the face when the context is rendered) and their visibility."""
        rotation = cam_mod.euler_rotation(parts["angle"].float())
        return self._part("contour").compute(landmarks, verts_cam, rotation, parts["trans"].float(), rast, self.renderer)

    def _compose_scenes(self, idx: list, plans: list, parts: dict, styles: list, colors: list, face: dict):
        """The context around the face, backgrounds and compositing: ``(cleans, hairies, hair_masks,
        camera effects)``; ``hairies`` (hair over the face) is None without ``occlusion``."""
        size = self.image_size
        B = len(idx)
        face_np, cover_np = face["image"], face["cover"]
        scene = self._part("scene") if self.context else None
        if scene is not None:
            ctx = self._render_context(scene, plans, face["verts"], parts, styles, colors,
                                       face["out"].mesh.normals_world.float().cpu())
        self._tick("context")
        cleans = np.empty((B, size, size, 3), np.float32)
        hairies = np.empty((B, size, size, 3), np.float32) if self.occlusion else None
        hair_masks = np.zeros((B, size, size), np.float32)
        fxs = []
        depth_np = face["rast"][..., 2].numpy()
        for b, i in enumerate(idx):
            rng = item_rng(self.seed, i, S_SCENE)
            kinds = self.background_kinds
            bg, _kind = background(rng, size, None if kinds is None else kinds[int(rng.integers(len(kinds)))])
            fxs.append(sample_effects(rng, size, self.camera_effects, self.blur_prob, self.noise_prob))
            if scene is None:
                _blend(bg, face_np[b], cover_np[b])
                cleans[b] = bg
                if hairies is not None:
                    hairies[b] = bg
                continue
            # hair drawn in 2-D; in ``clean`` it stays off the face's pixels
            layers = self._hair_layers(scene, b, i, styles[b], ctx, face["lm2d"][b].numpy(), face["lm3d"][b])
            clean, hairy, over = scene.composite(
                bg, face_np[b], cover_np[b], depth_np[b], ctx["rgb"][b], ctx["cover"][b], ctx["depth"][b],
                ctx["hair"][b], layers)
            cleans[b] = clean
            if hairies is not None:
                hairies[b] = hairy
                hair_masks[b] = over
        np.clip(cleans, 0, 1, out=cleans)
        self._tick("composite")
        return cleans, hairies, hair_masks, fxs

    # ------------------------------------------------------------------------------ items
    @staticmethod
    def _unbatch(batch: dict, b: int) -> dict:
        item = {k: v[b] for k, v in batch.items() if k != "labels"}
        item["labels"] = {k: v[b] for k, v in batch["labels"].items()}
        return item

    def __getitem__(self, index: int) -> dict:
        return self._unbatch(self.batch([index]), 0)

    def __getitems__(self, indices: Sequence[int]) -> list[dict]:
        """Batched fetch used by ``torch.utils.data.DataLoader`` (one render per batch)."""
        batch = self.batch(list(indices))
        return [self._unbatch(batch, b) for b in range(len(batch["index"]))]


@contextlib.contextmanager
def torch_threads(n: int):
    """Torch's intra-op threads set to ``n`` inside (0: unchanged), restored after."""
    old = torch.get_num_threads()
    if n and n != old:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n and n != old:
            torch.set_num_threads(old)


def _normal_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def _blend(dst: np.ndarray, src: np.ndarray, cover: np.ndarray) -> None:
    """``dst`` over which ``src`` is drawn where ``cover`` (0/1), its silhouette softened from inside."""
    lerp(dst, src, soften(cover))
