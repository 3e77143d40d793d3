"""The paper's evaluation protocol (section 4.3-4.4, Tables 1 and 2).

``python -m pyfaid.evaluate --checkpoint faid.pt --data synthetic --n 200 --out eval/``

For every image of the dataset and every condition (``clean``: the image itself; ``occluded``:
synthetic occluders from :func:`pyfaid.data.occlude` with a fixed seed), the FAID model
reconstructs the face from the *input* (clean or occluded) and the render is compared with the
*clean* image, which is the reference in both conditions, as in the paper:

* ``psnr``, ``ssim``: inside the rendered face mask (masked PSNR = MSE over mask pixels only;
  masked SSIM = the SSIM map averaged over mask pixels; see :mod:`pyfaid.metrics`). These are the
  numbers of the paper's tables.
* ``psnr_image``, ``ssim_image``: whole-image values of the render pasted over the reference
  (reference pixels outside the face mask).
* ``id_dlib`` (and ``id_facenet`` when FaceNet weights are present): cosine similarity of the
  identity embeddings of the reference and of the render pasted over it.
* synthetic data only, against the generator's ground truth: ``color_error`` (mean absolute RGB
  difference of the predicted albedo over the model's ``face_mask`` vertices, colours in [0, 1]),
  ``shape_error`` (mean vertex distance over ``face_mask`` vertices after a similarity Procrustes
  alignment, model units) and ``shape_error_mm`` (the same assuming one model unit is one
  decimetre, i.e. 100 mm: the Deep3DFaceRecon/BFM_front convention the face models follow, where a
  face is about 1.5 units wide).

Outputs in ``--out``: ``report.json`` (mean, std and count of every metric per dataset, condition
and method), ``report.md`` (Table 1 layout: Dataset | Method | PSNR | SSIM | ID similarity; with
``--ablations`` also Table 2 layout) and ``report.png`` (metric bars per condition and a sample
grid input | occluded | render).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

__all__ = ["evaluate", "procrustes_error", "main", "MM_PER_UNIT"]

#: Millimetres per model unit (assumption: model units are decimetres, as in BFM_front).
MM_PER_UNIT = 100.0
OCCLUSION_SEED = 1234

_TABLE_METRICS = ("psnr", "ssim")


# ----------------------------------------------------------------------------------------------
# 3D errors
# ----------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------


def _parse_data(spec: str) -> Tuple[str, Optional[str]]:
    kind, _, root = spec.partition(":")
    kind = kind.lower()
    if kind not in ("synthetic", "celeba", "aflw2000", "folder"):
        raise ValueError(f"--data {spec!r}: expected synthetic, celeba:DIR, aflw2000:DIR or folder:DIR")
    if kind != "synthetic":
        if not root:
            raise ValueError(f"--data {spec!r}: {kind} needs a folder, e.g. {kind}:/path/to/data")
        if not os.path.isdir(root):
            raise ValueError(f"--data {spec!r}: {root} is not a folder")
    return kind, root or None


def _dataset(kind: str, root: Optional[str], n: int, face_model, seed: int):
    """A torch Dataset whose items hold an aligned ``image [3, 224, 224]`` in [0, 1]."""
    if kind == "synthetic":
        from pyfaid.data import SyntheticFaces

        return SyntheticFaces(seed=seed, length=n, face_model=face_model, occlusion=False)
    from pyfaid.data import datasets as _ds

    cls = {"celeba": _ds.CelebA, "aflw2000": _ds.AFLW2000, "folder": _ds.ImageFolderFaces}[kind]
    return cls(root)


def _batches(dataset, count: int, batch_size: int):
    """Yield lists of up to ``batch_size`` valid items (then the number of skipped ones) until
    ``count`` valid items were produced or the dataset ends. Datasets return None for images that
    cannot be read or hold no face."""
    batch, skipped, done = [], 0, 0
    for i in range(len(dataset)):
        if done >= count:
            break
        item = dataset[i]
        if item is None:
            skipped += 1
            continue
        batch.append(item)
        done += 1
        if len(batch) == batch_size:
            yield batch + [skipped]
            batch, skipped = [], 0
    if batch or skipped:
        yield batch + [skipped]


def _item_image(item) -> torch.Tensor:
    if isinstance(item, dict):
        img = item.get("clean", item.get("image"))
    elif isinstance(item, (tuple, list)):
        img = item[0]
    else:
        img = item
    return torch.as_tensor(img).float()


# ----------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------


def _composite(render: torch.Tensor, mask: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    return mask * render.clamp(0, 1) + (1 - mask) * ref


def _summary(values: List[float]) -> Dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    a = a[np.isfinite(a)]
    if a.size == 0:
        return {"mean": float("nan"), "std": float("nan"), "n": 0}
    return {"mean": float(a.mean()), "std": float(a.std()), "n": int(a.size)}


@torch.no_grad()
def evaluate(
    checkpoints: Dict[str, str],
    data: str = "synthetic",
    occlusions: Sequence[str] = ("none", "synthetic"),
    n: int = 100,
    batch_size: int = 8,
    device="cpu",
    seed: int = 0,
    id_encoders: Optional[Sequence[str]] = None,
    num_samples: int = 4,
    progress: bool = True,
):
    """Evaluate FAID checkpoints with the paper's protocol.

    Args:
        checkpoints: method name -> checkpoint path (the first is the main method).
        data: ``synthetic``, ``celeba:DIR``, ``aflw2000:DIR`` or ``folder:DIR``.
        occlusions: conditions, any of ``none`` (clean input) and ``synthetic`` (occluded input).
        n: number of images (the first ``n`` of the dataset).
        batch_size: images per forward pass.
        device: torch device.
        seed: dataset seed (synthetic data); occlusions use :data:`OCCLUSION_SEED`.
        id_encoders: identity encoders to use; default: those available (dlib, FaceNet if present).
        num_samples: images kept for the sample grid.
        progress: tqdm progress bars.

    Returns:
        ``(report, samples)``: the ``report.json`` dict and a dict with sample images.
    """
    from tqdm import tqdm

    from pyfaid import metrics
    from pyfaid.reconstruct import _predict, _renderer, _resolve_device, load_model

    if not checkpoints:
        raise ValueError("evaluate needs at least one checkpoint")
    for name, path in checkpoints.items():
        if not (os.path.isfile(path) or os.path.isdir(path)):
            raise FileNotFoundError(f"checkpoint {name}={path}: no such file or run folder")
    for occ in occlusions:
        if occ not in ("none", "synthetic"):
            raise ValueError(f"occlusion {occ!r}: expected none or synthetic")
    kind, root = _parse_data(data)
    dev = _resolve_device(device)
    renderer = _renderer(dev)  # 224x224 Deep3DFaceRecon camera: the frame of the aligned crops
    encs = metrics.identity_encoders(tuple(id_encoders) if id_encoders else ("dlib", "facenet"), device=dev)
    models = {name: load_model(path, dev) for name, path in checkpoints.items()}
    face_model = next(iter(models.values()))[1]
    dataset = _dataset(kind, root, n, face_model, seed)
    count = min(n, len(dataset))
    dataset_name = {"synthetic": "Synthetic", "celeba": "CelebA", "aflw2000": "AFLW2000", "folder": "Folder"}[kind]
    conditions = {"none": "clean", "synthetic": "occluded"}
    values: Dict[str, Dict[str, Dict[str, List[float]]]] = {}
    samples = {"input": [], "occluded": [], "render": {}}
    from pyfaid.data import occlude

    bar = tqdm(total=count * len(occlusions) * len(models), desc="evaluate", unit="img", disable=not progress)
    skipped = 0
    used = 0
    for bi, items in enumerate(_batches(dataset, count, batch_size)):
        skipped += items.pop()  # the batch generator appends its count of skipped (unreadable / no face) items
        idx = list(range(used, used + len(items)))
        used += len(items)
        if not items:
            continue
        clean = torch.stack([_item_image(it) for it in items]).to(dev)
        occluded, _ = occlude(clean.cpu(), seed=OCCLUSION_SEED + bi)
        occluded = occluded.to(dev)
        gt = None
        if kind == "synthetic" and isinstance(items[0], dict) and "vertices" in items[0]:
            # ground-truth model-space shape (identity + expression, no pose) from the generator's
            # coefficients; the items' camera-space vertices are a reflection of world space
            # (depth = camera_distance - z), which a rotation cannot align
            gt_c = torch.stack([torch.as_tensor(it["coeffs"]) for it in items]).to(dev).float()
            gt_parts = face_model.split_coeffs(gt_c)
            gt = {"vertices": face_model.shape(gt_parts["id"], gt_parts["exp"]),
                  "colors": torch.stack([it["colors"] for it in items]).to(dev).float()}
        if len(samples["input"]) < num_samples:
            k = num_samples - len(samples["input"])
            samples["input"].extend(clean[:k].cpu())
            samples["occluded"].extend(occluded[:k].cpu())
        for occ in occlusions:
            cond = conditions[occ]
            inp = clean if occ == "none" else occluded
            for mname, (net, fm) in models.items():
                coeffs, colors = _predict(net, inp)
                out = renderer(fm, coeffs, colors=colors)
                img, mask = out["image"].clamp(0, 1), out["mask"]
                comp = _composite(img, mask, clean)
                vals = {
                    "psnr": metrics.psnr(img, clean, mask),
                    "ssim": metrics.ssim(img, clean, mask),
                    "psnr_image": metrics.psnr(comp, clean),
                    "ssim_image": metrics.ssim(comp, clean),
                }
                for ename, enc in encs.items():
                    vals[f"id_{ename}"] = metrics.id_similarity(comp, clean, enc)
                if gt is not None and fm.num_vertices == face_model.num_vertices:
                    fmask = fm.face_mask.to(dev)
                    vals["color_error"] = (out["colors"][:, fmask].clamp(0, 1) - gt["colors"][:, fmask]).abs().mean(dim=(1, 2))
                    parts = fm.split_coeffs(coeffs)
                    verts = fm.shape(parts["id"], parts["exp"])
                    err = procrustes_error(verts[:, fmask], gt["vertices"][:, fmask])
                    vals["shape_error"] = err
                    vals["shape_error_mm"] = err * MM_PER_UNIT
                store = values.setdefault(cond, {}).setdefault(mname, {})
                for key, v in vals.items():
                    store.setdefault(key, []).extend(v.detach().cpu().double().tolist())
                if occ == "synthetic" or len(occlusions) == 1:
                    lst = samples["render"].setdefault(mname, [])
                    if len(lst) < num_samples:
                        lst.extend(comp[: num_samples - len(lst)].cpu())
                bar.update(len(idx))
    bar.close()
    if used == 0:
        raise ValueError(f"--data {data}: no usable images ({skipped} skipped: unreadable or no face)")
    report = {
        "dataset": dataset_name,
        "data": data,
        "n": used,
        "skipped": skipped,
        "seed": seed,
        "occlusion_seed": OCCLUSION_SEED,
        "reference": "clean image",
        "mask": "rendered face region",
        "identity_encoders": list(encs),
        "mm_per_unit": MM_PER_UNIT,
        "checkpoints": dict(checkpoints),
        "conditions": {
            cond: {m: {k: _summary(v) for k, v in mv.items()} for m, mv in cv.items()}
            for cond, cv in values.items()
        },
    }
    return report, samples


# ----------------------------------------------------------------------------------------------
# Reports
# ----------------------------------------------------------------------------------------------


def _fmt(s: Dict[str, float], digits: int) -> Tuple[str, str]:
    if not s or s.get("n", 0) == 0:
        return "-", "-"
    return f"{s['mean']:.{digits}f}", f"{s['std']:.{digits}f}"


def markdown_report(report: dict, ablation: bool = False) -> str:
    """``report.md`` text: Table 1 layout, plus Table 2 layout and 3D errors where relevant."""
    encs = report["identity_encoders"]
    enc_names = {"dlib": "dlib", "facenet": "FaceNet"}
    lines = [f"# pyfaid evaluation: {report['data']} ({report['n']} images)", ""]
    lines.append(
        "Metrics compare the render with the clean image (the reference also for occluded inputs) "
        "inside the rendered face mask; ID similarity is the cosine of identity embeddings of the "
        "reference and of the render pasted over it."
    )
    lines += ["", "## Table 1 layout", ""]
    head = "| Dataset | Method | PSNR mean | PSNR std | SSIM mean | SSIM std |"
    sep = "|---|---|---|---|---|---|"
    for e in encs:
        head += f" ID {enc_names.get(e, e)} mean | ID {enc_names.get(e, e)} std |"
        sep += "---|---|"
    lines += [head, sep]
    for cond, methods in report["conditions"].items():
        for m, st in methods.items():
            row = f"| {report['dataset']} ({cond}) | {m} |"
            for key, dg in (("psnr", 2), ("ssim", 3)):
                a, b = _fmt(st.get(key), dg)
                row += f" {a} | {b} |"
            for e in encs:
                a, b = _fmt(st.get(f"id_{e}"), 3)
                row += f" {a} | {b} |"
            lines.append(row)
    if ablation:
        lines += ["", "## Table 2 layout (ablations)", ""]
        for cond, methods in report["conditions"].items():
            lines += [f"### {report['dataset']} ({cond})", ""]
            head = "| Variant | PSNR | SSIM |" + "".join(f" ID {enc_names.get(e, e)} |" for e in encs)
            lines += [head, "|---|---|---|" + "---|" * len(encs)]
            for m, st in methods.items():
                row = f"| {m} | {_fmt(st.get('psnr'), 2)[0]} | {_fmt(st.get('ssim'), 3)[0]} |"
                row += "".join(f" {_fmt(st.get('id_' + e), 3)[0]} |" for e in encs)
                lines.append(row)
            lines.append("")
    any_3d = any("shape_error" in st for cv in report["conditions"].values() for st in cv.values())
    if any_3d:
        lines += ["", "## 3D errors against ground truth (synthetic data)", "",
                  f"Shape error: mean vertex distance over face-mask vertices after similarity Procrustes "
                  f"alignment; mm assume one model unit = 1 dm ({MM_PER_UNIT:g} mm). Colour error: mean "
                  f"absolute RGB difference of the albedo over face-mask vertices (colours in [0, 1]).", "",
                  "| Condition | Method | Shape error (units) | Shape error (mm) | Colour error |",
                  "|---|---|---|---|---|"]
        for cond, methods in report["conditions"].items():
            for m, st in methods.items():
                se, sd = _fmt(st.get("shape_error"), 4)
                mm, mmd = _fmt(st.get("shape_error_mm"), 2)
                ce, cd = _fmt(st.get("color_error"), 4)
                lines.append(f"| {cond} | {m} | {se} ± {sd} | {mm} ± {mmd} | {ce} ± {cd} |")
    lines += ["", "Whole-image values (render pasted over the reference) and every count are in report.json.", ""]
    return "\n".join(lines)


def figure(report: dict, samples: dict, path) -> None:
    """Write the PNG figure: metric bars per condition (mean ± std) and a sample grid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conds = list(report["conditions"])
    methods = list(next(iter(report["conditions"].values())))
    keys = ["psnr", "ssim"] + [f"id_{e}" for e in report["identity_encoders"]]
    n_s = len(samples["input"])
    cols = 2 + len(samples["render"])
    fig = plt.figure(figsize=(max(3.2 * len(keys), 1.6 * cols * max(n_s, 1) / 2), 3.2 + 1.8 * n_s))
    gs = fig.add_gridspec(1 + n_s, max(len(keys), cols), height_ratios=[1.8] + [1.0] * n_s)
    width = 0.8 / max(len(methods), 1)
    for k, key in enumerate(keys):
        ax = fig.add_subplot(gs[0, k])
        for j, m in enumerate(methods):
            mean = [report["conditions"][c][m].get(key, {}).get("mean", np.nan) for c in conds]
            std = [report["conditions"][c][m].get(key, {}).get("std", np.nan) for c in conds]
            ax.bar(np.arange(len(conds)) + j * width, mean, width, yerr=std, label=m, capsize=2)
        ax.set_xticks(np.arange(len(conds)) + width * (len(methods) - 1) / 2)
        ax.set_xticklabels(conds)
        ax.set_title(key.upper() if not key.startswith("id_") else f"ID ({key[3:]})")
        if k == 0:
            ax.legend(fontsize=7)
    titles = ["input", "occluded"] + [f"render ({m})" for m in samples["render"]]
    for r in range(n_s):
        row = [samples["input"][r], samples["occluded"][r]] + [v[r] if r < len(v) else None
                                                              for v in samples["render"].values()]
        for c, img in enumerate(row):
            ax = fig.add_subplot(gs[1 + r, c])
            ax.axis("off")
            if img is not None:
                ax.imshow(img.permute(1, 2, 0).clamp(0, 1).numpy())
            if r == 0:
                ax.set_title(titles[c], fontsize=8)
    fig.tight_layout()
    fig.savefig(str(path), dpi=80)
    plt.close(fig)


