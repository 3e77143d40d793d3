"""Synthetic occluders for aligned face images.

``occlude`` pastes random occluders onto a batch of aligned face images (faces centred, as in the
224x224 crops the models use): sunglasses (two dark lenses with a bridge, or a band across the
eyes), clear glasses (opaque frames, see-through tinted lenses: only the frames count as occluder
pixels), hands (skin-coloured palms with finger-like protrusions), hair (many thin curved strands
across the forehead and eyes), textured patches (noise, stripes, checker, photo-like gradients)
and pixel-noise regions. It is used for the occluded-CelebA protocol and for the model's ``I_occ``
self-augmentation.

Shapes are drawn with OpenCV on per-image numpy canvases, colours only inside each shape's
bounding box. :func:`occlude` works on torch batches (differentiable with respect to the images);
:func:`occlude_arrays` is the same on numpy pictures, for data generators. Every image draws its own random
numbers from ``numpy.random.default_rng((seed, index))``, so a fixed seed gives the same occluders
for image ``index`` whatever the batch it sits in.
"""

from __future__ import annotations

import functools
from typing import Callable, Sequence

import cv2
import numpy as np
import torch

__all__ = ["occlude", "occlude_arrays", "OCCLUDER_KINDS"]

#: Every occluder kind ``occlude`` can draw.
OCCLUDER_KINDS = ("sunglasses", "glasses", "hand", "hair", "patch", "noise", "mask")

# Relative frequency of each kind when ``kinds`` is not given.
_KIND_WEIGHTS = {"sunglasses": 1.0, "glasses": 1.0, "hand": 1.0, "hair": 0.5, "patch": 1.0, "noise": 0.6, "mask": 0.6}

# Skin tones (RGB in [0, 1]) from very light to very dark; hands pick one and jitter it.
_SKIN_TONES = np.array(
    [
        [0.96, 0.80, 0.69], [0.91, 0.72, 0.60], [0.85, 0.64, 0.50], [0.78, 0.56, 0.42],
        [0.66, 0.46, 0.33], [0.55, 0.37, 0.26], [0.43, 0.28, 0.19], [0.30, 0.20, 0.14],
    ],
    dtype=np.float32,
)
# Hair colours (RGB): black, dark brown, brown, auburn, blonde, grey.
_HAIR_COLOURS = np.array(
    [
        [0.04, 0.03, 0.03], [0.15, 0.09, 0.05], [0.30, 0.19, 0.10], [0.45, 0.20, 0.08],
        [0.75, 0.62, 0.38], [0.55, 0.55, 0.55],
    ],
    dtype=np.float32,
)


# ----------------------------------------------------------------------------------------------
# Small drawing helpers. Every occluder draws its shape on a full-size uint8 mask (cheap), then
# computes colours only inside the shape's bounding box: it returns
# (colour [h, w, 3] float32, alpha [h, w] float32, box (x, y, w, h)), or None when nothing shows.
# ----------------------------------------------------------------------------------------------


def _pt(x: float, y: float) -> tuple[int, int]:
    """Float point to OpenCV's fixed-point integer coordinates (4 fractional bits)."""
    return int(round(x * 16)), int(round(y * 16))


_SHIFT = 4  # fractional bits used with _pt


class _Frame:
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


def _face_anchor(rng: np.random.Generator, frame: _Frame) -> tuple[float, float]:
    """A point near the face centre: around the nose tip, or the image centre of an aligned face."""
    size = frame.size
    if frame.nose is not None:
        x = frame.nose[0] + rng.normal(0, 0.18) * frame.face_w
        y = frame.nose[1] + rng.normal(0, 0.22) * frame.face_w
    else:
        x = rng.normal(0.5, 0.08) * size
        y = rng.normal(0.5, 0.09) * size
    return float(np.clip(x, 0.1 * size, 0.9 * size)), float(np.clip(y, 0.1 * size, 0.9 * size))


def _eye_line(rng: np.random.Generator, frame: _Frame) -> tuple[float, float, float, float]:
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


def _rotate(points: np.ndarray, centre: tuple[float, float], angle: float) -> np.ndarray:
    """Rotate ``points [N, 2]`` about ``centre`` by ``angle`` radians."""
    c, s = np.cos(angle), np.sin(angle)
    p = points - np.asarray(centre)
    return np.stack([c * p[:, 0] - s * p[:, 1], s * p[:, 0] + c * p[:, 1]], 1) + np.asarray(centre)


@functools.lru_cache(maxsize=8)
def _coords(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel x and y coordinate grids [H, W] (cached, read-only)."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    xs.flags.writeable = False
    ys.flags.writeable = False
    return xs, ys


def _box_of(mask: np.ndarray):
    """Bounding box ``(x, y, w, h)`` of a uint8 mask's non-zero pixels, or None."""
    x, y, w, h = cv2.boundingRect(mask)
    return None if w == 0 or h == 0 else (x, y, w, h)


def _sl(box):
    x, y, w, h = box
    return slice(y, y + h), slice(x, x + w)


def _box_coords(size: int, box) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = _coords(size)
    return xs[_sl(box)], ys[_sl(box)]


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], scale: float, channels: int = 1) -> np.ndarray:
    """Zero-mean, unit-ish noise with features about ``scale`` pixels big, [h, w, C] float32."""
    h, w = shape
    noise = rng.standard_normal((max(2, int(round(h / max(scale, 1.0)))), max(2, int(round(w / max(scale, 1.0)))),
                                 channels)).astype(np.float32)
    out = cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC)
    if out.ndim == 2:
        out = out[..., None]
    return out / max(float(out.std()), 1e-6)


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0.0, 1.0, 3).astype(np.float32)


