"""FAID losses (paper Sec. 3.2.4) and the coefficient regularisers, as pure functions.

Every function compares tensors (images, feature dicts from
:meth:`pyfaid.models.FeatureEncoder.encode`, coefficients) and returns a scalar tensor, the mean
over the batch; nothing here holds a network. Training (:mod:`pyfaid.models.objectives`) and
test-time fitting (:mod:`pyfaid.reconstruct.fitting`) call the same functions.

Image conventions: ``[B, 3, H, W]`` RGB in [0, 1]; masks ``[B, 1, H, W]`` in [0, 1] (binary, or
per-pixel weights).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from pyfaid.graph import Laplacian, laplacian_mm


def photometric_loss(image: torch.Tensor, render: torch.Tensor, mask: torch.Tensor,
                     eps: float = 1e-6) -> torch.Tensor:
    """Masked photometric loss, paper Eq. 6.

    ``sum(M * ||I - I^R||_2) / sum(M)`` with the L2 norm over RGB at each pixel, per image, then
    averaged over the batch. An image whose mask is empty contributes 0. A non-binary ``M``
    weights the pixels (test-time fitting down-weights pixels that do not look like skin).

    Args:
        image: ``[B, 3, H, W]`` input image.
        render: ``[B, 3, H, W]`` rendered image.
        mask: ``[B, 1, H, W]`` pixels to compare (face and not occluded), or pixel weights.

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


def laplacian_smoothness(residual: torch.Tensor, lap) -> torch.Tensor:
    """Mean squared graph Laplacian of a per-vertex field ``[B, V, C]`` (``lap``: a
    :class:`~pyfaid.graph.Laplacian`, or a sparse or dense ``[V, V]`` tensor)."""
    if isinstance(lap, Laplacian):
        return laplacian_mm(lap, residual).pow(2).mean()
    B, V, C = residual.shape
    x = residual.permute(1, 0, 2).reshape(V, B * C)
    lx = torch.sparse.mm(lap, x) if lap.is_sparse or lap.layout != torch.strided else lap @ x
    return lx.pow(2).mean()


def composite(render: torch.Tensor, mask: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """Paste the rendered face over ``background`` (for the perceptual encoders): ``[B,3,H,W]``."""
    return render * mask + background * (1.0 - mask)


def perceptual_losses(a: dict, b: dict) -> dict:
    """Identity and attribute losses between two feature dicts (``FeatureEncoder.encode`` results).

    Returns ``{"id": identity_loss, "att": attribute_loss}`` for the keys both dicts hold.
    """
    out = {}
    if "id" in a and "id" in b:
        out["id"] = identity_loss(a["id"], b["id"], a.get("id_inter"), b.get("id_inter"))
    if "att" in a and "att" in b:
        out["att"] = attribute_loss(a["att"], b["att"])
    return out


class _LaplacianEnergy(torch.autograd.Function):
    """``sum(x * (L x))`` for a symmetric sparse ``L``; the backward reuses ``L x`` (one sparse product)."""

    @staticmethod
    def forward(ctx, x, lap):
        lx = torch.sparse.mm(lap, x)
        ctx.save_for_backward(lx)
        return (x * lx).sum()

    @staticmethod
    def backward(ctx, grad):
        (lx,) = ctx.saved_tensors
        return 2.0 * grad * lx, None


def edge_smoothness(field: torch.Tensor, edges: torch.Tensor, laplacian: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Mean squared difference of a per-vertex field ``[B, V, C]`` across mesh edges ``[E, 2]``.

    ``laplacian``: optionally the same edges' graph Laplacian (``MeshTopology.laplacian``, sparse
    ``[V, V]``): the same value as ``x^T L x``, with one sparse product instead of two gathers in the
    forward and two scatters in the backward (about 8x faster on the default mesh, forward + backward).
    """
    if laplacian is None:
        d = field[:, edges[:, 0]] - field[:, edges[:, 1]]
        return d.pow(2).mean()
    B, V, C = field.shape
    if laplacian.shape != (V, V):
        raise ValueError(f"edge_smoothness: `laplacian` must be [{V}, {V}], got {tuple(laplacian.shape)}")
    lap = laplacian if laplacian.dtype == field.dtype else laplacian.to(field.dtype)
    x = field.permute(1, 0, 2).reshape(V, B * C)
    return _LaplacianEnergy.apply(x, lap) / (edges.shape[0] * B * C)


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


def landmark_nll(pred: torch.Tensor, log_scale: torch.Tensor, target: torch.Tensor,
                 weights: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Negative log-likelihood of target landmarks under per-point isotropic 2D Laplace errors.

    With ``d = ||pred - target||`` and scale ``b = exp(log_scale)`` the per-point loss is
    ``d / b + 2 log b`` (up to a constant): minimised at ``b = d / 2``, so a point's predicted scale
    learns how far off it tends to be, and ``exp(-log_scale)`` is its confidence.

    Args:
        pred: ``[B, L, 2]`` predicted points; target: ``[B, L, 2]`` (same units, e.g. image sides).
        log_scale: ``[B, L]``.
        weights: optional ``[B, L]`` (0 drops a point).

    Returns:
        Scalar tensor: the weighted mean over points.
    """
    if pred.shape != target.shape or pred.dim() != 3 or log_scale.shape != pred.shape[:2]:
        raise ValueError(f"landmark_nll: pred {tuple(pred.shape)}, target {tuple(target.shape)} must be "
                         f"[B, L, 2] and log_scale {tuple(log_scale.shape)} [B, L]")
    d = torch.sqrt(((pred - target) ** 2).sum(-1) + 1e-12)
    nll = d * torch.exp(-log_scale) + 2.0 * log_scale
    if weights is None:
        return nll.mean()
    return (nll * weights).sum() / weights.sum().clamp_min(1e-6)


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
