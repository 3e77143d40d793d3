"""Synthetic training faces rendered from the morphable model, with ground truth.

``SyntheticFaces`` draws, for every ``(seed, index)``, a random identity, expression and albedo,
a head pose (yaw up to +-80 degrees, moderate pitch and roll), a translation jitter, spherical-
harmonic lighting (ambient-dominant, sometimes a harsh side light, coloured tints), a random
background (gradients, smooth noise, blurred random shapes), optional blur and pixel noise, and
random occluders (``pyfaid.data.occlude``). Items carry the clean and occluded images, the visible
face mask, the coefficients, the camera-space vertices, the albedo and the generator's labels.

Whole batches render in one ``Renderer`` call: use ``SyntheticFaces.batch(indices)``, or a
``DataLoader`` (the dataset implements ``__getitems__``, which the loader's batched fetch uses).
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from pyfaid.data.occlusion import occlude

__all__ = ["SyntheticFaces"]

# Rec. 709 luma weights, for the scalar skin tone label.
_LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)


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
        occlusion: paste random occluders into ``image`` (``clean`` never has them).
        id_scale: standard deviation of the identity coefficients.
        exp_scale: expression strength: the standard deviation of the expression coefficients,
            or, for a model with blendshape weights, a factor ``exp_scale / 0.6`` on the weights.
        tex_scale: standard deviation of the albedo coefficients.
        max_yaw: yaw limit in degrees.
        max_pitch: pitch limit in degrees.
        max_roll: roll limit in degrees.
        harsh_light_prob: probability of a strong side light with little ambient light.
        tint_prob: probability of a strongly coloured light.
        blur_prob: probability of a Gaussian blur of the whole picture.
        noise_prob: probability of Gaussian pixel noise on the whole picture.
        occlusion_kwargs: extra keyword arguments for ``occlude`` (``kinds``, ``max_occluders``,
            ``coverage``).
        device: where to render (``"cpu"`` by default); returned tensors are on the CPU.

    Each item is a dict:
        ``image [3, H, W]`` occluded picture in [0, 1] (same as ``clean`` when ``occlusion`` is off),
        ``clean [3, H, W]``, ``mask [1, H, W]`` face pixels not covered by occluders (0/1),
        ``face_mask [1, H, W]`` all face pixels, ``occluder_mask [1, H, W]``,
        ``coeffs [layout.size]``, ``vertices [V, 3]`` (camera space), ``colors [V, 3]`` ground-truth
        albedo, ``landmarks [68, 2]`` (pixels, y down), ``index`` (int64 scalar), and
        ``labels``: a dict with ``id [n_id]``, ``exp [n_exp]``, ``tex [n_tex]``, ``angles [3]``
        (radians), ``skin_tone`` (scalar: mean luma of the albedo over the skin region), and one
        entry per phenotype map the face model carries (for the default model: ``id_targets [221]``
        MakeHuman slider values, ``exp_targets [52]`` blendshape weights, and scalars
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
        blur_prob: float = 0.2,
        noise_prob: float = 0.3,
        occlusion_kwargs: dict | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        if int(length) < 0:
            raise ValueError(f"SyntheticFaces: `length` must be >= 0, got {length}")
        if int(seed) < 0:
            raise ValueError(f"SyntheticFaces: `seed` must be >= 0, got {seed}")
        if int(image_size) < 16:
            raise ValueError(f"SyntheticFaces: `image_size` must be >= 16, got {image_size}")
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
        self.device = torch.device(device)
        self._face_model = face_model
        self._renderer = None

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
        """The ``Renderer`` used (Deep3DFaceRecon's camera scaled to ``image_size``)."""
        if self._renderer is None:
            from pyfaid.render.renderer import Renderer

            self._renderer = Renderer(self.image_size)
        return self._renderer

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
        fm = self.face_model
        lay = fm.layout
        rng = _rng(self.seed, index, 1)
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
        c[lay.slice("angle")] = np.radians([pitch, yaw, roll])
        c[lay.slice("gamma")] = self._sample_light(rng)
        c[lay.slice("trans")] = [rng.normal(0, 0.06), rng.normal(0, 0.06), rng.uniform(-0.6, 0.6)]
        return c

    def _sample_expression(self, rng: np.random.Generator) -> np.ndarray:
        """Expression coefficients ``[n_exp]``.

        With a model that maps blendshape weights to coefficients (``labels["exp_from_target"]``
        ``[n_exp, T]``, weights in [0, 1]), a few blendshapes are activated (a quarter of the faces
        stay neutral) and mapped exactly; otherwise ``N(0, exp_scale^2)`` coefficients.
        """
        fm = self.face_model
        from_target = getattr(fm, "labels", {}).get("exp_from_target")
        if isinstance(from_target, torch.Tensor) and from_target.dim() == 2 and from_target.shape[0] == fm.n_exp:
            weights = np.zeros(from_target.shape[1], np.float64)
            if rng.random() < 0.75:
                k = int(rng.integers(1, 6))
                units = rng.choice(len(weights), size=min(k, len(weights)), replace=False)
                weights[units] = np.clip(rng.uniform(0.15, 1.0, len(units)) * self.exp_scale / 0.6, 0.0, 1.0)
            return (from_target.double().numpy() @ weights).astype(np.float32)
        return (rng.standard_normal(fm.n_exp) * self.exp_scale).astype(np.float32)

    def _sample_light(self, rng: np.random.Generator) -> np.ndarray:
        """27 SH coefficients (3 channels x 9, Deep3DFaceRecon order, before the 0.8 ambient offset).

        Band 1 reads ``(-n_y, n_z, -n_x)``: a light from the image right needs a negative
        coefficient 3, a light from above a negative coefficient 1.
        """
        sh = np.zeros(9, np.float64)
        if rng.random() < self.harsh_light_prob:
            sh[0] = rng.uniform(-0.55, -0.3)  # little ambient
            side = rng.choice([-1.0, 1.0])
            sh[3] = -side * rng.uniform(0.35, 0.6)  # strong light from one side
            sh[2] = rng.uniform(0.0, 0.15)
            sh[1] = rng.normal(-0.05, 0.08)
            sh[4:] = rng.normal(0.0, 0.08, 5)
        else:
            sh[0] = rng.uniform(-0.15, 0.35)  # ambient-dominant
            sh[1] = rng.normal(-0.06, 0.06)  # usually from slightly above
            sh[2] = rng.uniform(0.0, 0.25)  # frontal fill
            sh[3] = rng.normal(0.0, 0.12)
            sh[4:] = rng.normal(0.0, 0.04, 5)
        if rng.random() < self.tint_prob:
            tint = 1.0 + rng.normal(0.0, 0.18, 3)
        else:
            tint = 1.0 + rng.normal(0.0, 0.05, 3)
        tint = np.clip(tint, 0.4, 1.6)
        gamma = np.zeros((3, 9), np.float64)
        for ch in range(3):
            gamma[ch] = sh * tint[ch]
            # Keep the tint on the total ambient (offset included), not only on the sampled part.
            gamma[ch, 0] = (0.8 + sh[0]) * tint[ch] - 0.8
        return gamma.reshape(-1).astype(np.float32)

    # ------------------------------------------------------------------------ backgrounds
    def _background(self, rng: np.random.Generator) -> np.ndarray:
        """A random background, [H, W, 3] float32 in [0, 1]."""
        size = self.image_size
        kind = rng.choice(["gradient", "noise", "shapes", "mixed"], p=[0.25, 0.2, 0.3, 0.25])
        ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) / size
        theta = rng.uniform(0, 2 * np.pi)
        t = np.clip((np.cos(theta) * (xs - 0.5) + np.sin(theta) * (ys - 0.5)) * rng.uniform(0.8, 2.0) + 0.5, 0, 1)
        c0, c1 = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
        bg = (c0 * (1 - t[..., None]) + c1 * t[..., None]).astype(np.float32)
        if kind in ("noise", "mixed"):
            small = int(rng.integers(3, 24))
            blob = cv2.resize(rng.uniform(0, 1, (small, small, 3)).astype(np.float32), (size, size),
                              interpolation=cv2.INTER_CUBIC)
            w = 1.0 if kind == "noise" else 0.5
            bg = bg * (1 - w) + np.clip(blob, 0, 1) * w
        if kind in ("shapes", "mixed"):
            canvas = (bg * 255).astype(np.uint8)
            s = size / 224.0
            for _ in range(int(rng.integers(4, 14))):
                colour = tuple(int(v) for v in rng.integers(0, 256, 3))
                x, y = (int(v) for v in rng.integers(0, size, 2))
                shape = rng.integers(0, 3)
                if shape == 0:
                    ax = (int(rng.uniform(10, 80) * s), int(rng.uniform(10, 80) * s))
                    cv2.ellipse(canvas, (x, y), ax, float(rng.uniform(0, 180)), 0, 360, colour, -1)
                elif shape == 1:
                    w2, h2 = (int(v * s) for v in rng.uniform(10, 90, 2))
                    cv2.rectangle(canvas, (x - w2, y - h2), (x + w2, y + h2), colour, -1)
                else:
                    x2, y2 = (int(v) for v in rng.integers(0, size, 2))
                    cv2.line(canvas, (x, y), (x2, y2), colour, max(1, int(rng.uniform(2, 12) * s)))
            sigma = rng.uniform(1.0, 8.0) * s
            bg = cv2.GaussianBlur(canvas, (0, 0), sigma).astype(np.float32) / 255.0
        bg = bg + rng.normal(0, 0.015) * rng.standard_normal((size, size, 1)).astype(np.float32)
        return np.clip(bg, 0, 1).astype(np.float32)

    def _post(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Camera effects on the whole picture: optional blur, then optional pixel noise."""
        if rng.random() < self.blur_prob:
            image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.5, 1.6) * self.image_size / 224.0)
        if rng.random() < self.noise_prob:
            sigma = rng.uniform(0.005, 0.04)
            image = image + sigma * rng.standard_normal(image.shape).astype(np.float32)
        return np.clip(image, 0, 1).astype(np.float32)

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
        """Names of the entries of the vector labels (``id_targets``, ``exp_targets``, ``tex``)."""
        fm = self.face_model
        out = {}
        for key, names_key in (("id_targets", "id_target_names"), ("exp_targets", "exp_target_names"),
                               ("tex", "tex_direction_names")):
            names = getattr(fm, "labels", {}).get(names_key)
            if isinstance(names, list):
                out[key] = list(names)
        return out

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
        fm = self.face_model
        size = self.image_size
        coeffs = torch.from_numpy(np.stack([self.sample_coeffs(i) for i in idx]))  # [B, layout.size]
        model = fm.to(self.device) if next(iter(fm.buffers())).device != self.device else fm
        out = self.renderer(model, coeffs.to(self.device))
        render = out["image"].float().cpu()  # [B, 3, H, W]
        face = out["mask"].float().cpu()  # [B, 1, H, W]
        # Soften the silhouette from the inside (cheap anti-aliasing against the background).
        soft = F.avg_pool2d(face, 3, stride=1, padding=1, count_include_pad=False) * face

        cleans = []
        for b, i in enumerate(idx):
            rng = _rng(self.seed, i, 2)
            bg = torch.from_numpy(self._background(rng)).permute(2, 0, 1)
            img = render[b] * soft[b] + bg * (1 - soft[b])
            img = self._post(np.ascontiguousarray(img.permute(1, 2, 0).numpy()), rng)
            cleans.append(torch.from_numpy(img).permute(2, 0, 1))
        clean = torch.stack(cleans).contiguous()  # [B, 3, H, W]
        if self.occlusion:
            image, occ = occlude(clean, seed=self.seed, indices=idx, landmarks=out["landmarks"].cpu(),
                                 **self.occlusion_kwargs)
        else:
            image, occ = clean.clone(), torch.zeros_like(face)
        visible = face * (1 - occ)

        parts = fm.split_coeffs(coeffs)
        id_c = parts["id"]
        albedo = out["colors"].float().cpu()
        region = getattr(fm, "labels", {}).get("skin_mask")
        if not isinstance(region, torch.Tensor) or region.dtype != torch.bool or region.numel() != fm.num_vertices:
            region = fm.face_mask
        region = region.reshape(-1).cpu()
        if not bool(region.any()):
            region = torch.ones_like(region)
        skin = (albedo[:, region].clamp(0, 1) @ torch.from_numpy(_LUMA)).mean(1)  # [B]
        labels = {
            "id": id_c.clone(),
            "exp": parts["exp"].clone(),
            "tex": parts["tex"].clone(),
            "angles": parts["angle"].clone(),
            "skin_tone": skin,
        }
        labels.update(self.phenotype_labels(id_c, labels["exp"]))
        return {
            "image": image.contiguous(),
            "clean": clean,
            "mask": visible.contiguous(),
            "face_mask": face.contiguous(),
            "occluder_mask": occ.contiguous(),
            "coeffs": coeffs,
            "vertices": out["vertices"].float().cpu(),
            "colors": albedo,
            "landmarks": out["landmarks"].float().cpu(),
            "index": torch.tensor(idx, dtype=torch.int64),
            "labels": labels,
        }

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
