"""Reports of the photometric protocol: ``report.md`` (Table 1 / Table 2 layouts), ``report.png``."""

from __future__ import annotations

import math
from typing import Dict, Tuple

import numpy as np

from pyfaid.evaluate.geometry import MM_PER_UNIT

__all__ = ["markdown_report", "region_table", "figure", "json_safe"]


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
    lines += region_table(report)
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


def _region_cell(st: dict) -> str:
    return " / ".join(_fmt(st.get(k), 2)[0] for k in ("psnr", "psnr_occluded", "psnr_visible"))


def region_table(report: dict) -> list:
    """Lines of the per-region table: one row per method, one column per condition, each cell
    ``whole face / occluded pixels / visible pixels`` masked PSNR (empty when no condition has
    region values)."""
    conds = report["conditions"]
    if not any("psnr_occluded" in st for cv in conds.values() for st in cv.values()):
        return []
    methods = list(dict.fromkeys(m for cv in conds.values() for m in cv))
    lines = ["", "## Per region", "",
             "Masked PSNR (dB) over the whole rendered face / the face pixels the occluders cover / the "
             "ones they leave visible; the share of the face the occluders cover is the last row.", "",
             "| Method | " + " | ".join(conds) + " |", "|---|" + "---|" * len(conds)]
    for m in methods:
        lines.append(f"| {m} | " + " | ".join(_region_cell(conds[c].get(m, {})) for c in conds) + " |")
    share = [_fmt(next(iter(conds[c].values())).get("occluded_share"), 3)[0] for c in conds]
    lines.append("| occluded share | " + " | ".join(share) + " |")
    return lines


def figure(report: dict, samples: dict, path) -> None:
    """Write the PNG figure: metric bars per condition (mean ± std) and a sample grid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conds = list(report["conditions"])
    methods = list(next(iter(report["conditions"].values())))
    keys = ["psnr", "ssim"] + [f"id_{e}" for e in report["identity_encoders"]]
    n_s = len(samples["input"])
    occluded = samples["occluded"] if len(samples["occluded"]) else None  # none with --occlusion none only
    cols = (2 if occluded else 1) + len(samples["render"])
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
    titles = ["input"] + (["occluded"] if occluded else []) + [f"render ({m})" for m in samples["render"]]
    for r in range(n_s):
        row = ([samples["input"][r]] + ([occluded[r] if r < len(occluded) else None] if occluded else [])
               + [v[r] if r < len(v) else None for v in samples["render"].values()])
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


def json_safe(x):
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, list):
        return [json_safe(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x