def _texture(rng: np.random.Generator, size: int, box, kind: str | None = None) -> np.ndarray:
    """A random texture over the box, [h, w, 3] float32 in [0, 1] (image coordinates)."""
    kind = kind or rng.choice(["noise", "stripes", "checker", "gradient"])
    xs, ys = _box_coords(size, box)
    shape = xs.shape
    if kind == "noise":
        scale = rng.uniform(1.0, 12.0)
        n = _smooth_noise(rng, shape, scale, 3)
        base = _random_colour(rng)
        tex = base + rng.uniform(0.1, 0.35) * n
    elif kind == "stripes":
        theta = rng.uniform(0, np.pi)
        period = rng.uniform(4.0, 24.0) * size / 224.0
        t = (np.cos(theta) * xs + np.sin(theta) * ys) * (2 * np.pi / period)
        w = (0.5 + 0.5 * np.sin(t))[..., None]
        if rng.random() < 0.6:  # hard-edged stripes
            w = (w > 0.5).astype(np.float32)
        c0, c1 = _random_colour(rng), _random_colour(rng)
        tex = c0 * w + c1 * (1 - w)
    elif kind == "checker":
        cell = rng.uniform(5.0, 28.0) * size / 224.0
        theta = rng.uniform(0, np.pi / 2)
        u = np.cos(theta) * xs + np.sin(theta) * ys
        v = -np.sin(theta) * xs + np.cos(theta) * ys
        w = ((np.floor(u / cell) + np.floor(v / cell)) % 2)[..., None].astype(np.float32)
        c0, c1 = _random_colour(rng), _random_colour(rng)
        tex = c0 * w + c1 * (1 - w)
    else:  # photo-like: smooth gradient between colours plus low-frequency blotches
        theta = rng.uniform(0, 2 * np.pi)
        t = (np.cos(theta) * (xs - size / 2) + np.sin(theta) * (ys - size / 2)) / size + 0.5
        t = np.clip(t, 0, 1)[..., None]
        c0, c1 = _random_colour(rng), _random_colour(rng)
        tex = c0 * (1 - t) + c1 * t
        tex = tex + 0.12 * _smooth_noise(rng, shape, rng.uniform(20, 60), 3)
        tex = tex + 0.04 * _smooth_noise(rng, shape, 2.0, 3)
    return np.clip(tex, 0.0, 1.0).astype(np.float32)


def _shade_linear(rng: np.random.Generator, size: int, strength: float, box) -> np.ndarray:
    """A soft linear brightness ramp over the box, [h, w, 1], for making flat shapes look lit."""
    xs, ys = _box_coords(size, box)
    theta = rng.uniform(0, 2 * np.pi)
    t = (np.cos(theta) * (xs - size / 2) + np.sin(theta) * (ys - size / 2)) / size
    return (1.0 + strength * t)[..., None].astype(np.float32)


def _alpha_of(mask: np.ndarray, box) -> np.ndarray:
    return mask[_sl(box)].astype(np.float32) * np.float32(1.0 / 255.0)


# ----------------------------------------------------------------------------------------------
# Occluder kinds
# ----------------------------------------------------------------------------------------------


def _sunglasses(rng: np.random.Generator, image: np.ndarray, frame: _Frame):
    size = image.shape[0]
    s = size / 224.0
    cx, cy, half_gap, angle = _eye_line(rng, frame)
    mask = np.zeros((size, size), np.uint8)
    frame_colour = np.clip(rng.uniform(0.0, 0.25) + rng.normal(0, 0.05, 3), 0, 1).astype(np.float32)
    lens_colour = np.clip(rng.uniform(0.01, 0.12) + rng.normal(0, 0.04, 3), 0, 1).astype(np.float32)
    if rng.random() < 0.7:
        # Two lenses, a bridge and the temple arms.
        rx = half_gap * rng.uniform(0.62, 0.85)
        ry = rx * rng.uniform(0.6, 0.8)
        centres = _rotate(np.array([[cx - half_gap, cy], [cx + half_gap, cy]]), (cx, cy), angle)
        deg = np.degrees(angle)
        round_lenses = rng.random() < 0.5
        for (x, y) in centres:
            if round_lenses:
                cv2.ellipse(mask, _pt(x, y), _pt(rx, ry), deg, 0, 360, 255, -1, cv2.LINE_AA, _SHIFT)
            else:  # rounded-rectangle lens: a rotated box with an ellipse softening its corners
                box = np.array([[-rx, -ry * 0.9], [rx, -ry], [rx * 0.85, ry], [-rx * 0.85, ry * 0.9]])
                pts = _rotate(box + [x, y], (x, y), angle)
                cv2.fillPoly(mask, [np.round(pts * 16).astype(np.int32)], 255, cv2.LINE_AA, _SHIFT)
                cv2.ellipse(mask, _pt(x, y), _pt(rx * 1.02, ry * 1.05), deg, 0, 360, 255, -1,
                            cv2.LINE_AA, _SHIFT)
        thick = max(1, int(round(rng.uniform(2, 4) * s)))
        inner = _rotate(np.array([[cx - half_gap + rx * 0.9, cy - ry * 0.4],
                                  [cx + half_gap - rx * 0.9, cy - ry * 0.4]]), (cx, cy), angle)
        cv2.line(mask, _pt(*inner[0]), _pt(*inner[1]), 255, thick, cv2.LINE_AA, _SHIFT)
        outer = _rotate(np.array([[cx - half_gap - rx, cy - ry * 0.3], [cx - half_gap - rx - 30 * s, cy - ry * 0.1],
                                  [cx + half_gap + rx, cy - ry * 0.3], [cx + half_gap + rx + 30 * s, cy - ry * 0.1]]),
                        (cx, cy), angle)
        cv2.line(mask, _pt(*outer[0]), _pt(*outer[1]), 255, thick, cv2.LINE_AA, _SHIFT)
        cv2.line(mask, _pt(*outer[2]), _pt(*outer[3]), 255, thick, cv2.LINE_AA, _SHIFT)
    else:
        # A band across the eyes (visor / blindfold), possibly textured.
        half_w = half_gap * rng.uniform(1.9, 3.5)
        half_h = half_gap * rng.uniform(0.3, 0.6)
        box = np.array([[cx - half_w, cy - half_h], [cx + half_w, cy - half_h],
                        [cx + half_w, cy + half_h], [cx - half_w, cy + half_h]])
        pts = _rotate(box, (cx, cy), angle)
        cv2.fillPoly(mask, [np.round(pts * 16).astype(np.int32)], 255, cv2.LINE_AA, _SHIFT)
        if rng.random() < 0.4:
            lens_colour = _random_colour(rng) * rng.uniform(0.2, 1.0)
    box = _box_of(mask)
    if box is None:
        return None
    alpha = _alpha_of(mask, box)
    # Dark glossy lenses: base colour, a soft vertical ramp and a specular streak.
    colour = np.empty(alpha.shape + (3,), np.float32)
    colour[:] = lens_colour
    colour *= _shade_linear(rng, size, rng.uniform(0.5, 1.5), box)
    xs, ys = _box_coords(size, box)
    streak_t = (xs - cx) * np.cos(0.7) + (ys - cy) * np.sin(0.7)
    streak = np.exp(-((streak_t - rng.normal(0, 20 * s)) ** 2) / (2 * (6 * s) ** 2))
    colour += rng.uniform(0.05, 0.25) * streak[..., None]
    colour = 0.8 * colour + 0.2 * frame_colour
    return np.clip(colour, 0, 1), alpha, box


