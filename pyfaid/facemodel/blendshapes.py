"""Apple ARKit's 52 blendshapes on a face model built from them (the default model).

The default model's expression basis is the PCA of MakeHuman's ``faceunits01`` targets, which are
the 52 ARKit face units under ARKit's own names and sides (``eyeBlinkLeft`` closes the face's own
left eye, on the image right of a frontal photo, as in ARKit). The model keeps the exact map from
blendshape weights to expression coefficients (``labels["exp_from_target"]`` ``[n_exp, 52]``,
names in ``labels["exp_target_names"]``); :class:`Blendshapes` turns expression coefficients back
into ARKit weights.

The way back is a bounded least-squares fit, not a projection: the weights ``w`` in ``[0, 1]^52``
whose face is closest to the expression's face, vertex for vertex,

    ``min_w ||E (M w - b)||^2 + ridge ||w||^2  subject to  0 <= w <= 1``,

with ``E`` the ``[3V, n_exp]`` expression basis, ``M`` the weight-to-coefficient map and ``b`` the
coefficients. ``E``'s columns are orthogonal (a PCA), so ``||E x||^2 = ||diag(s) x||^2`` with ``s``
the column norms and the problem is a 52-variable one, solved exactly by SciPy's bounded-variable
least squares (:func:`scipy.optimize.lsq_linear`, ``method="bvls"``). The small ridge term picks
one solution where shapes barely differ on the face mesh: ``tongueOut`` moves only the tongue,
which the face mesh does not have (its weight is always 0), and the ``eyeLook*`` units move only
the eyelids a little (the eyeballs are not part of the mesh), so gaze is barely observable.
"""

from __future__ import annotations

from typing import Dict, Sequence

import numpy as np
import torch
from scipy.optimize import lsq_linear

__all__ = ["ARKIT_NAMES", "LIVE_LINK_FACE_NAMES", "MAKEHUMAN_TO_ARKIT", "DEFAULT_RIDGE", "Blendshapes",
           "NoBlendshapesError", "has_blendshapes"]

#: The 52 ARKit blendshapes in the order of Apple's ``ARFaceAnchor.BlendShapeLocation``
#: documentation (left eye, right eye, mouth and jaw, eyebrows, cheeks, nose, tongue).
ARKIT_NAMES = (
    "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft", "eyeSquintLeft",
    "eyeWideLeft",
    "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight", "eyeLookOutRight", "eyeLookUpRight", "eyeSquintRight",
    "eyeWideRight",
    "jawForward", "jawLeft", "jawRight", "jawOpen", "mouthClose", "mouthFunnel", "mouthPucker", "mouthLeft",
    "mouthRight", "mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft", "mouthFrownRight", "mouthDimpleLeft",
    "mouthDimpleRight", "mouthStretchLeft", "mouthStretchRight", "mouthRollLower", "mouthRollUpper",
    "mouthShrugLower", "mouthShrugUpper", "mouthPressLeft", "mouthPressRight", "mouthLowerDownLeft",
    "mouthLowerDownRight", "mouthUpperUpLeft", "mouthUpperUpRight",
    "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight",
    "noseSneerLeft", "noseSneerRight",
    "tongueOut",
)

#: The blendshape columns of Epic's Live Link Face CSV, in its order (capitalised ARKit names; the
#: jaw and mouth pairs come right before left there).
LIVE_LINK_FACE_NAMES = tuple(n[0].upper() + n[1:] for n in (
    ARKIT_NAMES[:14] + ("jawForward", "jawRight", "jawLeft", "jawOpen", "mouthClose", "mouthFunnel", "mouthPucker",
                        "mouthRight", "mouthLeft") + ARKIT_NAMES[23:]))

#: MakeHuman ``faceunits01`` target name -> ARKit name. MakeHuman ships the ARKit units under
#: ARKit's names and sides (checked by the tests: ``eyeBlinkLeft`` moves the face's own left lid,
#: model +x), so the map is one to one and name for name.
MAKEHUMAN_TO_ARKIT = {name: name for name in ARKIT_NAMES}

#: Ridge weight of the bounded fit, relative to the median squared size of one blendshape on the
#: mesh (see :class:`Blendshapes`). Small, so the weights describe the reconstructed expression
#: (from exact coefficients the weights come back within 0.004 on average) and a glTF driven by
#: them looks like the mesh; larger values pull toward a neutral face. On 356 synthetic training
#: faces (seed 7) from the shipped network's expression: mean absolute error 0.056 over the 52
#: weights and 0.42 on the active ones at 0.01, 0.047 and 0.49 at 1.0.
DEFAULT_RIDGE = 0.01


class NoBlendshapesError(ValueError):
    """The face model has no blendshape map (e.g. BFM: its expressions are PCA coefficients)."""


def has_blendshapes(face_model) -> bool:
    """Whether ``face_model`` carries the 52 ARKit blendshapes (``labels["exp_from_target"]`` and
    ``labels["exp_target_names"]`` naming them)."""
    labels = getattr(face_model, "labels", {}) or {}
    names, from_target = labels.get("exp_target_names"), labels.get("exp_from_target")
    return (isinstance(names, list) and isinstance(from_target, torch.Tensor) and from_target.dim() == 2
            and from_target.shape == (face_model.n_exp, len(names))
            and set(MAKEHUMAN_TO_ARKIT) <= set(names))


