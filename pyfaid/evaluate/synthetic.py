"""The training run's end-of-run check: masked PSNR on held-out occluded synthetic faces."""

from __future__ import annotations

import math
from typing import Optional

import torch

from pyfaid.metrics import psnr
from pyfaid.synth import SyntheticFaces

__all__ = ["held_out_psnr", "held_out_landmarks"]


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
        mean = faid.renderer(fm, fm.layout.zeros(img.shape[0], device=device)).image
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


@torch.no_grad()
def held_out_landmarks(faid, cfg, n: int = 200, batch_size: int = 16, device="cpu") -> dict:
    """Landmark NME (%) on held-out synthetic faces (``cfg.data.val_seed``), as the AFW protocol
    scores photos: mean point error over sqrt(w * h) of the true points' box.

    Returns:
        dict with ``head68`` / ``head51`` (the landmark head against the photo-style
        ``landmarks_2d``), ``model68`` / ``model51`` (the projected model landmarks against the same
        points), ``pose_deg`` (mean absolute yaw/pitch/roll error, degrees) and ``samples``.
    """
    d = cfg.data
    faces = {k: v for k, v in d.synthetic.items() if k != "views"}  # n distinct faces, however training reuses them
    ds = SyntheticFaces(seed=d.val_seed, length=n, image_size=d.image_size, occlusion=True, **faces)
    was_training = faid.training
    faid.eval()
    acc = {k: [] for k in ("head68", "head51", "model68", "model51", "pose_deg")}
    for s in range(0, n, batch_size):
        b = ds.batch(list(range(s, min(n, s + batch_size))))
        img = b["image"].to(device)
        gt = b.get("landmarks_2d", b["landmarks"]).to(device)
        out = faid(img, render_coarse=False, coarse_only=True)
        box = torch.sqrt(((gt.amax(1) - gt.amin(1)).clamp_min(1e-6)).prod(-1))  # [B]
        for name, pred in (("head", out.landmarks_head_px), ("model", out.landmarks_mesh_px)):
            if pred is None:
                continue
            err = (pred - gt).norm(dim=-1)  # [B, 68]
            acc[f"{name}68"].append(100 * err.mean(1) / box)
            acc[f"{name}51"].append(100 * err[:, 17:].mean(1) / box)
        ang = faid.face_model.split_coeffs(out.coeffs)["angle"] - faid.face_model.split_coeffs(b["coeffs"].to(device))["angle"]
        acc["pose_deg"].append(ang.abs().mean(1) * 180 / math.pi)
    faid.train(was_training)
    res = {k: float(torch.cat(v).mean()) for k, v in acc.items() if v}
    res["samples"] = n
    return res
