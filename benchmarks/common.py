"""Timing helpers shared by the ``bm_*.py`` benchmarks.

Each benchmark module exposes ``run(device: str, quick: bool) -> list[dict]``; every row has at
least ``bench``, ``case``, ``impl`` and ``ms`` (median milliseconds), and may add ``per_image_ms``,
``speedup`` or ``gbps``. ``benchmarks/run.py`` runs every module and prints one table.
"""

from __future__ import annotations

import glob
import os
import statistics
import sys
import time
from typing import Callable

import torch

# Benchmark the installed pyfaid; a source tree built in place (`python setup.py build_ext
# --inplace`) takes precedence so developers measure their working copy.
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if glob.glob(os.path.join(_ROOT, "pyfaid", "_C*.so")):
    sys.path.insert(0, _ROOT)


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def time_ms(fn: Callable[[], object], device="cpu", warmup: int = 2, iters: int = 10,
            max_seconds: float = 20.0) -> float:
    """Median wall time of ``fn()`` in milliseconds, after ``warmup`` calls.

    Stops early once ``max_seconds`` have been spent (slow peers), with at least 3 timed calls.
    """
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    start = time.perf_counter()
    for i in range(iters):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append((time.perf_counter() - t0) * 1e3)
        if i >= 2 and time.perf_counter() - start > max_seconds:
            break
    return statistics.median(times)


def time_ms_interleaved(fns: dict, device="cpu", warmup: int = 2, iters: int = 10,
                        max_seconds: float = 30.0) -> dict:
    """Median wall time (ms) of each ``fns[name]()``, the calls interleaved round by round (A, B,
    A, B, ...) so that a noisy machine's load falls on every contestant alike.

    Stops early once ``max_seconds`` have been spent, with at least 3 rounds.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    sync(device)
    times = {name: [] for name in fns}
    start = time.perf_counter()
    for i in range(iters):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            sync(device)
            times[name].append((time.perf_counter() - t0) * 1e3)
        if i >= 2 and time.perf_counter() - start > max_seconds:
            break
    return {name: statistics.median(t) for name, t in times.items()}


def row(bench: str, case: str, impl: str, ms: float, **extra) -> dict:
    out = {"bench": bench, "case": case, "impl": impl, "ms": round(ms, 4)}
    out.update(extra)
    return out


def add_speedups(rows: list[dict], ours: str = "pyfaid") -> list[dict]:
    """Add ``speedup`` (peer ms / pyfaid ms) to every peer row of the same bench and case."""
    base = {(r["bench"], r["case"]): r["ms"] for r in rows if r["impl"] == ours}
    for r in rows:
        b = base.get((r["bench"], r["case"]))
        if b and r["impl"] != ours:
            r["pyfaid_speedup"] = round(r["ms"] / b, 2)
    return rows


def main(run) -> None:
    """Standalone entry point of one ``bm_*.py``: ``python benchmarks/bm_x.py [--device] [--quick] [--threads]``."""
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    for r in run(args.device, args.quick):
        print(r)
