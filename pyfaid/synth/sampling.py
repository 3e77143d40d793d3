"""What :class:`pyfaid.synth.faces.SyntheticFaces` draws for an item before rendering it, and
the labels that follow from the coefficients.

Per item ``(seed, index)``: the identity (with larger, more open eyes than the basis draws), the
expression (blendshape activations when the model maps them: smiles, laughs, shouts, talking and
frowns among them, eyes often a little wide open) and albedo coefficients, the pose, the SH lighting and key
light (:mod:`pyfaid.synth.lighting`), the torso's turn, and the framing of the aligned crop
(:mod:`pyfaid.synth.alignment`). Every part of an item draws from its own random stream,
:func:`item_rng` ``(seed, index, stream)`` with the ``S_*`` stream numbers below, so parts do not
shift each other's random numbers.
"""

from __future__ import annotations

import numpy as np
import torch

from pyfaid.synth.alignment import frame_pose
from pyfaid.synth.hair import HAIR_LABELS
from pyfaid.synth.lighting import sample_lighting
from pyfaid.synth.skin import APPEARANCE_LABELS

__all__ = ["SyntheticSampling", "item_rng", "S_COEFFS", "S_SCENE", "S_SKIN", "S_HAIR", "S_LIGHT", "S_ALIGN",
           "S_CONTEXT", "S_HAIR2D", "S_EYES", "S_EYE_STATE", "EXPRESSIONS",
           "EYES_CLOSED_SHARE", "EYES_WIDE_SHARE"]

#: Per-item random streams: ``numpy.random.default_rng((seed, index, stream))``.
S_COEFFS, S_SCENE, S_SKIN, S_HAIR, S_LIGHT, S_ALIGN, S_CONTEXT, S_HAIR2D = 1, 2, 3, 4, 5, 6, 7, 8
#: The eye proportions' stream (9 is :data:`pyfaid.synth.views.S_VIEW`, an item's own camera).
S_EYES = 10
#: The eyes' state's stream (closed or not), apart from the coefficients' stream so that the other
#: draws of an item stay what they were.
S_EYE_STATE = 11

#: Facial expressions the generator makes (ARKit blendshape names): per expression, how often (a
#: weight), and ``(unit or (left, right) pair, low, high)`` activation ranges (pairs get the same
#: draw with a little asymmetry).
EXPRESSIONS = {
    "smile": (0.25, [(("mouthSmileLeft", "mouthSmileRight"), 0.35, 1.0), (("cheekSquintLeft", "cheekSquintRight"), 0.1, 0.6),
                     (("eyeSquintLeft", "eyeSquintRight"), 0.0, 0.4), (("mouthDimpleLeft", "mouthDimpleRight"), 0.0, 0.4)]),
    "toothy_smile": (0.22, [(("mouthSmileLeft", "mouthSmileRight"), 0.5, 1.0), ("jawOpen", 0.08, 0.3),
                            (("mouthUpperUpLeft", "mouthUpperUpRight"), 0.2, 0.7),
                            (("mouthLowerDownLeft", "mouthLowerDownRight"), 0.1, 0.6),
                            (("cheekSquintLeft", "cheekSquintRight"), 0.2, 0.7), (("eyeSquintLeft", "eyeSquintRight"), 0.0, 0.5)]),
    "laugh": (0.13, [(("mouthSmileLeft", "mouthSmileRight"), 0.6, 1.0), ("jawOpen", 0.3, 0.75),
                     (("mouthUpperUpLeft", "mouthUpperUpRight"), 0.2, 0.6), (("cheekSquintLeft", "cheekSquintRight"), 0.4, 0.9),
                     (("eyeSquintLeft", "eyeSquintRight"), 0.3, 0.8)]),
    "shout": (0.12, [("jawOpen", 0.5, 1.0), (("mouthStretchLeft", "mouthStretchRight"), 0.0, 0.6), ("browInnerUp", 0.2, 0.9),
                     (("browOuterUpLeft", "browOuterUpRight"), 0.0, 0.7), (("eyeWideLeft", "eyeWideRight"), 0.2, 0.8),
                     ("mouthFunnel", 0.0, 0.4), (("mouthLowerDownLeft", "mouthLowerDownRight"), 0.2, 0.8)]),
    "talk": (0.14, [("jawOpen", 0.08, 0.4), ("mouthFunnel", 0.0, 0.5), ("mouthPucker", 0.0, 0.3),
                    (("mouthLowerDownLeft", "mouthLowerDownRight"), 0.0, 0.5), (("mouthUpperUpLeft", "mouthUpperUpRight"), 0.0, 0.4)]),
    "frown": (0.14, [(("browDownLeft", "browDownRight"), 0.3, 1.0), (("mouthFrownLeft", "mouthFrownRight"), 0.2, 0.8),
                     (("noseSneerLeft", "noseSneerRight"), 0.0, 0.5), (("mouthPressLeft", "mouthPressRight"), 0.0, 0.6),
                     ("mouthShrugLower", 0.0, 0.5)]),
}


