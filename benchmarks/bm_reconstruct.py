"""Per-face latency of ``pyfaid.reconstruct`` (detection + model + test-time fitting), warm and cold.

Rows:

* ``reconstruct / warm fit=N``: median seconds per face in this process after a first call, for
  each fitting length (the model alone when a checkpoint is given, ``fit=0``);
* ``reconstruct / cold fit=N``: one call in a fresh Python process with an empty cache
  (``PYFAID_CACHE`` pointing at a new folder: the default face model is built from scratch), the
  import included: what a new user waits for the first time;
* ``detect``: face detection on a 4000 x 4000 photo, on the downscaled copy pyfaid uses
  (``MAX_DETECT_SIDE``) against the full-resolution detection a naive pipeline would run.

    python benchmarks/run.py --only reconstruct [--quick]
    python benchmarks/bm_reconstruct.py --checkpoint CKPT --fit 0 50 100 200
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from common import row  # noqa: E402

import pyfaid  # noqa: E402


def _photo() -> np.ndarray:
    from skimage import data

    return data.astronaut()


def _default_checkpoint():
    from pyfaid.checkpoint import PRETRAINED, pretrained_available

    return PRETRAINED if pretrained_available() else None


def warm(fit: int, checkpoint=None, repeats: int = 3) -> float:
    """Median seconds per face in this process (after one untimed call)."""
    img = _photo()
    model = None
    if checkpoint is not None:
        from pyfaid.reconstruct import load_model

        model = load_model(checkpoint)
    kw = dict(fit_steps=fit, model=model)
    pyfaid.reconstruct(img, **kw)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        pyfaid.reconstruct(img, **kw)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


COLD = """
import sys, time
t = time.perf_counter()
import numpy as np
import pyfaid
from skimage import data
ck = None if sys.argv[2] == "none" else sys.argv[2]
pyfaid.reconstruct(data.astronaut(), checkpoint=ck, fit_steps=int(sys.argv[1]))
print(time.perf_counter() - t)
"""


def cold(fit: int, checkpoint=None) -> float:
    """Seconds for import + first reconstruction in a fresh process with an empty cache."""
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, PYFAID_CACHE=cache)
        root = os.path.dirname(HERE)
        if any(f.startswith("_C") for f in os.listdir(os.path.join(root, "pyfaid"))):
            env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")  # an in-place build
        out = subprocess.run([sys.executable, "-c", COLD, str(fit), checkpoint or "none"], env=env,
                             capture_output=True, text=True, check=True)
        return float(out.stdout.strip().splitlines()[-1])


def detection(max_side) -> float:
    import cv2
    import warnings

    from pyfaid.encoders.align import detect_faces

    big = cv2.resize(_photo(), (4000, 4000), interpolation=cv2.INTER_CUBIC)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        detect_faces(big, max_side=max_side)
        t = time.perf_counter()
        faces = detect_faces(big, max_side=max_side)
    assert faces, "no face found in the benchmark photo"
    return time.perf_counter() - t


def run(device: str, quick: bool, fits=None, checkpoint="default") -> list:
    if device != "cpu":
        return []
    from pyfaid.encoders.align import MAX_DETECT_SIDE

    ck = _default_checkpoint() if checkpoint == "default" else checkpoint
    fits = fits or ([0, 50] if quick else [0, 50, 100, 200])
    fits = [f for f in fits if f > 0 or ck is not None]
    rows = []
    for f in fits:
        s = warm(f, ck, repeats=1 if quick else 3)
        rows.append(row("reconstruct", f"warm fit={f}", "pyfaid", s * 1e3, seconds_per_face=round(s, 3)))
    for f in fits[:1] if quick else fits:
        s = cold(f, ck)
        rows.append(row("reconstruct", f"cold fit={f} (fresh process, empty cache)", "pyfaid", s * 1e3,
                        seconds_per_face=round(s, 3)))
    rows.append(row("detect", "4000x4000 photo", "pyfaid (downscaled)", detection(MAX_DETECT_SIDE) * 1e3))
    rows.append(row("detect", "4000x4000 photo", "full resolution", detection(0) * 1e3))
    return rows


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default="default", help="checkpoint, 'none', or 'default' (the shipped model)")
    ap.add_argument("--fit", type=int, nargs="+", default=None, help="fitting lengths (default 0 50 100 200)")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    import torch

    torch.set_num_threads(a.threads)
    ck = None if a.checkpoint == "none" else a.checkpoint
    for r in run("cpu", False, a.fit, ck):
        print(r)
