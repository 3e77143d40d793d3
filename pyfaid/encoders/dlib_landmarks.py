"""dlib's 68-point shape predictor on an MTCNN detection: the opt-in alternative to pyfaid's landmark head.

LICENCE CAVEAT. dlib's ``shape_predictor_68_face_landmarks.dat`` (shipped in the PyPI package
``face-recognition-models``) was trained on the iBUG 300-W data set, whose licence excludes
commercial use, so points from it carry that restriction. 300-W includes AFW (and HELEN, LFPW,
iBUG), so landmark scores on AFW with this predictor are *not* a fair held-out measure. pyfaid's
default stays its own landmark head, trained only on its synthetic faces (licence-clean); this
module is used only when asked for (``pyfaid.reconstruct(..., landmarks="dlib")``,
``--landmarks dlib``). Nothing is downloaded: without dlib or the model file the call raises
:class:`DlibLandmarksUnavailable` saying what to ``pip install``.

Box mapping. dlib's predictor regresses from the box of dlib's own frontal face detector, which is
square, smaller than MTCNN's box and centred nearer the nose. The constants below are fitted on
pyfaid's own synthetic faces, not on any benchmark photo: 960 photo-like 448-pixel frames of
:class:`pyfaid.synth.faces.SyntheticFaces` (``framing="exact"``, no occluders; head, hair,
clothes, background, lighting and camera effects; yaw up to +-80 degrees; 480 frames at 12 face
sizes spread evenly over three steps of the detector's 6/5 pyramid, 480 at two), in 684 of which
both MTCNN and dlib's detector (upsampled once) found the face (median |yaw| 14 degrees, 90 %
below 36: dlib's frontal detector seldom fires past 45). dlib's box centre lay 0.48 of the way from MTCNN's box centre to MTCNN's nose
point (least squares; bootstrap s.d. 0.007, 0.42-0.54 across |yaw| bins; residual s.d. 0.03 / 0.05
of ``sqrt(w * h)`` in x / y, against 0.09 / 0.05 without the nose term) and its side was 0.94 x
``sqrt(w * h)`` of MTCNN's box (median; spread 0.09, mostly the pyramid's steps); without the nose
point its centre was shifted by (0.00, 0.045) of (w, h) (medians; spread 0.11 / 0.04). Fitted to
dlib's boxes, not to any annotation. Evaluation only (nothing is fitted on AFW): the predictor's
68-point NME (box normalisation, all 336 AFW photos where MTCNN finds the face) from that box is
2.14 % (inner 51: 1.81 %), from dlib's own detector boxes 2.18 % (309 photos, where it finds the
face), from MTCNN's box as it is 4.54 % (a square of its width on its centre: 4.12 %), from MTCNN's
box shifted and scaled without the nose point (:data:`BOX_SHIFT`, used when no 5 points are given)
3.56 %.
"""

from __future__ import annotations

import threading
from typing import Optional

import numpy as np

from pyfaid.encoders.dlib_resnet import dlib_model_path

__all__ = ["dlib_landmarks68", "dlib_rectangle_box", "load_shape_predictor", "predictor_path",
           "DlibLandmarksUnavailable", "MODEL_FILE", "LICENCE_NOTE", "NOSE_PULL", "BOX_SIDE", "BOX_SHIFT"]

#: The predictor's file inside ``face-recognition-models``' ``models/`` folder.
MODEL_FILE = "shape_predictor_68_face_landmarks.dat"

#: One line for CLI help and reports.
LICENCE_NOTE = ("dlib's 68-point model is trained on iBUG 300-W (licence: non-commercial use only), which "
                "includes AFW, so AFW scores with it are not held out")

INSTALL_HINT = "pip install dlib-bin face-recognition-models  (or `pip install dlib`, which compiles it)"

#: dlib box centre = MTCNN box centre + NOSE_PULL * (MTCNN nose point - MTCNN box centre).
NOSE_PULL = 0.48
#: dlib box side = BOX_SIDE * sqrt(w * h) of MTCNN's box.
BOX_SIDE = 0.94
#: Without the 5 points: centre shift ``(dx / w, dy / h)`` of dlib's box from MTCNN's (medians on synthetic frames).
BOX_SHIFT = (0.0, 0.045)

_LOCK = threading.Lock()
_PREDICTORS: dict = {}


