"""``pyfaid.reconstruct(...)``: textured 3D faces from photos, one call for one photo or many."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import List, Optional

import numpy as np
import torch

from pyfaid.encoders.align import FaceNotFoundError, align_crop, detect_faces
from pyfaid.encoders.dlib_landmarks import DlibLandmarksUnavailable, dlib_landmarks68, load_shape_predictor
from pyfaid.reconstruct.fitting import PREDICTION_SCHEDULE, FitSchedule  # noqa: F401 (re-exported)
from pyfaid.reconstruct.io import ImageReadError, load_image, to_rgb_uint8
from pyfaid.reconstruct.result import Reconstruction, make_reconstruction

__all__ = ["reconstruct", "ReconstructionError", "NoCheckpointError", "FaceNotFoundError", "ImageReadError",
           "NO_CHECKPOINT_MESSAGE", "DEFAULT_FIT_STEPS", "PREDICTION_SCHEDULE", "LANDMARK_SOURCES", "load_model",
           "DlibLandmarksUnavailable"]


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
        return f"{self.source}: {self.error}"


def load_model(checkpoint, device="cpu"):
    """``(faid_model, face_model)`` from a checkpoint file, run folder or ``"pretrained"`` (loaded
    once per file and device, then cached)."""
    from pyfaid import inference

    model = inference.cached_model(checkpoint, device)
    return model, model.face_model


@dataclass
class _Face:
    """One detected face awaiting reconstruction."""

    item: int
    crop: torch.Tensor
    lm5: torch.Tensor
    transform: np.ndarray
    score: float
    lm68: Optional[torch.Tensor] = None  # [68, 2] dlib's points in crop pixels (landmarks="dlib")


def _name_of(item, index: int) -> str:
    return os.fspath(item) if isinstance(item, (str, os.PathLike)) else f"array[{index}]"


def _read(item, name: str) -> np.ndarray:
    """``[H, W, 3]`` uint8 RGB of one input; raises ImageReadError naming it."""
    return load_image(item) if isinstance(item, (str, os.PathLike)) else to_rgb_uint8(item, name)


def _faces_of(img: np.ndarray, name: str, index: int, which, device, landmarks: str = "head") -> List[_Face]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        found = detect_faces(img)
    if not found:
        raise FaceNotFoundError(f"{name}: no face detected")
    chosen = found[:1] if which == "largest" else found if which == "all" else list(which(found))
    if not chosen:
        raise FaceNotFoundError(f"{name}: none of the {len(found)} detected faces was selected")
    faces = []
    for det in chosen:
        crop, m = align_crop(img, det["landmarks5"])
        lm = np.asarray(det["landmarks5"], np.float64) @ m[:, :2].T + m[:, 2]  # photo -> crop pixels
        lm68 = None
        if landmarks == "dlib":
            pts = dlib_landmarks68(img, det["box"], det["landmarks5"]) @ m[:, :2].T + m[:, 2]  # [68, 2] crop
            lm68 = torch.as_tensor(pts, dtype=torch.float32, device=device)
        faces.append(_Face(index, crop.to(device), torch.as_tensor(lm, dtype=torch.float32, device=device), m,
                           det["score"], lm68))
    return faces


def _resolve_models(checkpoint, model, fit_steps, device):
    from pyfaid import inference
    from pyfaid.checkpoint import pretrained_available

    if model is not None:
        return model if isinstance(model, tuple) else (model, model.face_model)
    if checkpoint == "default":
        checkpoint = "pretrained" if pretrained_available() else None
    if checkpoint is not None:
        return load_model(checkpoint, device)
    if fit_steps <= 0:
        raise NoCheckpointError(NO_CHECKPOINT_MESSAGE)
    return None, inference.default_face_model(device)


def reconstruct(image_or_path, checkpoint="default", fit_steps: Optional[int] = None, device="cpu", faces: str = "largest",
                errors: str = "return", id_loss: bool = False, schedule: Optional[FitSchedule] = None,
                progress: bool = False, model=None, landmarks: str = "head", fill: bool = True):
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
        fill: with a model's segmenter, fitting fills the colour offsets of the vertices the photo
            hides from the visible ones around them (:mod:`pyfaid.reconstruct.fill`); False paints
            every rendered vertex from the photo (closer to a photo whose glasses or hair count).

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
    from pyfaid import inference

    _check_options(faces, errors, landmarks)
    single = not isinstance(image_or_path, (list, tuple))
    items = [image_or_path] if single else list(image_or_path)
    dev = inference.resolve_device(device)
    fit_steps = DEFAULT_FIT_STEPS if fit_steps is None else int(fit_steps)
    net, face_model = _resolve_models(checkpoint, model, fit_steps, dev)
    results: list = [None] * len(items)
    names = [_name_of(it, i) for i, it in enumerate(items)]
    sizes: list = [None] * len(items)
    found: List[_Face] = []
    for i, it in enumerate(items):
        try:
            img = _read(it, names[i])
            sizes[i] = img.shape[:2]
            found += _faces_of(img, names[i], i, faces, dev, landmarks)
        except (ImageReadError, FaceNotFoundError) as exc:
            if single or errors == "raise":
                raise
            results[i] = ReconstructionError(names[i], exc)
    recs = _reconstruct_faces(found, net, face_model, dev, fit_steps, id_loss, schedule, progress, names, sizes,
                              landmarks, fill)
    for face, rec in zip(found, recs):
        if faces != "largest":
            results[face.item] = (results[face.item] or []) + [rec]
        else:
            results[face.item] = rec
    return results[0] if single else results


def _check_options(faces, errors, landmarks) -> None:
    """ValueError naming a bad option; DlibLandmarksUnavailable before any work when dlib is missing."""
    if not callable(faces) and faces not in ("largest", "all"):
        raise ValueError(f"faces must be 'largest', 'all' or a function of the detections, got {faces!r}")
    if errors not in ("return", "raise"):
        raise ValueError(f"errors must be 'return' or 'raise', got {errors!r}")
    if landmarks not in LANDMARK_SOURCES:
        raise ValueError(f"landmarks must be one of {', '.join(map(repr, LANDMARK_SOURCES))}, got {landmarks!r}")
    if landmarks == "dlib":
        load_shape_predictor()


def _with_landmarks(pred: dict, found: List[_Face], landmarks: str) -> dict:
    """The prediction with dlib's points (``[N, 68, 2]`` crop pixels) in place of the head's.

    dlib gives no per-point confidence, and the head's confidences describe the head's own points,
    not dlib's: the confidence is dropped, so fitting weighs dlib's 68 points equally (as it does
    any 68 points without weights), the same with or without a network. Weighting them by the head's
    confidences instead moved the fitted mesh's AFW NME by 0.03 (4.00 % against 4.03 %, 40 steps),
    not worth tying dlib's points to the head."""
    if landmarks != "dlib":
        return pred
    pred = {k: v for k, v in pred.items() if k != "confidence"}
    pred["landmarks"] = torch.stack([f.lm68 for f in found])
    return pred


