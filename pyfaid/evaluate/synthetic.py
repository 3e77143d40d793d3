"""The training run's end-of-run check: masked PSNR on held-out occluded synthetic faces."""

from __future__ import annotations

from typing import Optional

import torch

__all__ = ["held_out_psnr"]


@torch.no_grad()
def held_out_psnr(faid, cfg, n: Optional[int] = None, batch_size: int = 8, device="cpu") -> dict:
    """Masked PSNR (dB) of the coarse render, the fine render and the mean face on held-out
    occluded synthetic faces (``cfg.data.val_seed``, disjoint from training).

    The input is the occluded image; the target is the clean image. Two masks: ``visible`` (face
    pixels not covered by an occluder, the dataset's mask) and ``face`` (the whole ground-truth face
    region, occluded pixels included: how well hidden regions are recovered).

    Returns:
        dict ``{coarse,fine,mean}_{visible,face}`` (dB) and ``samples``.
    """
    from pyfaid.data import SyntheticFaces
    from pyfaid.metrics import psnr

    n = n or cfg.data.val_size
    ds = SyntheticFaces(seed=cfg.data.val_seed, length=n, image_size=cfg.data.image_size, occlusion=True)
    was_training = faid.training
    faid.eval()
    res = {f"{m}_{k}": [] for m in ("coarse", "fine", "mean") for k in ("visible", "face")}
    fm = faid.face_model
    for s in range(0, n, batch_size):
        b = ds.batch(list(range(s, min(n, s + batch_size))))
        img, clean, vis, face = (b[k].to(device) for k in ("image", "clean", "mask", "face_mask"))
        rec = faid(img, render_coarse=True)
        mean = faid.renderer(fm, fm.layout.zeros(img.shape[0], device=device))["image"]
        for name, pred in (("coarse", rec.coarse_image), ("fine", rec.image), ("mean", mean)):
            res[f"{name}_visible"].append(psnr(pred.clamp(0, 1), clean, vis))
            res[f"{name}_face"].append(psnr(pred.clamp(0, 1), clean, face))
    faid.train(was_training)
    out = {}
    for k, v in res.items():
        t = torch.cat(v)
        out[k] = float(t[torch.isfinite(t)].mean())
    out["samples"] = n
    return out
