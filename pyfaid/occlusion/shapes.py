"""Drawing helpers shared by the occluder kinds of :mod:`pyfaid.occlusion.occluders`.

Every occluder draws its shape on a full-size uint8 mask (cheap), then computes colours only inside
the shape's bounding box. :class:`Frame` says where the face is in the picture (from landmarks, or the
layout of an aligned face); the rest are small geometric and colour helpers (fixed-point coordinates
for OpenCV, boxes, smooth noise, random textures, shading ramps, random filled regions near the face).
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

__all__ = ["Frame", "fixed_point", "SHIFT", "face_anchor", "eye_line", "rotate_points", "pixel_grids", "box_of",
           "box_slices", "box_coords", "smooth_noise", "random_colour", "random_texture", "shade_linear", "alpha_of",
           "random_region"]


# ----------------------------------------------------------------------------------------------
# Small drawing helpers. Every occluder draws its shape on a full-size uint8 mask (cheap), then
# computes colours only inside the shape's bounding box: it returns
# (colour [h, w, 3] float32, alpha [h, w] float32, box (x, y, w, h)), or None when nothing shows.
# ----------------------------------------------------------------------------------------------


def fixed_point(x: float, y: float) -> tuple[int, int]:
    """Float point to OpenCV's fixed-point integer coordinates (4 fractional bits)."""
    return int(round(x * 16)), int(round(y * 16))


SHIFT = 4  # fractional bits used with fixed_point


class Frame:
    """Where the face is in one image: from 68 landmarks when given, else the aligned-face prior.

    Attributes (pixels): ``size``; ``eyes`` the two eye centres [2, 2] (image-left first) or None;
    ``nose`` the nose tip or None; ``face_w`` the face width; ``brow_y`` the brow height or None;
    ``lm`` the 68 landmarks or None.
    """

    def __init__(self, size: int, landmarks: np.ndarray | None = None) -> None:
        self.size = size
        self.eyes = self.nose = self.brow_y = self.lm = None
        self.face_w = 0.6 * size
        if landmarks is not None and np.isfinite(landmarks).all():
            lm = landmarks.astype(np.float64)
            self.lm = lm
            self.eyes = np.stack([lm[36:42].mean(0), lm[42:48].mean(0)])
            self.nose = lm[30]
            self.face_w = float(max(np.ptp(lm[0:17, 0]), np.linalg.norm(lm[16] - lm[0]), 0.2 * size))
            self.brow_y = float(lm[17:27, 1].min())


def face_anchor(rng: np.random.Generator, frame: Frame) -> tuple[float, float]:
    """A point near the face centre: around the nose tip, or the image centre of an aligned face."""
    size = frame.size
    if frame.nose is not None:
        x = frame.nose[0] + rng.normal(0, 0.18) * frame.face_w
        y = frame.nose[1] + rng.normal(0, 0.22) * frame.face_w
    else:
        x = rng.normal(0.5, 0.08) * size
        y = rng.normal(0.5, 0.09) * size
    return float(np.clip(x, 0.1 * size, 0.9 * size)), float(np.clip(y, 0.1 * size, 0.9 * size))


def eye_line(rng: np.random.Generator, frame: Frame) -> tuple[float, float, float, float]:
    """Eye-line centre, half the distance between the eyes, and the roll angle (radians)."""
    s = frame.size / 224.0
    if frame.eyes is not None:
        (lx, ly), (rx, ry) = frame.eyes
        centre = 0.5 * (frame.eyes[0] + frame.eyes[1]) + rng.normal(0, 1.5 * s, 2)
        half_gap = 0.5 * float(np.hypot(rx - lx, ry - ly)) * rng.uniform(0.95, 1.15)
        angle = float(np.arctan2(ry - ly, rx - lx)) + rng.normal(0, 0.03)
        return float(centre[0]), float(centre[1]), max(half_gap, 8 * s), angle
    cx, cy = rng.normal(0.5, 0.03) * frame.size, rng.uniform(0.34, 0.44) * frame.size
    return float(cx), float(cy), rng.uniform(25, 33) * s, rng.normal(0.0, 0.08)


def rotate_points(points: np.ndarray, centre: tuple[float, float], angle: float) -> np.ndarray:
    """Rotate ``points [N, 2]`` about ``centre`` by ``angle`` radians."""
    c, s = np.cos(angle), np.sin(angle)
    p = points - np.asarray(centre)
    return np.stack([c * p[:, 0] - s * p[:, 1], s * p[:, 0] + c * p[:, 1]], 1) + np.asarray(centre)


@functools.lru_cache(maxsize=8)
def pixel_grids(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel x and y coordinate grids [H, W] (cached, read-only)."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    xs.flags.writeable = False
    ys.flags.writeable = False
    return xs, ys


def box_of(mask: np.ndarray):
    """Bounding box ``(x, y, w, h)`` of a uint8 mask's non-zero pixels, or None."""
    x, y, w, h = cv2.boundingRect(mask)
    return None if w == 0 or h == 0 else (x, y, w, h)


def box_slices(box):
    x, y, w, h = box
    return slice(y, y + h), slice(x, x + w)


def box_coords(size: int, box) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = pixel_grids(size)
    return xs[box_slices(box)], ys[box_slices(box)]


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], scale: float, channels: int = 1) -> np.ndarray:
    """Zero-mean, unit-ish noise with features about ``scale`` pixels big, [h, w, C] float32."""
    h, w = shape
    noise = rng.standard_normal((max(2, int(round(h / max(scale, 1.0)))), max(2, int(round(w / max(scale, 1.0)))),
                                 channels)).astype(np.float32)
    out = cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC)
    if out.ndim == 2:
        out = out[..., None]
    return out / max(float(out.std()), 1e-6)


