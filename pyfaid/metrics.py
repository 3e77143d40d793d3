"""Image-space metrics of the FAID paper (section 4.3, Tables 1 and 2).

The paper compares each input photo with the image rendered from its reconstruction using
PSNR, SSIM and identity similarity (cosine of face-recognition embeddings). pyfaid computes:

* ``psnr(pred, target)``: whole-image PSNR, torchmetrics' implementation with ``data_range=1``.
* ``psnr(pred, target, mask)``: *masked* PSNR. The mean squared error is taken over the pixels
  where ``mask > 0.5`` only (all three channels of each such pixel count), then
  ``PSNR = 10 * log10(1 / MSE)``. It is torchmetrics' PSNR applied to the selected pixel values,
  so the pixels outside the mask have no influence at all. An image with an empty mask gets
  ``nan`` (nothing to score); reports aggregate with ``nanmean``.
* ``ssim(pred, target)``: torchmetrics' SSIM (11x11 Gaussian window, sigma 1.5, K1 0.01,
  K2 0.03, ``data_range=1``), one value per image.
* ``ssim(pred, target, mask)``: *masked* SSIM. The full SSIM map (one value per pixel and
  channel, from the same torchmetrics call with ``return_full_image=True``) is averaged over the
  pixels where ``mask > 0.5`` (and over channels). Windows near the mask border still see
  a few outside pixels (that is inherent to SSIM's local windows), but outside-mask map values
  are never averaged in.
* ``id_similarity(pred, target, encoder)``: cosine similarity of identity embeddings from
  :func:`pyfaid.encoders.identity_encoder` (dlib's ResNet port by default; FaceNet when its
  weights are present, see :func:`available_identity_encoders`).

All images are ``[B, 3, H, W]`` RGB float in [0, 1]; masks are ``[B, 1, H, W]`` (or
``[B, H, W]``), 1 inside the region to score.
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional

import torch
from torchmetrics.functional.image import peak_signal_noise_ratio as _tm_psnr
from torchmetrics.functional.image import (
    structural_similarity_index_measure as _tm_ssim,
)

from pyfaid import encoders as _enc

__all__ = [
    "psnr",
    "ssim",
    "id_similarity",
    "identity_encoders",
    "available_identity_encoders",
    "image_metrics",
    "psnr_from_sigma",
]


def _check_pair(pred: torch.Tensor, target: torch.Tensor) -> None:
    if not isinstance(pred, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise TypeError("pred and target must be torch tensors")
    if pred.dim() != 4 or pred.shape[1] not in (1, 3):
        raise ValueError(f"pred must be [B, 3, H, W] (or [B, 1, H, W]), got {tuple(pred.shape)}")
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")


def _check_mask(mask: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    if mask.dim() == 3:
        mask = mask[:, None]
    B, _, H, W = pred.shape
    if mask.dim() != 4 or mask.shape[0] != B or mask.shape[1] != 1 or mask.shape[2:] != (H, W):
        raise ValueError(f"mask must be [B, 1, H, W] = [{B}, 1, {H}, {W}], got {tuple(mask.shape)}")
    return mask.to(pred.device) > 0.5


def psnr(pred: torch.Tensor, target: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Peak signal-to-noise ratio per image, ``data_range = 1``.

    Args:
        pred: ``[B, C, H, W]`` images in [0, 1].
        target: ``[B, C, H, W]`` reference images in [0, 1].
        mask: optional ``[B, 1, H, W]``; when given, the MSE is taken over the pixels with
            ``mask > 0.5`` only (every channel of each such pixel).

    Returns:
        ``[B]`` PSNR in dB; ``inf`` where the images agree exactly (inside the mask). An image
        whose mask is empty gets ``nan`` (there is nothing to score); aggregate with
        ``nanmean``.
    """
    _check_pair(pred, target)
    pred = pred.detach().float()
    target = target.detach().float().to(pred.device)
    out = []
    if mask is None:
        return _tm_psnr(pred, target, data_range=1.0, reduction="none", dim=(1, 2, 3)).reshape(-1)
    m = _check_mask(mask, pred).expand_as(pred)
    for b in range(pred.shape[0]):
        sel = m[b]
        if not bool(sel.any()):
            out.append(torch.tensor(float("nan"), device=pred.device))
            continue
        out.append(_tm_psnr(pred[b][sel], target[b][sel], data_range=1.0))
    return torch.stack(out)


