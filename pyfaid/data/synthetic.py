"""Synthetic training faces rendered from the morphable model, with exact ground truth.

``SyntheticFaces`` draws, for every ``(seed, index)``, a face and a photo around it:

* the face: random identity, expression (blendshape activations, eyes often a little wide open)
  and basis albedo, plus texture the basis cannot hold (:mod:`pyfaid.data.skin`: skin detail at
  several scales, freckles, moles, age spots, scars, tan lines, hair-stroke eyebrows, stubble and
  beards, make-up, lip colour, irises, lash lines, teeth); ``colors`` is the exact albedo rendered;
* its pose and framing: yaw up to +-80 degrees, moderate pitch and roll, and the crop an MTCNN
  alignment would make of it (:mod:`pyfaid.data.alignment`: the five true points aligned onto the
  template, with MTCNN's measured error);
* light: coloured ambient, a key light (harsh with few ambient light sometimes) and fills, as exact
  SH coefficients (:mod:`pyfaid.data.lighting`), plus the key light's cast shadows and highlights;
* context: head, ears, neck, shoulders and clothes from the MakeHuman base mesh, following the
  face's outline and pose (:mod:`pyfaid.facemodel.context`), and hair (:mod:`pyfaid.data.hair`:
  a cap on the scalp, strands along the hairline, fringes, long hair); hair over the face hides
  face pixels and counts as an occluder;
* a background (:mod:`pyfaid.data.backgrounds`), random occluders (:func:`pyfaid.data.occlude`)
  and camera effects on the finished picture (:mod:`pyfaid.data.photo`: blur, chromatic
  aberration, vignetting, exposure, noise, white balance, gamma, JPEG).

Items carry the occluded and the clean picture, the visible-face, face and occluder masks, the
coefficients, camera-space vertices, albedo, the projected model landmarks and 300-W-style 2-D
landmarks (jaw on the silhouette) with visibility, and the generator's labels.

Whole batches render in one ``Renderer`` call: use ``SyntheticFaces.batch(indices)``, or a
``DataLoader`` (the dataset implements ``__getitems__``, which the loader's batched fetch uses).
"""

from __future__ import annotations

import time
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from pyfaid.data.occlusion import occlude_arrays

__all__ = ["SyntheticFaces", "FRAMINGS"]

# Rec. 709 luma weights, for the scalar skin tone label.
_LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)

#: How items are framed: ``"mtcnn"`` (aligned like MTCNN aligns a photo, with its measured
#: errors), ``"exact"`` (aligned by the true five points), ``"random"`` (a plain random jitter).
FRAMINGS = ("mtcnn", "exact", "random")

# per-item random streams: numpy.random.default_rng((seed, index, stream))
_S_COEFFS, _S_SCENE, _S_SKIN, _S_HAIR, _S_LIGHT, _S_ALIGN, _S_CONTEXT, _S_HAIR2D = 1, 2, 3, 4, 5, 6, 7, 8


def _rng(seed: int, index: int, stream: int) -> np.random.Generator:
    return np.random.default_rng((int(seed), int(index), int(stream)))