def _glasses(rng: np.random.Generator, image: np.ndarray, frame: _Frame):
    """Clear eyeglasses: opaque frames (the occluder) and nearly transparent, tinted lenses."""
    size = image.shape[0]
    s = size / 224.0
    cx, cy, half_gap, angle = _eye_line(rng, frame)
    rx = half_gap * rng.uniform(0.7, 0.95)
    ry = rx * rng.uniform(0.55, 0.85)
    centres = _rotate(np.array([[cx - half_gap, cy + 0.05 * ry], [cx + half_gap, cy + 0.05 * ry]]), (cx, cy), angle)
    deg = np.degrees(angle)
    rims = np.zeros((size, size), np.uint8)
    lenses = np.zeros((size, size), np.uint8)
    thick = max(1, int(round(rng.choice([1.0, 1.5, 2.5, 3.5]) * s)))
    round_lenses = rng.random() < 0.4
    for (x, y) in centres:
        if round_lenses:
            cv2.ellipse(lenses, _pt(x, y), _pt(rx, ry), deg, 0, 360, 255, -1, cv2.LINE_AA, _SHIFT)
            cv2.ellipse(rims, _pt(x, y), _pt(rx, ry), deg, 0, 360, 255, thick, cv2.LINE_AA, _SHIFT)
        else:
            box = np.array([[-rx, -ry], [rx, -ry * 1.05], [rx * 0.9, ry], [-rx * 0.9, ry * 0.95]])
            pts = np.round(_rotate(box + [x, y], (x, y), angle) * 16).astype(np.int32)
            cv2.fillPoly(lenses, [pts], 255, cv2.LINE_AA, _SHIFT)
            cv2.polylines(rims, [pts], True, 255, thick, cv2.LINE_AA, _SHIFT)
    bridge = _rotate(np.array([[cx - half_gap + rx * 0.95, cy - ry * 0.25], [cx, cy - ry * 0.4],
                               [cx + half_gap - rx * 0.95, cy - ry * 0.25]]), (cx, cy), angle)
    cv2.polylines(rims, [np.round(bridge * 16).astype(np.int32)], False, 255, thick, cv2.LINE_AA, _SHIFT)
    arms = _rotate(np.array([[cx - half_gap - rx, cy - ry * 0.35], [cx - half_gap - rx - 35 * s, cy - ry * 0.2],
                             [cx + half_gap + rx, cy - ry * 0.35], [cx + half_gap + rx + 35 * s, cy - ry * 0.2]]),
                   (cx, cy), angle)
    cv2.line(rims, _pt(*arms[0]), _pt(*arms[1]), 255, thick, cv2.LINE_AA, _SHIFT)
    cv2.line(rims, _pt(*arms[2]), _pt(*arms[3]), 255, thick, cv2.LINE_AA, _SHIFT)
    box = _box_of(np.maximum(rims, lenses))
    if box is None:
        return None
    rim_a = _alpha_of(rims, box)
    lens_a = _alpha_of(lenses, box) * np.float32(rng.uniform(0.06, 0.22))  # see-through
    alpha = np.maximum(rim_a, lens_a)
    frame_col = np.clip(rng.choice([0.05, 0.15, 0.35, 0.6]) + rng.normal(0, 0.06, 3), 0, 1).astype(np.float32)
    if rng.random() < 0.2:
        frame_col = _random_colour(rng) * 0.6
    tint = np.clip(0.75 + rng.normal(0, 0.08, 3), 0, 1).astype(np.float32)
    xs, ys = _box_coords(size, box)
    streak_t = (xs - cx) * np.cos(0.8) + (ys - cy) * np.sin(0.8)
    glare = np.exp(-((streak_t - rng.normal(0, 15 * s)) ** 2) / (2 * (4 * s) ** 2))[..., None]
    lens_col = np.clip(tint * (0.7 + 0.3 * glare) + 0.3 * glare, 0, 1)
    w = (rim_a / np.maximum(alpha, 1e-6))[..., None]
    colour = frame_col * w + lens_col * (1 - w)
    return np.clip(colour, 0, 1).astype(np.float32), alpha, box


