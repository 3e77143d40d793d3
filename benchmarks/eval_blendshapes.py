"""How well ``rec.blendshapes`` reads expressions: held-out synthetic faces and a sheet of photos.

Synthetic (the generator knows the true 52 ARKit weights of every face): held-out faces
(``data.val_seed``) in a photo-like frame (448 px, face at half size, so detection and alignment
run as on a photo), reconstructed by ``pyfaid.reconstruct`` per variant; the table gives, per
shape, the mean absolute weight error over all faces and over the faces where the shape is active
(true weight > 0.1), against the all-zero (neutral) answer::

    python benchmarks/eval_blendshapes.py --n 100 --variants default blendshapes --out eval/blendshapes

Photos (evaluation only): the weights of chosen photos drawn beside them, per variant (a PNG)::

    python benchmarks/eval_blendshapes.py --photos AFW/4337161543_1.jpg ... --variants default dlib-blendshapes \\
        --out eval/blendshapes

Variants: ``default`` (``pyfaid.reconstruct(img)``), ``fit0`` (no fitting), ``blendshapes``
(``fit_space="blendshapes"``), ``dlib-blendshapes`` (``landmarks="dlib", fit_space="blendshapes"``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import common  # noqa: E402,F401  (puts an in-place build first on sys.path)

import pyfaid  # noqa: E402
from pyfaid.facemodel.blendshapes import ARKIT_NAMES  # noqa: E402

VARIANTS = {
    "default": {},
    "fit0": {"fit_steps": 0},
    "blendshapes": {"fit_space": "blendshapes"},
    "dlib-blendshapes": {"landmarks": "dlib", "fit_space": "blendshapes"},
}
#: The shapes the photo sheet shows.
SHEET = ("jawOpen", "mouthSmileLeft", "mouthSmileRight", "eyeBlinkLeft", "eyeBlinkRight", "browInnerUp",
         "mouthFunnel", "mouthPucker", "browDownLeft", "eyeWideLeft")
#: Rows of the table's summary: the shapes the issue names first.
KEY = ("jawOpen", "mouthSmileLeft", "mouthSmileRight", "eyeBlinkLeft", "eyeBlinkRight", "browInnerUp",
       "browOuterUpLeft", "browDownLeft", "mouthFunnel", "mouthPucker")


def synthetic(n: int, seed: int, variants, occlusion: bool) -> dict:
    """Truth and estimates ``[N, 52]`` per variant on held-out synthetic faces (failed detections skipped)."""
    from pyfaid.synth import SyntheticFaces

    ds = SyntheticFaces(seed=seed, length=n, image_size=448, face_scale=0.5, occlusion=occlusion)
    truth, est, missed, secs = [], {v: [] for v in variants}, 0, {v: 0.0 for v in variants}
    for s in range(0, n, 8):
        batch = ds.batch(list(range(s, min(n, s + 8))))
        for j in range(batch["image"].shape[0]):
            img = (batch["image"][j].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
            recs = {}
            try:
                for v in variants:
                    t = time.perf_counter()
                    recs[v] = pyfaid.reconstruct(img, **VARIANTS[v])
                    secs[v] += time.perf_counter() - t
            except pyfaid.reconstruct.FaceNotFoundError:
                missed += 1
                continue
            w = ds.sample_blendshapes(s + j)
            truth.append([w[k] for k in ARKIT_NAMES])
            for v in variants:
                est[v].append([recs[v].blendshapes[k] for k in ARKIT_NAMES])
        print(f"{min(n, s + 8)}/{n} faces, {missed} without a detection", flush=True)
    found = max(1, len(truth))
    return {"truth": np.asarray(truth), "est": {v: np.asarray(e) for v, e in est.items()}, "missed": missed,
            "seconds_per_face": {v: secs[v] / found for v in variants}}


def table(res: dict) -> tuple:
    """Markdown table and a JSON summary of :func:`synthetic`'s result."""
    t = res["truth"]
    act = t > 0.1
    zero = np.zeros_like(t)
    cols = ["zeros"] + list(res["est"])
    est = {"zeros": zero, **res["est"]}
    summary = {c: {"mae": float(np.abs(est[c] - t).mean()), "mae_active": float(np.abs(est[c] - t)[act].mean()),
                   "mean_inactive": float(est[c][~act].mean())} for c in cols}
    lines = [f"held-out synthetic faces: {len(t)} ({res['missed']} without a detection); "
             "MAE = mean absolute weight error, active: true weight > 0.1", "",
             "| | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for key, label in (("mae", "MAE, 52 shapes"), ("mae_active", "MAE where active"),
                       ("mean_inactive", "mean weight where inactive")):
        lines.append(f"| {label} | " + " | ".join(f"{summary[c][key]:.3f}" for c in cols) + " |")
    lines += ["", "| shape | active faces | " + " | ".join(f"{c} MAE / active" for c in cols) + " |",
              "|---|---" + "|---" * len(cols) + "|"]
    per = {}
    order = list(KEY) + [n for n in ARKIT_NAMES if n not in KEY]  # the named shapes first
    for name in order:
        k = ARKIT_NAMES.index(name)
        a = act[:, k]
        cells = []
        for c in cols:
            e = np.abs(est[c][:, k] - t[:, k])
            cells.append(f"{e.mean():.3f} / {e[a].mean():.2f}" if a.any() else f"{e.mean():.3f} / -")
            per.setdefault(name, {})[c] = {"mae": float(e.mean()), "mae_active": float(e[a].mean()) if a.any() else None}
        lines.append(f"| {name} | {int(a.sum())} | " + " | ".join(cells) + " |")
    summary["per_shape"] = per
    summary["faces"] = int(len(t))
    summary["missed"] = int(res["missed"])
    summary["seconds_per_face"] = res["seconds_per_face"]
    return "\n".join(lines), summary


