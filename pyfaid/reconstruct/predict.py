"""Pipeline step 2, predict: a FAID model's reconstruction of aligned crops (:class:`Prediction`),
and the models and renderer the steps share (loaded once per device).

    photo --detect--> Detection --crop--> Crop --predict--> Prediction --fit--> Fit --result--> Reconstruction
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Dict, Optional

import torch
import torch.nn.functional as F

from pyfaid import facemodel
from pyfaid.checkpoint import load_model as load_checkpoint_model
from pyfaid.checkpoint import resolve_checkpoint
from pyfaid.render import Renderer

__all__ = ["CROP_SIZE", "Prediction", "predict", "resolve_device", "default_face_model", "cached_model",
           "crop_renderer"]

#: Side of the aligned face crops (:data:`pyfaid.encoders.TEMPLATE_224`).
CROP_SIZE = 224

_CACHE: Dict[str, object] = {}


def resolve_device(device) -> torch.device:
    """``None`` / ``"auto"``: CUDA when available, else the CPU; otherwise ``torch.device(device)``.

    Raises:
        RuntimeError: CUDA asked for but not available.
    """
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r}: no CUDA GPU is available (use 'cpu')")
    return dev


def default_face_model(device="cpu"):
    """The default MakeHuman-derived face model on ``device`` (loaded once, in eval mode)."""
    key = f"facemodel@{device}"
    if key not in _CACHE:
        _CACHE[key] = facemodel.load("default").to(device).eval()
    return _CACHE[key]


def cached_model(checkpoint, device="cpu"):
    """A FAID model from a checkpoint (file, run folder or ``"pretrained"``), loaded once per file,
    modification time and device."""
    path = resolve_checkpoint(checkpoint)
    key = f"model@{os.path.abspath(path)}@{os.path.getmtime(path)}@{device}"
    if key not in _CACHE:
        _CACHE[key] = load_checkpoint_model(path, device)
    return _CACHE[key]


def crop_renderer(device="cpu") -> Renderer:
    """The :class:`~pyfaid.render.Renderer` of the 224 x 224 aligned crops (one per device)."""
    key = f"renderer@{device}"
    if key not in _CACHE:
        _CACHE[key] = Renderer(CROP_SIZE).to(device)
    return _CACHE[key]


@dataclass(frozen=True)
class Prediction:
    """What a network says about ``N`` aligned crops (every field None for the mean face).

    Attributes:
        coeffs: ``[N, layout.size]`` coefficients.
        albedo: ``[N, V, 3]`` per-vertex albedo (the fine stage's when the model has one).
        coarse_albedo: ``[N, V, 3]`` the coarse regressor's albedo (only with a fine stage).
        landmarks_crop_px: ``[N, 68, 2]`` 68 2D-style points (the jaw on the face's visible
            outline) in crop pixels (x right, y down) from the landmark head, or dlib's
            (``landmarks="dlib"``).
        landmark_confidence: ``[N, 68]`` the head's per-point confidences (None for dlib's points).
        landmarks_3d_crop_px: ``[N, 68, 2]`` 68 3D-style points (the landmark vertices projected,
            also where hidden) in crop pixels from the 3D-style head (None without one).
        landmark_confidence_3d: ``[N, 68]`` their confidences.
        visibility: ``[N, 1, 224, 224]`` the segmenter's probability that a crop pixel shows the
            face unoccluded.
    """

    coeffs: Optional[torch.Tensor] = None
    albedo: Optional[torch.Tensor] = None
    coarse_albedo: Optional[torch.Tensor] = None
    landmarks_crop_px: Optional[torch.Tensor] = None
    landmark_confidence: Optional[torch.Tensor] = None
    landmarks_3d_crop_px: Optional[torch.Tensor] = None
    landmark_confidence_3d: Optional[torch.Tensor] = None
    visibility: Optional[torch.Tensor] = None

    def with_landmarks(self, landmarks_crop_px: torch.Tensor) -> "Prediction":
        """The prediction with other 68 points (e.g. dlib's) and no confidences: the head's describe
        its own points, so fitting weighs the new ones equally. The 3D-style points stay."""
        return replace(self, landmarks_crop_px=landmarks_crop_px, landmark_confidence=None)


@torch.no_grad()
def predict(model, crops: torch.Tensor) -> Prediction:
    """FAID forward on aligned crops.

    The crops are resized to the model's render size first (its camera is Deep3DFaceRecon's scaled
    to that size, so the coefficients mean the same at every resolution).

    Args:
        model: :class:`pyfaid.models.FAID` (eval mode), or None for the mean face (an empty
            :class:`Prediction`).
        crops: ``[N, 3, 224, 224]`` aligned faces in [0, 1].

    Returns:
        :class:`Prediction`.
    """
    if model is None:
        return Prediction()
    size = int(model.image_size)
    x = crops
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    out = model(x, render_coarse=False)
    scale = crops.shape[-1] / size  # render pixels -> crop pixels
    lm = None if out.landmarks_head_px is None else (out.landmarks_head_px + 0.5) * scale - 0.5
    lm3 = None if out.landmarks_head_3d_px is None else (out.landmarks_head_3d_px + 0.5) * scale - 0.5
    return Prediction(
        coeffs=out.coeffs, albedo=out.fine_colors,
        coarse_albedo=out.coarse_colors if model.fine is not None else None,
        landmarks_crop_px=lm, landmark_confidence=None if lm is None else out.landmark_confidence,
        landmarks_3d_crop_px=lm3, landmark_confidence_3d=None if lm3 is None else out.landmark_confidence_3d,
        visibility=None if model.segmenter is None else model.segmenter.visibility(crops))