def _hand(rng: np.random.Generator, image: np.ndarray, frame: _Frame):
    size = image.shape[0]
    s = size / 224.0
    mask = np.zeros((size, size), np.uint8)
    # The palm sits on the face or slides in from a side; the fingers point away from the wrist.
    px, py = _face_anchor(rng, frame)
    py += rng.uniform(0, 0.12) * frame.face_w  # hands tend to cover the lower face
    scale = rng.uniform(0.8, 1.3) * s * float(np.clip(frame.face_w / (0.6 * size), 0.5, 1.5))
    direction = -np.pi / 2 + rng.normal(0.0, 0.9)  # fingers mostly up: the arm comes from below
    d = np.array([np.cos(direction), np.sin(direction)])
    n = np.array([-d[1], d[0]])
    palm_rx, palm_ry = 30 * scale, 36 * scale  # across, along the hand
    cv2.ellipse(mask, _pt(px, py), _pt(palm_ry, palm_rx), np.degrees(direction), 0, 360, 255, -1,
                cv2.LINE_AA, _SHIFT)
    # Wrist/forearm going back out of the picture.
    wrist = np.array([px, py]) - d * palm_ry * 0.6
    far = wrist - d * size
    cv2.line(mask, _pt(*wrist), _pt(*far), 255, max(1, int(round(40 * scale))), cv2.LINE_AA, _SHIFT)
    n_fingers = int(rng.integers(3, 5)) + 1  # the last one is the thumb
    spread = rng.uniform(0.05, 0.25)
    finger_lines = []
    for k in range(n_fingers - 1):
        off = (k - (n_fingers - 2) / 2) * 15 * scale
        base = np.array([px, py]) + d * palm_ry * 0.6 + n * off
        ang = direction + (k - (n_fingers - 2) / 2) * spread + rng.normal(0, 0.05)
        length = rng.uniform(35, 50) * scale * (0.8 if k in (0, n_fingers - 2) else 1.0)
        tip = base + length * np.array([np.cos(ang), np.sin(ang)])
        width = int(round(rng.uniform(11, 14) * scale))
        cv2.line(mask, _pt(*base), _pt(*tip), 255, max(1, width), cv2.LINE_AA, _SHIFT)
        finger_lines.append((base, tip, width))
    # Thumb on one side, angled outward.
    side = rng.choice([-1.0, 1.0])
    tbase = np.array([px, py]) + n * side * palm_rx * 0.8
    tang = direction + side * rng.uniform(0.6, 1.1)
    ttip = tbase + rng.uniform(30, 40) * scale * np.array([np.cos(tang), np.sin(tang)])
    cv2.line(mask, _pt(*tbase), _pt(*ttip), 255, max(1, int(round(14 * scale))), cv2.LINE_AA, _SHIFT)
    box = _box_of(mask)
    if box is None:
        return None
    alpha = _alpha_of(mask, box)
    tone = _SKIN_TONES[rng.integers(len(_SKIN_TONES))] * rng.uniform(0.85, 1.1) + rng.normal(0, 0.02, 3)
    colour = np.empty(alpha.shape + (3,), np.float32)
    colour[:] = tone.astype(np.float32)
    colour *= _shade_linear(rng, size, rng.uniform(0.3, 0.9), box)
    # Soft self-shadowing towards the outline and dark creases between fingers.
    inner = cv2.GaussianBlur(alpha, (0, 0), 4 * s, borderType=cv2.BORDER_CONSTANT)
    colour *= (0.7 + 0.3 * inner)[..., None]
    creases = np.zeros(alpha.shape, np.uint8)
    x0, y0 = box[0], box[1]
    for base, tip, width in finger_lines:
        for sgn in (-1, 1):
            off = n * sgn * width * 0.5 - [x0, y0]
            cv2.line(creases, _pt(*(base + off)), _pt(*(tip + off)), 255, 1, cv2.LINE_AA, _SHIFT)
    colour *= (1.0 - 0.35 * creases.astype(np.float32)[..., None] / 255.0)
    colour += 0.02 * _smooth_noise(rng, alpha.shape, 3.0, 1)
    return np.clip(colour, 0, 1), alpha, box