def random_colour(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0.0, 1.0, 3).astype(np.float32)


def random_texture(rng: np.random.Generator, size: int, box, kind: str | None = None) -> np.ndarray:
    """A random texture over the box, [h, w, 3] float32 in [0, 1] (image coordinates)."""
    kind = kind or rng.choice(["noise", "stripes", "checker", "gradient"])
    xs, ys = box_coords(size, box)
    shape = xs.shape
    if kind == "noise":
        scale = rng.uniform(1.0, 12.0)
        n = smooth_noise(rng, shape, scale, 3)
        base = random_colour(rng)
        tex = base + rng.uniform(0.1, 0.35) * n
    elif kind == "stripes":
        theta = rng.uniform(0, np.pi)
        period = rng.uniform(4.0, 24.0) * size / 224.0
        t = (np.cos(theta) * xs + np.sin(theta) * ys) * (2 * np.pi / period)
        w = (0.5 + 0.5 * np.sin(t))[..., None]
        if rng.random() < 0.6:  # hard-edged stripes
            w = (w > 0.5).astype(np.float32)
        c0, c1 = random_colour(rng), random_colour(rng)
        tex = c0 * w + c1 * (1 - w)
    elif kind == "checker":
        cell = rng.uniform(5.0, 28.0) * size / 224.0
        theta = rng.uniform(0, np.pi / 2)
        u = np.cos(theta) * xs + np.sin(theta) * ys
        v = -np.sin(theta) * xs + np.cos(theta) * ys
        w = ((np.floor(u / cell) + np.floor(v / cell)) % 2)[..., None].astype(np.float32)
        c0, c1 = random_colour(rng), random_colour(rng)
        tex = c0 * w + c1 * (1 - w)
    else:  # photo-like: smooth gradient between colours plus low-frequency blotches
        theta = rng.uniform(0, 2 * np.pi)
        t = (np.cos(theta) * (xs - size / 2) + np.sin(theta) * (ys - size / 2)) / size + 0.5
        t = np.clip(t, 0, 1)[..., None]
        c0, c1 = random_colour(rng), random_colour(rng)
        tex = c0 * (1 - t) + c1 * t
        tex = tex + 0.12 * smooth_noise(rng, shape, rng.uniform(20, 60), 3)
        tex = tex + 0.04 * smooth_noise(rng, shape, 2.0, 3)
    return np.clip(tex, 0.0, 1.0).astype(np.float32)


def shade_linear(rng: np.random.Generator, size: int, strength: float, box) -> np.ndarray:
    """A soft linear brightness ramp over the box, [h, w, 1], for making flat shapes look lit."""
    xs, ys = box_coords(size, box)
    theta = rng.uniform(0, 2 * np.pi)
    t = (np.cos(theta) * (xs - size / 2) + np.sin(theta) * (ys - size / 2)) / size
    return (1.0 + strength * t)[..., None].astype(np.float32)


def alpha_of(mask: np.ndarray, box) -> np.ndarray:
    return mask[box_slices(box)].astype(np.float32) * np.float32(1.0 / 255.0)


def random_region(rng: np.random.Generator, frame: Frame, lo: float, hi: float) -> np.ndarray:
    """A filled random shape (rotated rectangle, ellipse or polygon) near the face, uint8 [H, W]."""
    size = frame.size
    s = size / 224.0
    mask = np.zeros((size, size), np.uint8)
    cx, cy = face_anchor(rng, frame)
    rx, ry = rng.uniform(lo, hi, 2) * s
    angle = rng.uniform(0, np.pi)
    shape = rng.choice(["rect", "ellipse", "poly"])
    if shape == "rect":
        box = np.array([[-rx, -ry], [rx, -ry], [rx, ry], [-rx, ry]]) + [cx, cy]
        pts = rotate_points(box, (cx, cy), angle)
        cv2.fillPoly(mask, [np.round(pts * 16).astype(np.int32)], 255, cv2.LINE_AA, SHIFT)
    elif shape == "ellipse":
        cv2.ellipse(mask, fixed_point(cx, cy), fixed_point(rx, ry), np.degrees(angle), 0, 360, 255, -1, cv2.LINE_AA,
                    SHIFT)
    else:
        k = int(rng.integers(5, 9))
        th = np.sort(rng.uniform(0, 2 * np.pi, k))
        r = rng.uniform(0.6, 1.0, k)
        pts = np.stack([cx + rx * r * np.cos(th), cy + ry * r * np.sin(th)], 1)
        cv2.fillPoly(mask, [np.round(pts * 16).astype(np.int32)], 255, cv2.LINE_AA, SHIFT)
    return mask
