"""Benchmark: synthetic face generation (pyfaid.synth.SyntheticFaces) and the pretraining cache.

Rows (per picture size and thread count): ``synthetic`` items per second of ``SyntheticFaces.batch``
over batches of 32 (``ms`` is per item, wall clock; ``cpu_ms`` the process CPU time per item,
which is what one core costs when the machine is shared), with the time per generation stage;
``pyfaid views=K`` the same generator with ``K`` items per rendered face (``SyntheticFaces(views=K)``:
each item its own occluders and camera; batches of consecutive indices, as
``ResumableSampler(group=K)`` makes them); ``plain`` the same generator with every realism option
off (texture detail, context and hair, light extras, camera effects, alignment framing: close to
what the generator drew before those were added), as the in-run peer; ``cached`` the same items
read back from a cache folder (``pyfaid.data.CachedFaces``, batches of 32).

``stages`` rows: the pretraining data (``configs/pretrain.yaml``: 128 px, ``occlusion_prob`` 0.6,
``views`` 1, batches of 32) per generation stage, in ms per face (``stage_cpu_ms``: process CPU
time; ``ms``: wall clock of whole batches), in a process with ``--threads`` torch threads, for the
generator's own thread setting ``SyntheticFaces(threads=T)``: ``threads=1`` (the default) and
``threads=0`` (the process's threads, as before that option), interleaved over ``--rounds``.

    python benchmarks/bm_synthetic.py [--quick] [--threads N]
    python benchmarks/bm_synthetic.py --stages [--threads 2] [--rounds 3] [--batches 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402

from pyfaid.data import CachedFaces, SyntheticFaces, write_cache  # noqa: E402


def _time_batches(ds, n_batches: int, batch: int) -> tuple[float, float]:
    """Median-free mean over batches after a warm-up batch: (wall ms, CPU ms) per item."""
    ds.batch(range(batch))  # warm up: model, context, shadow maps, painters
    if hasattr(ds, "stage_seconds"):
        ds.stage_seconds.clear()
    t0, c0 = time.perf_counter(), time.process_time()
    for r in range(n_batches):
        ds.batch(range(batch * (r + 1), batch * (r + 2)))
    n = n_batches * batch
    return (time.perf_counter() - t0) * 1e3 / n, (time.process_time() - c0) * 1e3 / n


def stages(device: str = "cpu", rounds: int = 3, n_batches: int = 3, batch: int = 32) -> list[dict]:
    """Per-stage ms per face of the pretraining data; one row per generator thread setting, each
    stage the median over ``rounds`` interleaved rounds (a fresh dataset per round)."""
    kw = dict(seed=7, length=10 ** 6, image_size=128, occlusion_prob=0.6, device=device)
    got = {t: [] for t in (1, 0)}
    for _ in range(rounds):
        for t in got:
            ds = SyntheticFaces(**kw, threads=t)
            ms, cpu = _time_batches(ds, n_batches, batch)
            per = {k: v * 1e3 / (n_batches * batch) for k, v in ds.stage_seconds.items()}
            got[t].append((ms, cpu, per))
    rows = []
    for t, rs in got.items():
        med = statistics.median
        per = {k: round(med(r[2].get(k, 0.0) for r in rs), 2) for k in rs[0][2]}
        ms = med(r[0] for r in rs)
        rows.append(common.row("synthetic-stages", f"pretrain B{batch} 128px {torch.get_num_threads()} threads",
                               f"pyfaid threads={t}", ms,
                               cpu_ms=round(med(r[1] for r in rs), 2), items_per_s=round(1e3 / ms, 1),
                               stage_cpu_ms=per, rounds_ms=[round(r[0], 1) for r in rs],
                               load=round(os.getloadavg()[0], 1)))
    return rows


def run(device: str = "cpu", quick: bool = False) -> list[dict]:
    n_batches = 1 if quick else 3
    batch = 32
    threads = [torch.get_num_threads()] if quick else sorted({1, 2})
    sizes = [128] if quick else [224, 128]
    rows = []
    old = torch.get_num_threads()
    try:
        for th in threads:
            torch.set_num_threads(th)
            try:
                import cv2

                cv2.setNumThreads(th)
            except ImportError:  # pragma: no cover
                pass
            for size in sizes:
                case = f"B{batch} {size}px {th} thread{'s' if th > 1 else ''}"
                ds = SyntheticFaces(seed=0, length=10 ** 6, image_size=size, device=device)
                ms, cpu = _time_batches(ds, n_batches, batch)
                stages = {k: round(v * 1e3 / (n_batches * batch), 2) for k, v in ds.stage_seconds.items()}
                rows.append(common.row("synthetic", case, "pyfaid", ms, cpu_ms=round(cpu, 2),
                                       items_per_s=round(1e3 / ms, 1), stage_cpu_ms=stages))
                for views in (2, 4):
                    vds = SyntheticFaces(seed=0, length=10 ** 6, image_size=size, device=device, views=views)
                    ms, cpu = _time_batches(vds, n_batches, batch)
                    stages = {k: round(v * 1e3 / (n_batches * batch), 2) for k, v in vds.stage_seconds.items()}
                    rows.append(common.row("synthetic", case, f"pyfaid views={views}", ms, cpu_ms=round(cpu, 2),
                                           items_per_s=round(1e3 / ms, 1), stage_cpu_ms=stages))
                plain = SyntheticFaces(seed=0, length=10 ** 6, image_size=size, device=device, texture_detail=False,
                                       context=False, lighting_extras=False, camera_effects=0.0, framing="random")
                ms, cpu = _time_batches(plain, n_batches, batch)
                rows.append(common.row("synthetic", case, "plain", ms, cpu_ms=round(cpu, 2),
                                       items_per_s=round(1e3 / ms, 1)))
                folder = tempfile.mkdtemp(prefix="bm_cache_")
                try:
                    n = batch * (n_batches + 1)
                    write_cache(folder, n, image_size=size, seed=0, shard_size=batch * 2, batch_size=batch,
                                progress=False)
                    cache = CachedFaces(folder)
                    ms, cpu = _time_batches(cache, n_batches, batch)
                    rows.append(common.row("synthetic", case, "cached", ms, cpu_ms=round(cpu, 2),
                                           items_per_s=round(1e3 / ms, 1)))
                finally:
                    shutil.rmtree(folder, ignore_errors=True)
    finally:
        torch.set_num_threads(old)
    if not quick:
        rows += stages(device, rounds=2)
    return rows


if __name__ == "__main__":
    if "--stages" not in sys.argv:
        common.main(run)
    else:
        ap = argparse.ArgumentParser()
        ap.add_argument("--stages", action="store_true")
        ap.add_argument("--device", default="cpu")
        ap.add_argument("--threads", type=int, default=2)
        ap.add_argument("--rounds", type=int, default=3)
        ap.add_argument("--batches", type=int, default=3)
        a = ap.parse_args()
        torch.set_num_threads(a.threads)
        for r in stages(a.device, a.rounds, a.batches):
            print(r, flush=True)