def _hair(rng: np.random.Generator, image: np.ndarray, frame: _Frame):
    size = image.shape[0]
    s = size / 224.0
    mask = np.zeros((size, size), np.uint8)
    base_colour = _HAIR_COLOURS[rng.integers(len(_HAIR_COLOURS))]
    colour_full = np.zeros((size, size, 3), np.float32)
    n_strands = int(rng.integers(30, 90))
    # A lock of hair: strands fan out from a parting above the forehead and fall across it.
    if frame.nose is not None and frame.brow_y is not None:
        part_x = frame.nose[0] + rng.normal(0, 0.2) * frame.face_w
        part_y = frame.brow_y - rng.uniform(0.15, 0.45) * frame.face_w
    else:
        part_x = rng.normal(0.5, 0.12) * size
        part_y = rng.uniform(0.05, 0.2) * size
    fall = rng.choice([-1.0, 1.0])  # which side the lock falls to
    width = rng.uniform(0.3, 0.8) * frame.face_w
    if frame.brow_y is not None:  # down past the brows, over the eyes
        drop = (frame.brow_y - part_y) + rng.uniform(0.05, 0.45) * frame.face_w
    else:
        drop = rng.uniform(0.3, 0.55) * size  # how far down it reaches (forehead, eyes)
    n = n_strands
    x0 = part_x + rng.normal(0, width * 0.3, n)
    y0 = part_y + rng.normal(0, 6 * s, n)
    x3 = x0 + fall * rng.uniform(0.2, 1.0, n) * width
    y3 = y0 + drop * rng.uniform(0.6, 1.1, n)
    x1, y1 = x0 + fall * rng.uniform(0, 0.6, n) * width, y0 + rng.uniform(0, 0.3, n) * drop
    x2, y2 = x3 + rng.normal(0, 10 * s, n), y3 - rng.uniform(0.2, 0.5, n) * drop
    t = np.linspace(0, 1, 24)[None, :]  # cubic Bezier strands, [n, 24, 2]
    cx = (1 - t) ** 3 * x0[:, None] + 3 * (1 - t) ** 2 * t * x1[:, None] \
        + 3 * (1 - t) * t ** 2 * x2[:, None] + t ** 3 * x3[:, None]
    cy = (1 - t) ** 3 * y0[:, None] + 3 * (1 - t) ** 2 * t * y1[:, None] \
        + 3 * (1 - t) * t ** 2 * y2[:, None] + t ** 3 * y3[:, None]
    curves = np.round(np.stack([cx, cy], -1) * 16).astype(np.int32)
    thick = np.maximum(1, np.round(np.where(rng.random(n) < 0.7, 1, 2) * s)).astype(int)
    shades = np.clip(base_colour[None] * rng.uniform(0.6, 1.4, (n, 1)) + rng.normal(0, 0.02, (n, 3)), 0, 1)
    for k in range(n):
        cv2.polylines(mask, [curves[k]], False, 255, int(thick[k]), cv2.LINE_AA, _SHIFT)
        cv2.polylines(colour_full, [curves[k]], False, tuple(float(c) for c in shades[k]), int(thick[k]),
                      cv2.LINE_AA, _SHIFT)
    box = _box_of(mask)
    if box is None:
        return None
    alpha = _alpha_of(mask, box)
    colour = colour_full[_sl(box)] / np.maximum(alpha[..., None], 1e-3)  # undo anti-aliasing premultiplication
    return np.clip(colour, 0, 1), alpha, box


def _mask(rng: np.random.Generator, image: np.ndarray, frame: _Frame):
    """A medical (surgical or cloth) face mask over the nose and mouth, following the landmarks."""
    size = image.shape[0]
    s = size / 224.0
    if frame.lm is not None:
        lm = frame.lm
        jaw = lm[:17]
    else:  # an aligned, centred face: an outline from the template layout
        t = np.linspace(-np.pi * 0.45, np.pi * 0.45, 17)
        cx, cy, rx, ry = 0.5 * size, 0.52 * size, 0.33 * size, 0.42 * size
        jaw = np.stack([cx + rx * np.sin(t), cy - 0.1 * size + ry * np.cos(t) * 0.9], 1)
        lm = np.zeros((68, 2))
        lm[:17] = jaw
        lm[27:31] = np.stack([np.full(4, cx), np.linspace(0.42, 0.55, 4) * size], 1)
        lm[[41, 40]] = [[cx - 0.13 * size, 0.45 * size]] * 2
        lm[[46, 47]] = [[cx + 0.13 * size, 0.45 * size]] * 2
    face_w = float(np.linalg.norm(jaw[16] - jaw[0]))
    up = lm[27] - lm[8]
    up = up / max(float(np.linalg.norm(up)), 1e-6)
    left_eye_low = lm[[40, 41]].mean(0)
    right_eye_low = lm[[46, 47]].mean(0)
    # the top edge: from near the ears, under the eyes, over the nose bridge
    bridge = lm[28] * 0.6 + lm[29] * 0.4 + up * rng.uniform(-0.02, 0.03) * face_w
    top = [jaw[1] + up * 0.02 * face_w, left_eye_low - up * rng.uniform(0.06, 0.12) * face_w, bridge,
           right_eye_low - up * rng.uniform(0.06, 0.12) * face_w, jaw[15] + up * 0.02 * face_w]
    # the bottom edge: along the jaw, a little outside it, and under the chin
    out_c = lm[30]
    bottom = []
    for j in range(14, 1, -1):
        p = jaw[j] + (jaw[j] - out_c) * rng.uniform(0.02, 0.06)
        if j in (7, 8, 9):
            p = p - up * rng.uniform(0.03, 0.08) * face_w
        bottom.append(p)
    outline = np.concatenate([np.asarray(top), np.asarray(bottom)])
    # a smooth top edge: a few Chaikin corner-cutting passes
    for _ in range(2):
        q = np.roll(outline, -1, 0)
        outline = np.concatenate([0.75 * outline + 0.25 * q, 0.25 * outline + 0.75 * q], 1).reshape(-1, 2)
    mask = np.zeros((size, size), np.uint8)
    cv2.fillPoly(mask, [np.round(outline * 16).astype(np.int32)], 255, cv2.LINE_AA, _SHIFT)
    loops = np.zeros((size, size), np.uint8)
    if rng.random() < 0.85:  # ear loops
        thick = max(1, int(round(rng.uniform(1.0, 2.0) * s)))
        for a, b, ear in ((1, 4, 0), (15, 12, 16)):
            e = jaw[ear] + up * 0.12 * face_w + (jaw[ear] - out_c) * 0.08
            for corner in (jaw[a], jaw[b]):
                cv2.line(loops, _pt(*corner), _pt(*e), 255, thick, cv2.LINE_AA, _SHIFT)
    mask = np.maximum(mask, loops)
    box = _box_of(mask)
    if box is None:
        return None
    alpha = _alpha_of(mask, box)
    palette = np.array([[0.55, 0.72, 0.86], [0.92, 0.93, 0.94], [0.12, 0.12, 0.13], [0.6, 0.62, 0.65],
                        [0.9, 0.72, 0.78], [0.4, 0.6, 0.55]], np.float32)
    base = palette[int(rng.choice(len(palette), p=[0.45, 0.25, 0.15, 0.07, 0.05, 0.03]))]
    base = np.clip(base * rng.uniform(0.9, 1.05) + rng.normal(0, 0.02, 3), 0, 1).astype(np.float32)
    xs, ys = _box_coords(size, box)
    colour = np.empty(alpha.shape + (3,), np.float32)
    colour[:] = base
    # pleats: darker lines across the mask, and a soft shading from its top to the chin
    side = np.array([-up[1], up[0]])
    along_up = (xs - lm[30][0]) * up[0] + (ys - lm[30][1]) * up[1]
    if rng.random() < 0.75:
        period = face_w * rng.uniform(0.1, 0.16)
        pleat = 0.5 + 0.5 * np.cos(2 * np.pi * along_up / period)
        colour *= (1.0 - rng.uniform(0.08, 0.2) * pleat ** 6)[..., None]
    across = (xs - lm[30][0]) * side[0] + (ys - lm[30][1]) * side[1]
    colour *= (1.0 - 0.25 * (across / max(face_w * 0.6, 1.0)) ** 2)[..., None]
    colour *= _shade_linear(rng, size, rng.uniform(0.2, 0.6), box)
    colour += 0.015 * _smooth_noise(rng, alpha.shape, 1.5, 1)  # fabric
    lp = loops[_sl(box)] > 0
    colour[lp] = np.clip(base * 1.05 + 0.05, 0, 1)
    return np.clip(colour, 0, 1), alpha, box


