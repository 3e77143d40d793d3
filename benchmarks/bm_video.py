"""Video reconstruction: speed at 640 x 480, and accuracy on clips made here (no download).

Speed (rows for ``benchmarks/run.py``): milliseconds per frame of ``pyfaid.reconstruct_video`` on a
synthetic 640 x 480 clip, without per-frame fitting and with ``FIT`` steps, against the per-frame
single-photo pipeline (``pyfaid.reconstruct(frame, fit_steps=0)``: detection on every frame) as
the peer; the run's thread count (``run.py --threads 2``).

Accuracy (``--accuracy``):

* the synthetic clip (:func:`pyfaid.synth.clips.synthetic_clip`: a held-out synthetic face, still,
  head turns, smile, jaw opening, blink, brow raise): pose error (degrees), ARKit weight error,
  landmark error and jitter on the still segments, raw and filtered;
* with ``--photo PATH`` (e.g. an AFW photo: evaluation only, never stored), the photo clip
  (:func:`pyfaid.synth.clips.photo_clip`: held still with sensor noise, then panned, zoomed and
  turned in-plane): the landmarks mapped back onto the photo through each frame's known
  transform, so any movement left is the tracker's: jitter with and without filtering (two runs,
  ``filter=None`` for the latter), lost frames.

Jitter is the RMS frame-to-frame displacement of the 68 landmarks (pixels of the frame) on still
segments, where nothing moves but noise; "settled" leaves out each still segment's first
``SETTLE`` frames (the filter catching up with the motion before it).

    python benchmarks/run.py --only video --threads 2
    python benchmarks/bm_video.py --accuracy [--photo AFW/9545523490_1.jpg] --out eval/video
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

from common import row  # noqa: E402

import pyfaid  # noqa: E402
from pyfaid.synth.clips import photo_clip, synthetic_clip  # noqa: E402
from pyfaid.facemodel.blendshapes import ARKIT_NAMES  # noqa: E402

#: Per-frame fitting steps of the "with fitting" rows.
FIT = 4
#: Frames left out at the start of each still segment for the settled jitter.
SETTLE = 10
#: The speed clip: a head turn and a smile at 640 x 480.
SPEED_SCRIPT = ((8, "still"), (24, "turn"), (16, "mouthSmileLeft+mouthSmileRight@0.8"))


def _segments(mask):
    out, i = [], 0
    while i < len(mask):
        if mask[i]:
            j = i
            while j < len(mask) and mask[j]:
                j += 1
            out.append((i, j))
            i = j
        else:
            i += 1
    return out


def jitter(landmarks: np.ndarray, still: np.ndarray, settle: int = 0) -> float:
    """RMS frame-to-frame landmark displacement (pixels) over the still segments."""
    d = [np.diff(landmarks[a + settle:b], axis=0) for a, b in _segments(still) if b - a - settle > 1]
    d = np.concatenate(d)
    return float(np.sqrt((d ** 2).sum(-1).mean()))


def _timed(frames, fit: int) -> float:
    t = time.perf_counter()
    pyfaid.reconstruct_video(frames, fit_steps=fit, progress=False)
    return (time.perf_counter() - t) * 1000 / len(frames)


def run(device: str = "cpu", quick: bool = False) -> list:
    """Per-frame milliseconds, video pipeline against per-frame photos (interleaved A/B)."""
    script = ((4, "still"), (8, "turn"), (4, "mouthSmileLeft+mouthSmileRight@0.8")) if quick else SPEED_SCRIPT
    frames = synthetic_clip(script=script).frames
    pyfaid.reconstruct_video(frames[:3], progress=False)  # warm: model, caches
    res = {"video fit=0": [], f"video fit={FIT}": [], "per-frame photos": []}
    for _ in range(1 if quick else 2):
        res["video fit=0"].append(_timed(frames, 0))
        res[f"video fit={FIT}"].append(_timed(frames, FIT))
        t = time.perf_counter()
        for f in frames:
            pyfaid.reconstruct(f, fit_steps=0)
        res["per-frame photos"].append((time.perf_counter() - t) * 1000 / len(frames))
    rows = []
    for case, ms in res.items():
        m = float(np.median(ms))
        rows.append(row("video", f"640x480 {len(frames)} frames", case, m, fps=round(1000 / m, 2),
                        threads=torch.get_num_threads()))
    return rows


def synthetic_accuracy(fit: int) -> dict:
    """Pose, weight and landmark errors and jitter on the scripted synthetic clip."""
    clip = synthetic_clip()
    out = {}
    for name, kw in (("filtered", {}), ("unfiltered", {"filter": None})):
        v = pyfaid.reconstruct_video(clip.frames, fit_steps=fit, progress=False, **kw)
        t, w = clip.blendshapes, v.weights
        act = t > 0.1
        key = {n: float(np.abs(w[:, k] - t[:, k])[act[:, k]].mean()) for k, n in enumerate(ARKIT_NAMES)
               if act[:, k].any()}
        out[name] = {
            "frames": len(v), "lost": int((~v.tracked).sum()), "detections": int(v.detected.sum()),
            "pose_error_deg": dict(zip(("pitch", "yaw", "roll"), np.degrees(np.abs(v.angles - clip.angles)).mean(0)
                                       .round(3).tolist())),
            "blendshape_mae": float(np.abs(w - t).mean()), "blendshape_mae_active": float(np.abs(w - t)[act].mean()),
            "blendshape_mae_active_by_shape": key,
            "landmark_error_px": float(np.linalg.norm(v.landmarks - clip.landmarks, axis=2).mean()),
            "jitter_px": jitter(v.landmarks, clip.still), "jitter_settled_px": jitter(v.landmarks, clip.still, SETTLE),
            "pose_jitter_deg": jitter(np.degrees(v.angles)[:, :, None], clip.still),
        }
    return out


def photo_accuracy(photo: str, fit: int) -> dict:
    """Jitter of the landmarks mapped back onto the photo, with and without filtering, and lost frames."""
    clip = photo_clip(photo)
    k = float(np.hypot(*clip.transforms[0][:, 0]))  # photo -> frame scale of the still frames
    inv = [np.linalg.inv(np.vstack([m, [0, 0, 1]]))[:2] for m in clip.transforms]
    still, moving = clip.still, ~clip.still
    res = {}
    for name, kw in (("unfiltered", {"filter": None}), ("filtered", {})):
        v = pyfaid.reconstruct_video(clip.frames, fit_steps=fit, progress=False, **kw)
        b = np.stack([v.landmarks[i] @ inv[i][:, :2].T + inv[i][:, 2] for i in range(len(v))]) * k
        res[name] = {"frames": len(v), "lost": int((~v.tracked).sum()), "detections": int(v.detected.sum()),
                     "jitter_still_px": jitter(b, still), "jitter_still_settled_px": jitter(b, still, SETTLE),
                     "spread_moving_px": float(np.sqrt((b[moving].std(0) ** 2).sum(-1).mean())),
                     "jitter_moving_px": jitter(b, moving)}
    res["jitter_cut"] = 1 - res["filtered"]["jitter_still_px"] / res["unfiltered"]["jitter_still_px"]
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--accuracy", action="store_true", help="accuracy on the synthetic (and photo) clip")
    ap.add_argument("--photo", default=None, help="a photo for the photo clip (evaluation only)")
    ap.add_argument("--fit", type=int, nargs="+", default=[0], help="per-frame fitting steps to measure")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=None, help="folder for report.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    report = {}
    if args.accuracy:
        for fit in args.fit:
            report[f"synthetic fit={fit}"] = synthetic_accuracy(fit)
            if args.photo:
                report[f"photo fit={fit}"] = photo_accuracy(args.photo, fit)
    else:
        report["speed"] = run(quick=args.quick)
    print(json.dumps(report, indent=1))
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "report.json"), "w") as fh:
            json.dump(report, fh, indent=1)


if __name__ == "__main__":
    main()
