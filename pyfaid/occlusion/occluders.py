"""The occluder kinds pasted by :func:`pyfaid.occlusion.occlude`.

Sunglasses (two dark lenses with a bridge, or a band across the eyes), clear glasses (opaque frames,
see-through tinted lenses: only the frames count as occluder pixels), hands (skin-coloured palms
with finger-like protrusions), hair (many thin curved strands across the forehead and eyes), face
masks (over the nose and mouth down to the jaw line), textured patches (noise, stripes, checker,
photo-like gradients) and pixel-noise regions.

Each kind is a function ``(rng, image [H, W, 3] float32, frame) -> (colour [h, w, 3] float32,
alpha [h, w] float32, box (x, y, w, h))`` or None when nothing shows; :data:`OCCLUDERS` maps the
kind names to them. The drawing helpers are in :mod:`pyfaid.occlusion.shapes`.
"""

from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

from pyfaid.occlusion.shapes import (
    SHIFT,
    Frame,
    alpha_of,
    box_coords,
    box_of,
    box_slices,
    eye_line,
    face_anchor,
    fixed_point,
    random_colour,
    random_region,
    random_texture,
    rotate_points,
    shade_linear,
    smooth_noise,
)

__all__ = ["OCCLUDERS", "OCCLUDER_KINDS"]

#: Every occluder kind ``occlude`` can draw.
OCCLUDER_KINDS = ("sunglasses", "glasses", "hand", "hair", "patch", "noise", "mask")

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
# Occluder kinds
# ----------------------------------------------------------------------------------------------


def _sunglasses(rng: np.random.Generator, image: np.ndarray, frame: Frame):
    size = image.shape[0]
    s = size / 224.0
    cx, cy, half_gap, angle = eye_line(rng, frame)
    mask = np.zeros((size, size), np.uint8)
    frame_colour = np.clip(rng.uniform(0.0, 0.25) + rng.normal(0, 0.05, 3), 0, 1).astype(np.float32)
    lens_colour = np.clip(rng.uniform(0.01, 0.12) + rng.normal(0, 0.04, 3), 0, 1).astype(np.float32)
    if rng.random() < 0.7:
        # Two lenses, a bridge and the temple arms.
        rx = half_gap * rng.uniform(0.62, 0.85)
        ry = rx * rng.uniform(0.6, 0.8)
        centres = rotate_points(np.array([[cx - half_gap, cy], [cx + half_gap, cy]]), (cx, cy), angle)
        deg = np.degrees(angle)
        round_lenses = rng.random() < 0.5
        for (x, y) in centres:
            if round_lenses:
                cv2.ellipse(mask, fixed_point(x, y), fixed_point(rx, ry), deg, 0, 360, 255, -1, cv2.LINE_AA, SHIFT)
            else:  # rounded-rectangle lens: a rotated box with an ellipse softening its corners
                box = np.array([[-rx, -ry * 0.9], [rx, -ry], [rx * 0.85, ry], [-rx * 0.85, ry * 0.9]])
                pts = rotate_points(box + [x, y], (x, y), angle)
                cv2.fillPoly(mask, [np.round(pts * 16).astype(np.int32)], 255, cv2.LINE_AA, SHIFT)
                cv2.ellipse(mask, fixed_point(x, y), fixed_point(rx * 1.02, ry * 1.05), deg, 0, 360, 255, -1,
                            cv2.LINE_AA, SHIFT)
        thick = max(1, int(round(rng.uniform(2, 4) * s)))
        inner = rotate_points(np.array([[cx - half_gap + rx * 0.9, cy - ry * 0.4],
                                  [cx + half_gap - rx * 0.9, cy - ry * 0.4]]), (cx, cy), angle)
        cv2.line(mask, fixed_point(*inner[0]), fixed_point(*inner[1]), 255, thick, cv2.LINE_AA, SHIFT)
        outer = rotate_points(np.array([[cx - half_gap - rx, cy - ry * 0.3], [cx - half_gap - rx - 30 * s, cy - ry * 0.1],
                                  [cx + half_gap + rx, cy - ry * 0.3], [cx + half_gap + rx + 30 * s, cy - ry * 0.1]]),
                        (cx, cy), angle)
        cv2.line(mask, fixed_point(*outer[0]), fixed_point(*outer[1]), 255, thick, cv2.LINE_AA, SHIFT)
        cv2.line(mask, fixed_point(*outer[2]), fixed_point(*outer[3]), 255, thick, cv2.LINE_AA, SHIFT)
    else:
        # A band across the eyes (visor / blindfold), possibly textured.
        half_w = half_gap * rng.uniform(1.9, 3.5)
        half_h = half_gap * rng.uniform(0.3, 0.6)
        box = np.array([[cx - half_w, cy - half_h], [cx + half_w, cy - half_h],
                        [cx + half_w, cy + half_h], [cx - half_w, cy + half_h]])
        pts = rotate_points(box, (cx, cy), angle)
        cv2.fillPoly(mask, [np.round(pts * 16).astype(np.int32)], 255, cv2.LINE_AA, SHIFT)
        if rng.random() < 0.4:
            lens_colour = random_colour(rng) * rng.uniform(0.2, 1.0)
    box = box_of(mask)
    if box is None:
        return None
    alpha = alpha_of(mask, box)
    # Dark glossy lenses: base colour, a soft vertical ramp and a specular streak.
    colour = np.empty(alpha.shape + (3,), np.float32)
    colour[:] = lens_colour
    colour *= shade_linear(rng, size, rng.uniform(0.5, 1.5), box)
    xs, ys = box_coords(size, box)
    streak_t = (xs - cx) * np.cos(0.7) + (ys - cy) * np.sin(0.7)
    streak = np.exp(-((streak_t - rng.normal(0, 20 * s)) ** 2) / (2 * (6 * s) ** 2))
    colour += rng.uniform(0.05, 0.25) * streak[..., None]
    colour = 0.8 * colour + 0.2 * frame_colour
    return np.clip(colour, 0, 1), alpha, box


