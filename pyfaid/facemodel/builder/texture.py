"""Hand-designed albedo model for the default face (MakeHuman ships no albedo statistics).

:func:`design_albedo` turns smooth region weights (lips, brows, cheeks, ...; each ``[V]`` in
[0, 1]) into a mean albedo and an albedo basis. Every basis direction is a designed colour field
with a per-vertex amplitude that is about one standard deviation of that effect in a population
(e.g. the melanin direction moves the mean skin red channel by ~0.09, so +-2 sigma spans fair to
dark skin). The directions are orthonormalised in their listed order (QR, so the leading ones keep
their meaning) and each column keeps the norm of its Gram-Schmidt residual (the part of the designed
field that earlier directions do not explain), so a coefficient of 1 never exceeds the designed
amplitude and coefficients drawn from N(0, 1) give plausible, varied skin.
"""

from __future__ import annotations

import numpy as np

__all__ = ["design_albedo", "MEAN_SKIN", "BROW_COLOUR"]

#: Mean skin albedo (linear RGB, roughly BFM's mean skin tone / 255).
MEAN_SKIN = np.array([0.68, 0.50, 0.42])
_LIPS = np.array([0.62, 0.33, 0.32])
#: Mean brow albedo of the designed mean texture (linear RGB).
BROW_COLOUR = np.array([0.30, 0.22, 0.17])
_SCLERA = np.array([0.86, 0.83, 0.80])
_IRIS = np.array([0.30, 0.20, 0.13])
_PUPIL = np.array([0.05, 0.04, 0.04])
_MOUTH = np.array([0.28, 0.12, 0.11])


def _eye_colours(verts, eye):
    """Sclera / iris / pupil colours for the eye-cavity vertices, by distance to each eye centre."""
    col = np.tile(_SCLERA, (len(verts), 1))
    iris_w = np.zeros(len(verts))
    sel = eye > 0.5
    for side in (-1, 1):
        m = sel & (np.sign(verts[:, 0]) == side)
        if not m.any():
            continue
        c = verts[m].mean(0)
        r = np.hypot(verts[:, 0] - c[0], (verts[:, 1] - c[1]) * 1.1)
        w_iris = np.clip((0.075 - r) / 0.012, 0, 1) * m
        w_pupil = np.clip((0.03 - r) / 0.008, 0, 1) * m
        col = col * (1 - w_iris[:, None]) + _IRIS * w_iris[:, None]
        col = col * (1 - w_pupil[:, None]) + _PUPIL * w_pupil[:, None]
        iris_w = np.maximum(iris_w, w_iris)
    return col, iris_w


def _orthogonalised(fields, size: int, n: int):
    """Gram-Schmidt of ``(name, field)`` pairs in the given order: ``([size, n] basis, names)``.

    A direction that earlier ones already explain (residual below 1e-3 of its norm) is skipped;
    each kept column keeps the norm of its residual, so the leading axes keep their meaning.
    """
    Q = np.zeros((size, n), order="F")  # orthonormal columns found so far
    scale = np.zeros(n)
    kept = []
    for name, field in fields:
        v = np.asarray(field, np.float64).reshape(-1)
        n0 = np.linalg.norm(v)
        if n0 == 0:
            continue
        k = len(kept)
        for _ in range(2):  # classical Gram-Schmidt, repeated once for accuracy
            v = v - Q[:, :k] @ (Q[:, :k].T @ v)
        nr = np.linalg.norm(v)
        if nr < 1e-3 * n0:
            continue
        Q[:, k] = v / nr
        scale[k] = nr
        kept.append(name)
        if len(kept) == n:
            break
    if len(kept) < n:
        raise RuntimeError(f"only {len(kept)} independent albedo directions, {n} requested")
    return Q * scale[None, :], kept


