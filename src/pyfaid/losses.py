"""FAID losses (paper Sec. 3.2.4) and the coarse model's coefficient regularisers.

Every function returns a scalar tensor (mean over the batch); :func:`faid_losses` combines them and
returns each term separately so they can be logged one by one.

Image conventions: ``[B, 3, H, W]`` RGB in [0, 1]; masks ``[B, 1, H, W]`` in {0, 1}.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F

ENCODER_SIZE = 224  # identity / attribute encoders take aligned 224x224 crops


def photometric_loss(image: torch.Tensor, render: torch.Tensor, mask: torch.Tensor,
                     eps: float = 1e-6) -> torch.Tensor:
    """Masked photometric loss, paper Eq. 6.

    ``sum(M * ||I - I^R||_2) / sum(M)`` with the L2 norm over RGB at each pixel, per image, then
    averaged over the batch. An image whose mask is empty contributes 0.

    Args:
        image: ``[B, 3, H, W]`` input image.
        render: ``[B, 3, H, W]`` rendered image.
        mask: ``[B, 1, H, W]`` pixels to compare (face and not occluded).

    Returns:
        Scalar tensor.
    """
    if image.shape != render.shape:
        raise ValueError(f"photometric_loss: image {tuple(image.shape)} and render "
                         f"{tuple(render.shape)} differ in shape")
    if mask.shape[-2:] != image.shape[-2:] or mask.shape[0] != image.shape[0]:
        raise ValueError(f"photometric_loss: mask {tuple(mask.shape)} does not match image "
                         f"{tuple(image.shape)}")
    diff = image - render
    # sqrt with a floor keeps the gradient finite where the render equals the image exactly
    norm = torch.sqrt((diff * diff).sum(1, keepdim=True) + eps)
    num = (mask * norm).flatten(1).sum(1)
    den = mask.flatten(1).sum(1)
    per_image = torch.where(den > 0, num / den.clamp_min(1.0), torch.zeros_like(num))
    return per_image.mean()


def to_encoder_size(images: torch.Tensor, size: int = ENCODER_SIZE) -> torch.Tensor:
    """Resize ``[B, 3, H, W]`` images to the encoders' ``size x size`` input (no-op if already)."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)