def _glasses(rng: np.random.Generator, image: np.ndarray, frame: Frame):
    """Clear eyeglasses: opaque frames (the occluder) and nearly transparent, tinted lenses."""
    size = image.shape[0]
    s = size / 224.0
    cx, cy, half_gap, angle = eye_line(rng, frame)
    rx = half_gap * rng.uniform(0.7, 0.95)
    ry = rx * rng.uniform(0.55, 0.85)
    centres = rotate_points(np.array([[cx - half_gap, cy + 0.05 * ry], [cx + half_gap, cy + 0.05 * ry]]), (cx, cy), angle)
    deg = np.degrees(angle)
    rims = np.zeros((size, size), np.uint8)
    lenses = np.zeros((size, size), np.uint8)
    thick = max(1, int(round(rng.choice([1.0, 1.5, 2.5, 3.5]) * s)))
    round_lenses = rng.random() < 0.4
    for (x, y) in centres:
        if round_lenses:
            cv2.ellipse(lenses, fixed_point(x, y), fixed_point(rx, ry), deg, 0, 360, 255, -1, cv2.LINE_AA, SHIFT)
            cv2.ellipse(rims, fixed_point(x, y), fixed_point(rx, ry), deg, 0, 360, 255, thick, cv2.LINE_AA, SHIFT)
        else:
            box = np.array([[-rx, -ry], [rx, -ry * 1.05], [rx * 0.9, ry], [-rx * 0.9, ry * 0.95]])
            pts = np.round(rotate_points(box + [x, y], (x, y), angle) * 16).astype(np.int32)
            cv2.fillPoly(lenses, [pts], 255, cv2.LINE_AA, SHIFT)
            cv2.polylines(rims, [pts], True, 255, thick, cv2.LINE_AA, SHIFT)
    bridge = rotate_points(np.array([[cx - half_gap + rx * 0.95, cy - ry * 0.25], [cx, cy - ry * 0.4],
                               [cx + half_gap - rx * 0.95, cy - ry * 0.25]]), (cx, cy), angle)
    cv2.polylines(rims, [np.round(bridge * 16).astype(np.int32)], False, 255, thick, cv2.LINE_AA, SHIFT)
    arms = rotate_points(np.array([[cx - half_gap - rx, cy - ry * 0.35], [cx - half_gap - rx - 35 * s, cy - ry * 0.2],
                             [cx + half_gap + rx, cy - ry * 0.35], [cx + half_gap + rx + 35 * s, cy - ry * 0.2]]),
                   (cx, cy), angle)
    cv2.line(rims, fixed_point(*arms[0]), fixed_point(*arms[1]), 255, thick, cv2.LINE_AA, SHIFT)
    cv2.line(rims, fixed_point(*arms[2]), fixed_point(*arms[3]), 255, thick, cv2.LINE_AA, SHIFT)
    box = box_of(np.maximum(rims, lenses))
    if box is None:
        return None
    rim_a = alpha_of(rims, box)
    lens_a = alpha_of(lenses, box) * np.float32(rng.uniform(0.06, 0.22))  # see-through
    alpha = np.maximum(rim_a, lens_a)
    frame_col = np.clip(rng.choice([0.05, 0.15, 0.35, 0.6]) + rng.normal(0, 0.06, 3), 0, 1).astype(np.float32)
    if rng.random() < 0.2:
        frame_col = random_colour(rng) * 0.6
    tint = np.clip(0.75 + rng.normal(0, 0.08, 3), 0, 1).astype(np.float32)
    xs, ys = box_coords(size, box)
    streak_t = (xs - cx) * np.cos(0.8) + (ys - cy) * np.sin(0.8)
    glare = np.exp(-((streak_t - rng.normal(0, 15 * s)) ** 2) / (2 * (4 * s) ** 2))[..., None]
    lens_col = np.clip(tint * (0.7 + 0.3 * glare) + 0.3 * glare, 0, 1)
    w = (rim_a / np.maximum(alpha, 1e-6))[..., None]
    colour = frame_col * w + lens_col * (1 - w)
    return np.clip(colour, 0, 1).astype(np.float32), alpha, box


