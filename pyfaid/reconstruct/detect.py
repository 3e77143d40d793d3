"""Pipeline step 1, detect and crop: the faces of a photo (:class:`Detection`, photo pixels) and each
one warped onto the 224 x 224 template the models see (:class:`Crop`, crop pixels).

    photo --detect--> Detection --crop--> Crop --predict--> Prediction --fit--> Fit --result--> Reconstruction
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional

import numpy as np
import torch

from pyfaid.encoders.align import FaceNotFoundError, align_crop
from pyfaid.encoders.detect_retry import PLAIN, RETRIES, detect_with_retries
from pyfaid.encoders.dlib_landmarks import dlib_landmarks68

__all__ = ["Detection", "Crop", "detect", "select", "crop_face"]


@dataclass(frozen=True)
class Detection:
    """One face found in a photo.

    Attributes:
        box_photo_px: ``[4]`` ``(x0, y0, x1, y1)`` in photo pixels.
        landmarks5_photo_px: ``[5, 2]`` MTCNN's eye centres, nose tip and mouth corners in photo pixels.
        score: the detector's face probability.
    """

    box_photo_px: np.ndarray
    landmarks5_photo_px: np.ndarray
    score: float

    def as_dict(self) -> dict:
        """``{"box", "score", "landmarks5"}``: the form :func:`pyfaid.reconstruct` hands to a ``faces``
        function."""
        return {"box": self.box_photo_px, "score": self.score, "landmarks5": self.landmarks5_photo_px}


@dataclass(frozen=True)
class Crop:
    """One detected face warped onto the 224 template (crop pixels: x right, y down, pixel centres
    at integers).

    Attributes:
        image: ``[3, 224, 224]`` RGB in [0, 1].
        photo_to_crop: ``2 x 3`` similarity from photo pixels to crop pixels.
        landmarks5_crop_px: ``[5, 2]`` the detection's 5 points in the crop.
        detection: the :class:`Detection`.
        source: the photo's name (its path, or ``"array[i]"``).
        item: index of the photo among the inputs of one call.
        photo_size: ``(height, width)`` of the photo.
        landmarks68_crop_px: ``[68, 2]`` dlib's 68 points in the crop (``landmarks="dlib"``), else None.
    """

    image: torch.Tensor
    photo_to_crop: np.ndarray
    landmarks5_crop_px: torch.Tensor
    detection: Detection
    source: str
    item: int
    photo_size: tuple
    landmarks68_crop_px: Optional[torch.Tensor] = None


def _detection(found: dict) -> Detection:
    """A detector's (or a ``faces`` function's) ``{"box", "score", "landmarks5"}`` dict -> :class:`Detection`."""
    return Detection(np.asarray(found["box"], np.float64), np.asarray(found["landmarks5"], np.float64),
                     float(found["score"]))


def _chooser(which) -> Callable[[list], list]:
    """``which`` (``"largest"``, ``"all"`` or a function of the detections) as a function of one
    attempt's detections (dicts, largest first)."""
    if which == "largest":
        return lambda found: found[:1]
    if which == "all":
        return list
    if not callable(which):
        raise ValueError(f"faces must be 'largest', 'all' or a function of the detections, got {which!r}")
    return lambda found: list(which(found))


def detect(photo: np.ndarray, name: str, which="all", retries: bool = True) -> List[Detection]:
    """The faces of a photo to reconstruct, largest first.

    When MTCNN finds no face, or none that ``which`` chooses (a face behind a mask or a hand, cut by
    the border, small), detection is tried again on the photo padded, upscaled, then with lower
    thresholds (:func:`pyfaid.encoders.detect_retry.detect_with_retries`); the first attempt that
    yields a chosen face wins, so a photo the plain detection handles costs nothing more.

    Args:
        photo: ``[H, W, 3]`` uint8 RGB.
        name: the photo's name, for the error.
        which: ``"all"``, ``"largest"`` (one), or a function of the detections (as
            ``{"box", "score", "landmarks5", "attempt"}`` dicts in photo pixels, largest first)
            returning the chosen ones.
        retries: False: the plain detection alone (e.g. a video tracker that looks again in the
            next frame).

    Raises:
        FaceNotFoundError: no face found, or none chosen, by any attempt (naming the photo).
    """
    chosen, found = detect_with_retries(photo, _chooser(which), attempts=(PLAIN,) + (RETRIES if retries else ()))
    if not found:
        tried = " (also padded, upscaled and with lower thresholds)" if retries else ""
        raise FaceNotFoundError(f"{name}: no face detected{tried}")
    if not chosen:
        raise FaceNotFoundError(f"{name}: none of the {len(found)} detected faces was selected")
    return [_detection(d) for d in chosen]


def select(detections: List[Detection], which, name: str) -> List[Detection]:
    """The detections to reconstruct: ``"largest"`` (one), ``"all"``, or a function of the detections
    (as ``{"box", "score", "landmarks5"}`` dicts, largest first) returning the chosen ones.

    Raises:
        FaceNotFoundError: the function chose none.
    """
    picked = [_detection(d) for d in _chooser(which)([det.as_dict() for det in detections])]
    if not picked:
        raise FaceNotFoundError(f"{name}: none of the {len(detections)} detected faces was selected")
    return picked


def crop_face(photo: np.ndarray, detection: Detection, source: str, item: int, device,
              dlib: bool = False) -> Crop:
    """Warp one detected face onto the 224 template.

    Args:
        photo: ``[H, W, 3]`` uint8 RGB.
        detection: the face.
        source, item: the photo's name and its index among the call's inputs.
        device: where the crop's tensors go.
        dlib: also run dlib's 68-point shape predictor on the photo (``landmarks="dlib"``).
    """
    image, m = align_crop(photo, detection.landmarks5_photo_px)
    to_crop = lambda pts: np.asarray(pts, np.float64) @ m[:, :2].T + m[:, 2]  # noqa: E731 (photo -> crop px)
    lm68 = None
    if dlib:
        pts = to_crop(dlib_landmarks68(photo, detection.box_photo_px, detection.landmarks5_photo_px))
        lm68 = torch.as_tensor(pts, dtype=torch.float32, device=device)
    return Crop(image.to(device), m, torch.as_tensor(to_crop(detection.landmarks5_photo_px), dtype=torch.float32,
                                                     device=device),
                detection, source, item, tuple(photo.shape[:2]), lm68)
