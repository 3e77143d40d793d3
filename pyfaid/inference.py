"""Inference helpers shared by :mod:`pyfaid.reconstruct` and :mod:`pyfaid.evaluate`.

* :func:`resolve_device` - ``"auto"`` / ``"cpu"`` / ``"cuda"`` to a ``torch.device``.
* :func:`default_face_model` - the default face model, loaded once per device.
* :func:`crop_renderer` - the renderer of the 224 x 224 aligned crops (Deep3DFaceRecon's camera).
* :func:`predict` - a FAID model's coefficients and (fine) albedo for aligned crops.
"""

from __future__ import annotations

from typing import Dict

import torch
import torch.nn.functional as F

__all__ = ["resolve_device", "default_face_model", "cached_model", "crop_renderer", "predict", "fit_crops",
           "CROP_SIZE"]

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
        from pyfaid import facemodel

        _CACHE[key] = facemodel.load("default").to(device).eval()
    return _CACHE[key]


def cached_model(checkpoint, device="cpu"):
    """A FAID model from a checkpoint (file, run folder or ``"pretrained"``), loaded once per file,
    modification time and device."""
    import os

    from pyfaid.checkpoint import load_model, resolve_checkpoint

    path = resolve_checkpoint(checkpoint)
    key = f"model@{os.path.abspath(path)}@{os.path.getmtime(path)}@{device}"
    if key not in _CACHE:
        _CACHE[key] = load_model(path, device)
    return _CACHE[key]


def crop_renderer(device="cpu"):
    """A :class:`~pyfaid.render.Renderer` for the 224 x 224 aligned crops (one per device)."""
    key = f"renderer@{device}"
    if key not in _CACHE:
        from pyfaid.render import Renderer

        _CACHE[key] = Renderer(CROP_SIZE).to(device)
    return _CACHE[key]


@torch.no_grad()
def predict(model, crops: torch.Tensor) -> dict:
    """FAID forward on aligned crops.

    The crops are resized to the model's render size first (its camera is Deep3DFaceRecon's scaled
    to that size, so the coefficients mean the same at every resolution).

    Args:
        model: :class:`pyfaid.models.FAID` (eval mode).
        crops: ``[B, 3, 224, 224]`` aligned faces in [0, 1].

    Returns:
        dict with ``coeffs [B, layout.size]``, ``colors [B, V, 3]`` (fine albedo), with a fine
        stage ``coarse_colors [B, V, 3]``, with a landmark head ``landmarks [B, 68, 2]`` (2D-style,
        pixels of the crop) and ``confidence [B, 68]``, with a 3D-style head ``landmarks_3d`` and
        ``confidence_3d`` likewise, and with a segmenter ``visibility [B, 1, 224, 224]``
        (probability that a pixel shows the face unoccluded).
    """
    size = int(model.image_size)
    x = crops
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    out = model(x, render_coarse=False)
    res = {"coeffs": out.coeffs, "colors": out.fine_colors}
    if getattr(model, "fine", None) is not None:
        res["coarse_colors"] = out.coarse_colors
    if getattr(model, "segmenter", None) is not None:
        res["visibility"] = model.segmenter.visibility(crops)  # [B, 1, 224, 224]
    if out.landmarks_head is not None:
        res["landmarks"] = (out.landmarks_head + 0.5) * (crops.shape[-1] / size) - 0.5
        res["confidence"] = out.landmark_confidence
    if out.landmarks_head_3d is not None:
        res["landmarks_3d"] = (out.landmarks_head_3d + 0.5) * (crops.shape[-1] / size) - 0.5
        res["confidence_3d"] = out.landmark_confidence_3d
    return res


def _confidence_weights(conf: torch.Tensor) -> torch.Tensor:
    """Landmark weights from the head's confidences ``exp(-log_scale)``: relative to each face's
    median, clipped to [0.1, 1] so no point dominates."""
    rel = conf / conf.median(dim=1, keepdim=True).values.clamp_min(1e-6)
    return rel.clamp(0.1, 1.0)


def fit_crops(face_model, crops: torch.Tensor, pred: dict, landmarks5, steps: int, id_encoder=None,
              schedule=None, progress: bool = False, fill: bool = True):
    """Coefficients and albedo of aligned crops: the prediction ``pred`` (from :func:`predict`,
    or ``{}`` for the mean face), refined by ``steps`` of test-time fitting per face.

    Args:
        face_model: MorphableModel. crops: ``[N, 3, 224, 224]``. pred: see :func:`predict`.
        landmarks5: ``[N, 5, 2]`` MTCNN points in crop pixels (or None).
        steps: fitting steps per face (0 = the prediction as it is).
        id_encoder, progress: see :func:`pyfaid.reconstruct.fitting.fit`.
        fill: with a segmenter's ``visibility`` in ``pred``, do not paint the vertices the photo
            hides but fill them from the visible ones (see :func:`~pyfaid.reconstruct.fitting.fit`);
            with a fine stage (``coarse_colors`` in ``pred``) fitting starts from
            :func:`~pyfaid.reconstruct.fill.fill_refinement` of its colours.
        schedule: see :func:`~pyfaid.reconstruct.fitting.fit`; None: ``PREDICTION_SCHEDULE`` when
            starting from a network's prediction, ``FitSchedule()`` from the mean face.

    Returns:
        ``(coeffs [N, layout.size], colors [N, V, 3] or None, histories)``.
    """
    n = crops.shape[0]
    coeffs = pred.get("coeffs")
    if coeffs is None:
        coeffs = face_model.layout.zeros(n, device=crops.device)
    colors = pred.get("colors")
    if steps <= 0:
        return coeffs, colors, [[] for _ in range(n)]
    from pyfaid.reconstruct.fitting import PREDICTION_SCHEDULE, fit

    if schedule is None and pred.get("coeffs") is not None:
        schedule = PREDICTION_SCHEDULE

    renderer = crop_renderer(crops.device)
    coarse, vis_all = pred.get("coarse_colors"), pred.get("visibility")
    if fill and colors is not None and coarse is not None and vis_all is not None:  # a fine stage's colours
        from pyfaid.reconstruct.fill import fill_refinement

        colors = fill_refinement(face_model, renderer, coeffs, colors, coarse, vis_all)
    out_c, out_col, hists = [], [], []
    for i in range(n):
        lm = None if landmarks5 is None else landmarks5[i:i + 1]
        lm68, conf, vis = pred.get("landmarks"), pred.get("confidence"), pred.get("visibility")
        lm3d, conf3d = pred.get("landmarks_3d"), pred.get("confidence_3d")
        c, col, hist = fit(face_model, renderer, crops[i:i + 1], coeffs[i:i + 1],
                           None if colors is None else colors[i:i + 1], lm, steps, id_encoder=id_encoder,
                           schedule=schedule, progress=progress,
                           landmarks68=None if lm68 is None else lm68[i:i + 1],
                           landmark_weights=None if conf is None else _confidence_weights(conf[i:i + 1]),
                           visibility=None if vis is None else vis[i:i + 1], fill=fill,
                           landmarks3d=None if lm3d is None else lm3d[i:i + 1],
                           landmark3d_weights=None if conf3d is None else _confidence_weights(conf3d[i:i + 1]))
        out_c.append(c)
        out_col.append(col)
        hists.append(hist)
    return torch.cat(out_c), torch.cat(out_col), hists