def _archetype(rng: np.random.Generator, names: list, weights: np.ndarray, strength: float) -> str:
    """Set ``weights`` (in place) to one of :data:`EXPRESSIONS`, drawn by its weight; returns its name."""
    kinds = list(EXPRESSIONS)
    p = np.array([EXPRESSIONS[k][0] for k in kinds])
    kind = kinds[int(rng.choice(len(kinds), p=p / p.sum()))]
    for unit, lo, hi in EXPRESSIONS[kind][1]:
        value = rng.uniform(lo, hi) * strength
        for u in (unit if isinstance(unit, tuple) else (unit,)):
            if u in names:
                weights[names.index(u)] = max(weights[names.index(u)], value + rng.normal(0, 0.04))
    return kind

#: Share of faces whose eyes are partly or fully closed (blinks, half-closed and downcast eyes,
#: squints into light: common in photos), and of faces whose eyes open a little wider (unless closed).
EYES_CLOSED_SHARE = 0.2
EYES_WIDE_SHARE = 0.7


def _eye_state(rng: np.random.Generator, eyes: np.random.Generator, names: list, weights: np.ndarray) -> None:
    """The eyes' state (in place on ``weights``). From the coefficients' stream ``rng``, as always:
    with :data:`EYES_WIDE_SHARE` both eyes open wider by 0.15-0.7. From the eyes' own stream
    ``eyes``: with :data:`EYES_CLOSED_SHARE` both lids close by 0.35-1.0 instead (a little
    asymmetry, no widening), 40 % of those looking down too."""
    if "eyeWideLeft" in names and "eyeWideRight" in names and rng.random() < EYES_WIDE_SHARE:
        wide = rng.uniform(0.15, 0.7)
        for side in ("eyeWideLeft", "eyeWideRight"):
            j = names.index(side)
            weights[j] = max(weights[j], wide + rng.normal(0, 0.05))
    if eyes.random() >= EYES_CLOSED_SHARE:
        return
    closed = eyes.uniform(0.35, 1.0)
    down = eyes.uniform(0.2, 0.7) if eyes.random() < 0.4 else 0.0
    for side in ("Left", "Right"):
        for unit, value in ((f"eyeBlink{side}", closed + eyes.normal(0, 0.04)), (f"eyeLookDown{side}", down)):
            if unit in names:
                weights[names.index(unit)] = max(weights[names.index(unit)], value)
        if f"eyeWide{side}" in names:  # a closing lid is not a widened one
            weights[names.index(f"eyeWide{side}")] = 0.0


# Rec. 709 luma weights, for the scalar skin tone label.
_LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)


def item_rng(seed: int, index: int, stream: int) -> np.random.Generator:
    """The generator of one random stream of item ``index``."""
    return np.random.default_rng((int(seed), int(index), int(stream)))


