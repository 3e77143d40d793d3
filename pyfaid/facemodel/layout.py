"""The coefficient layout: which slots of a face's coefficient vector mean what.

One flat vector per face, in Deep3DFaceRecon's order: identity, expression, albedo (sizes from the
face model), then rotation angles (3, radians: pitch, yaw, roll), spherical-harmonic lighting
(27: 9 per colour channel) and translation (3). For BFM (80 / 64 / 80 components) this is
Deep3DFaceRecon's 257-number vector; the default MakeHuman-derived model (80 / 51 / 80) has 244.
Every part of pyfaid that reads or writes coefficients goes through a :class:`CoeffLayout`
(``face_model.layout``), so no slot number is written anywhere else.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["CoeffLayout", "POSE_LIGHT_PARTS", "PART_ORDER"]

#: Parts of the vector, in order.
PART_ORDER = ("id", "exp", "tex", "angle", "gamma", "trans")
#: The parts a camera/scene sets (not the face itself).
POSE_LIGHT_PARTS = ("angle", "gamma", "trans")
_FIXED = {"angle": 3, "gamma": 27, "trans": 3}


@dataclass(frozen=True)
class CoeffLayout:
    """Sizes and slices of a coefficient vector.

    Args:
        n_id: identity components. n_exp: expression components. n_tex: albedo components.

    Example:
        >>> lay = CoeffLayout(80, 64, 80)
        >>> lay.size, lay.slice("gamma")
        (257, slice(227, 254, None))
    """

    n_id: int
    n_exp: int
    n_tex: int

    def __post_init__(self):
        for name in ("n_id", "n_exp", "n_tex"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ValueError(f"CoeffLayout: `{name}` must be an int >= 0, got {v!r}")

    # ------------------------------------------------------------------ sizes and slices
    def sizes(self) -> dict:
        """Part name -> number of slots, in vector order."""
        return {"id": self.n_id, "exp": self.n_exp, "tex": self.n_tex, **_FIXED}

    @property
    def size(self) -> int:
        """Length of the vector."""
        return sum(self.sizes().values())

    def slice(self, name: str) -> slice:
        """The slots of one part (``"id"``, ``"exp"``, ``"tex"``, ``"angle"``, ``"gamma"``, ``"trans"``)."""
        start = 0
        for part, n in self.sizes().items():
            if part == name:
                return slice(start, start + n)
            start += n
        raise KeyError(f"CoeffLayout: no part {name!r}; parts are {', '.join(PART_ORDER)}")

    def slices(self) -> dict:
        """Part name -> slice, in vector order."""
        return {name: self.slice(name) for name in PART_ORDER}

    # ------------------------------------------------------------------ vectors
    def check(self, coeffs: torch.Tensor, name: str = "coeffs") -> torch.Tensor:
        """Raise a clear error unless ``coeffs`` is a ``[B, size]`` tensor; returns it."""
        if not isinstance(coeffs, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(coeffs).__name__}")
        if coeffs.dim() != 2 or coeffs.shape[1] != self.size:
            raise ValueError(f"{name} must be [B, {self.size}] ({self.describe()}), got {tuple(coeffs.shape)}")
        return coeffs

    def split(self, coeffs: torch.Tensor) -> dict:
        """``[B, size]`` -> dict of views ``id [B, n_id]``, ``exp``, ``tex``, ``angle [B, 3]``,
        ``gamma [B, 27]``, ``trans [B, 3]``."""
        self.check(coeffs)
        return {name: coeffs[:, s] for name, s in self.slices().items()}

    def join(self, parts: dict) -> torch.Tensor:
        """The inverse of :meth:`split`: a ``[B, size]`` tensor from a dict holding every part."""
        missing = [k for k in PART_ORDER if k not in parts]
        if missing:
            raise KeyError(f"CoeffLayout.join: missing part(s) {', '.join(missing)}")
        for name, n in self.sizes().items():
            if parts[name].dim() != 2 or parts[name].shape[1] != n:
                raise ValueError(f"CoeffLayout.join: part {name!r} must be [B, {n}], got {tuple(parts[name].shape)}")
        return torch.cat([parts[k] for k in PART_ORDER], dim=1)

    def zeros(self, batch: int = 1, **kw) -> torch.Tensor:
        """``[batch, size]`` zeros: the mean face, frontal, centred, under the ambient light."""
        return torch.zeros(batch, self.size, **kw)

    def with_pose_light(self, coeffs: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        """``coeffs`` with the angles, lighting and translation of ``source`` (both ``[B, size]``)."""
        face = coeffs[:, : self.slice("angle").start]
        return torch.cat([face, source[:, self.slice("angle").start:]], dim=1)

    def describe(self) -> str:
        return ", ".join(f"{k} {s.start}:{s.stop}" for k, s in self.slices().items())
