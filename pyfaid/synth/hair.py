"""Procedural hair for synthetic faces: a hair cap on the context mesh's scalp, strand texture,
hairline strands, fringes and long hair.

A face's hair is drawn in two parts:

* a *cap* in 3-D: the context mesh's scalp vertices above a random hairline (receding, straight
  or low; above or over the ears) are pushed out along their normals by the hair's volume (tapering
  to nothing at the hairline) and coloured with the hair colour, so the cap follows the head's
  pose and its silhouette around the head. Per pixel, a strand texture in hair-flow coordinates
  (azimuth and elevation about the head centre, strands along the meridians from the crown, with
  waves) and a sheen band make it read as hair, not paint;
* *strands* in 2-D, drawn on the picture from projected 3-D points: short flyaway strands along
  the hairline, a fringe (bangs) falling from the front hairline over the forehead, and for long
  hair two curtains falling from the temples past the jaw, framing the face.

Hair that falls over face pixels hides them: those pixels are occluders in the item's masks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from pyfaid.synth.skin import HAIR_COLOURS

__all__ = ["HairStyle", "sample_hair", "hair_weights", "HairTexture", "HAIR_LABELS"]

#: Scalar hair labels (floats in [0, 1]).
HAIR_LABELS = ("hair_length", "hair_lightness", "hair_volume", "fringe", "bald")

_LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)


def _smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


@dataclass(frozen=True)
class HairStyle:
    """One face's hair: ``colour [3]``, ``length`` (0 bald/buzz .. 1 long), ``volume`` (cap
    thickness, model units), ``hairline`` (elevation offsets by region, radians), ``fringe`` (0 none
    .. 1 full bangs), ``wave``, ``bald`` (0/1), ``cover`` (cap opacity), ``parting`` (offset of the
    parting), ``sheen`` (strength of the highlight band)."""

    colour: np.ndarray
    length: float
    volume: float
    hairline: dict
    fringe: float
    wave: float
    bald: float
    cover: float
    parting: float
    sheen: float


def sample_hair(rng: np.random.Generator, skin_lightness: float, male: float, age: float) -> HairStyle:
    """Draw one hair style.

    Args:
        rng: the item's generator.
        skin_lightness: in [0, 1] (dark skin: mostly black or dark brown hair).
        male: in [0, 1] (short hair, receding hairlines and baldness more likely).
        age: in [0, 1] (grey and white hair, receding hairlines more likely).

    Returns:
        HairStyle
    """
    # colour: dark hair dominates, light hair mostly with fair skin, grey with age
    p = np.array([3.0, 3.0, 2.5, 1.6, 0.5, 0.25, 1.0, 0.8, 0.2, 0.0, 0.0])
    p[4:9] *= 0.2 + 1.2 * skin_lightness
    p[9] = 3.0 * max(age - 0.45, 0.0) ** 1.5 * 6
    p[10] = 2.0 * max(age - 0.6, 0.0) ** 1.5 * 6
    k = int(rng.choice(len(p), p=p / p.sum()))
    colour = HAIR_COLOURS[k] * np.exp(rng.normal(0, 0.12)) + rng.normal(0, 0.01, 3)
    if rng.random() < 0.04:  # dyed
        colour = rng.uniform(0.05, 0.7, 3) * np.array([1.0, 0.6, 0.8])
    colour = np.clip(colour, 0.015, 0.95).astype(np.float32)
    bald = rng.random() < 0.12 * male * (0.3 + age)
    long_p = 0.08 + 0.6 * (1 - male)
    u = rng.random()
    if bald:
        length = 0.0
    elif u < long_p:
        length = rng.uniform(0.65, 1.0)
    elif u < long_p + 0.3:
        length = rng.uniform(0.3, 0.65)
    else:
        length = rng.uniform(0.05, 0.3)
    recede = max(0.0, rng.normal(0.05, 0.1) + 0.25 * male * age)
    hairline = {
        "front": -0.02 + recede + rng.normal(0, 0.04),
        "temple": recede * (1.3 if male > 0.5 else 0.8) + rng.normal(0.02, 0.04),  # M-shaped recession
        "ear": rng.uniform(0.0, 0.12) if length < 0.5 else rng.uniform(-0.7, -0.2),  # long hair covers the ears
        "nape": rng.uniform(-0.9, -0.6),
    }
    volume = (0.015 + 0.3 * length * rng.uniform(0.4, 1.0)) if not bald else 0.0
    fringe = 0.0
    if 0.25 < length and rng.random() < 0.3 + 0.2 * (1 - male):
        fringe = float(rng.uniform(0.3, 1.0))
    return HairStyle(
        colour=colour, length=float(length), volume=float(volume), hairline=hairline, fringe=fringe,
        wave=float(rng.beta(1.2, 3.0)), bald=float(bald),
        cover=float(rng.uniform(0.45, 0.85) if length < 0.08 else 1.0),
        parting=float(rng.normal(0, 0.35)), sheen=float(rng.uniform(0.05, 0.35)),
    )


def _hairline_elevation(azimuth: np.ndarray, hl: dict) -> np.ndarray:
    """Elevation (radians) of the hairline at each azimuth about the head centre."""
    a = np.abs(azimuth)
    knots = np.array([0.0, 0.55, 1.25, 1.6, 2.1, math.pi])
    # front of the head: the face's top edge is at an elevation of about 0.72 rad
    values = np.array([0.72 + hl["front"], 0.68 + hl["temple"], 0.55 + 0.5 * hl["temple"] + 0.4 * hl["ear"],
                       0.5 + hl["ear"], 0.35 + 0.5 * hl["ear"], hl["nape"]])
    return np.interp(a, knots, values)


def hair_weights(azimuth: np.ndarray, elevation: np.ndarray, style: HairStyle, ear: np.ndarray) -> np.ndarray:
    """Per context vertex: how much hair covers it, ``[N]`` in [0, 1].

    Args:
        azimuth, elevation: ``[N]`` hair-flow coordinates of the context's vertices (radians,
            about the head centre; azimuth 0 in front, elevation 0 at the centre's height).
        style: the hair style.
        ear: ``[N]`` ear weights (ears stay bare unless long hair covers them).
    """
    az, el = azimuth, elevation
    line = _hairline_elevation(az, style.hairline)
    w = _smoothstep((el - line) / 0.06 + 0.5)
    if style.bald:
        # a horseshoe on the sides and back, or nothing
        w = w * _smoothstep((np.abs(az) - 1.2) / 0.3) * _smoothstep((0.45 - el) / 0.1)
    if style.length < 0.5:
        w = w * (1 - ear)
    return (w * style.cover).astype(np.float32)


class HairTexture:
    """Per-pixel strand texture: a fixed bank sampled in hair-flow coordinates at random offsets."""

    def __init__(self, seed: int = 7) -> None:
        rng = np.random.default_rng(seed)
        n_el, n_az = 96, 2048
        # strands: fast variation around the head (azimuth), slow along the strands (elevation)
        fine = cv2.resize(rng.standard_normal((n_el // 8, n_az)).astype(np.float32), (n_az, n_el),
                          interpolation=cv2.INTER_CUBIC)
        mid = cv2.resize(rng.standard_normal((n_el // 16, n_az // 6)).astype(np.float32), (n_az, n_el),
                         interpolation=cv2.INTER_CUBIC)
        clumps = cv2.resize(rng.standard_normal((4, n_az // 40)).astype(np.float32), (n_az, n_el),
                            interpolation=cv2.INTER_CUBIC)
        bank = 0.55 * fine / fine.std() + 0.35 * mid / mid.std() + 0.5 * clumps / clumps.std()
        self.bank = np.ascontiguousarray(np.tile(bank, (1, 2)), np.float32)  # wraps around in azimuth
        self.n_el, self.n_az = n_el, n_az

    def shade(self, direction: np.ndarray, rng: np.random.Generator, style: HairStyle,
              facing: np.ndarray) -> np.ndarray:
        """Brightness factor per pixel from interpolated directions.

        Args:
            direction: ``[M, 3]`` per-pixel directions from the head centre (interpolated, not unit).
            rng: generator for the texture offset.
            style: the hair style (wave, sheen).
            facing: ``[M]`` in [0, 1], how much each pixel faces the light (for the sheen).

        Returns:
            ``[M]`` float32 factor (around 1; > 1 in the sheen band).
        """
        d = direction / np.maximum(np.linalg.norm(direction, axis=1, keepdims=True), 1e-6)
        az = np.arctan2(d[:, 0], d[:, 2])
        el = np.arcsin(np.clip(d[:, 1], -1, 1))
        freq = rng.uniform(0.6, 1.4)
        waves = style.wave * 0.015 * np.sin(el * rng.uniform(6, 14) + rng.uniform(0, 6.3))
        col = ((az + waves + math.pi) / (2 * math.pi) * self.n_az * freq + rng.uniform(0, self.n_az)) % self.n_az
        row = np.clip((math.pi / 2 - el) / math.pi * self.n_el * rng.uniform(0.8, 1.2), 0, self.n_el - 1)
        m = len(col)
        cols = 256  # OpenCV limits map sides to 32767
        pad = -m % cols
        mx = np.pad(col.astype(np.float32), (0, pad)).reshape(-1, cols)
        my = np.pad(row.astype(np.float32), (0, pad)).reshape(-1, cols)
        n = cv2.remap(self.bank, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT).reshape(-1)[:m]
        contrast = rng.uniform(0.18, 0.35)
        band = np.exp(-(((el - rng.uniform(0.5, 1.2)) / rng.uniform(0.12, 0.3)) ** 2))
        sheen = style.sheen * band * facing * np.clip(0.6 + 0.5 * n, 0, 2)
        return (np.clip(1.0 + contrast * n, 0.35, 1.8) + sheen).astype(np.float32)

    def sample(self, across: np.ndarray, along: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Strand noise at arbitrary strand coordinates (``across`` strands, ``along`` them), unit std."""
        shape = across.shape
        col = ((across.reshape(-1) + rng.uniform(0, self.n_az)) % self.n_az).astype(np.float32)
        row = np.clip(along.reshape(-1), 0, self.n_el - 1).astype(np.float32)
        m = len(col)
        cols = 256
        pad = -m % cols
        mx = np.pad(col, (0, pad)).reshape(-1, cols)
        my = np.pad(row, (0, pad)).reshape(-1, cols)
        return cv2.remap(self.bank, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT).reshape(-1)[:m].reshape(shape)