def _json_safe(x):
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_json_safe(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m pyfaid.evaluate``."""
    ap = argparse.ArgumentParser(prog="python -m pyfaid.evaluate",
                                 description="Evaluate FAID checkpoints with the paper's protocol (Tables 1 and 2).")
    ap.add_argument("--checkpoint", default=None, help="FAID checkpoint (.pt) of the main method")
    ap.add_argument("--name", default="FAID", help="method name of --checkpoint in the tables")
    ap.add_argument("--data", default="synthetic", help="synthetic | celeba:DIR | aflw2000:DIR | folder:DIR")
    ap.add_argument("--occlusion", nargs="+", default=["none", "synthetic"], choices=["none", "synthetic"],
                    help="input conditions (default: both); the clean image is always the reference")
    ap.add_argument("--n", type=int, default=100, help="number of images")
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--ablations", nargs="*", default=[], metavar="NAME=CKPT",
                    help="more checkpoints evaluated side by side (Table 2 layout)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = ap.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    ckpts: Dict[str, str] = {}
    if args.checkpoint:
        ckpts[args.name] = args.checkpoint
    for spec in args.ablations:
        name, eq, path = spec.partition("=")
        if not eq or not name or not path:
            ap.error(f"--ablations {spec!r}: expected NAME=CKPT")
        ckpts[name] = path
    if not ckpts:
        ap.error("give --checkpoint (train one with `python -m pyfaid.train`) and/or --ablations NAME=CKPT")
    if args.n <= 0:
        ap.error("--n must be positive")
    t0 = time.perf_counter()
    try:
        report, samples = evaluate(ckpts, args.data, args.occlusion, args.n, args.batch_size,
                                   args.device, args.seed)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report["seconds"] = time.perf_counter() - t0
    with open(out / "report.json", "w") as f:
        json.dump(_json_safe(report), f, indent=2)
    (out / "report.md").write_text(markdown_report(report, ablation=len(ckpts) > 1))
    figure(report, samples, out / "report.png")
    print((out / "report.md").read_text())
    print(f"wrote {out / 'report.json'}, {out / 'report.md'}, {out / 'report.png'} in {report['seconds']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