def _random_region(rng: np.random.Generator, frame: _Frame, lo: float, hi: float) -> np.ndarray:
    """A filled random shape (rotated rectangle, ellipse or polygon) near the face, uint8 [H, W]."""
    size = frame.size
    s = size / 224.0
    mask = np.zeros((size, size), np.uint8)
    cx, cy = _face_anchor(rng, frame)
    rx, ry = rng.uniform(lo, hi, 2) * s
    angle = rng.uniform(0, np.pi)
    shape = rng.choice(["rect", "ellipse", "poly"])
    if shape == "rect":
        box = np.array([[-rx, -ry], [rx, -ry], [rx, ry], [-rx, ry]]) + [cx, cy]
        pts = _rotate(box, (cx, cy), angle)
        cv2.fillPoly(mask, [np.round(pts * 16).astype(np.int32)], 255, cv2.LINE_AA, _SHIFT)
    elif shape == "ellipse":
        cv2.ellipse(mask, _pt(cx, cy), _pt(rx, ry), np.degrees(angle), 0, 360, 255, -1, cv2.LINE_AA, _SHIFT)
    else:
        k = int(rng.integers(5, 9))
        th = np.sort(rng.uniform(0, 2 * np.pi, k))
        r = rng.uniform(0.6, 1.0, k)
        pts = np.stack([cx + rx * r * np.cos(th), cy + ry * r * np.sin(th)], 1)
        cv2.fillPoly(mask, [np.round(pts * 16).astype(np.int32)], 255, cv2.LINE_AA, _SHIFT)
    return mask


def _patch(rng: np.random.Generator, image: np.ndarray, frame: _Frame):
    size = image.shape[0]
    mask = _random_region(rng, frame, 18, 55)
    box = _box_of(mask)
    if box is None:
        return None
    return _texture(rng, size, box), _alpha_of(mask, box), box


def _noise(rng: np.random.Generator, image: np.ndarray, frame: _Frame):
    mask = _random_region(rng, frame, 15, 45)
    box = _box_of(mask)
    if box is None:
        return None
    alpha = (_alpha_of(mask, box) > 0.5).astype(np.float32)  # noise regions are hard-edged
    shape = alpha.shape
    mode = rng.choice(["uniform", "gaussian", "salt_pepper"])
    if mode == "uniform":
        colour = rng.uniform(0, 1, shape + (3,)).astype(np.float32)
    elif mode == "gaussian":
        sigma = rng.uniform(0.25, 0.5)
        colour = image[_sl(box)] + sigma * rng.standard_normal(shape + (3,)).astype(np.float32)
    else:
        u = rng.uniform(0, 1, shape + (1,)).astype(np.float32)
        colour = np.where(u < 0.5, 0.0, 1.0).astype(np.float32).repeat(3, 2)
    return np.clip(colour, 0, 1), alpha, box


_DRAW: dict[str, Callable] = {
    "sunglasses": _sunglasses,
    "glasses": _glasses,
    "hand": _hand,
    "hair": _hair,
    "patch": _patch,
    "noise": _noise,
    "mask": _mask,
}