# ---------------------------------------------------------------------------------- 2-D strands
# 2-D layers are ``(premultiplied colour [h, w, 3], alpha [h, w], box (x, y, w, h))``: drawn only
# inside the bounding box of what they cover.
def _bezier(p0, p1, p2, p3, n=12):
    t = np.linspace(0, 1, n)[None, :, None]
    return ((1 - t) ** 3 * p0[:, None] + 3 * (1 - t) ** 2 * t * p1[:, None] + 3 * (1 - t) * t ** 2 * p2[:, None]
            + t ** 3 * p3[:, None])


def _box(points: np.ndarray, size: int, margin: float = 3.0):
    """Integer bounding box ``(x, y, w, h)`` of points ``[..., 2]`` inside the picture, or None."""
    p = points.reshape(-1, 2)
    p = p[np.isfinite(p).all(1)]
    if len(p) == 0:
        return None
    x0 = int(max(0, np.floor(p[:, 0].min() - margin)))
    y0 = int(max(0, np.floor(p[:, 1].min() - margin)))
    x1 = int(min(size, np.ceil(p[:, 0].max() + margin)))
    y1 = int(min(size, np.ceil(p[:, 1].max() + margin)))
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1 - x0, y1 - y0


def _strands(curves: np.ndarray, colour: np.ndarray, rng: np.random.Generator, box, values=(0.45, 0.7, 0.9),
             spread=(0.7, 1.3)):
    """Thin strands ``curves [n, k, 2]`` (picture pixels) drawn into a box: ``(colour, alpha)``."""
    x0, y0, w, h = box
    layer = np.zeros((h, w, 3), np.float32)
    alpha = np.zeros((h, w), np.float32)
    pts = np.round((curves - [x0, y0]) * 16)
    ok = np.isfinite(pts).all(axis=(1, 2))
    pts = pts[ok].astype(np.int32)
    if len(pts) == 0:
        return layer, alpha
    shades = np.clip(colour[None] * rng.uniform(spread[0], spread[1], (3, 1)), 0, 1)
    for g in range(3):  # three opacity groups, one OpenCV call each
        sel = list(pts[g::3])
        if not sel:
            continue
        col = tuple(float(v) * values[g] for v in shades[g])
        cv2.polylines(layer, sel, False, col, 1, cv2.LINE_AA, 4)
        cv2.polylines(alpha, sel, False, values[g], 1, cv2.LINE_AA, 4)
    return layer, alpha


