"""The 68-point landmark protocol on annotated photos (300-W / iBUG ``.pts``, AFLW2000-3D).

Every photo goes through :func:`pyfaid.reconstruct` exactly as a user's would (detection on the
whole photo, alignment, the model, test-time fitting when asked); of the detected faces, the one
nearest the annotated face is reconstructed and scored (its 5 detected points' centre must lie
inside the annotation's box, otherwise the photo counts as a *miss*, as does a photo without any
detection). Scores per photo, in % (mean point-to-point error divided by a size):

* ``nme68_box`` / ``nme51_box``: all 68 points / the 51 inner points (no jaw line), normalised
  by ``sqrt(w * h)`` of the annotation's bounding box (the 3DDFA / AFLW2000-3D protocol);
* ``nme68_io`` / ``nme51_io``: normalised by the outer-eye-corner distance (points 36, 45);
* ``nme_jaw_box`` (the 17 jaw points), ``nme_brows_box``, ``nme_nose_box``, ``nme_eyes_box``,
  ``nme_mouth_box`` (20 points); ``jaw_out_box``: the jaw's mean offset along the annotated
  outline's outward normal (negative: inside the outline);
* on AFLW2000-3D, ``nme68_xyz_box``: the 3D error (x, y and depth, each side's depth relative to its
  mean) over the same box size.

The two conventions are scored each against its own annotation: 300-W-style sets (``300w:``, the
jaw on the visible outline) with :attr:`pyfaid.reconstruct.Reconstruction.landmarks` (2D-style),
AFLW2000-3D-style sets (``aflw2000:``, fixed 3D points) with
:attr:`~pyfaid.reconstruct.Reconstruction.landmarks_3d` (and ``landmarks_3d_xyz`` for depth). A method's
``landmarks`` says where the 68 points fitting uses come from: ``"head"`` (pyfaid's landmark head,
the default) or ``"dlib"`` (dlib's 68-point predictor, returned as they are). CAVEAT: dlib's model
is trained on iBUG 300-W, which includes AFW (and HELEN, LFPW): with ``"dlib"`` scores on those
photos are not held out, and its licence excludes commercial use.

The report gives means over the photos where the face was found, by yaw group where the dataset
knows the pose (AFLW2000-3D: 0-30, 30-60, 60-90 degrees), the miss count, the share of photos
above 10 % NME, seconds per photo, a figure of the worst photos with the predicted (red) and
annotated (green) points, and the cumulative error distribution.
"""

from __future__ import annotations

import math
import os
import sys
import time
from typing import Dict, List, Optional

import cv2
import numpy as np
from tqdm import tqdm

from pyfaid.data.landmarks import GROUPS, INNER_51, AnnotatedPhoto, annotated_photos
from pyfaid.data.registry import parse_spec
from pyfaid.encoders.dlib_landmarks import LICENCE_NOTE
from pyfaid.evaluate.protocol import load_methods
from pyfaid.reconstruct import ReconstructionError, reconstruct
from pyfaid.reconstruct.predict import resolve_device

__all__ = ["nme", "match_face", "evaluate_landmarks", "YAW_GROUPS", "landmark_markdown", "landmark_figures"]

#: Yaw groups of the AFLW2000-3D protocol (degrees, absolute yaw).
YAW_GROUPS = ((0, 30), (30, 60), (60, 90.01))
#: Point groups scored apart (``nme_<group>_box``).
GROUP_KEYS = ("jaw", "brows", "nose", "eyes", "mouth")
KEYS = ("nme68_box", "nme51_box", "nme68_io", "nme51_io", *(f"nme_{g}_box" for g in GROUP_KEYS), "jaw_out_box",
        "nme68_xyz_box", "mesh_nme68_box", "mesh_nme51_box", "mesh_nme_jaw_box")


def jaw_outward(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean signed distance of the predicted jaw points 0-16 from the annotated ones along the
    annotated jaw curve's outward normal (pixels; negative: the prediction lies inside the outline)."""
    jaw = gt[:17]
    tangent = np.gradient(jaw, axis=0)
    normal = np.stack([tangent[:, 1], -tangent[:, 0]], 1)
    normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-9)
    centre = gt[list(INNER_51)].mean(0)
    flip = ((jaw - centre) * normal).sum(1) < 0
    normal[flip] *= -1
    return float(((pred[:17] - jaw) * normal).sum(1).mean())


