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
    scores photos: mean point error over sqrt(w * h) of the true points' box, each convention
    against its own ground truth.

    Returns:
        dict with ``head68`` / ``head51`` / ``head_jaw`` (the landmark head against the 2D-style
        ``landmarks_2d``), ``head3d68`` / ``head3d51`` / ``head3d_jaw`` (the 3D-style head against
        ``landmarks_3d``, when the model has one), ``model68`` / ``model51`` (the projected model
        landmarks against ``landmarks_3d``, their own convention), the same 68-point figures over
        the nearly frontal faces (``_frontal``: |yaw| < 30 degrees) and the turned ones (``_yaw45``:
        |yaw| >= 45 degrees), ``pose_deg`` (mean absolute yaw/pitch/roll error, degrees) and ``samples``.
    """
    d = cfg.data
    faces = {k: v for k, v in d.synthetic.items() if k != "views"}  # n distinct faces, however training reuses them
    ds = SyntheticFaces(seed=d.val_seed, length=n, image_size=d.image_size, occlusion=True, **faces)
    was_training = faid.training
    faid.eval()
    acc, yaws = {}, []
    for s in range(0, n, batch_size):
        b = ds.batch(list(range(s, min(n, s + batch_size))))
        img = b["image"].to(device)
        gt2, gt3 = b["landmarks_2d"].to(device), b["landmarks_3d"].to(device)
        out = faid(img, render_coarse=False, coarse_only=True)
        for name, pred, gt in (("head", out.landmarks_head_px, gt2), ("head3d", out.landmarks_head_3d_px, gt3),
                               ("model", out.landmarks_mesh_px, gt3)):
            if pred is None:
                continue
            box = torch.sqrt(((gt.amax(1) - gt.amin(1)).clamp_min(1e-6)).prod(-1))  # [B]
            err = (pred - gt).norm(dim=-1) / box[:, None]  # [B, 68]
            for key, sel in (("68", slice(None)), ("51", slice(17, None)), ("_jaw", slice(0, 17))):
                acc.setdefault(name + key, []).append(100 * err[:, sel].mean(1))
        ang = faid.face_model.split_coeffs(out.coeffs)["angle"] - faid.face_model.split_coeffs(b["coeffs"].to(device))["angle"]
        acc.setdefault("pose_deg", []).append(ang.abs().mean(1) * 180 / math.pi)
        yaws.append(b["labels"]["angles"][:, 1].abs() * 180 / math.pi)
    faid.train(was_training)
    yaw = torch.cat(yaws)
    res = {}
    for k, v in acc.items():
        t = torch.cat(v).cpu()
        res[k] = float(t.mean())
        if k.endswith("68"):
            for tag, sel in (("_frontal", yaw < 30), ("_yaw45", yaw >= 45)):
                if bool(sel.any()):
                    res[k + tag] = float(t[sel].mean())
    res["samples"] = n
    return res