def hairline_strands(rng: np.random.Generator, points: np.ndarray, flow: np.ndarray, colour: np.ndarray,
                     size: int, n: int):
    """Short flyaway strands from projected hairline points.

    Args:
        rng: generator.
        points: ``[P, 2]`` projected hairline points (pixels).
        flow: ``[P, 2]`` unit directions the strands point to (pixels).
        colour: ``[3]`` hair colour.
        size: picture side.
        n: number of strands.

    Returns:
        a 2-D layer ``(premultiplied colour, alpha, box)``, or None.
    """
    if len(points) == 0 or n <= 0:
        return None
    s = size / 224.0
    k = rng.integers(0, len(points), n)
    p0 = points[k] + rng.normal(0, 1.0 * s, (n, 2))
    d = flow[k] + rng.normal(0, 0.35, (n, 2))
    d /= np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-6)
    length = rng.uniform(2.0, 9.0, n)[:, None] * s
    side = np.stack([-d[:, 1], d[:, 0]], 1) * rng.normal(0, 0.3, (n, 1)) * length
    p3 = p0 + d * length + side
    curves = _bezier(p0, p0 + d * length * 0.4, p3 - d * length * 0.3 + side * 0.5, p3, 6)
    box = _box(curves, size)
    if box is None:
        return None
    layer, alpha = _strands(curves, colour, rng, box, values=(0.35, 0.55, 0.8), spread=(0.7, 1.4))
    return layer, alpha, box