def ssim(pred: torch.Tensor, target: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Structural similarity per image (torchmetrics, Gaussian 11x11 window, sigma 1.5).

    Args:
        pred: ``[B, C, H, W]`` images in [0, 1] (H, W >= 11).
        target: ``[B, C, H, W]`` reference images in [0, 1].
        mask: optional ``[B, 1, H, W]``; when given, the SSIM map is averaged over the pixels with
            ``mask > 0.5`` (and over channels) instead of over the whole image.

    Returns:
        ``[B]`` SSIM in [-1, 1] (1 for identical images); ``nan`` for an empty mask.
    """
    _check_pair(pred, target)
    if min(pred.shape[-2:]) < 11:
        raise ValueError(f"ssim needs images of at least 11x11 pixels, got {tuple(pred.shape[-2:])}")
    pred = pred.detach().float()
    target = target.detach().float().to(pred.device)
    whole, smap = _tm_ssim(pred, target, data_range=1.0, reduction="none", return_full_image=True)
    if mask is None:
        return whole.reshape(-1)
    m = _check_mask(mask, pred).expand_as(smap).float()
    count = m.sum(dim=(1, 2, 3))
    val = (smap * m).sum(dim=(1, 2, 3)) / count.clamp_min(1)
    return torch.where(count > 0, val, torch.full_like(val, float("nan")))


_ENCODER_CACHE: Dict[str, object] = {}


def identity_encoders(names=("dlib", "facenet"), device="cpu") -> Dict[str, object]:
    """Identity encoders that can run here, by name.

    dlib's face-recognition ResNet ships with pyfaid's dependencies and is always tried; FaceNet
    (vggface2 InceptionResnetV1) is used only when its weights are available locally. An encoder
    whose weights are missing is left out (never replaced by a random-weight network).

    Args:
        names: encoder names for :func:`pyfaid.encoders.identity_encoder`.
        device: device to put them on.

    Returns:
        dict name -> encoder with ``embed(images [B, 3, 224, 224]) -> [B, D]``.
    """
    out = {}
    for name in names:
        key = f"{name}@{device}"
        if key not in _ENCODER_CACHE:
            try:
                enc = _enc.identity_encoder(name)
            except (FileNotFoundError, RuntimeError, OSError, ImportError, ValueError) as exc:
                _ENCODER_CACHE[key] = exc
                continue
            if hasattr(enc, "to"):
                enc = enc.to(device)
            if hasattr(enc, "eval"):
                enc.eval()
            _ENCODER_CACHE[key] = enc
        enc = _ENCODER_CACHE[key]
        if not isinstance(enc, Exception):
            out[name] = enc
    return out


def available_identity_encoders(device="cpu") -> List[str]:
    """Names of the identity encoders whose weights are present (``"dlib"`` first)."""
    return list(identity_encoders(device=device))


@torch.no_grad()
def id_similarity(pred: torch.Tensor, target: torch.Tensor, encoder="dlib") -> torch.Tensor:
    """Cosine similarity of identity embeddings of two image batches.

    Args:
        pred: ``[B, 3, 224, 224]`` aligned face crops in [0, 1] (e.g. renders).
        target: ``[B, 3, 224, 224]`` aligned face crops in [0, 1] (the reference photos).
        encoder: an encoder name (``"dlib"`` or ``"facenet"``) or an object with
            ``embed(images) -> [B, D]``.

    Returns:
        ``[B]`` cosine similarities in [-1, 1].
    """
    _check_pair(pred, target)
    if isinstance(encoder, str):
        encs = identity_encoders((encoder,), device=pred.device)
        if encoder not in encs:
            err = _ENCODER_CACHE.get(f"{encoder}@{pred.device}")
            raise RuntimeError(f"identity encoder {encoder!r} is not available here: {err}")
        encoder = encs[encoder]
    ea = encoder.embed(pred.float())
    eb = encoder.embed(target.float().to(pred.device))
    return torch.nn.functional.cosine_similarity(ea, eb, dim=-1)


def image_metrics(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: Optional[torch.Tensor] = None,
    encoders: Optional[Dict[str, object]] = None,
) -> Dict[str, torch.Tensor]:
    """All image metrics of the paper for one batch.

    Args:
        pred: ``[B, 3, H, W]`` renders in [0, 1].
        target: ``[B, 3, H, W]`` reference images in [0, 1].
        mask: optional ``[B, 1, H, W]`` face mask (rendered face region).
        encoders: dict name -> identity encoder (see :func:`identity_encoders`); none by default.

    Returns:
        dict of ``[B]`` tensors: ``psnr``, ``ssim`` (whole image), ``psnr_mask``, ``ssim_mask``
        (when a mask is given), ``id_<name>`` per encoder.
    """
    out = {"psnr": psnr(pred, target), "ssim": ssim(pred, target)}
    if mask is not None:
        out["psnr_mask"] = psnr(pred, target, mask)
        out["ssim_mask"] = ssim(pred, target, mask)
    for name, enc in (encoders or {}).items():
        out[f"id_{name}"] = id_similarity(pred, target, enc)
    return out


def psnr_from_sigma(sigma: float) -> float:
    """PSNR in dB expected for additive Gaussian noise of standard deviation ``sigma``."""
    return 10.0 * math.log10(1.0 / (sigma * sigma))
