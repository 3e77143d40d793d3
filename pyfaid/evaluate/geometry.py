"""3D shape errors against ground truth."""

from __future__ import annotations

import torch

__all__ = ["procrustes_error", "MM_PER_UNIT"]

#: Millimetres per model unit (assumption: model units are decimetres, as in BFM_front).
MM_PER_UNIT = 100.0


def procrustes_error(pred: torch.Tensor, gt: torch.Tensor, scale: bool = True) -> torch.Tensor:
    """Mean vertex distance after the best similarity (or rigid) alignment of ``pred`` to ``gt``.

    Umeyama's closed form: rotation from the SVD of the cross-covariance (reflections excluded),
    optional isotropic scale, translation from the centroids.

    Args:
        pred: ``[B, N, 3]`` predicted vertices.
        gt: ``[B, N, 3]`` ground-truth vertices (same topology).
        scale: allow a global scale (similarity) or not (rigid).

    Returns:
        ``[B]`` mean Euclidean distance in the units of ``gt``.
    """
    if pred.shape != gt.shape or pred.dim() != 3 or pred.shape[-1] != 3:
        raise ValueError(f"pred {tuple(pred.shape)} and gt {tuple(gt.shape)} must both be [B, N, 3]")
    p = pred.double()
    g = gt.double()
    mp, mg = p.mean(1, keepdim=True), g.mean(1, keepdim=True)
    pc, gc = p - mp, g - mg
    cov = gc.transpose(1, 2) @ pc / p.shape[1]  # [B, 3, 3]
    U, S, Vh = torch.linalg.svd(cov)
    d = torch.sign(torch.linalg.det(U @ Vh))
    D = torch.diag_embed(torch.stack([torch.ones_like(d), torch.ones_like(d), d], -1))
    R = U @ D @ Vh
    if scale:
        var = (pc ** 2).sum(dim=(1, 2)) / p.shape[1]
        s = (S * torch.diagonal(D, dim1=1, dim2=2)).sum(-1) / var.clamp_min(1e-12)
    else:
        s = torch.ones(p.shape[0], dtype=p.dtype, device=p.device)
    aligned = s[:, None, None] * pc @ R.transpose(1, 2) + mg
    return (aligned - g).norm(dim=-1).mean(-1).to(pred.dtype)
