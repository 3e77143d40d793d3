"""Face detection that tries again before giving up, as a careful user would.

MTCNN misses faces that a person finds at once: a face behind a mask or a hand (its last stage
scores the occluded face below the acceptance threshold), a face cut by the photo's border, a
small face. :func:`detect_with_retries` runs the plain detection first and, only when it finds
nothing (or nothing the caller selects), the attempts of :data:`RETRIES` in order: the photo
padded (a face at the border gets its whole context window), upscaled (a small face grows past
MTCNN's minimum size), then both with MTCNN's stage thresholds and the acceptance probability
lowered. The first attempt that yields a selected face wins, so a photo the plain detection
handles costs nothing more.

Measured on AFW with each of pyfaid's occluders pasted on (``python -m pyfaid.evaluate --protocol
detection``); the thresholds were chosen on pyfaid's synthetic faces, not on AFW.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence

import cv2
import numpy as np

from pyfaid.encoders.align import MAX_DETECT_SIDE, detect_faces

__all__ = ["Attempt", "RETRIES", "detect_attempt", "detect_with_retries"]


@dataclass(frozen=True)
class Attempt:
    """One way to run the detector on a photo.

    Attributes:
        name: how reports call it.
        pad: border added on every side, as a share of the photo's longer side (filled with the
            photo's mean colour).
        scale: upscaling factor of the photo (1: as it is).
        min_prob: minimum face probability to accept a detection.
        thresholds: MTCNN's three stage thresholds (None: its defaults).
    """

    name: str
    pad: float = 0.0
    scale: float = 1.0
    min_prob: float = 0.9
    thresholds: Optional[tuple] = None


#: The plain detection (:func:`pyfaid.encoders.align.detect_faces`'s defaults).
PLAIN = Attempt("as given")

_LOW = (0.5, 0.5, 0.5)  # MTCNN's stage thresholds on the last retries (its defaults: 0.6, 0.7, 0.7)

#: The attempts after :data:`PLAIN`, in order.
RETRIES = (
    Attempt("padded", pad=0.25),
    Attempt("upscaled", pad=0.1, scale=2.0),
    Attempt("padded, lower thresholds", pad=0.25, min_prob=0.7, thresholds=_LOW),
    Attempt("upscaled, lower thresholds", pad=0.1, scale=2.0, min_prob=0.7, thresholds=_LOW),
)


def detect_attempt(image: np.ndarray, attempt: Attempt, device="cpu", max_side: int = MAX_DETECT_SIDE) -> list:
    """The faces one attempt finds, in the photo's pixels.

    Args:
        image: ``[H, W, 3]`` uint8 RGB. attempt: :class:`Attempt`. device: where MTCNN runs.
        max_side: the plain detection's downscaling limit (an upscaling attempt raises it by its
            factor, else the upscaling would be undone).

    Returns:
        list of dicts as :func:`~pyfaid.encoders.align.detect_faces` gives, each with ``attempt``
        (its name) added; largest first.
    """
    img = image
    if attempt.scale != 1.0:
        img = cv2.resize(img, None, fx=attempt.scale, fy=attempt.scale, interpolation=cv2.INTER_CUBIC)
    pad = int(round(attempt.pad * max(img.shape[:2])))
    if pad > 0:
        fill = [float(v) for v in image.reshape(-1, 3).mean(0)]
        img = cv2.copyMakeBorder(img, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=fill)
    side = int(round(max_side * attempt.scale)) if max_side else 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        found = detect_faces(img, device, attempt.min_prob, side, attempt.thresholds)
    for det in found:  # back to the photo's pixels
        det["box"] = (det["box"] - pad) / attempt.scale
        det["landmarks5"] = (det["landmarks5"] - pad) / attempt.scale
        det["attempt"] = attempt.name
    return found


def detect_with_retries(image: np.ndarray, select: Optional[Callable[[list], list]] = None, device="cpu",
                        attempts: Sequence[Attempt] = (PLAIN,) + RETRIES) -> tuple:
    """Detect faces, trying the next attempt while none is found (or selected).

    Args:
        image: ``[H, W, 3]`` uint8 RGB.
        select: from one attempt's detections (largest first) to the ones wanted (None: all); an
            empty selection moves on to the next attempt.
        device: where MTCNN runs.
        attempts: the attempts in order (default: the plain detection, then :data:`RETRIES`).

    Returns:
        ``(selected, found)``: the selected detections and all of that attempt's detections (each
        with ``attempt`` naming it); ``([], found)`` of the last attempt that found anything when
        none selected one, ``([], [])`` when none found any.
    """
    last: List[dict] = []
    for attempt in attempts:
        found = detect_attempt(image, attempt, device)
        if not found:
            continue
        last = found
        chosen = list(found) if select is None else list(select(found))
        if chosen:
            return chosen, found
    return [], last
