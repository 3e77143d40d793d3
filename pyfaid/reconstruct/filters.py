"""Temporal filtering of per-frame outputs: the One-Euro filter.

The One-Euro filter (Casiez, Roussel and Vogel, CHI 2012) is a low-pass filter whose cutoff
frequency rises with the signal's speed: still signals are smoothed hard (jitter goes), fast ones
lightly (little lag). Per sample, with ``dt`` the time since the previous one::

    alpha(fc) = 1 / (1 + 1 / (2 pi fc dt))
    dx  = lowpass((x - x_prev) / dt, alpha(d_cutoff))       # the filtered speed
    fc  = min_cutoff + beta * |dx|
    x^  = lowpass(x, alpha(fc))

``min_cutoff`` (Hz) sets the smoothing of a still signal, ``beta`` (per unit of speed) how fast the
cutoff opens when it moves. Signals are filtered element-wise (arrays of any shape), so ``beta``
depends on their units: pyfaid filters quantities brought to comparable units first (see
:mod:`pyfaid.reconstruct.video`).

A filter can take one speed for the whole array (``speed_of``) instead of one per element. For
landmarks that is :func:`similarity_speed`, the speed of the similarity motion (shift, turn, zoom)
that best explains the points' velocities: the points' noise averages out over the 68 points, so a
still face is smoothed hard whatever its noise, and a moving one follows at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

__all__ = ["OneEuro", "OneEuroFilter", "similarity_speed"]


@dataclass(frozen=True)
class OneEuro:
    """Parameters of a One-Euro filter.

    Attributes:
        min_cutoff: cutoff frequency (Hz) of a still signal; lower smooths more.
        beta: cutoff increase per unit of speed (units per second); higher lags less when moving.
        d_cutoff: cutoff frequency (Hz) of the speed estimate.
    """

    min_cutoff: float = 1.0
    beta: float = 0.0
    d_cutoff: float = 1.0

    def __post_init__(self):
        for name in ("min_cutoff", "d_cutoff"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"OneEuro: {name} must be a positive number of Hz, got {v!r}")
        if not (isinstance(self.beta, (int, float)) and math.isfinite(self.beta) and self.beta >= 0):
            raise ValueError(f"OneEuro: beta must be >= 0, got {self.beta!r}")


def _alpha(cutoff, dt: float):
    return 1.0 / (1.0 + 1.0 / (2.0 * np.pi * cutoff * dt))


def similarity_speed(velocity: np.ndarray, points: np.ndarray) -> float:
    """The RMS speed over the points of the similarity motion that best fits their velocities.

    Args:
        velocity: ``[N, 2]`` per-point velocities. points: ``[N, 2]`` their positions.

    Returns:
        speed in the velocities' units (least squares fit of ``v = t + [[a, -b], [b, a]] (p - c)``).
    """
    r = points - points.mean(0)
    v = velocity - velocity.mean(0)
    denom = max(float((r ** 2).sum()), 1e-12)
    a = float((r * v).sum()) / denom  # zoom rate
    b = float((r[:, 0] * v[:, 1] - r[:, 1] * v[:, 0]).sum()) / denom  # turn rate
    return float(np.sqrt((velocity.mean(0) ** 2).sum() + (a * a + b * b) * denom / len(points)))


class OneEuroFilter:
    """A One-Euro filter over arrays (every element filtered on its own).

    Args:
        params: :class:`OneEuro` parameters.
        speed_of: optional ``(velocity, sample) -> speed``: one speed for the whole sample from
            its filtered velocity (e.g. :func:`similarity_speed` for ``[N, 2]`` points); by
            default each element uses its own.

    Example:
        >>> f = OneEuroFilter(OneEuro(min_cutoff=1.0, beta=0.5))
        >>> smooth = [f(x, t) for t, x in zip(times, samples)]
    """

    def __init__(self, params: OneEuro = OneEuro(), speed_of: Optional[Callable] = None):
        self.params = params
        self.speed_of = speed_of
        self._x: Optional[np.ndarray] = None
        self._dx: Optional[np.ndarray] = None
        self._t: Optional[float] = None

    def reset(self) -> None:
        """Forget the past: the next sample passes through unchanged (e.g. after a lost track)."""
        self._x = self._dx = self._t = None

    def __call__(self, x, t: float) -> np.ndarray:
        """Filter one sample.

        Args:
            x: the sample (array of a fixed shape).
            t: its time in seconds (increasing).

        Returns:
            the filtered sample (float64 array of the same shape).
        """
        x = np.asarray(x, np.float64)
        if self._x is None:
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), float(t)
            return x.copy()
        if x.shape != self._x.shape:
            raise ValueError(f"OneEuroFilter: sample shape {x.shape} differs from the previous {self._x.shape}")
        dt = float(t) - self._t
        if not dt > 0:
            raise ValueError(f"OneEuroFilter: times must increase (got {t} after {self._t})")
        p = self.params
        a_d = _alpha(p.d_cutoff, dt)
        self._dx = a_d * (x - self._x) / dt + (1 - a_d) * self._dx
        speed = np.abs(self._dx) if self.speed_of is None else self.speed_of(self._dx, x)
        a = _alpha(p.min_cutoff + p.beta * speed, dt)
        self._x = a * x + (1 - a) * self._x
        self._t = float(t)
        return self._x.copy()