def _hand(rng: np.random.Generator, image: np.ndarray, frame: Frame):
    size = image.shape[0]
    s = size / 224.0
    mask = np.zeros((size, size), np.uint8)
    # The palm sits on the face or slides in from a side; the fingers point away from the wrist.
    px, py = face_anchor(rng, frame)
    py += rng.uniform(0, 0.12) * frame.face_w  # hands tend to cover the lower face
    scale = rng.uniform(0.8, 1.3) * s * float(np.clip(frame.face_w / (0.6 * size), 0.5, 1.5))
    direction = -np.pi / 2 + rng.normal(0.0, 0.9)  # fingers mostly up: the arm comes from below
    d = np.array([np.cos(direction), np.sin(direction)])
    n = np.array([-d[1], d[0]])
    palm_rx, palm_ry = 30 * scale, 36 * scale  # across, along the hand
    cv2.ellipse(mask, fixed_point(px, py), fixed_point(palm_ry, palm_rx), np.degrees(direction), 0, 360, 255, -1,
                cv2.LINE_AA, SHIFT)
    # Wrist/forearm going back out of the picture.
    wrist = np.array([px, py]) - d * palm_ry * 0.6
    far = wrist - d * size
    cv2.line(mask, fixed_point(*wrist), fixed_point(*far), 255, max(1, int(round(40 * scale))), cv2.LINE_AA, SHIFT)
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
        cv2.line(mask, fixed_point(*base), fixed_point(*tip), 255, max(1, width), cv2.LINE_AA, SHIFT)
        finger_lines.append((base, tip, width))
    # Thumb on one side, angled outward.
    side = rng.choice([-1.0, 1.0])
    tbase = np.array([px, py]) + n * side * palm_rx * 0.8
    tang = direction + side * rng.uniform(0.6, 1.1)
    ttip = tbase + rng.uniform(30, 40) * scale * np.array([np.cos(tang), np.sin(tang)])
    cv2.line(mask, fixed_point(*tbase), fixed_point(*ttip), 255, max(1, int(round(14 * scale))), cv2.LINE_AA, SHIFT)
    box = box_of(mask)
    if box is None:
        return None
    alpha = alpha_of(mask, box)
    tone = _SKIN_TONES[rng.integers(len(_SKIN_TONES))] * rng.uniform(0.85, 1.1) + rng.normal(0, 0.02, 3)
    colour = np.empty(alpha.shape + (3,), np.float32)
    colour[:] = tone.astype(np.float32)
    colour *= shade_linear(rng, size, rng.uniform(0.3, 0.9), box)
    # Soft self-shadowing towards the outline and dark creases between fingers.
    inner = cv2.GaussianBlur(alpha, (0, 0), 4 * s, borderType=cv2.BORDER_CONSTANT)
    colour *= (0.7 + 0.3 * inner)[..., None]
    creases = np.zeros(alpha.shape, np.uint8)
    x0, y0 = box[0], box[1]
    for base, tip, width in finger_lines:
        for sgn in (-1, 1):
            off = n * sgn * width * 0.5 - [x0, y0]
            cv2.line(creases, fixed_point(*(base + off)), fixed_point(*(tip + off)), 255, 1, cv2.LINE_AA, SHIFT)
    colour *= (1.0 - 0.35 * creases.astype(np.float32)[..., None] / 255.0)
    colour += 0.02 * smooth_noise(rng, alpha.shape, 3.0, 1)
    return np.clip(colour, 0, 1), alpha, box