class DlibLandmarksUnavailable(RuntimeError):
    """``landmarks="dlib"`` was asked for, but dlib or its 68-point model file is not installed."""


def predictor_path() -> str:
    """Path of ``shape_predictor_68_face_landmarks.dat`` in ``face-recognition-models`` (found
    without importing the package, whose ``__init__`` needs ``pkg_resources``).

    Raises:
        DlibLandmarksUnavailable: the package or the file is missing.
    """
    try:
        return str(dlib_model_path(MODEL_FILE))
    except FileNotFoundError as exc:
        raise DlibLandmarksUnavailable(
            f"landmarks='dlib' needs dlib's 68-point model from the PyPI package face-recognition-models "
            f"({exc}): {INSTALL_HINT}") from exc


def _import_dlib():
    try:
        import dlib
    except ImportError as exc:
        raise DlibLandmarksUnavailable(
            f"landmarks='dlib' needs the dlib Python module ({exc}): {INSTALL_HINT}") from exc
    return dlib


def load_shape_predictor():
    """dlib's 68-point ``shape_predictor`` (loaded once, then cached).

    Raises:
        DlibLandmarksUnavailable: dlib or the model file is missing (the message says what to install).
    """
    dlib = _import_dlib()
    path = predictor_path()
    with _LOCK:
        if path not in _PREDICTORS:
            _PREDICTORS[path] = dlib.shape_predictor(path)
        return _PREDICTORS[path]


def dlib_rectangle_box(box, landmarks5: Optional[np.ndarray] = None) -> np.ndarray:
    """The square box, in dlib's detector's convention, of an MTCNN detection.

    Args:
        box: ``[4]`` MTCNN's ``[x0, y0, x1, y1]`` in photo pixels.
        landmarks5: ``[5, 2]`` MTCNN's points (the nose tip, index 2, places the box), or None
            (then the box is shifted by :data:`BOX_SHIFT`, less accurate on turned heads).

    Returns:
        ``[4]`` float64 ``[left, top, right, bottom]`` in photo pixels.
    """
    b = np.asarray(box, np.float64).reshape(-1)
    if b.shape != (4,) or not np.all(np.isfinite(b)) or b[2] <= b[0] or b[3] <= b[1]:
        raise ValueError(f"box must be [x0, y0, x1, y1] with x1 > x0 and y1 > y0, got {box!r}")
    w, h = b[2] - b[0], b[3] - b[1]
    centre = np.array([(b[0] + b[2]) / 2, (b[1] + b[3]) / 2])
    if landmarks5 is None:
        centre = centre + np.array(BOX_SHIFT) * [w, h]
    else:
        lm = np.asarray(landmarks5, np.float64)
        if lm.shape != (5, 2):
            raise ValueError(f"landmarks5 must be [5, 2], got shape {lm.shape}")
        centre = centre + NOSE_PULL * (lm[2] - centre)
    half = 0.5 * BOX_SIDE * np.sqrt(w * h)
    return np.array([centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half])


def dlib_landmarks68(image: np.ndarray, box, landmarks5: Optional[np.ndarray] = None) -> np.ndarray:
    """dlib's 68 iBUG points of the face an MTCNN detection found (see the module's licence caveat).

    Args:
        image: ``[H, W, 3]`` uint8 RGB photo (the one the detection was made on).
        box: ``[4]`` MTCNN's ``[x0, y0, x1, y1]`` in photo pixels.
        landmarks5: ``[5, 2]`` MTCNN's 5 points in photo pixels (recommended), or None.

    Returns:
        ``[68, 2]`` float64 points in photo pixels (x right, y down), iBUG order.

    Raises:
        DlibLandmarksUnavailable: dlib or the model file is not installed.
        ValueError: ``image`` is not ``[H, W, 3]`` uint8, or the box is degenerate.
    """
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"image must be [H, W, 3] uint8 RGB, got shape {img.shape} and dtype {img.dtype}")
    predictor = load_shape_predictor()
    import dlib

    left, top, right, bottom = (int(round(v)) for v in dlib_rectangle_box(box, landmarks5))
    shape = predictor(np.ascontiguousarray(img), dlib.rectangle(left, top, right, bottom))
    return np.array([[shape.part(k).x, shape.part(k).y] for k in range(68)], np.float64)