def nme(pred: np.ndarray, photo: AnnotatedPhoto, pred_depth: Optional[np.ndarray] = None) -> Dict[str, float]:
    """NME (%) of ``pred [68, 2]`` (photo pixels) against an annotated photo: all 68, the 51 inner
    points and each group (:data:`GROUP_KEYS`) over sqrt(w h) of the annotation's box, 68 / 51 over
    the outer-eye-corner distance, the jaw's mean outward offset (``jaw_out_box``, % of the box) and,
    when both sides have depth (``pred_depth [68]``, AFLW2000-3D's ``pt3d_68``), the 3D error
    ``nme68_xyz_box`` with each side's depth taken relative to its mean (the depth offset is arbitrary)."""
    pred = np.asarray(pred, np.float64)
    err = np.linalg.norm(pred - photo.points, axis=1)  # [68]
    inner = list(INNER_51)
    box, io = photo.box_size, max(photo.interocular, 1e-6)
    out = {"nme68_box": 100 * err.mean() / box, "nme51_box": 100 * err[inner].mean() / box,
           "nme68_io": 100 * err.mean() / io, "nme51_io": 100 * err[inner].mean() / io,
           "jaw_out_box": 100 * jaw_outward(pred, photo.points) / box}
    for g in GROUP_KEYS:
        out[f"nme_{g}_box"] = 100 * err[list(GROUPS[g])].mean() / box
    if pred_depth is not None and photo.depth is not None:
        dz = (np.asarray(pred_depth, np.float64) - np.mean(pred_depth)) - (photo.depth - photo.depth.mean())
        out["nme68_xyz_box"] = 100 * np.sqrt(err ** 2 + dz ** 2).mean() / box
    return out


def match_face(detections, photo: AnnotatedPhoto) -> list:
    """The detection nearest the annotated face: its 5 points' centre nearest the annotation's
    centre and inside the annotation's box; ``[]`` when none qualifies (a miss)."""
    if not detections:
        return []
    centre = photo.points.mean(0)
    best = min(detections, key=lambda d: float(np.linalg.norm(np.asarray(d["landmarks5"]).mean(0) - centre)))
    x0, y0, x1, y1 = photo.box
    cx, cy = np.asarray(best["landmarks5"]).mean(0)
    return [best] if (x0 <= cx <= x1 and y0 <= cy <= y1) else []


def _score_photo(photo: AnnotatedPhoto, method, model, device, kind: str = "300w") -> dict:
    t0 = time.perf_counter()
    res = reconstruct([photo.path], checkpoint=None, fit_steps=method.fit_steps, device=device,
                      faces=lambda dets: match_face(dets, photo), model=model if model[0] is not None else None,
                      landmarks=method.landmarks, fill=method.fill)[0]
    seconds = time.perf_counter() - t0
    rec = None if isinstance(res, ReconstructionError) else res[0]
    row = {"path": photo.path, "seconds": seconds, "found": rec is not None,
           "yaw_gt": None if photo.pose is None else math.degrees(float(photo.pose[1]))}
    if rec is None:
        row["error"] = res.message
        return row
    # 300-W-style annotation: the 2D-style points; AFLW2000-3D's: the 3D-style points (and depth)
    three_d = kind == "aflw2000"
    pred = rec.landmarks_3d if three_d else rec.landmarks
    row.update(nme(pred, photo, rec.landmarks_3d_xyz[:, 2] if three_d else None))
    # the reconstructed mesh's own points of the same convention (its geometry)
    mesh = nme(rec.model_landmarks if three_d else rec.to_photo(rec.landmarks_2d_crop), photo)
    row.update(mesh_nme68_box=mesh["nme68_box"], mesh_nme51_box=mesh["nme51_box"], mesh_nme_jaw_box=mesh["nme_jaw_box"])
    row["yaw_pred"] = rec.pose["yaw"]
    row["pred"] = pred.tolist()
    row["gt"] = photo.points.tolist()
    return row


def _mean(rows, key) -> Optional[float]:
    vals = [r[key] for r in rows if r.get("found") and key in r]
    return float(np.mean(vals)) if vals else None