class SyntheticSampling:
    """Parameters and labels of :class:`~pyfaid.synth.faces.SyntheticFaces` (a base class of it).

    Uses the dataset's ``face_model``, ``renderer``, options and ``_part`` helpers.
    """

    # ------------------------------------------------------------------------- parameters
    def sample_coeffs(self, index: int) -> np.ndarray:
        """The coefficients ``[layout.size]`` of item ``index`` (float32 numpy array)."""
        return self._plan(index)["coeffs"]

    def _plan(self, index: int) -> dict:
        """Everything drawn before rendering for item ``index``: coefficients, key light, framing."""
        fm = self.face_model
        lay = fm.layout
        rng = item_rng(self.seed, index, S_COEFFS)
        c = np.zeros(lay.size, np.float32)
        c[lay.slice("id")] = rng.standard_normal(fm.n_id) * self.id_scale
        blendshapes = self._sample_blendshape_weights(rng, item_rng(self.seed, index, S_EYE_STATE))
        c[lay.slice("exp")] = self._expression_coeffs(blendshapes, rng)
        c[lay.slice("id")] += self._eye_proportions(item_rng(self.seed, index, S_EYES))
        c[lay.slice("tex")] = rng.standard_normal(fm.n_tex) * self.tex_scale
        # Pose: most faces within +-35 degrees of frontal, the rest anywhere up to max_yaw.
        if rng.random() < 0.6:
            yaw = np.clip(rng.normal(0.0, 20.0), -self.max_yaw, self.max_yaw)
        else:
            yaw = rng.uniform(-self.max_yaw, self.max_yaw)
        if self.yaw is not None:  # a fixed yaw (previews, by-pose evaluation)
            yaw = self.yaw if index % 2 == 0 else -self.yaw
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
        return {"index": int(index), "coeffs": c, "key": key, "light": light_info, "torso": torso.astype(np.float32),
                "blendshapes": blendshapes}

    def _frame(self, index: int, c: np.ndarray, angles: np.ndarray):
        """Pose the face where an aligned crop of it puts it (see :mod:`pyfaid.synth.alignment`)."""
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

        rng = item_rng(self.seed, index, S_ALIGN)
        residual = np.zeros(4)
        if self.framing == "mtcnn":
            residual = self._part("jitter").sample(rng, np.degrees(angles[1]))
        offset = None
        if self.face_scale != 1.0:  # a photo-like frame: the face anywhere near the middle
            offset = rng.uniform(-0.12, 0.12, 2) * size
        roll, trans = frame_pose(project, float(angles[2]), residual, size, self.face_scale, offset)
        angles = np.array([angles[0], angles[1], roll])
        return angles, trans

    def sample_blendshapes(self, index: int) -> dict | None:
        """The blendshape weights item ``index`` was made with (the generator's ground truth).

        Returns:
            ``{name: weight}`` over the model's ``labels["exp_target_names"]`` (weights in [0, 1];
            for the default model the 52 ARKit units), or None for a model without blendshapes
            (its expressions are drawn as coefficients).
        """
        w = self._plan(index)["blendshapes"]
        if w is None:
            return None
        return {n: float(x) for n, x in zip(self.face_model.labels["exp_target_names"], w)}

    def _sample_blendshape_weights(self, rng: np.random.Generator, eyes: np.random.Generator) -> np.ndarray | None:
        """Blendshape weights ``[T]`` in [0, 1], or None for a model without a blendshape map.

        With a model that maps blendshape weights to coefficients (``labels["exp_from_target"]``
        ``[n_exp, T]``, weights in [0, 1]) and names them (``labels["exp_target_names"]``, ARKit's),
        about half of the faces make one of :data:`EXPRESSIONS` (smiles with closed or parted lips,
        laughs, shouts, talking, frowns: the open mouths and smiles real photos are full of), with a
        little of one or two other units; a fifth of the rest activate a few random blendshapes,
        the others stay neutral. The eyes have a state of their own (:func:`_eye_state`): partly or
        fully closed for about a fifth of the faces, otherwise often opened a little wider (the
        default model's neutral eyes are narrow).
        """
        fm = self.face_model
        from_target = getattr(fm, "labels", {}).get("exp_from_target")
        if not (isinstance(from_target, torch.Tensor) and from_target.dim() == 2 and from_target.shape[0] == fm.n_exp):
            return None
        weights = np.zeros(from_target.shape[1], np.float64)
        names = fm.labels.get("exp_target_names")
        named = isinstance(names, list) and len(names) == len(weights)
        strength = self.exp_scale / 0.6
        u = rng.random()
        if named and u < 0.5:
            _archetype(rng, names, weights, strength)
            extra = rng.choice(len(weights), size=int(rng.integers(0, 3)), replace=False)
            weights[extra] = np.maximum(weights[extra], rng.uniform(0.0, 0.3, len(extra)) * strength)
        elif u < 0.8 or not named:
            k = int(rng.integers(1, 6))
            units = rng.choice(len(weights), size=min(k, len(weights)), replace=False)
            weights[units] = rng.uniform(0.15, 1.0, len(units)) * strength
        if named:
            _eye_state(rng, eyes, names, weights)
        return np.clip(weights, 0.0, 1.0)

    def _expression_coeffs(self, weights: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
        """Expression coefficients ``[n_exp]``: the blendshape weights mapped exactly, or, for a
        model without blendshapes, ``N(0, exp_scale^2)`` coefficients."""
        fm = self.face_model
        if weights is not None:
            return (fm.labels["exp_from_target"].double().numpy() @ weights).astype(np.float32)
        return (rng.standard_normal(fm.n_exp) * self.exp_scale).astype(np.float32)

    def _eye_proportions(self, rng: np.random.Generator) -> np.ndarray:
        """An identity offset ``[n_id]`` that makes the eyes larger and more open than the model's
        basis draws them (its mean eyes are small and narrow), through the model's eye sliders
        (``labels["id_from_target"]``, MakeHuman's ``eyes/eye-scale-incr``, ``eyes/eye-height2-incr``);
        zero for a model without them."""
        fm = self.face_model
        from_target = getattr(fm, "labels", {}).get("id_from_target")
        names = getattr(fm, "labels", {}).get("id_target_names")
        out = np.zeros(fm.n_id, np.float64)
        if not (isinstance(from_target, torch.Tensor) and isinstance(names, list)
                and from_target.shape == (fm.n_id, len(names))):
            return out
        for name, lo, hi in (("eyes/eye-scale-incr:sym", 0.0, 0.6), ("eyes/eye-height2-incr:sym", 0.1, 0.7)):
            if name in names:
                out += from_target[:, names.index(name)].double().numpy() * rng.uniform(lo, hi)
        return out

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

    @staticmethod
    def _hair_labels(style) -> dict:
        """The scalar hair labels of a hair style (:data:`pyfaid.synth.hair.HAIR_LABELS`)."""
        return {
            "hair_length": float(style.length),
            "hair_lightness": float(np.clip(float(style.colour @ _LUMA) / 0.8, 0, 1)),
            "hair_volume": float(np.clip(style.volume / 0.3, 0, 1)),
            "fringe": float(style.fringe),
            "bald": float(style.bald),
        }

    def _batch_labels(self, parts: dict, albedo: torch.Tensor, appearance: list, pheno: dict) -> dict:
        """The batch's labels: coefficients, angles, skin tone, appearance and phenotype labels."""
        fm = self.face_model
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
        return labels