def sheet(photos, variants, out_png: str) -> dict:
    """The photos with their weights (:data:`SHEET` shapes) per variant, as one PNG."""
    import cv2
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(photos), 2, figsize=(9, 2.3 * len(photos)), gridspec_kw={"width_ratios": [1, 2.2]})
    axes = np.atleast_2d(axes)
    found = {}
    for i, path in enumerate(photos):
        recs = {v: pyfaid.reconstruct(path, **VARIANTS[v]) for v in variants}
        first = recs[variants[0]]
        img = first.overlay(path, alpha=0.0, landmarks=False)
        pts = first.landmarks
        c, s = pts.mean(0), (pts.max(0) - pts.min(0)).max() * 0.8
        x0, y0 = (int(max(0, v)) for v in c - s)
        crop = img[y0:int(c[1] + s), x0:int(c[0] + s)]
        axes[i, 0].imshow(cv2.resize(crop, (160, 160)))
        axes[i, 0].set_axis_off()
        axes[i, 0].set_title(os.path.basename(path), fontsize=7)
        y = np.arange(len(SHEET))
        h = 0.8 / len(variants)
        for k, v in enumerate(variants):
            w = [recs[v].blendshapes[n] for n in SHEET]
            axes[i, 1].barh(y + k * h, w, height=h, label=v)
            found.setdefault(os.path.basename(path), {})[v] = {n: round(recs[v].blendshapes[n], 3) for n in SHEET}
        axes[i, 1].set_yticks(y + h * (len(variants) - 1) / 2, SHEET, fontsize=7)
        axes[i, 1].set_xlim(0, 1)
        axes[i, 1].invert_yaxis()
        axes[i, 1].tick_params(axis="x", labelsize=7)
        if i == 0:
            axes[i, 1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    return found


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100, help="held-out synthetic faces (0: none)")
    ap.add_argument("--seed", type=int, default=None, help="synthetic seed (default: data.val_seed, held out)")
    ap.add_argument("--occlusion", action="store_true", help="synthetic faces with occluders")
    ap.add_argument("--variants", nargs="+", default=["default"], choices=list(VARIANTS))
    ap.add_argument("--photos", nargs="*", default=[], help="photos for the sheet (evaluation only)")
    ap.add_argument("--out", default="eval/blendshapes")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    report = {}
    if args.n > 0:
        from pyfaid.config import DataConfig

        seed = DataConfig().val_seed if args.seed is None else args.seed
        text, report["synthetic"] = table(synthetic(args.n, seed, args.variants, args.occlusion))
        report["synthetic"]["seed"] = seed
        print(text)
        with open(os.path.join(args.out, "synthetic.md"), "w") as fh:
            fh.write(text + "\n")
    if args.photos:
        png = os.path.join(args.out, "photos.png")
        report["photos"] = sheet(args.photos, args.variants, png)
        print(f"wrote {png}")
    with open(os.path.join(args.out, "report.json"), "w") as fh:
        json.dump(report, fh, indent=1)


if __name__ == "__main__":
    main()
