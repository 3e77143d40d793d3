"""Synthetic occluders for aligned face images.

``occlude`` pastes random occluders onto a batch of aligned face images (faces centred, as in the
224x224 crops the models use): sunglasses (two dark lenses with a bridge, or a band across the
eyes), clear glasses (opaque frames, see-through tinted lenses: only the frames count as occluder
pixels), hands (skin-coloured palms with finger-like protrusions), hair (many thin curved strands
across the forehead and eyes), textured patches (noise, stripes, checker, photo-like gradients)
and pixel-noise regions (drawn by :mod:`pyfaid.occlusion.occluders`). It is used for the occluded-CelebA
protocol and for the model's ``I_occ`` self-augmentation.

Shapes are drawn with OpenCV on per-image numpy canvases, colours only inside each shape's
bounding box. :func:`occlude` works on torch batches (differentiable with respect to the images);
:func:`occlude_arrays` is the same on numpy pictures, for data generators. Every image draws its own random
numbers from ``numpy.random.default_rng((seed, index))``, so a fixed seed gives the same occluders
for image ``index`` whatever the batch it sits in.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np
import torch

from pyfaid.occlusion.occluders import OCCLUDER_KINDS, OCCLUDERS
from pyfaid.occlusion.shapes import Frame

__all__ = ["occlude", "occlude_arrays", "OCCLUDER_KINDS"]

# Relative frequency of each kind when ``kinds`` is not given.
_KIND_WEIGHTS = {"sunglasses": 1.0, "glasses": 1.0, "hand": 1.0, "hair": 0.5, "patch": 1.0, "noise": 0.6, "mask": 0.6}


def _occlude_one(
    image: np.ndarray,
    rng: np.random.Generator,
    kinds: Sequence[str],
    max_occluders: int,
    coverage: tuple[float, float],
    covered: np.ndarray,
    frame: Frame,
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
        got = OCCLUDERS[kind](rng, image, frame)
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
    unknown = [k for k in kinds if k not in OCCLUDERS]
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
        frame = Frame(size, None if lms is None else lms[b])
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