def _summary(rows: List[dict]) -> dict:
    found = [r for r in rows if r["found"]]
    out = {"photos": len(rows), "found": len(found), "misses": len(rows) - len(found),
           "miss_rate": (len(rows) - len(found)) / max(len(rows), 1),
           "above_10pct": float(np.mean([r["nme68_box"] > 10 for r in found])) if found else None,
           "seconds_per_photo": float(np.mean([r["seconds"] for r in rows])) if rows else None,
           "seconds_median": float(np.median([r["seconds"] for r in rows])) if rows else None}
    for k in KEYS:
        out[k] = _mean(rows, k)
    groups = {}
    source = "yaw_gt" if rows and all(r["yaw_gt"] is not None for r in rows) else None
    if source:
        for lo, hi in YAW_GROUPS:
            sel = [r for r in found if lo <= abs(r[source]) < hi]
            groups[f"{lo}-{int(hi)}"] = {"n": len(sel), **{k: _mean(sel, k) for k in KEYS}}
        out["by_yaw"] = groups
    return out


def evaluate_landmarks(methods, data: str, n: int = 0, device="cpu", progress: bool = True):
    """Run the landmark protocol for each method on ``data`` (``300w:DIR`` or ``aflw2000:DIR``).

    Args:
        methods: :class:`pyfaid.evaluate.Method` list (checkpoint or None, fitting steps, landmark source).
        data: the annotated folder spec.
        n: use the first ``n`` photos (0 = all).
        device: torch device.
        progress: tqdm bar.

    Returns:
        ``{"data": ..., "methods": {name: {"summary": ..., "photos": [per-photo rows]}}}``.
    """
    kind, root = parse_spec(data)
    if kind not in ("300w", "aflw2000"):
        raise ValueError(f"--data {data}: the landmark protocol needs annotated photos (300w:DIR or aflw2000:DIR)")
    photos = annotated_photos(root, kind)
    photos = photos[:n] if n > 0 else photos
    dev = resolve_device(device)
    models = load_methods(methods, dev)
    report = {"data": data, "kind": kind, "n": len(photos), "methods": {}}
    for m in methods:
        net = models[m.name][0]
        if kind == "aflw2000" and (net is None or getattr(net.coarse, "landmarks_3d", None) is None):
            print(f"pyfaid.evaluate: {m.name} has no 3D-style landmark head (train it with configs/landmarks.yaml): "
                  "its 3D-style points are the reconstructed mesh's landmark vertices", file=sys.stderr)
        rows = [_score_photo(p, m, models[m.name], dev, kind)
                for p in tqdm(photos, desc=f"landmarks {m.name}", unit="photo", disable=not progress)]
        report["methods"][m.name] = {"checkpoint": m.checkpoint, "fit_steps": m.fit_steps, "fill": m.fill,
                                     "landmarks": m.landmarks, "summary": _summary(rows), "photos": rows}
    return report


def _f(v, digits=2):
    return "-" if v is None else f"{v:.{digits}f}"