class SyntheticFaces(Dataset):
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
            :data:`pyfaid.data.backgrounds.BACKGROUND_KINDS` (default: all).

    Each item is a dict:
        ``image [3, H, W]`` occluded picture in [0, 1] (same as ``clean`` when ``occlusion`` is off),
        ``clean [3, H, W]``, ``mask [1, H, W]`` face pixels not covered by occluders or hair (0/1),
        ``face_mask [1, H, W]`` all face pixels, ``occluder_mask [1, H, W]`` (pasted occluders
        anywhere, and hair where it covers the face), ``coeffs [layout.size]``, ``vertices [V, 3]``
        (camera space), ``colors [V, 3]`` the exact albedo rendered, ``landmarks [68, 2]`` (the
        model's landmark vertices projected; pixels, y down), ``landmarks_2d [68, 2]`` (300-W
        convention: jaw points 0-16 on the visible silhouette), ``landmark_visible [68]`` (bool:
        not hidden by the face itself, inside the picture), ``index`` (int64 scalar), and
        ``labels``: a dict with ``id [n_id]``, ``exp [n_exp]``, ``tex [n_tex]``, ``angles [3]``
        (radians), ``skin_tone`` (scalar: mean luma of the albedo over the skin region), the
        appearance scalars of :data:`pyfaid.data.skin.APPEARANCE_LABELS` and
        :data:`pyfaid.data.hair.HAIR_LABELS` (see :meth:`label_names` ``["appearance"]``), and one
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
    ) -> None:
        if int(length) < 0:
            raise ValueError(f"SyntheticFaces: `length` must be >= 0, got {length}")
        if int(seed) < 0:
            raise ValueError(f"SyntheticFaces: `seed` must be >= 0, got {seed}")
        if int(image_size) < 16:
            raise ValueError(f"SyntheticFaces: `image_size` must be >= 16, got {image_size}")
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
            from pyfaid.data.backgrounds import BACKGROUND_KINDS

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
        self.harsh_light_prob = float(harsh_light_prob)
        self.tint_prob = float(tint_prob)
        self.blur_prob = float(blur_prob)
        self.noise_prob = float(noise_prob)
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
            from pyfaid import facemodel

            self._face_model = facemodel.load("default")
        return self._face_model

    @property
    def renderer(self) -> torch.nn.Module:
        """The ``Renderer`` used (Deep3DFaceRecon's camera scaled to ``image_size``; with
        ``face_scale != 1`` the focal length is scaled by ``face_scale`` too, a wider view)."""
        if self._renderer is None:
            from pyfaid.render.camera import FOCAL_AT_224
            from pyfaid.render.renderer import Renderer

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
                from pyfaid.data.skin import SkinPainter

                self._parts[name] = SkinPainter(fm)
            elif name == "scene":
                from pyfaid.data.scene import SceneRenderer

                self._parts[name] = SceneRenderer(fm, self.renderer)
            elif name == "contour":
                from pyfaid.data.contour import JawContour

                self._parts[name] = JawContour(fm)
            elif name == "shadows":
                from pyfaid.data.lighting import ShadowMaps

                self._parts[name] = ShadowMaps(fm)
            elif name == "jitter":
                from pyfaid.data.alignment import AlignmentJitter

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

    # ------------------------------------------------------------------------- parameters
    def sample_coeffs(self, index: int) -> np.ndarray:
        """The coefficients ``[layout.size]`` of item ``index`` (float32 numpy array)."""
        return self._plan(index)["coeffs"]

    def _plan(self, index: int) -> dict:
        """Everything drawn before rendering for item ``index``: coefficients, key light, framing."""
        from pyfaid.data.lighting import sample_lighting

        fm = self.face_model
        lay = fm.layout
        rng = _rng(self.seed, index, _S_COEFFS)
        c = np.zeros(lay.size, np.float32)
        c[lay.slice("id")] = rng.standard_normal(fm.n_id) * self.id_scale
        c[lay.slice("exp")] = self._sample_expression(rng)
        c[lay.slice("tex")] = rng.standard_normal(fm.n_tex) * self.tex_scale
        # Pose: most faces within +-35 degrees of frontal, the rest anywhere up to max_yaw.
        if rng.random() < 0.6:
            yaw = np.clip(rng.normal(0.0, 20.0), -self.max_yaw, self.max_yaw)
        else:
            yaw = rng.uniform(-self.max_yaw, self.max_yaw)
        pitch = np.clip(rng.normal(0.0, self.max_pitch / 2.0), -self.max_pitch, self.max_pitch)
        roll = np.clip(rng.normal(0.0, self.max_roll / 2.0), -self.max_roll, self.max_roll)
        angles = np.radians([pitch, yaw, roll])
        gamma, key, light_info = sample_lighting(rng, self.harsh_light_prob, self.tint_prob)
        c[lay.slice("gamma")] = gamma
        trans = np.array([rng.normal(0, 0.06), rng.normal(0, 0.06), rng.uniform(-0.6, 0.6)])
        # the torso turns with the head, but less
        torso = np.array([angles[0] * 0.2, angles[1] * rng.uniform(0.1, 0.5), angles[2] * 0.3]) \
            + rng.normal(0, 0.05, 3)
        if self.framing != "random" or self.face_scale != 1.0:
            angles, trans = self._frame(index, c, angles)
        c[lay.slice("angle")] = angles
        c[lay.slice("trans")] = trans
        return {"index": int(index), "coeffs": c, "key": key, "light": light_info, "torso": torso.astype(np.float32)}

    def _frame(self, index: int, c: np.ndarray, angles: np.ndarray):
        """Pose the face where an aligned crop of it puts it (see :mod:`pyfaid.data.alignment`)."""
        from pyfaid.data.alignment import frame_pose

        fm = self.face_model
        lay = fm.layout
        mean, id_b, exp_b = self._part("landmark_bases")
        lm3d = mean + (id_b @ c[lay.slice("id")].astype(np.float64)
                       + exp_b @ c[lay.slice("exp")].astype(np.float64)).reshape(-1, 3)
        # the five points' landmarks (eyes 36-47, nose tip 30, mouth corners 48, 54), pitch and yaw applied
        pts = np.concatenate([lm3d[36:48], lm3d[[30, 48, 54]]])
        cx, sx, cy, sy = np.cos(angles[0]), np.sin(angles[0]), np.cos(angles[1]), np.sin(angles[1])
        ryx = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]]) @ np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
        p0 = pts @ ryx.T  # [15, 3]
        r = self.renderer
        f, centre, dist, size = r.focal, r.center, r.camera_distance, self.image_size

        def project(roll, trans):  # roll [K], trans [K, 3] -> [K, 5, 2]
            cz, sz = np.cos(roll)[:, None], np.sin(roll)[:, None]
            x = cz * p0[None, :, 0] - sz * p0[None, :, 1] + trans[:, :1]
            y = sz * p0[None, :, 0] + cz * p0[None, :, 1] + trans[:, 1:2]
            depth = dist - (p0[None, :, 2] + trans[:, 2:3])
            u = f * x / depth + centre - 0.5
            v = size - (f * y / depth + centre) - 0.5
            q = np.stack([u, v], -1)  # [K, 15, 2]
            return np.concatenate([q[:, 0:6].mean(1, keepdims=True), q[:, 6:12].mean(1, keepdims=True), q[:, 12:15]], 1)

        rng = _rng(self.seed, index, _S_ALIGN)
        residual = np.zeros(4)
        if self.framing == "mtcnn":
            residual = self._part("jitter").sample(rng, np.degrees(angles[1]))
        offset = None
        if self.face_scale != 1.0:  # a photo-like frame: the face anywhere near the middle
            offset = rng.uniform(-0.12, 0.12, 2) * size
        roll, trans = frame_pose(project, float(angles[2]), residual, size, self.face_scale, offset)
        angles = np.array([angles[0], angles[1], roll])
        return angles, trans

    def _sample_expression(self, rng: np.random.Generator) -> np.ndarray:
        """Expression coefficients ``[n_exp]``.

        With a model that maps blendshape weights to coefficients (``labels["exp_from_target"]``
        ``[n_exp, T]``, weights in [0, 1]), a few blendshapes are activated (a quarter of the faces
        stay neutral) and mapped exactly, and the eyes are often opened a little wider (the
        default model's neutral eyes are narrow); otherwise ``N(0, exp_scale^2)`` coefficients.
        """
        fm = self.face_model
        from_target = getattr(fm, "labels", {}).get("exp_from_target")
        if isinstance(from_target, torch.Tensor) and from_target.dim() == 2 and from_target.shape[0] == fm.n_exp:
            weights = np.zeros(from_target.shape[1], np.float64)
            if rng.random() < 0.75:
                k = int(rng.integers(1, 6))
                units = rng.choice(len(weights), size=min(k, len(weights)), replace=False)
                weights[units] = np.clip(rng.uniform(0.15, 1.0, len(units)) * self.exp_scale / 0.6, 0.0, 1.0)
            names = fm.labels.get("exp_target_names")
            if isinstance(names, list) and "eyeWideLeft" in names and "eyeWideRight" in names and rng.random() < 0.7:
                wide = rng.uniform(0.15, 0.7)
                for side in ("eyeWideLeft", "eyeWideRight"):
                    j = names.index(side)
                    weights[j] = np.clip(max(weights[j], wide + rng.normal(0, 0.05)), 0, 1)
            return (from_target.double().numpy() @ weights).astype(np.float32)
        return (rng.standard_normal(fm.n_exp) * self.exp_scale).astype(np.float32)

    # ------------------------------------------------------------------------------ labels
    def phenotype_labels(self, id_coeffs: torch.Tensor, exp_coeffs: torch.Tensor) -> dict[str, torch.Tensor]:
        """Phenotype labels the face model carries, evaluated for given coefficients.

        A model may carry maps from its coefficients back to the named quantities its bases were
        built from (the default model: ``labels["id_to_target"]`` ``[T, n_id]``, MakeHuman face
        slider values, and ``labels["exp_to_target"]`` ``[52, n_exp]``, blendshape weights). For
        every ``<block>_to_target`` float array of shape ``[T, n_<block>]`` this returns
        ``<block>_targets = coeffs @ array.T`` (``[B, T]``); the names are in the model's
        ``labels["<block>_target_names"]``.

        Args:
            id_coeffs: ``[B, n_id]``.
            exp_coeffs: ``[B, n_exp]``.

        Returns:
            dict name -> ``[B, T]`` float32 tensor (empty for a model without such maps).
        """
        fm = self.face_model
        blocks = {"id": (id_coeffs, fm.n_id), "exp": (exp_coeffs, fm.n_exp)}
        out = {}
        for name, arr in getattr(fm, "labels", {}).items():
            block = name[: -len("_to_target")] if name.endswith("_to_target") else None
            if block not in blocks or not isinstance(arr, torch.Tensor) or not arr.is_floating_point():
                continue
            coeffs, n = blocks[block]
            if arr.dim() == 2 and arr.shape[1] == n:
                values = coeffs.float() @ arr.float().to(coeffs.device).T  # [B, T]
                out[f"{block}_targets"] = values
                names = fm.labels.get(f"{block}_target_names")
                if isinstance(names, list) and len(names) == values.shape[1]:
                    # Named whole-head phenotype axes (the default model's "macro/gender",
                    # "macro/age", ...) also get a scalar label each: "macro_gender", ...
                    for t, tname in enumerate(names):
                        if tname.startswith("macro/"):
                            out["macro_" + tname[len("macro/"):]] = values[:, t].contiguous()
        return out

    def label_names(self) -> dict[str, list[str]]:
        """Names of the entries of the vector labels (``id_targets``, ``exp_targets``, ``tex``) and,
        under ``"appearance"``, the scalar appearance labels (skin, brows, beard, make-up, hair)."""
        from pyfaid.data.hair import HAIR_LABELS
        from pyfaid.data.skin import APPEARANCE_LABELS

        fm = self.face_model
        out = {}
        for key, names_key in (("id_targets", "id_target_names"), ("exp_targets", "exp_target_names"),
                               ("tex", "tex_direction_names")):
            names = getattr(fm, "labels", {}).get(names_key)
            if isinstance(names, list):
                out[key] = list(names)
        out["appearance"] = list(APPEARANCE_LABELS) + list(HAIR_LABELS)
        return out

    def _sex_age(self, pheno: dict, b: int) -> tuple[float, float]:
        """``(male, age)`` in [0, 1] from the phenotype labels (0.5 each without them)."""
        male = pheno.get("macro_gender")
        age = pheno.get("macro_age")
        m = 0.5 if male is None else float(torch.sigmoid(male[b] / 0.25))
        a = 0.5 if age is None else float(torch.clamp(0.5 + age[b] / 0.5, 0, 1))
        return m, a

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
        from pyfaid.data import hair as H
        from pyfaid.data.backgrounds import background
        from pyfaid.data.photo import apply_effects, sample_effects
        from pyfaid.data.skin import APPEARANCE_LABELS

        idx = [self._check_index(i) for i in indices]
        if not idx:
            raise ValueError("SyntheticFaces.batch: `indices` is empty")
        fm = self.face_model
        size = self.image_size
        B = len(idx)
        self._tick(None)
        plans = [self._plan(i) for i in idx]
        self._tick("plan")
        coeffs = torch.from_numpy(np.stack([p["coeffs"] for p in plans]))  # [B, layout.size]
        parts = fm.split_coeffs(coeffs)
        pheno = self.phenotype_labels(parts["id"], parts["exp"])
        model = fm.to(self.device) if next(iter(fm.buffers())).device != self.device else fm

        # --- albedo: the basis, then painted detail
        base = model.texture(parts["tex"].to(self.device)).float().cpu().numpy()  # [B, V, 3]
        styles, colors, appearance = [], [], []
        for b, i in enumerate(idx):
            male, age = self._sex_age(pheno, b)
            tex0 = float(parts["tex"][b, 0]) if fm.n_tex else 0.0
            skin_light = float(np.clip(0.55 - 0.22 * tex0, 0, 1))
            style = H.sample_hair(_rng(self.seed, i, _S_HAIR), skin_light, male, age)
            styles.append(style)
            if self.texture_detail:
                a, lab = self._part("painter").paint(base[b], _rng(self.seed, i, _S_SKIN), style.colour, male, age)
            else:
                a, lab = np.clip(base[b], 0, 1).astype(np.float32), {k: 0.0 for k in APPEARANCE_LABELS}
            colors.append(a)
            lab.update(self._hair_labels(style) if self.context else {k: 0.0 for k in H.HAIR_LABELS})
            appearance.append(lab)
        colors_t = torch.from_numpy(np.stack(colors))  # [B, V, 3]
        self._tick("albedo")

        # --- the face
        out = self.renderer(model, coeffs.to(self.device), colors=colors_t.to(self.device))
        rast = out["rast"].float().cpu()
        face_np = out["image"].float().cpu().permute(0, 2, 3, 1).contiguous().numpy()  # [B, H, W, 3]
        cover_np = rast[..., 3].gt(0).float().numpy()  # [B, H, W]
        verts_cam = out["vertices"].float().cpu()
        self._tick("face")
        if self.lighting_extras:
            face_np += self._light_residual(plans, colors, out) * cover_np[..., None]
        self._tick("light")
        rotation = cam_rotation(parts["angle"].double().numpy())
        lm2d, lm_vis = self._part("contour").compute(out["landmarks"].float().cpu(), verts_cam, rast, self.renderer,
                                                     torch.from_numpy(rotation))
        self._tick("landmarks_2d")

        # --- the context around it, backgrounds, compositing
        scene = self._part("scene") if self.context else None
        if scene is not None:
            ctx = self._render_context(scene, plans, verts_cam, parts, styles, colors, out["normals"].float().cpu())
        self._tick("context")
        cleans = np.empty((B, size, size, 3), np.float32)
        hairies = np.empty((B, size, size, 3), np.float32) if self.occlusion else None
        hair_masks = np.zeros((B, size, size), np.float32)
        fxs = []
        depth_np = rast[..., 2].numpy()
        lm3d_np = out["landmarks"].float().cpu().numpy()
        for b, i in enumerate(idx):
            rng = _rng(self.seed, i, _S_SCENE)
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
            layers = self._hair_layers(scene, b, i, styles[b], ctx, lm2d[b].numpy(), lm3d_np[b])
            clean, hairy, over = scene.composite(
                bg, face_np[b], cover_np[b], depth_np[b], ctx["rgb"][b], ctx["cover"][b], ctx["depth"][b],
                ctx["hair"][b], layers)
            cleans[b] = clean
            if hairies is not None:
                hairies[b] = hairy
                hair_masks[b] = over
        np.clip(cleans, 0, 1, out=cleans)
        self._tick("composite")
        if self.occlusion:
            np.clip(hairies, 0, 1, out=hairies)
            images, occ = hairies, hair_masks
            pasted = [b for b, i in enumerate(idx)
                      if self.occlusion_prob >= 1.0 or _rng(self.seed, i, _S_SCENE + 20).random() < self.occlusion_prob]
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
        # --- camera effects, the same camera for the clean and the occluded picture
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
        visible = face * (1 - occ)
        self._tick("camera")

        # --- labels
        albedo = colors_t
        region = getattr(fm, "labels", {}).get("skin_mask")
        if not isinstance(region, torch.Tensor) or region.dtype != torch.bool or region.numel() != fm.num_vertices:
            region = fm.face_mask
        region = region.reshape(-1).cpu()
        if not bool(region.any()):
            region = torch.ones_like(region)
        skin = (albedo[:, region].clamp(0, 1) @ torch.from_numpy(_LUMA)).mean(1)  # [B]
        labels = {
            "id": parts["id"].clone(),
            "exp": parts["exp"].clone(),
            "tex": parts["tex"].clone(),
            "angles": parts["angle"].clone(),
            "skin_tone": skin,
        }
        for name in appearance[0]:
            labels[name] = torch.tensor([a[name] for a in appearance], dtype=torch.float32)
        labels.update(pheno)
        self._tick("labels")
        return {
            "image": image,
            "clean": clean,
            "mask": visible.contiguous(),
            "face_mask": face.contiguous(),
            "occluder_mask": occ.contiguous(),
            "coeffs": coeffs,
            "vertices": verts_cam,
            "colors": albedo,
            "landmarks": torch.from_numpy(lm3d_np),
            "landmarks_2d": lm2d.float(),
            "landmark_visible": lm_vis,
            "index": torch.tensor(idx, dtype=torch.int64),
            "labels": labels,
        }

    # ----------------------------------------------------------------------------- pieces
    @staticmethod
    def _hair_labels(style) -> dict:
        return {
            "hair_length": float(style.length),
            "hair_lightness": float(np.clip(float(style.colour @ _LUMA) / 0.8, 0, 1)),
            "hair_volume": float(np.clip(style.volume / 0.3, 0, 1)),
            "fringe": float(style.fringe),
            "bald": float(style.bald),
        }

    def _light_residual(self, plans: list, colors: list, out: dict) -> np.ndarray:
        """The key light's cast shadows and highlights on the face, per pixel ``[B, H, W, 3]``."""
        from pyfaid.data.lighting import key_light_residual
        from pyfaid.render import interpolate

        shadows = self._part("shadows")
        painter = self._part("painter")
        if not hasattr(self, "_seam_fade"):
            # highlights by region (oily T-zone, glossy lips, wet eyes), and a fade to zero at the
            # face's outer edge, where the context (which has no cast shadows) takes over
            self._gloss_skin = ((0.25 + 0.75 * np.maximum(painter.forehead, painter.nose)) * painter.skin_free).astype(np.float32)
            self._gloss_wet = (0.5 * painter.lips + 1.2 * painter.eye).astype(np.float32)
            self._seam_fade = _seam_fade(self.face_model)
        normals = out["normals"].float().cpu().numpy()
        angles = np.stack([p["coeffs"][self.face_model.layout.slice("angle")] for p in plans])
        rot = cam_rotation(angles)  # [B, 3, 3]
        res = np.zeros((len(plans),) + normals.shape[1:], np.float32)
        for b, p in enumerate(plans):
            key = p["key"]
            if key.strength < 0.3:  # a soft key light: its shadows and highlights are faint, skip them
                continue
            rng = _rng(self.seed, p["index"], _S_LIGHT)
            d_model = rot[b].T @ key.direction  # the light in the head's frame
            vis = shadows.visibility(d_model).astype(np.float32)
            oil = rng.uniform(0.1, 1.0)
            gloss = (oil * self._gloss_skin + self._gloss_wet) * self._seam_fade
            res[b] = key_light_residual(colors[b], normals[b], vis * self._seam_fade + (1 - self._seam_fade), key,
                                        gloss, shininess=float(rng.uniform(5, 25)), specular=float(rng.uniform(0.03, 0.2)))
        attr = torch.from_numpy(res)  # [B, V, 3]
        return interpolate(attr.contiguous(), out["rast"].float().cpu().contiguous(), self.face_model.topology).numpy()

    def _render_context(self, scene, plans, verts_cam, parts, styles, colors, face_normals) -> dict:
        """Context renders of the batch: colour, coverage, depth and hair weight per pixel."""
        from pyfaid.render import camera as cam_mod
        from pyfaid.render import interpolate

        # model-space face shapes at the context's anchors, from the camera-space vertices (undo the pose)
        rot = cam_mod.euler_rotation(parts["angle"].float())
        anchors = torch.as_tensor(scene.ctx.anchors)
        world = cam_mod.to_camera(verts_cam[:, anchors], self.renderer.camera_distance)  # its own inverse
        shapes = (world - parts["trans"].float()[:, None]) @ rot
        torso = torch.from_numpy(np.stack([p["torso"] for p in plans]))
        ctx_world, _model, hair_w = scene.context_world(shapes, parts, styles, torso)
        albedo = np.stack([scene.context_albedo(_rng(self.seed, p["index"], _S_CONTEXT), colors[b], hair_w[b], styles[b])
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
            f = scene.hair_texture.shade(d, _rng(self.seed, p["index"], _S_HAIR2D), styles[b], facing)
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
        from pyfaid.data import hair as H

        size = self.image_size
        if style.bald or style.length <= 0:
            return []
        rng = _rng(self.seed, index, _S_HAIR2D + 10)
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


def cam_rotation(angles: np.ndarray) -> np.ndarray:
    """Deep3DFaceRecon rotation matrices ``[B, 3, 3]`` from Euler angles ``[B, 3]`` (numpy)."""
    from pyfaid.render.camera import euler_rotation

    return euler_rotation(torch.from_numpy(np.asarray(angles, np.float64))).numpy()


def _seam_fade(face_model, width: float = 0.12) -> np.ndarray:
    """Per vertex, 0 on the mesh's outer boundary rising to 1 ``width`` model units inside it."""
    from scipy.spatial import cKDTree

    from pyfaid.facemodel.meshops import boundary_vertices

    V = face_model.mean_shape.detach().double().cpu().numpy()
    ring = boundary_vertices(face_model.triangles.cpu().numpy().astype(np.int64))
    d, _ = cKDTree(V[ring]).query(V)
    t = np.clip(d / width, 0, 1)
    return (t * t * (3 - 2 * t)).astype(np.float32)


def _blend(dst: np.ndarray, src: np.ndarray, cover: np.ndarray) -> None:
    """``dst`` over which ``src`` is drawn where ``cover`` (0/1), its silhouette softened from inside."""
    from pyfaid.data.scene import lerp, soften

    lerp(dst, src, soften(cover))