def cosine_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``1 - cos(a, b)`` per row of ``[B, ...]`` tensors (flattened), averaged over the batch."""
    a = a.flatten(1)
    b = b.flatten(1)
    return (1.0 - F.cosine_similarity(a, b, dim=1, eps=1e-8)).mean()


def identity_loss(feat_image: torch.Tensor, feat_render: torch.Tensor,
                  inter_image=None, inter_render=None) -> torch.Tensor:
    """Identity loss, paper Eq. 7: ``1 - cos(F(I), F(I^R))`` on identity embeddings ``[B, D]``.

    Args:
        feat_image, feat_render: ``[B, D]`` identity embeddings of the input and the render.
        inter_image, inter_render: optional lists of intermediate feature maps (the paper uses
            "a subset of the network layers"); their cosine distances are averaged into the loss.
    """
    loss = cosine_distance(feat_image, feat_render)
    if inter_image and inter_render:
        extra = [cosine_distance(a, b) for a, b in zip(inter_image, inter_render)]
        loss = (loss + torch.stack(extra).sum()) / (1 + len(extra))
    return loss


def attribute_loss(feat_image: torch.Tensor, feat_render: torch.Tensor) -> torch.Tensor:
    """Face-attribute-aware loss, paper Eq. 8: ``||F(I) - F(I^R)||_2`` on ``[B, D_fa]`` features."""
    return torch.sqrt(((feat_image - feat_render) ** 2).sum(1) + 1e-12).mean()


def coefficient_regularizer(split: dict, w_id: float = 1.0, w_exp: float = 0.8,
                            w_tex: float = 1.7e-2) -> torch.Tensor:
    """Deep3DFaceRecon's coefficient-norm prior: ``w_id|a|^2 + w_exp|b|^2 + w_tex|d|^2``, batch mean.

    Args:
        split: dict from ``MorphableModel.split_coeffs`` with ``id [B,n_id]``, ``exp``, ``tex``.
    """
    return (w_id * split["id"].pow(2).sum(1) + w_exp * split["exp"].pow(2).sum(1)
            + w_tex * split["tex"].pow(2).sum(1)).mean()


def gamma_regularizer(gamma: torch.Tensor) -> torch.Tensor:
    """Monochromatic-light prior: variance of the 9 SH coefficients across the RGB channels.

    Args:
        gamma: ``[B, 27]`` SH coefficients (3 channels x 9, Deep3DFaceRecon layout).
    """
    g = gamma.reshape(gamma.shape[0], 3, 9)
    return ((g - g.mean(1, keepdim=True)) ** 2).mean()


def laplacian_smoothness(residual: torch.Tensor, lap: torch.Tensor) -> torch.Tensor:
    """Mean squared graph Laplacian of a per-vertex field ``[B, V, C]`` (``lap`` sparse ``[V, V]``)."""
    B, V, C = residual.shape
    x = residual.permute(1, 0, 2).reshape(V, B * C)
    lx = torch.sparse.mm(lap, x) if lap.is_sparse or lap.layout != torch.strided else lap @ x
    return lx.pow(2).mean()


def composite(render: torch.Tensor, mask: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """Paste the rendered face over ``background`` (for the perceptual encoders): ``[B,3,H,W]``."""
    return render * mask + background * (1.0 - mask)


def masked_psnr(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """PSNR (dB, peak 1) over the masked pixels of each image: ``[B]``; NaN where the mask is empty."""
    m = mask.expand_as(pred)
    se = ((pred.clamp(0, 1) - target) ** 2 * m).flatten(1).sum(1)
    n = m.flatten(1).sum(1)
    mse = se / n.clamp_min(1)
    psnr = 10.0 * torch.log10(1.0 / mse.clamp_min(1e-10))
    return torch.where(n > 0, psnr, torch.full_like(psnr, math.nan))


class PerceptualLoss(torch.nn.Module):
    """Identity + attribute losses through frozen encoders (paper Eqs. 7-9).

    The encoders are kept in eval mode with frozen weights; gradients flow to the images.

    Args:
        id_encoder: module with ``embed(images [B,3,224,224]) -> [B, D]`` and ``features(images)``.
        attr_encoder: module with ``features(images [B,3,224,224]) -> [B, D_fa]`` or None.
        id_features: also compare intermediate identity feature maps.
    """

    def __init__(self, id_encoder=None, attr_encoder=None, id_features: bool = False):
        super().__init__()
        self.id_encoder = id_encoder
        self.attr_encoder = attr_encoder
        self.id_features = id_features

    def encode(self, images: torch.Tensor, want_id: bool = True, want_att: bool = True) -> dict:
        """Encoder outputs of ``[B, 3, H, W]`` images: ``id [B,D]``, ``id_inter``, ``att [B,D_fa]``."""
        x = to_encoder_size(images)
        out = {}
        if want_id and self.id_encoder is not None:
            out["id"] = self.id_encoder.embed(x)
            if self.id_features:
                out["id_inter"] = self.id_encoder.features(x)
        if want_att and self.attr_encoder is not None:
            out["att"] = self.attr_encoder.features(x)
        return out

    def compare(self, a: dict, b: dict) -> dict:
        """``id`` and ``att`` losses between two :meth:`encode` results (missing keys skipped)."""
        out = {}
        if "id" in a and "id" in b:
            out["id"] = identity_loss(a["id"], b["id"], a.get("id_inter"), b.get("id_inter"))
        if "att" in a and "att" in b:
            out["att"] = attribute_loss(a["att"], b["att"])
        return out


def landmark_loss(pred: torch.Tensor, target: torch.Tensor, image_size: float) -> torch.Tensor:
    """Mean squared landmark distance in units of the image size (Deep3DFaceRecon's landmark term).

    Args:
        pred: ``[B, L, 2]`` projected model landmarks in pixels.
        target: ``[B, L, 2]`` target landmarks in pixels (same convention).
        image_size: side of the image in pixels; distances are divided by it.

    Returns:
        Scalar tensor: ``mean_b mean_l ||pred - target||^2 / image_size^2``.
    """
    if pred.shape != target.shape or pred.dim() != 3 or pred.shape[-1] != 2:
        raise ValueError(f"landmark_loss: pred {tuple(pred.shape)} and target {tuple(target.shape)} "
                         "must both be [B, L, 2]")
    return ((pred - target) / float(image_size)).pow(2).sum(-1).mean()


def total_loss(terms: dict, weights: dict) -> torch.Tensor:
    """Weighted sum of the terms whose weight is non-zero (missing terms count as 0)."""
    total: Optional[torch.Tensor] = None
    for name, value in terms.items():
        w = weights.get(name, 0.0)
        if w:
            total = w * value if total is None else total + w * value
    if total is None:
        raise ValueError("total_loss: every loss term has weight 0")
    return total