def fringe(rng: np.random.Generator, hairline: np.ndarray, down: np.ndarray, reach: float, style: HairStyle,
           size: int):
    """A fringe (bangs) hanging from the front hairline.

    Args:
        rng: generator.
        hairline: ``[P, 2]`` projected front-hairline points, left to right (pixels).
        down: ``[2]`` the face's down direction in the picture (unit).
        reach: how far the fringe falls at most (pixels: down to about the brows).
        style: the hair style (colour, fringe amount).
        size: picture side.

    Returns:
        a 2-D layer ``(premultiplied colour, alpha, box)``, or None.
    """
    P = len(hairline)
    if P < 2 or style.fringe <= 0 or not np.isfinite(reach) or reach <= 0:
        return None
    s = size / 224.0
    # which part of the hairline the fringe hangs from (full bangs, or swept to one side)
    t = np.linspace(0, 1, P)
    if rng.random() < 0.5:
        lo, hi = 0.0, 1.0
    else:
        lo, hi = sorted(rng.uniform(0, 1, 2))
        hi = max(hi, lo + 0.35)
    top = hairline[(t >= lo) & (t <= hi)]
    if len(top) < 2:
        return None
    sweep = rng.normal(0, 0.5)  # sideways lean of the strands
    side = np.array([-down[1], down[0]])
    dirn = down + sweep * side
    dirn = dirn / np.linalg.norm(dirn)
    tt = np.linspace(0, 1, len(top))
    lengths = reach * style.fringe * (0.55 + 0.45 * np.sin(np.pi * tt) ** 0.5) * rng.uniform(0.8, 1.1)
    jag = 1 + 0.15 * np.sin(tt * rng.uniform(10, 30) + rng.uniform(0, 6))
    tips = top + dirn[None] * (lengths * jag)[:, None]
    poly = np.concatenate([top - down[None] * 2 * s, tips[::-1]])
    # loose strands over the edge
    n = int(30 + 60 * style.fringe)
    k = rng.integers(0, len(top), n)
    L = lengths[k] * rng.uniform(0.7, 1.25, n)
    d = dirn[None] + rng.normal(0, 0.15, (n, 2))
    p0 = top[k]
    p3 = p0 + d * L[:, None]
    curves = _bezier(p0, p0 + d * L[:, None] * 0.3, p3 - d * L[:, None] * 0.3 + rng.normal(0, 2 * s, (n, 2)), p3, 8)
    box = _box(np.concatenate([poly, curves.reshape(-1, 2)]), size)
    if box is None:
        return None
    x0, y0, w, h = box
    alpha = np.zeros((h, w), np.float32)
    cv2.fillPoly(alpha, [np.round((poly - [x0, y0]) * 16).astype(np.int32)], 1.0, cv2.LINE_AA, 4)
    alpha = cv2.GaussianBlur(alpha, (0, 0), 0.6 * s)
    # strand texture across the mass: stripes along the strand direction, lighter toward the tips
    ys, xs = np.mgrid[y0:y0 + h, x0:x0 + w].astype(np.float32)
    across = xs * dirn[1] - ys * dirn[0]
    shade = 1.0 + 0.22 * np.sin(across * rng.uniform(1.2, 2.2) / s + 2.0 * np.sin(across * 0.17 / s)) \
        + 0.1 * np.sin(across * 0.5 / s + 1.3)
    along = xs * dirn[0] + ys * dirn[1]
    a0 = float(np.min(top @ dirn))
    shade = shade * (0.75 + 0.35 * np.clip((along - a0) / max(reach, 1.0), 0, 1))
    layer = (style.colour[None, None] * shade[..., None]) * alpha[..., None]
    sl, sa = _strands(curves, style.colour, rng, box)
    layer = layer * (1 - sa[..., None]) + sl
    alpha = alpha + sa * (1 - alpha)
    return layer.astype(np.float32), np.clip(alpha, 0, 1).astype(np.float32), box