def _occlude_one(
    image: np.ndarray,
    rng: np.random.Generator,
    kinds: Sequence[str],
    max_occluders: int,
    coverage: tuple[float, float],
    covered: np.ndarray,
    frame: _Frame,
    trans: np.ndarray | None = None,
    layer: np.ndarray | None = None,
) -> list[str]:
    """Draw the occluders of one [H, W, 3] float32 image, in place.

    ``image`` is overwritten with the occluded picture and ``covered [H, W]`` (bool, False on
    entry) receives the occluder mask. When given, ``trans [H, W]`` (ones) receives the
    transmittance and ``layer [H, W, 3]`` (zeros) the premultiplied occluder colour (the occluded
    picture is ``original * trans + layer``). Returns the kinds drawn.
    """
    size = image.shape[0]
    weights = np.array([_KIND_WEIGHTS.get(k, 1.0) for k in kinds])
    weights = weights / weights.sum()
    n_target = int(rng.integers(1, max_occluders + 1))
    n_covered = 0
    drawn: list[str] = []
    lo, hi = coverage
    total = float(size * size)
    attempts = 0
    while attempts < 4 * max_occluders + 4:
        attempts += 1
        kind = kinds[int(rng.choice(len(kinds), p=weights))]
        got = _DRAW[kind](rng, image, frame)
        if got is None:
            continue
        colour, a, (x, y, w, h) = got
        box = (slice(y, y + h), slice(x, x + w))
        solid = a > 0.5
        new_pixels = int((solid & ~covered[box]).sum())
        if (n_covered + new_pixels) / total > hi:
            if drawn:
                continue  # too much: skip this one and try another
            a = _shrink_to(a, hi * total)  # the first occluder alone is too big: erode it
            solid = a > 0.5
            new_pixels = int((solid & ~covered[box]).sum())
        a3 = a[..., None]
        part = image[box]
        part += (colour - part) * a3
        if layer is not None:
            lp = layer[box]
            lp += (colour - lp) * a3
            trans[box] *= 1 - a
        covered[box] |= solid
        n_covered += new_pixels
        drawn.append(kind)
        if len(drawn) >= max_occluders or (len(drawn) >= n_target and n_covered / total >= lo):
            break
    return drawn


def _shrink_to(alpha: np.ndarray, max_pixels: float) -> np.ndarray:
    """Erode an alpha mask until at most ``max_pixels`` pixels are covered (keeps its shape)."""
    kernel = np.ones((3, 3), np.uint8)
    a = alpha
    for _ in range(64):
        if float((a > 0.5).sum()) <= max_pixels:
            break
        a = cv2.erode(a, kernel, iterations=2)
    return a


def _per_image_seeds(
    batch: int, seed: int | None, generator: torch.Generator | None, indices: Sequence[int] | None
) -> list[np.random.Generator]:
    if indices is None:
        indices = range(batch)
    indices = [int(i) for i in indices]
    if len(indices) != batch:
        raise ValueError(f"occlude: `indices` has {len(indices)} entries for a batch of {batch} images")
    if seed is None:
        # Draw a base seed from the given (or the global) torch generator.
        dev = generator.device if generator is not None else None  # a CUDA generator draws on its device
        seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=dev).item())
    elif generator is not None:
        raise ValueError("occlude: pass either `seed` or `generator`, not both")
    if seed < 0:
        raise ValueError(f"occlude: `seed` must be non-negative, got {seed}")
    return [np.random.default_rng((int(seed), i)) for i in indices]


def _check_args(kinds, max_occluders, coverage, name="occlude"):
    kinds = tuple(OCCLUDER_KINDS if kinds is None else kinds)
    unknown = [k for k in kinds if k not in _DRAW]
    if unknown or not kinds:
        raise ValueError(f"{name}: unknown or empty `kinds` {unknown or kinds}; choose from {OCCLUDER_KINDS}")
    if max_occluders < 1:
        raise ValueError(f"{name}: `max_occluders` must be >= 1, got {max_occluders}")
    lo, hi = float(coverage[0]), float(coverage[1])
    if not (0.0 <= lo <= hi <= 1.0) or hi <= 0.0:
        raise ValueError(f"{name}: `coverage` must satisfy 0 <= lo <= hi <= 1, hi > 0; got {coverage}")
    return kinds, (lo, hi)


def _draw_batch(np_images, rngs, kinds, max_occluders, coverage, lms, with_layers: bool, copy: bool = True):
    """Occlude ``[B, H, W, 3]`` float32 pictures: ``(occluded, mask, trans, layer)``.

    ``trans`` and ``layer`` (the transmittance and premultiplied occluder colour) are only built
    when ``with_layers`` (the differentiable torch path needs them), else None. With ``copy``
    False the pictures (float32, in [0, 1]) are drawn on in place.
    """
    batch, size = np_images.shape[0], np_images.shape[1]
    if copy or np_images.dtype != np.float32:
        out = np.empty(np_images.shape, np.float32)
        np.clip(np_images, 0.0, 1.0, out=out)
    else:
        out = np_images
    masks = np.zeros((batch, size, size), bool)
    trans = np.ones((batch, size, size), np.float32) if with_layers else None
    layers = np.zeros((batch, size, size, 3), np.float32) if with_layers else None
    for b in range(batch):
        frame = _Frame(size, None if lms is None else lms[b])
        _occlude_one(out[b], rngs[b], kinds, max_occluders, coverage, masks[b], frame,
                     None if trans is None else trans[b], None if layers is None else layers[b])
    return out, masks, trans, layers