def design_albedo(verts: np.ndarray, regions: dict, n_tex: int = 80):
    """Mean albedo and albedo basis from region weights.

    Args:
        verts: ``[V, 3]`` mean shape (model space, decimetres).
        regions: dict of ``[V]`` weights in [0, 1]: ``lips brows cheeks nose forehead periorbital
            beard eye mouth``.
        n_tex: number of basis vectors (the designed semantic directions come first; the rest are
            low spatial harmonics).

    Returns:
        (mean_tex ``[V, 3]``, tex_base ``[3V, n_tex]``, names ``list[str]``).
    """
    V = len(verts)
    r = regions
    eye, mouth = r["eye"][:, None], r["mouth"][:, None]
    eye_col, iris = _eye_colours(verts, r["eye"])
    skin = np.tile(MEAN_SKIN, (V, 1))
    skin = skin * (1 - 0.06 * r["periorbital"][:, None])  # slightly darker around the eyes
    skin = skin + np.array([0.025, -0.01, -0.01]) * r["cheeks"][:, None]
    lw = (0.85 * r["lips"])[:, None]
    skin = skin * (1 - lw) + _LIPS * lw
    bw = (0.75 * r["brows"])[:, None]
    skin = skin * (1 - bw) + BROW_COLOUR * bw
    mean = skin * (1 - eye) + eye_col * eye
    mean = mean * (1 - mouth) + _MOUTH * mouth

    not_eye = (1 - eye) * (1 - 0.7 * mouth)  # skin-effects fade in the eyes / mouth slit
    ones = np.ones((V, 1))
    x = verts[:, 0] / max(np.abs(verts[:, 0]).max(), 1e-9)
    y = verts[:, 1] / max(np.abs(verts[:, 1]).max(), 1e-9)

    def designed():
        """Yields (name, [V, 3] field): the semantic directions, then spatial harmonics."""
        yield "melanin", -skin * np.array([0.15, 0.17, 0.2]) * not_eye  # darker and browner
        yield "hemoglobin", np.array([0.025, -0.012, -0.008]) * ones * not_eye
        yield "yellowness", np.array([0.008, 0.006, -0.022]) * ones * not_eye
        yield "lip_colour", np.array([0.06, -0.03, -0.01]) * r["lips"][:, None]
        yield "brow_darkness", -np.array([0.12, 0.1, 0.08]) * r["brows"][:, None]
        yield "periorbital_darkness", -np.array([0.05, 0.05, 0.035]) * r["periorbital"][:, None] * (1 - eye)
        yield "cheek_blush", np.array([0.035, -0.015, -0.01]) * r["cheeks"][:, None]
        yield "tzone_shine", np.array([0.035, 0.035, 0.035]) * np.maximum(r["nose"], r["forehead"])[:, None] * not_eye
        yield "beard_shadow", -np.array([0.08, 0.06, 0.04]) * r["beard"][:, None] * (1 - r["lips"][:, None])
        yield "iris_colour", np.array([-0.1, -0.06, -0.02]) * iris[:, None]
        yield "sclera_tint", np.array([0.0, -0.03, -0.04]) * (eye[:, 0] * (1 - iris))[:, None]
        # low spatial harmonics, luminance and redness, amplitude falling with frequency
        lum = np.array([0.012, 0.012, 0.012])
        red = np.array([0.008, -0.004, -0.003])
        for order in range(1, 16):
            for fx in range(order + 1):
                fy = order - fx
                for px in ((np.cos, "c"), (np.sin, "s")) if fx else ((np.cos, "c"),):
                    for py in ((np.cos, "c"), (np.sin, "s")) if fy else ((np.cos, "c"),):
                        h = px[0](np.pi * fx * x / 2) * py[0](np.pi * fy * y / 2)
                        h = h[:, None] * not_eye / (1.0 + 0.5 * order)
                        yield f"harmonic_lum_{px[1]}{fx}_{py[1]}{fy}", h * lum
                        yield f"harmonic_red_{px[1]}{fx}_{py[1]}{fy}", h * red

    basis, kept = _orthogonalised(designed(), 3 * V, n_tex)
    return mean, basis, kept