def curtains(rng: np.random.Generator, jaw: np.ndarray, temples: np.ndarray, down: np.ndarray,
             style: HairStyle, size: int, texture: "HairTexture"):
    """Long hair falling from the temples past the jaw on both sides of the face.

    Args:
        rng: generator.
        jaw: ``[17, 2]`` the face outline (300-W jaw points, on the silhouette), pixels.
        temples: ``[2, 2]`` projected hair points above the two ends of the jaw line.
        down: ``[2]`` the face's down direction in the picture.
        style: the hair style.
        size: picture side.
        texture: the strand texture bank.

    Returns:
        a 2-D layer ``(premultiplied colour, alpha, box)``, or None.
    """
    if style.length < 0.6:
        return None
    s = size / 224.0
    face_w = float(np.linalg.norm(jaw[16] - jaw[0]))
    width = face_w * rng.uniform(0.12, 0.28) * (0.6 + style.volume * 2.0)
    fall = face_w * (0.8 + 1.6 * (style.length - 0.6)) * rng.uniform(0.9, 1.2)
    side_dir = (jaw[16] - jaw[0]) / max(face_w, 1e-6)
    polys = []
    for side, idx in ((-1.0, list(range(0, 9))), (1.0, list(range(16, 7, -1)))):
        inner = jaw[idx[:6]] + side * side_dir[None] * rng.uniform(-0.03, 0.04) * face_w  # negative: over the face
        top = temples[0 if side < 0 else 1]
        k = 10
        t = np.linspace(0, 1, k)[:, None]
        # the outer edge bulges out below the temples, then falls, with a few waves
        outer = top + side * side_dir * width * (np.sin(np.pi * np.clip(t * 1.3, 0, 1)) * 0.6 + 0.5 * t) \
            + down * fall * t + side * side_dir * width * 0.12 * np.sin(t * rng.uniform(6, 14) + rng.uniform(0, 6))
        bottom_in = inner[-1] + down * fall * rng.uniform(0.6, 0.9)
        # ragged ends
        ends = np.linspace(0, 1, 7)[:, None]
        tips = bottom_in * (1 - ends) + outer[-1] * ends + down * (rng.uniform(-0.06, 0.06, (7, 1)) * face_w)
        polys.append(np.concatenate([[top], inner, tips, outer[::-1]]))
    box = _box(np.concatenate(polys), size, margin=4.0)
    if box is None:
        return None
    x0, y0, w, h = box
    alpha = np.zeros((h, w), np.float32)
    for poly in polys:
        cv2.fillPoly(alpha, [np.round((poly - [x0, y0]) * 16).astype(np.int32)], 1.0, cv2.LINE_AA, 4)
    alpha = cv2.GaussianBlur(alpha, (0, 0), 0.8 * s)
    # the strand texture, computed at half resolution (strands are a few pixels apart) and upsampled
    hh, hw = max(2, h // 2), max(2, w // 2)
    ys, xs = np.mgrid[0:hh, 0:hw].astype(np.float32)
    xs = xs * (w / hw) + x0
    ys = ys * (h / hh) + y0
    across = (xs * down[1] - ys * down[0]) / s
    along = (xs * down[0] + ys * down[1]) / s
    n = texture.sample(across * rng.uniform(2.0, 3.5) + style.wave * 6 * np.sin(along * 0.08), along * 0.25, rng)
    n = cv2.resize(n.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    shade = np.clip(1.0 + rng.uniform(0.2, 0.32) * n, 0.4, 1.7)
    layer = style.colour[None, None] * shade[..., None] * alpha[..., None]
    return layer.astype(np.float32), alpha.astype(np.float32), box


def silhouette_strands(rng: np.random.Generator, hair: np.ndarray, cover: np.ndarray, colour: np.ndarray, size: int,
                       n: int):
    """Flyaway strands along the hair's outline against what lies behind the head.

    Args:
        rng: generator.
        hair: ``[H, W]`` hair weight of the context render.
        cover: ``[H, W]`` 0/1 context coverage.
        colour: ``[3]`` hair colour.
        size: picture side.
        n: number of strands.

    Returns:
        a 2-D layer ``(premultiplied colour, alpha, box)``, or None.
    """
    solid = ((hair > 0.5) & (cover > 0)).astype(np.uint8)
    if n <= 0 or not solid.any():
        return None
    edge = solid & (cv2.erode(cover.astype(np.uint8), np.ones((3, 3), np.uint8)) == 0)
    ys, xs = np.nonzero(edge)
    if len(xs) < 4:
        return None
    s = size / 224.0
    soft = cv2.GaussianBlur(cover.astype(np.float32), (0, 0), 2.0 * s)
    k = rng.integers(0, len(xs), n)
    p0 = np.stack([xs[k], ys[k]], 1).astype(np.float64) + rng.normal(0, 0.5, (n, 2))
    # outward: down the coverage's gradient (central differences at the chosen points only)
    h, w = soft.shape
    x, y = xs[k], ys[k]
    gx = soft[y, np.minimum(x + 1, w - 1)] - soft[y, np.maximum(x - 1, 0)]
    gy = soft[np.minimum(y + 1, h - 1), x] - soft[np.maximum(y - 1, 0), x]
    d = -np.stack([gx, gy], 1).astype(np.float64)
    d = d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-6)
    d = d + rng.normal(0, 0.5, (n, 2))
    d = d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-6)
    length = rng.uniform(2.0, 10.0, n)[:, None] * s
    bend = np.stack([-d[:, 1], d[:, 0]], 1) * rng.normal(0, 0.4, (n, 1)) * length
    p3 = p0 + d * length + bend
    curves = _bezier(p0 - d * 2 * s, p0 + d * length * 0.3, p3 - d * length * 0.2, p3, 6)
    box = _box(curves, size)
    if box is None:
        return None
    layer, alpha = _strands(curves, colour, rng, box, values=(0.3, 0.5, 0.75), spread=(0.8, 1.3))
    return layer, alpha, box