def _reconstruct_faces(found, net, face_model, dev, fit_steps, id_loss, schedule, progress, names, sizes,
                       landmarks="head", fill=True):
    """Network prediction for every face at once, then test-time fitting face by face."""
    from pyfaid import inference

    if not found:
        return []
    crops = torch.stack([f.crop for f in found])
    lm5 = torch.stack([f.lm5 for f in found])
    pred = _with_landmarks(inference.predict(net, crops) if net is not None else {}, found, landmarks)
    encoder = None
    if fit_steps > 0 and id_loss:
        from pyfaid.metrics import identity_encoders

        encoder = identity_encoders(("dlib",), device=dev).get("dlib")
    coeffs, colors, hist = inference.fit_crops(face_model, crops, pred, lm5, fit_steps, encoder, schedule, progress,
                                              fill=fill)
    renderer = inference.crop_renderer(dev)
    det, conf, vis = pred.get("landmarks"), pred.get("confidence"), pred.get("visibility")
    det3, conf3 = pred.get("landmarks_3d"), pred.get("confidence_3d")
    out = []
    for k, f in enumerate(found):
        out.append(make_reconstruction(face_model, renderer, crops[k], coeffs[k], None if colors is None else colors[k],
                                       lm5[k], names[f.item], f.transform, hist[k], photo_size=tuple(sizes[f.item]),
                                       detected=None if det is None else det[k],
                                       confidence=None if conf is None else conf[k], score=f.score,
                                       visibility=None if vis is None else vis[k],
                                       landmark_source=None if det is None else landmarks,
                                       detected_3d=None if det3 is None else det3[k],
                                       confidence_3d=None if conf3 is None else conf3[k]))
    return out