def landmark_markdown(report: dict) -> str:
    """``report.md`` of the landmark protocol."""
    lines = [f"# pyfaid landmark evaluation: {report['data']} ({report['n']} photos)", "",
             "NME in % of sqrt(w*h) of the annotation's box (`box`) or of the outer-eye-corner distance (`io`), "
             "over the photos where the face was found; a miss is a photo without a detected face at the "
             "annotated one. Scored points: 2D-style (`Reconstruction.landmarks`) on 300-W-style data, 3D-style "
             "(`Reconstruction.landmarks_3d`) on AFLW2000-3D-style data. `mesh 68` / `mesh jaw`: the reconstructed "
             "mesh's own points of that convention (its geometry), where the other columns score the returned "
             "landmarks (the landmark head's when the model has one and nothing was fitted). `jaw outward`: the "
             "jaw's mean offset along the annotated outline's outward normal (% of the box; negative: inside). "
             "`landmarks`: the source of the 68 points fitting uses (`head`: pyfaid's landmark head; "
             "`dlib`: dlib's 68-point predictor, whose points are also the ones returned).", ""]
    if any(m.get("landmarks") == "dlib" for m in report["methods"].values()):
        lines += [f"**Caveat (`dlib`):** {LICENCE_NOTE}; the same holds for HELEN and LFPW photos.", ""]
    lines += ["| Method | fit steps | landmarks | NME 68 box | NME 51 box | jaw 17 | mouth 20 | jaw outward | "
              "NME 68 io | NME 51 io | mesh 68 box | mesh jaw | misses | >10 % | s / photo |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, m in report["methods"].items():
        s = m["summary"]
        above = None if s["above_10pct"] is None else 100 * s["above_10pct"]
        lines.append(f"| {name} | {m['fit_steps']} | {m.get('landmarks', 'head')} | {_f(s['nme68_box'])} | "
                     f"{_f(s['nme51_box'])} | {_f(s.get('nme_jaw_box'))} | {_f(s.get('nme_mouth_box'))} | "
                     f"{_f(s.get('jaw_out_box'))} | {_f(s['nme68_io'])} | {_f(s['nme51_io'])} | "
                     f"{_f(s.get('mesh_nme68_box'))} | {_f(s.get('mesh_nme_jaw_box'))} | {s['misses']}/{s['photos']} | "
                     f"{_f(above, 1)} % | {_f(s['seconds_per_photo'])} |")
    lines += ["", "## Other point groups (NME box) and the 3D error", "",
              "| Method | brows | nose | eyes | 3D (x, y, depth) 68 |", "|---|---|---|---|---|"]
    for name, m in report["methods"].items():
        s = m["summary"]
        lines.append(f"| {name} | {_f(s.get('nme_brows_box'))} | {_f(s.get('nme_nose_box'))} | {_f(s.get('nme_eyes_box'))} | "
                     f"{_f(s.get('nme68_xyz_box'))} |")
    if any("by_yaw" in m["summary"] for m in report["methods"].values()):
        lines += ["", "## By yaw (annotated pose), NME 68 box", "", "| Method | " +
                  " | ".join(f"{lo}-{int(hi)}" for lo, hi in YAW_GROUPS) + " |", "|---|" + "---|" * len(YAW_GROUPS)]
        for name, m in report["methods"].items():
            g = m["summary"].get("by_yaw", {})
            lines.append(f"| {name} | " + " | ".join(f"{_f(v['nme68_box'])} (n={v['n']})" for v in g.values()) + " |")
    lines += ["", "Per-photo values are in report.json; landmarks_worst.png shows the worst photos "
              "(green: annotation, red: prediction), ced.png the cumulative error distribution.", ""]
    return "\n".join(lines)


def landmark_figures(report: dict, out_dir, worst: int = 12) -> None:
    """Write ``landmarks_worst.png`` (first method) and ``ced.png`` (every method)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4))
    for name, m in report["methods"].items():
        v = np.sort([r["nme68_box"] for r in m["photos"] if r["found"]])
        total = max(len(m["photos"]), 1)
        if len(v):
            ax.plot(np.concatenate([[0], v]), np.arange(len(v) + 1) / total, label=name)
    ax.set_xlim(0, 15)
    ax.set_ylim(0, 1)
    ax.set_xlabel("NME 68 (% of sqrt(w*h))")
    ax.set_ylabel("fraction of photos")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "ced.png"), dpi=90)
    plt.close(fig)
    name, m = next(iter(report["methods"].items()))
    rows = sorted((r for r in m["photos"] if r["found"]), key=lambda r: -r["nme68_box"])[:worst]
    if not rows:
        return
    cols = 4
    fig, axes = plt.subplots((len(rows) + cols - 1) // cols, cols, figsize=(3 * cols, 3 * ((len(rows) + cols - 1) // cols)))
    for ax, r in zip(np.atleast_1d(axes).ravel(), rows):
        img = cv2.cvtColor(cv2.imread(r["path"]), cv2.COLOR_BGR2RGB)
        gt, pred = np.asarray(r["gt"]), np.asarray(r["pred"])
        x0, y0 = gt.min(0)
        x1, y1 = gt.max(0)
        pad = 0.35 * max(x1 - x0, y1 - y0)
        ax.imshow(img)
        ax.scatter(gt[:, 0], gt[:, 1], s=4, c="lime")
        ax.scatter(pred[:, 0], pred[:, 1], s=4, c="red")
        ax.set_xlim(x0 - pad, x1 + pad)
        ax.set_ylim(y1 + pad, y0 - pad)
        ax.set_title(f"{os.path.basename(r['path'])}\nNME {r['nme68_box']:.1f} %", fontsize=7)
    for ax in np.atleast_1d(axes).ravel():
        ax.axis("off")
    fig.suptitle(f"{name}: worst photos (green annotation, red prediction)", fontsize=9)
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "landmarks_worst.png"), dpi=80)
    plt.close(fig)