def _hair(rng: np.random.Generator, image: np.ndarray, frame: Frame):
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
        cv2.polylines(mask, [curves[k]], False, 255, int(thick[k]), cv2.LINE_AA, SHIFT)
        cv2.polylines(colour_full, [curves[k]], False, tuple(float(c) for c in shades[k]), int(thick[k]),
                      cv2.LINE_AA, SHIFT)
    box = box_of(mask)
    if box is None:
        return None
    alpha = alpha_of(mask, box)
    colour = colour_full[box_slices(box)] / np.maximum(alpha[..., None], 1e-3)  # undo anti-aliasing premultiplication
    return np.clip(colour, 0, 1), alpha, box


def _mask(rng: np.random.Generator, image: np.ndarray, frame: Frame):
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
    cv2.fillPoly(mask, [np.round(outline * 16).astype(np.int32)], 255, cv2.LINE_AA, SHIFT)
    loops = np.zeros((size, size), np.uint8)
    if rng.random() < 0.85:  # ear loops
        thick = max(1, int(round(rng.uniform(1.0, 2.0) * s)))
        for a, b, ear in ((1, 4, 0), (15, 12, 16)):
            e = jaw[ear] + up * 0.12 * face_w + (jaw[ear] - out_c) * 0.08
            for corner in (jaw[a], jaw[b]):
                cv2.line(loops, fixed_point(*corner), fixed_point(*e), 255, thick, cv2.LINE_AA, SHIFT)
    mask = np.maximum(mask, loops)
    box = box_of(mask)
    if box is None:
        return None
    alpha = alpha_of(mask, box)
    palette = np.array([[0.55, 0.72, 0.86], [0.92, 0.93, 0.94], [0.12, 0.12, 0.13], [0.6, 0.62, 0.65],
                        [0.9, 0.72, 0.78], [0.4, 0.6, 0.55]], np.float32)
    base = palette[int(rng.choice(len(palette), p=[0.45, 0.25, 0.15, 0.07, 0.05, 0.03]))]
    base = np.clip(base * rng.uniform(0.9, 1.05) + rng.normal(0, 0.02, 3), 0, 1).astype(np.float32)
    xs, ys = box_coords(size, box)
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
    colour *= shade_linear(rng, size, rng.uniform(0.2, 0.6), box)
    colour += 0.015 * smooth_noise(rng, alpha.shape, 1.5, 1)  # fabric
    lp = loops[box_slices(box)] > 0
    colour[lp] = np.clip(base * 1.05 + 0.05, 0, 1)
    return np.clip(colour, 0, 1), alpha, box


def _patch(rng: np.random.Generator, image: np.ndarray, frame: Frame):
    size = image.shape[0]
    mask = random_region(rng, frame, 18, 55)
    box = box_of(mask)
    if box is None:
        return None
    return random_texture(rng, size, box), alpha_of(mask, box), box


def _noise(rng: np.random.Generator, image: np.ndarray, frame: Frame):
    mask = random_region(rng, frame, 15, 45)
    box = box_of(mask)
    if box is None:
        return None
    alpha = (alpha_of(mask, box) > 0.5).astype(np.float32)  # noise regions are hard-edged
    shape = alpha.shape
    mode = rng.choice(["uniform", "gaussian", "salt_pepper"])
    if mode == "uniform":
        colour = rng.uniform(0, 1, shape + (3,)).astype(np.float32)
    elif mode == "gaussian":
        sigma = rng.uniform(0.25, 0.5)
        colour = image[box_slices(box)] + sigma * rng.standard_normal(shape + (3,)).astype(np.float32)
    else:
        u = rng.uniform(0, 1, shape + (1,)).astype(np.float32)
        colour = np.where(u < 0.5, 0.0, 1.0).astype(np.float32).repeat(3, 2)
    return np.clip(colour, 0, 1), alpha, box


#: Kind name -> drawing function ``(rng, image, frame) -> (colour, alpha, box) | None``.
OCCLUDERS: dict[str, Callable] = {
    "sunglasses": _sunglasses,
    "glasses": _glasses,
    "hand": _hand,
    "hair": _hair,
    "patch": _patch,
    "noise": _noise,
    "mask": _mask,
}