class Blendshapes:
    """ARKit blendshape weights of a face model's expressions, and back.

    Args:
        face_model: a :class:`~pyfaid.facemodel.MorphableModel` built from the ARKit units (the
            default model).
        ridge: weight of ``||w||^2`` in the fit, relative to the median squared size of one
            blendshape on the mesh (``median_j ||E M e_j||^2``), so the value does not depend on
            the model's scale or resolution. 0 gives the plain bounded fit.

    Attributes:
        names: the 52 ARKit names (:data:`ARKIT_NAMES`).
        to_coeffs: ``[n_exp, 52]`` float64 tensor: weights -> expression coefficients (exact).

    Raises:
        NoBlendshapesError: the model has no blendshape map.
    """

    def __init__(self, face_model, ridge: float = DEFAULT_RIDGE):
        if not has_blendshapes(face_model):
            name = getattr(face_model, "meta", {}).get("name", type(face_model).__name__)
            raise NoBlendshapesError(
                f"face model {name!r} has no ARKit blendshapes: its expressions are {face_model.n_exp} PCA "
                "coefficients with no map to named shapes. Blendshape weights need a model built from the 52 "
                "ARKit units, such as the default model (pyfaid.facemodel.load('default')).")
        if not ridge >= 0:
            raise ValueError(f"ridge must be >= 0, got {ridge!r}")
        labels = face_model.labels
        order = [labels["exp_target_names"].index(n) for n in MAKEHUMAN_TO_ARKIT]
        self.names = ARKIT_NAMES
        self.to_coeffs = labels["exp_from_target"].detach().double().cpu()[:, order]  # [n_exp, 52]
        scale = face_model.exp_base.detach().double().cpu().norm(dim=0).numpy()  # [n_exp] column norms of E
        self._exp_base = face_model.exp_base
        a = scale[:, None] * self.to_coeffs.numpy()  # [n_exp, 52]: ||a w|| = ||E M w||
        energy = (a ** 2).sum(0)  # [52] squared size of each shape on the mesh
        unit = float(np.median(energy[energy > 0])) if (energy > 0).any() else 1.0
        self._scale = scale
        self._a = np.concatenate([a, np.sqrt(float(ridge) * unit) * np.eye(a.shape[1])])  # [n_exp + 52, 52]
        self.ridge = float(ridge)

    def __len__(self) -> int:
        return len(self.names)

    def weights(self, exp_coeffs) -> np.ndarray:
        """The bounded fit: ARKit weights in [0, 1] of expression coefficients.

        Args:
            exp_coeffs: ``[n_exp]`` or ``[B, n_exp]`` (tensor or array).

        Returns:
            ``[52]`` or ``[B, 52]`` float64 array in :attr:`names` order.
        """
        b = np.asarray(torch.as_tensor(exp_coeffs).detach().cpu().double())
        single = b.ndim == 1
        b = b.reshape(-1, b.shape[-1])
        n_exp = self.to_coeffs.shape[0]
        if b.shape[1] != n_exp:
            raise ValueError(f"exp_coeffs must be [B, {n_exp}] (the model's n_exp), got {tuple(b.shape)}")
        if not np.isfinite(b).all():
            raise ValueError("exp_coeffs contain non-finite values")
        out = np.empty((b.shape[0], len(self.names)))
        zeros = np.zeros(len(self.names))
        for i, row in enumerate(b):
            y = np.concatenate([self._scale * row, zeros])
            out[i] = lsq_linear(self._a, y, bounds=(0.0, 1.0), method="bvls").x
        out = np.clip(out, 0.0, 1.0)  # bvls keeps the bounds; this only removes rounding below 0 / above 1
        return out[0] if single else out

    def as_dict(self, weights) -> Dict[str, float]:
        """``{name: weight}`` of one face's ``[52]`` weights."""
        w = np.asarray(weights, np.float64).reshape(-1)
        if w.shape[0] != len(self.names):
            raise ValueError(f"expected {len(self.names)} weights, got {w.shape[0]}")
        return {n: float(x) for n, x in zip(self.names, w)}

    def coeffs(self, weights) -> torch.Tensor:
        """Expression coefficients of ARKit weights (exact, linear).

        Args:
            weights: ``[52]`` or ``[B, 52]``, in :attr:`names` order.

        Returns:
            ``[n_exp]`` or ``[B, n_exp]`` float32 tensor.
        """
        w = torch.as_tensor(np.asarray(weights, np.float64))
        if w.shape[-1] != len(self.names):
            raise ValueError(f"weights must be [..., {len(self.names)}], got {tuple(w.shape)}")
        return (w @ self.to_coeffs.T).float()

    def deltas(self, names: Sequence[str] | None = None) -> torch.Tensor:
        """Vertex offsets of each blendshape at weight 1 (model space, decimetres).

        Args:
            names: a subset of :attr:`names` (default: all 52, in order).

        Returns:
            ``[K, V, 3]`` float32 tensor (on the model's device).
        """
        idx = list(range(len(self.names))) if names is None else [self.names.index(n) for n in names]
        m = self.to_coeffs[:, idx].to(self._exp_base)  # [n_exp, K]
        return (self._exp_base @ m).T.reshape(len(idx), -1, 3)