def occlude_arrays(
    images: np.ndarray,
    seed: int,
    indices: Sequence[int] | None = None,
    kinds: Sequence[str] | None = None,
    max_occluders: int = 3,
    coverage: tuple[float, float] = (0.04, 0.3),
    landmarks: np.ndarray | None = None,
    copy: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`occlude` on numpy pictures (same occluders for the same seed and indices).

    Args:
        images: ``[B, H, W, 3]`` float32 RGB in [0, 1], ``H == W``.
        seed, indices, kinds, max_occluders, coverage: as for :func:`occlude`.
        landmarks: optional ``[B, 68, 2]`` pixel landmarks.
        copy: False draws on ``images`` in place (they must be float32 in [0, 1]).

    Returns:
        ``(occluded [B, H, W, 3] float32, occluder_mask [B, H, W] float32 0/1)``.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[3] != 3 or images.shape[1] != images.shape[2]:
        raise ValueError(f"occlude_arrays: `images` must be square [B, H, W, 3], got {images.shape}")
    kinds, cov = _check_args(kinds, max_occluders, coverage, "occlude_arrays")
    batch = images.shape[0]
    lms = None
    if landmarks is not None:
        lms = np.asarray(landmarks, np.float64)
        if lms.shape != (batch, 68, 2):
            raise ValueError(f"occlude_arrays: `landmarks` must be [{batch}, 68, 2], got {lms.shape}")
    rngs = _per_image_seeds(batch, seed, None, indices)
    out, masks, _, _ = _draw_batch(images, rngs, kinds, max_occluders, cov, lms, with_layers=False, copy=copy)
    np.clip(out, 0.0, 1.0, out=out)
    return out, masks.astype(np.float32)


def occlude(
    images: torch.Tensor,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    kinds: Sequence[str] | None = None,
    max_occluders: int = 3,
    coverage: tuple[float, float] = (0.04, 0.3),
    indices: Sequence[int] | None = None,
    landmarks: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Paste random occluders onto aligned face images.

    Occluders favour the central face region (aligned faces are centred, or ``landmarks`` say
    where the face is): sunglasses sit on the eye line, hair falls from above the forehead, face
    masks cover the nose and mouth down to the jaw line, hands, patches and noise regions are
    placed around the face centre.

    Args:
        images: ``[B, 3, H, W]`` RGB in [0, 1] (float, any device). ``H == W`` is required.
        seed: base seed. Image ``b`` uses ``numpy.random.default_rng((seed, indices[b]))``, so the
            result for one image does not depend on the rest of the batch.
        generator: a ``torch.Generator`` to draw the base seed from when ``seed`` is None (the
            global torch RNG is used when both are None).
        kinds: subset of ``OCCLUDER_KINDS`` to draw from (default: all).
        max_occluders: at most this many occluders per image (at least one is drawn).
        coverage: ``(lo, hi)`` fraction of the image area the occluders should cover together;
            more occluders are added (up to ``max_occluders``) until ``lo`` is reached and ones
            that would exceed ``hi`` are skipped (a single too-large first one is shrunk).
        indices: per-image ids used for seeding (default ``range(B)``); datasets pass their item
            indices here.
        landmarks: optional ``[B, 68, 2]`` iBUG-68 landmarks in pixels (x right, y down). When
            given, sunglasses sit on the eyes (following their distance and roll), hair falls from
            above the brows, masks follow the jaw line and the other occluders cluster around the
            nose; otherwise placement follows the layout of an aligned, centred face.

    Returns:
        ``(occluded [B, 3, H, W], occluder_mask [B, 1, H, W])``, same dtype and device as
        ``images``; the mask is 1.0 where an occluder covers the pixel and 0.0 elsewhere. The
        occluded image is differentiable w.r.t. ``images`` (occluder pixels get zero gradient).
    """
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"occlude: `images` must be a [B, 3, H, W] tensor, got {shape}")
    if not images.is_floating_point():
        raise ValueError(f"occlude: `images` must be float in [0, 1], got {images.dtype}")
    if images.shape[2] != images.shape[3]:
        raise ValueError(f"occlude: `images` must be square, got {images.shape[2]}x{images.shape[3]}")
    kinds, cov = _check_args(kinds, max_occluders, coverage)

    batch = images.shape[0]
    lms = None
    if landmarks is not None:
        if landmarks.shape != (batch, 68, 2):
            raise ValueError(f"occlude: `landmarks` must be [{batch}, 68, 2], got {tuple(landmarks.shape)}")
        lms = landmarks.detach().to("cpu", torch.float64).numpy()
    rngs = _per_image_seeds(batch, seed, generator, indices)
    np_images = images.detach().to("cpu", torch.float32).permute(0, 2, 3, 1).numpy()
    _, masks, trans, layers = _draw_batch(np_images, rngs, kinds, max_occluders, cov, lms, with_layers=True)
    dev, dt = images.device, images.dtype
    trans_t = torch.from_numpy(trans)[:, None].to(dev, dt)  # [B, 1, H, W]
    layer_t = torch.from_numpy(layers).permute(0, 3, 1, 2).to(dev, dt)  # [B, 3, H, W]
    mask_t = torch.from_numpy(masks)[:, None].to(dev, dt).contiguous()  # [B, 1, H, W]
    # Composite in torch so the occluded image stays differentiable w.r.t. ``images``.
    occluded = (images * trans_t + layer_t).clamp(0.0, 1.0)
    return occluded.contiguous(), mask_t
