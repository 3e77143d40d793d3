"""Procedural photo backgrounds: rooms, outdoors, studio walls, textures, bokeh and clutter.

Backgrounds in face photos are out of focus, lit and structured: a wall with a door frame and a
picture, shelves, windows, trees against the sky, city blocks, a studio sweep, night lights turned
into discs by the lens. :func:`background` draws one of those kinds with OpenCV at a reduced
resolution (they are blurred anyway), blurs it by a random depth of field and upsamples it.

Every random number comes from the ``numpy.random.Generator`` passed in, so a background is
reproducible per item.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["background", "BACKGROUND_KINDS"]

#: Kinds :func:`background` draws, with their relative frequencies.
BACKGROUND_KINDS = {"indoor": 0.32, "outdoor": 0.22, "studio": 0.12, "texture": 0.12, "bokeh": 0.1,
                    "clutter": 0.12}

# Wall / material colours (RGB in [0, 1]): whites, beiges, greys, muted colours, wood.
_WALLS = np.array(
    [
        [0.86, 0.84, 0.80], [0.80, 0.76, 0.68], [0.70, 0.70, 0.70], [0.55, 0.56, 0.58], [0.78, 0.72, 0.60],
        [0.62, 0.70, 0.74], [0.70, 0.62, 0.55], [0.45, 0.38, 0.32], [0.30, 0.30, 0.33], [0.66, 0.74, 0.66],
        [0.82, 0.70, 0.66], [0.20, 0.22, 0.26],
    ],
    np.float32,
)
_SKIES = np.array([[0.55, 0.70, 0.92], [0.70, 0.80, 0.92], [0.85, 0.85, 0.88], [0.95, 0.75, 0.55],
                   [0.45, 0.55, 0.75]], np.float32)
_FOLIAGE = np.array([[0.18, 0.30, 0.12], [0.30, 0.40, 0.15], [0.22, 0.25, 0.12], [0.40, 0.45, 0.25],
                     [0.12, 0.20, 0.10]], np.float32)


def _col(rng, palette, jitter=0.05):
    return np.clip(palette[rng.integers(len(palette))] + rng.normal(0, jitter, 3), 0, 1).astype(np.float32)


def _grid(h, w):
    if (h, w) not in _GRIDS:
        _GRIDS[(h, w)] = np.mgrid[0:h, 0:w].astype(np.float32)
    return _GRIDS[(h, w)]


_GRIDS: dict = {}


def _gradient(rng, h, w, c0, c1, angle=None):
    ys, xs = _grid(h, w)
    theta = rng.uniform(0, 2 * np.pi) if angle is None else angle
    t = ((np.cos(theta) * (xs / w - 0.5) + np.sin(theta) * (ys / h - 0.5)) * rng.uniform(0.8, 1.6) + 0.5)
    t = np.clip(t, 0, 1)[..., None]
    return c0 * (1 - t) + c1 * t


def _noise(rng, h, w, scale, channels=1):
    small = rng.standard_normal((max(2, int(h / scale)), max(2, int(w / scale)), channels)).astype(np.float32)
    out = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    return out.reshape(h, w, channels)


def _rect(img, rng, x0, y0, x1, y1, colour, shade=True):
    cv2.rectangle(img, (int(x0), int(y0)), (int(x1), int(y1)), tuple(float(c) for c in colour), -1)
    if shade:  # a darker rim, as frames and furniture edges have
        cv2.rectangle(img, (int(x0), int(y0)), (int(x1), int(y1)),
                      tuple(float(c) * rng.uniform(0.5, 0.85) for c in colour), max(1, int((x1 - x0) * 0.06)))


def _indoor(rng, h, w):
    wall = _col(rng, _WALLS)
    img = _gradient(rng, h, w, wall * rng.uniform(0.75, 1.0), wall * rng.uniform(0.95, 1.2))
    # a corner of the room or a ceiling line
    if rng.random() < 0.5:
        x = int(rng.uniform(0.05, 0.95) * w)
        side = slice(0, x) if rng.random() < 0.5 else slice(x, w)
        img[:, side] *= rng.uniform(0.7, 0.9)
    if rng.random() < 0.35:
        y = int(rng.uniform(0.0, 0.25) * h)
        img[:y] = img[:y] * rng.uniform(0.85, 1.1)
    for _ in range(int(rng.integers(2, 8))):  # doors, frames, shelves, windows, furniture
        kind = rng.choice(["door", "frame", "shelf", "window", "furniture", "lamp"])
        x0 = rng.uniform(-0.1, 0.9) * w
        y0 = rng.uniform(-0.1, 0.8) * h
        if kind == "door":
            _rect(img, rng, x0, rng.uniform(-0.2, 0.2) * h, x0 + rng.uniform(0.2, 0.4) * w, h * 1.1,
                  _col(rng, _WALLS) * rng.uniform(0.5, 1.0))
        elif kind == "frame":
            fw, fh = rng.uniform(0.1, 0.35) * w, rng.uniform(0.1, 0.35) * h
            _rect(img, rng, x0, y0, x0 + fw, y0 + fh, rng.uniform(0.05, 0.6, 3))
            inner = rng.uniform(0.15, 0.9, 3).astype(np.float32)
            _rect(img, rng, x0 + 0.1 * fw, y0 + 0.1 * fh, x0 + 0.9 * fw, y0 + 0.9 * fh, inner, shade=False)
        elif kind == "shelf":
            colour = _col(rng, _WALLS[[7, 8, 4]]) * rng.uniform(0.5, 1.0)
            sw = rng.uniform(0.3, 0.8) * w
            for k in range(int(rng.integers(2, 5))):
                y = y0 + k * rng.uniform(0.1, 0.2) * h
                _rect(img, rng, x0, y, x0 + sw, y + 0.025 * h, colour)
                # books on the shelf
                x = x0
                while x < x0 + sw:
                    bw = rng.uniform(0.01, 0.04) * w
                    _rect(img, rng, x, y - rng.uniform(0.05, 0.12) * h, x + bw, y, rng.uniform(0.05, 0.85, 3), shade=False)
                    x += bw * rng.uniform(1.0, 1.3)
        elif kind == "window":
            ww, wh = rng.uniform(0.15, 0.45) * w, rng.uniform(0.2, 0.5) * h
            light = np.clip(_col(rng, _SKIES) * rng.uniform(1.0, 1.4), 0, 1)
            _rect(img, rng, x0, y0, x0 + ww, y0 + wh, light, shade=False)
            cv2.rectangle(img, (int(x0), int(y0)), (int(x0 + ww), int(y0 + wh)), (0.9, 0.9, 0.88), max(1, int(0.015 * w)))
            cv2.line(img, (int(x0 + ww / 2), int(y0)), (int(x0 + ww / 2), int(y0 + wh)), (0.9, 0.9, 0.88), max(1, int(0.01 * w)))
        elif kind == "furniture":
            _rect(img, rng, x0, rng.uniform(0.5, 0.85) * h, x0 + rng.uniform(0.2, 0.6) * w, h * 1.1,
                  rng.uniform(0.05, 0.7, 3))
        else:  # a lamp: a bright blob
            cv2.circle(img, (int(x0), int(y0)), int(rng.uniform(0.03, 0.08) * w), (1.0, 0.95, 0.8), -1)
    return img


def _outdoor(rng, h, w):
    sky = _col(rng, _SKIES)
    img = _gradient(rng, h, w, sky * rng.uniform(1.0, 1.15), sky * rng.uniform(0.75, 0.95), angle=np.pi / 2)
    horizon = rng.uniform(0.2, 0.8) * h
    kind = rng.choice(["trees", "city", "field", "beach"])
    ys = np.arange(h, dtype=np.float32)[:, None, None]
    if kind in ("trees", "field"):
        fol = _col(rng, _FOLIAGE)
        n = _noise(rng, h, w, rng.uniform(3, 12), 1)
        edge = horizon + 0.12 * h * _noise(rng, 1, w, rng.uniform(4, 16), 1)[0, :, 0]
        mask = (ys[..., 0] > edge[None, :]).astype(np.float32)[..., None]
        green = fol * (1 + 0.35 * n) * rng.uniform(0.7, 1.2)
        img = img * (1 - mask) + green * mask
        # sky holes through the leaves
        if kind == "trees":
            holes = (_noise(rng, h, w, rng.uniform(2, 6), 1) > 1.2).astype(np.float32) * mask
            img = img * (1 - holes) + sky * 1.1 * holes
    elif kind == "city":
        x = 0.0
        while x < w:
            bw = rng.uniform(0.08, 0.3) * w
            top = rng.uniform(0.0, 0.6) * h
            colour = _col(rng, _WALLS) * rng.uniform(0.5, 1.0)
            _rect(img, rng, x, top, x + bw, h, colour)
            for wy in np.arange(top + 0.03 * h, h, rng.uniform(0.05, 0.1) * h):  # windows
                for wx in np.arange(x + 0.02 * w, x + bw - 0.02 * w, rng.uniform(0.04, 0.08) * w):
                    cv2.rectangle(img, (int(wx), int(wy)), (int(wx + 0.02 * w), int(wy + 0.025 * h)),
                                  tuple(float(c) for c in colour * rng.uniform(0.4, 1.3)), -1)
            x += bw
    else:  # beach / water
        sea = np.array([0.2, 0.4, 0.55], np.float32) * rng.uniform(0.7, 1.2)
        mask = (ys[..., 0] > horizon).astype(np.float32)[..., None]
        img = img * (1 - mask) + (sea * (1 + 0.15 * _noise(rng, h, w, 3, 1))) * mask
    return img


def _studio(rng, h, w):
    base = _col(rng, _WALLS, 0.08)
    img = _gradient(rng, h, w, base * rng.uniform(0.5, 0.9), base * rng.uniform(0.9, 1.2))
    ys, xs = _grid(h, w)
    cx, cy = rng.uniform(0.3, 0.7) * w, rng.uniform(0.2, 0.6) * h
    r2 = ((xs - cx) ** 2 + (ys - cy) ** 2) / (rng.uniform(0.3, 0.8) * w) ** 2
    return img * (1 + rng.uniform(0.0, 0.4) * np.exp(-r2))[..., None]


def _texture(rng, h, w):
    kind = rng.choice(["brick", "tiles", "wood", "fabric", "stone"])
    c0 = _col(rng, _WALLS, 0.1)
    ys, xs = _grid(h, w)
    s = rng.uniform(0.6, 1.8) * w / 112.0
    if kind == "brick":
        bh, bw = 7 * s, 18 * s
        row = np.floor(ys / bh)
        off = (row % 2) * bw / 2
        mortar = ((ys % bh) < 1.2 * s) | (((xs + off) % bw) < 1.2 * s)
        brick = np.array([0.55, 0.28, 0.2], np.float32) * rng.uniform(0.6, 1.2)
        img = np.where(mortar[..., None], c0 * 0.9, brick * (1 + 0.15 * _noise(rng, h, w, 8, 1)))
    elif kind == "tiles":
        t = 14 * s
        grout = ((ys % t) < 1.0 * s) | ((xs % t) < 1.0 * s)
        img = np.where(grout[..., None], c0 * 0.6, c0 * (1 + 0.05 * _noise(rng, h, w, 20, 1)))
    elif kind == "wood":
        grain = np.sin((xs + 6 * _noise(rng, h, w, 25, 1)[..., 0]) * rng.uniform(0.15, 0.5) / s)
        wood = np.array([0.45, 0.3, 0.18], np.float32) * rng.uniform(0.6, 1.4)
        img = wood * (1 + 0.12 * grain[..., None])
    elif kind == "fabric":
        img = c0 * (1 + 0.1 * np.sin(xs * 1.3 / s)[..., None] * np.sin(ys * 1.3 / s)[..., None]
                    + 0.1 * _noise(rng, h, w, 10, 1))
    else:
        img = c0 * (1 + 0.25 * _noise(rng, h, w, 6, 1) + 0.1 * _noise(rng, h, w, 2, 1))
    return img.astype(np.float32)


def _bokeh(rng, h, w):
    dark = _col(rng, _WALLS) * rng.uniform(0.05, 0.4)
    img = _gradient(rng, h, w, dark, dark * rng.uniform(0.5, 1.5))
    layer = np.zeros_like(img)
    for _ in range(int(rng.integers(8, 40))):
        colour = np.clip(rng.uniform(0.3, 1.0, 3) * rng.uniform(0.5, 1.0), 0, 1)
        r = int(rng.uniform(0.02, 0.1) * w) + 1
        cv2.circle(layer, (int(rng.uniform(0, w)), int(rng.uniform(0, h))), r,
                   tuple(float(c) * rng.uniform(0.3, 0.8) for c in colour), -1, cv2.LINE_AA)
    return img + layer


def _clutter(rng, h, w):
    img = _gradient(rng, h, w, rng.uniform(0, 1, 3).astype(np.float32), rng.uniform(0, 1, 3).astype(np.float32))
    for _ in range(int(rng.integers(4, 14))):
        colour = tuple(float(v) for v in rng.uniform(0, 1, 3))
        x, y = (int(v) for v in rng.uniform(0, 1, 2) * [w, h])
        shape = rng.integers(0, 3)
        if shape == 0:
            cv2.ellipse(img, (x, y), (int(rng.uniform(0.05, 0.35) * w), int(rng.uniform(0.05, 0.35) * h)),
                        float(rng.uniform(0, 180)), 0, 360, colour, -1)
        elif shape == 1:
            a, b = rng.uniform(0.05, 0.4, 2) * [w, h]
            cv2.rectangle(img, (int(x - a), int(y - b)), (int(x + a), int(y + b)), colour, -1)
        else:
            x2, y2 = (int(v) for v in rng.uniform(0, 1, 2) * [w, h])
            cv2.line(img, (x, y), (x2, y2), colour, max(1, int(rng.uniform(0.01, 0.05) * w)))
    return img


_KINDS = {"indoor": _indoor, "outdoor": _outdoor, "studio": _studio, "texture": _texture, "bokeh": _bokeh,
          "clutter": _clutter}


def background(rng: np.random.Generator, size: int, kind: str | None = None) -> tuple[np.ndarray, str]:
    """One random photo background.

    Args:
        rng: the item's generator.
        size: side of the (square) picture in pixels.
        kind: one of :data:`BACKGROUND_KINDS` (default: drawn with their frequencies).

    Returns:
        ``(image [size, size, 3] float32 in [0, 1], kind)``.
    """
    names = list(BACKGROUND_KINDS)
    if kind is None:
        p = np.array([BACKGROUND_KINDS[k] for k in names])
        kind = names[int(rng.choice(len(names), p=p / p.sum()))]
    elif kind not in _KINDS:
        raise ValueError(f"background: unknown kind {kind!r}; choose from {', '.join(names)}")
    # Drawn at a reduced resolution: backgrounds are behind the focal plane, so blurred anyway
    # (a quarter of the picture size when strongly blurred, half otherwise).
    sigma = float(rng.choice([rng.uniform(0.3, 1.0), rng.uniform(1.0, 3.0), rng.uniform(3.0, 7.0)], p=[0.3, 0.45, 0.25]))
    low = max(24, size // 2 if sigma < 1.5 else size // 4)
    img = _KINDS[kind](rng, low, low).astype(np.float32)
    # overall light level and colour cast of the scene
    img = img * np.float32(rng.uniform(0.55, 1.15)) * np.clip(1 + rng.normal(0, 0.06, 3), 0.8, 1.2).astype(np.float32)
    img = cv2.GaussianBlur(img, (0, 0), sigma * low / 112.0)
    img = cv2.resize(img, (size, size), interpolation=cv2.INTER_LINEAR)
    return np.clip(img, 0, 1).astype(np.float32), kind
