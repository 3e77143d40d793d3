"""Masked PSNR on real photos: the textured face render against today's per-vertex render.

For every photo of a folder (distinct files by content, in name order), the default call
``pyfaid.reconstruct(photo)`` (largest face, the shipped model, its default test-time fitting) and
then, against the 224 x 224 crop the model saw, inside the per-vertex render's face mask:

  * ``per_vertex``: ``rec.render()`` (what ``rec.masked_psnr()`` scores);
  * ``textured``: ``rec.render(texture=T)`` with ``T = rec.texture("photo", 1024, photo=photo)``
    (the photo where it shows the face, divided by the estimated light; the model's albedo where
    it does not), trilinear;
  * ``textured_aa``: the same with ``antialias=True``, composited over the crop with its
    antialiased coverage (outline pixels blend face and photo);
  * ``textured_bilinear``: the same texture read bilinearly at full resolution (no mip levels);
  * ``albedo_texture``: ``rec.texture("albedo", 1024)`` drawn the same way (a control: the
    per-vertex colours as a texture, so any gain of ``textured`` comes from the photo's detail).

Writes ``<out>/face_texture.json`` (per photo and summary) and ``<out>/face_texture_grid.png``
(rows: crop | per-vertex | textured, antialiased | textured, bilinear; white background).

    python benchmarks/eval_face_texture.py --data DIR --n 48 --out eval/face_texture --threads 2

Real photos such as /work/shared/realdata/afw are for evaluation only: nothing here is tuned on them.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import sys
import time

import cv2
import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import common  # noqa: E402,F401  (an in-place build of this checkout first on sys.path)

import pyfaid  # noqa: E402
from pyfaid.metrics import psnr  # noqa: E402

KINDS = ("per_vertex", "textured", "textured_aa", "textured_bilinear", "albedo_texture")


def photos(folder: str) -> list:
    """Image files of ``folder`` in name order, one per distinct content."""
    seen, out = set(), []
    for path in sorted(glob.glob(os.path.join(folder, "*"))):
        if os.path.splitext(path)[1].lower() not in (".jpg", ".jpeg", ".png"):
            continue
        digest = hashlib.md5(open(path, "rb").read()).hexdigest()
        if digest not in seen:
            seen.add(digest)
            out.append(path)
    return out


def score(rec, path: str, size: int) -> tuple:
    """``(psnr by kind, tiles [crop, per-vertex, textured aa, textured bilinear] [3, 224, 224])``."""
    crop = rec.input[None].float()
    tex = rec.face_model.uv_texture(rec.texture("photo", size, photo=path))
    renders = {"per_vertex": rec.render(), "textured": rec.render(texture=tex),
               "textured_aa": rec.render(texture=tex, antialias=True),
               "textured_bilinear": rec.render(texture=tex, filter_mode="linear"),
               "albedo_texture": rec.render(texture=rec.texture("albedo", size))}
    mask = renders["per_vertex"].mask  # hard 0/1: the same pixels for every kind
    vals, white = {}, torch.ones_like(crop)
    tiles = [crop[0]]
    for kind, out in renders.items():
        image = out.image.clamp(0, 1)
        if out.alpha is not None:  # the antialiased outline over the photo
            image = image + (1 - out.alpha) * crop
        vals[kind] = float(psnr(image, crop, mask)[0])
        if kind in ("per_vertex", "textured_aa", "textured_bilinear"):
            tiles.append((out.image.clamp(0, 1) + (1 - out.mask) * white)[0])
    return vals, tiles


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="folder of photos")
    ap.add_argument("--n", type=int, default=48, help="photos to score (with a face found)")
    ap.add_argument("--texture-size", type=int, default=1024)
    ap.add_argument("--grid", type=int, default=8, help="photos in the PNG grid")
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    per_photo, rows, failed = [], [], []
    t0 = time.perf_counter()
    for path in photos(args.data):
        if len(per_photo) >= args.n:
            break
        try:
            rec = pyfaid.reconstruct(path)
        except (pyfaid.reconstruct.FaceNotFoundError, pyfaid.reconstruct.ImageReadError) as exc:
            failed.append({"photo": os.path.basename(path), "error": str(exc)})
            continue
        vals, tiles = score(rec, path, args.texture_size)
        per_photo.append({"photo": os.path.basename(path), **vals})
        print(f"{len(per_photo):3d} {os.path.basename(path):24s} " + "  ".join(f"{k} {v:6.2f}" for k, v in vals.items()),
              flush=True)
        if len(rows) < args.grid:
            rows.append(torch.cat(tiles, dim=2))
    table = {k: np.array([p[k] for p in per_photo]) for k in KINDS}
    summary = {k: {"mean": float(v.mean()), "std": float(v.std()), "median": float(np.median(v))} for k, v in table.items()}
    summary["textured_better_share"] = float((table["textured"] > table["per_vertex"]).mean())
    summary["textured_minus_per_vertex"] = float((table["textured"] - table["per_vertex"]).mean())
    report = {"data": args.data, "n": len(per_photo), "failed": failed, "texture_size": args.texture_size,
              "threads": args.threads, "seconds": round(time.perf_counter() - t0, 1), "summary": summary,
              "photos": per_photo}
    with open(os.path.join(args.out, "face_texture.json"), "w") as f:
        json.dump(report, f, indent=2)
    grid = torch.cat(rows, dim=1).permute(1, 2, 0).numpy()
    cv2.imwrite(os.path.join(args.out, "face_texture_grid.png"), cv2.cvtColor((grid * 255 + 0.5).astype(np.uint8), cv2.COLOR_RGB2BGR))
    print(json.dumps({"n": len(per_photo), "failed": len(failed), **summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
