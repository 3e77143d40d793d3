"""Camera effects on a finished picture: optics, sensor, image processing and JPEG.

A render is too clean to pass for a photo. :func:`sample_effects` draws one camera for an item
(all random numbers, noise fields included, come from the item's generator) and
:func:`apply_effects` runs it on a picture, so the clean and the occluded picture of an item go
through exactly the same camera. The chain, in the order a camera applies it:

* optics: defocus (Gaussian) or motion blur, lateral chromatic aberration (red and blue scaled
  about the centre), vignetting;
* sensor: exposure, signal-dependent shot noise plus read noise (luminance at full resolution,
  chroma at half resolution), a low-resolution sensor (down- and up-sampled);
* processing: white balance and saturation (one colour matrix), gamma / contrast curve (an 8-bit
  lookup table), unsharp-mask sharpening;
* JPEG at a random quality (OpenCV's encoder, 4:2:0 chroma), decoded back.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["sample_effects", "apply_effects"]


def sample_effects(rng: np.random.Generator, size: int, strength: float = 1.0, blur_prob: float = 0.4,
                   noise_prob: float = 0.6) -> dict:
    """Draw one camera's settings for a ``size`` x ``size`` picture.

    Args:
        rng: the item's generator.
        size: picture side in pixels (blur radii and noise fields scale with it).
        strength: 0 turns every effect off, 1 is the default mix, larger is harsher.
        blur_prob: probability of a defocus blur (at strength 1).
        noise_prob: probability of sensor noise (at strength 1).

    Returns:
        dict of settings for :func:`apply_effects` (``"jpeg"`` is the quality or 0, and so on).
    """
    s = size / 224.0
    p = float(np.clip(strength, 0.0, 2.0))
    fx = {"size": size}
    u = rng.random(8)
    fx["defocus"] = float(rng.uniform(0.3, 1.3) * s) if u[0] < blur_prob * min(p, 1.0) else 0.0
    fx["motion"] = (float(rng.uniform(2.0, 6.0) * s), float(rng.uniform(0, np.pi))) if u[1] < 0.06 * p else None
    fx["aberration"] = float(rng.uniform(0.3, 1.0) / (size / 2.0)) * rng.choice([-1.0, 1.0]) if u[2] < 0.3 * p else 0.0
    fx["vignette"] = float(rng.uniform(0.1, 0.45)) if u[3] < 0.4 * p else 0.0
    # exposure, white balance and saturation: one colour matrix
    exposure = float(np.exp(rng.normal(0.0, 0.2 * p)))
    wb = np.exp(rng.normal(0.0, 0.06 * p, 3))
    sat = float(np.exp(rng.normal(0.0, 0.18 * p)))
    grey = np.full((3, 3), 1.0 / 3.0)
    fx["matrix"] = (exposure * np.diag(wb) @ (sat * np.eye(3) + (1 - sat) * grey)).astype(np.float32)
    # tone curve (gamma and an S-curve) as an 8-bit lookup table
    gamma = float(np.exp(rng.normal(0.0, 0.12 * p)))
    contrast = float(rng.normal(0.0, 0.22 * p))
    x = np.linspace(0, 1, 256)
    y = x ** (1.0 / gamma)
    y = y + contrast * y * (1 - y) * (2 * y - 1) * 2
    fx["lut"] = np.clip(np.round(y * 255), 0, 255).astype(np.uint8)
    fx["sharpen"] = float(rng.uniform(0.2, 0.7)) if u[4] < 0.2 * p else 0.0
    fx["lowres"] = float(rng.uniform(0.4, 0.8)) if u[5] < 0.15 * p else 1.0
    fx["jpeg"] = int(rng.integers(35, 96)) if u[6] < min(0.7 * p, 0.95) else 0
    if u[7] < noise_prob * min(p, 1.0):
        # signal-dependent shot noise and read noise: luminance at full, chroma at half resolution
        shot = float(rng.uniform(0.0, 0.0015) * p)
        read = float(rng.uniform(0.002, 0.012) * p)
        luma, chroma = _noise_bank(size)
        oy, ox = (int(v) for v in rng.integers(0, size + 1, 2))
        cy, cx = (int(v) for v in rng.integers(0, size + 1, 2))
        field = luma[oy:oy + size, ox:ox + size] + chroma[cy:cy + size, cx:cx + size] * np.float32(rng.uniform(0.2, 0.6))
        fx["noise"] = (shot, read, field)
    else:
        fx["noise"] = None
    return fx


def apply_effects(image: np.ndarray, fx: dict) -> np.ndarray:
    """Run one camera (from :func:`sample_effects`) on a picture.

    Args:
        image: ``[H, W, 3]`` float32 RGB in [0, 1] (linear-ish scene colours).
        fx: the settings.

    Returns:
        ``[H, W, 3]`` uint8 RGB (the photo file, JPEG-decoded when JPEG was drawn).
    """
    size = fx["size"]
    if image.shape[:2] != (size, size):
        raise ValueError(f"apply_effects: settings are for {size}x{size}, image is {image.shape[1]}x{image.shape[0]}")
    img = np.ascontiguousarray(image, np.float32)
    # optics
    if fx["defocus"] > 0:
        img = cv2.GaussianBlur(img, (0, 0), fx["defocus"])
    if fx["motion"] is not None:
        length, ang = fx["motion"]
        k = int(np.ceil(length)) | 1
        kernel = np.zeros((k, k), np.float32)
        c = k // 2
        d = np.array([np.cos(ang), np.sin(ang)]) * length / 2
        cv2.line(kernel, (int(round(c - d[0])), int(round(c - d[1]))), (int(round(c + d[0])), int(round(c + d[1]))), 1.0, 1)
        img = cv2.filter2D(img, -1, kernel / max(float(kernel.sum()), 1e-6), borderType=cv2.BORDER_REFLECT)
    if fx["aberration"] != 0:
        centre = (size - 1) / 2.0
        chans = list(cv2.split(img))
        for ch, sign in ((0, 1.0), (2, -1.0)):
            a = 1.0 + sign * fx["aberration"]
            m = np.array([[a, 0, centre * (1 - a)], [0, a, centre * (1 - a)]], np.float32)
            chans[ch] = cv2.warpAffine(chans[ch], m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        img = cv2.merge(chans)
    if fx["vignette"] > 0:
        img = img * _vignette(size, fx["vignette"])
    # sensor: exposure and colour, noise, 8-bit quantisation
    img = cv2.transform(img, fx["matrix"])
    if fx["noise"] is not None:
        shot, read, field = fx["noise"]
        lum = cv2.cvtColor(np.clip(img, 0, 1), cv2.COLOR_RGB2GRAY)
        sigma = cv2.sqrt(lum * np.float32(shot) + np.float32(read * read))
        img = img + field * sigma[..., None]
    u8 = cv2.convertScaleAbs(img, alpha=255.0)
    # processing: tone curve, low-resolution sensor, sharpening, JPEG
    u8 = cv2.LUT(u8, fx["lut"])
    if fx["lowres"] < 1.0:
        small = max(8, int(round(size * fx["lowres"])))
        u8 = cv2.resize(cv2.resize(u8, (small, small), interpolation=cv2.INTER_AREA), (size, size),
                        interpolation=cv2.INTER_LINEAR)
    if fx["sharpen"] > 0:
        blur = cv2.GaussianBlur(u8, (0, 0), 1.0 * size / 224.0)
        u8 = cv2.addWeighted(u8, 1.0 + fx["sharpen"], blur, -fx["sharpen"], 0)
    if fx["jpeg"]:
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(u8, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(fx["jpeg"])])
        if ok:  # OpenCV encodes BGR: convert there and back so the chroma planes are the real ones
            u8 = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(u8)


_VIGNETTES: dict = {}
_NOISE_BANKS: dict = {}


def _noise_bank(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Fixed sensor-noise fields twice the picture size (luminance ``[2S, 2S, 3]`` equal channels,
    chroma at half resolution upsampled); an item takes windows at random offsets."""
    if size not in _NOISE_BANKS:
        rng = np.random.default_rng(5150)
        luma = np.repeat(rng.standard_normal((2 * size, 2 * size, 1), dtype=np.float32), 3, axis=2)
        half = max(2, size)
        chroma = cv2.resize(rng.standard_normal((half, half, 3), dtype=np.float32), (2 * size, 2 * size),
                            interpolation=cv2.INTER_LINEAR)
        _NOISE_BANKS[size] = (luma, chroma)
    return _NOISE_BANKS[size]


def _vignette(size: int, k: float) -> np.ndarray:
    if size not in _VIGNETTES:
        ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
        c = (size - 1) / 2.0
        _VIGNETTES[size] = (((xs - c) ** 2 + (ys - c) ** 2) / (2 * c * c))[..., None]
    return np.float32(1.0) - np.float32(k) * _VIGNETTES[size]
