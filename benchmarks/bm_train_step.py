"""One FAID training step (forward + backward + Adam) on a config, and the renderer's share of it.

Rows: ``train_step`` for the default config now, per precision (``fp32`` and ``bf16``,
:mod:`pyfaid.precision`: the networks in bfloat16 autocast), and as it was before the main job
started from the shipped pretrained parts (``BEFORE``, fp32), in the same run (median ms per step,
images/s, the data out of the loop: one batch reused) and the share of step time spent in the
differentiable renderer, measured two ways: ``render_fwd_share`` (wall time inside
``Renderer.forward`` calls, Python included) and ``render_ops_share`` (profiler self time of the
``pyfaid::rasterize/interpolate/vertex_normals/sh_shading`` ops, forward and backward, over the
step's total self time). ``train`` rows time whole Trainer steps of the default config with the data
generated in the loop (``benchmarks/bm_pretrain.py``, which also times pretraining).

    python benchmarks/run.py --only train_step [--quick] [--device cuda]
    python benchmarks/bm_train_step.py --precision fp32 bf16                 # the main job's step, A/B
    python benchmarks/bm_train_step.py --config celeba_bfm --device cuda   # paper setting (synthetic data)
    python benchmarks/bm_train_step.py --config celeba_bfm --device cuda --timing-standins DIR

The paper setting needs the licensed BFM file and FaceNet's VGGFace2 weights. Where they are not
available, ``--timing-standins DIR`` writes files of the same sizes into DIR and uses them: a
``BFM_model_front.mat`` with BFM's vertex count (35,709), about as many triangles (a bent grid,
70,312) and 80/64/80 random components, and an ``InceptionResnetV1`` state dict with random
weights. Step time depends on these sizes, not on the values, so the timing stands; nothing else
measured with them means anything.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from common import row  # noqa: E402

RENDER_OPS = ("pyfaid::rasterize", "pyfaid::interpolate", "pyfaid::vertex_normals", "pyfaid::sh_shading")


def write_timing_standins(folder: str) -> list[str]:
    """BFM-sized face model and random-weight FaceNet files for timing the paper setting.

    Returns the config overrides that point ``celeba_bfm`` at them. Speed only: see module docs.
    """
    import numpy as np
    import scipy.io

    from bm_rasterize import face_grid

    os.makedirs(folder, exist_ok=True)
    verts, tri = (t.numpy() for t in face_grid())  # BFM's vertex count, about its triangle count
    nv = len(verts)
    g = np.random.default_rng(0)
    path = os.path.join(folder, "BFM_model_front.mat")
    scipy.io.savemat(path, dict(
        meanshape=verts.reshape(1, -1), idBase=g.standard_normal((3 * nv, 80)).astype(np.float32) * 1e-3,
        exBase=g.standard_normal((3 * nv, 64)).astype(np.float32) * 1e-3, meantex=np.full((1, 3 * nv), 150.0),
        texBase=g.standard_normal((3 * nv, 80)).astype(np.float32), tri=(tri + 1).astype(np.float64),
        keypoints=(np.linspace(0, nv - 178, 68).astype(np.int64) + 1).reshape(1, 68).astype(np.float64)))
    from facenet_pytorch import InceptionResnetV1

    torch.manual_seed(0)
    weights = os.path.join(folder, "facenet_random_timing_only.pt")
    torch.save(InceptionResnetV1(pretrained=None).state_dict(), weights)
    return [f"model.face_model={path}", f"model.identity_weights={weights}"]


def _setup(config: str, device: str, batch_size=None, overrides=()):
    from pyfaid.config import load_config
    from pyfaid.synth import SyntheticFaces
    from pyfaid.facemodel import load as load_face_model
    from pyfaid.models import FAIDObjective, build_faid

    cfg = load_config(config, list(overrides) + ([f"train.batch_size={batch_size}"] if batch_size else []))
    torch.manual_seed(0)
    faid = build_faid(cfg, device).train()
    if cfg.train.freeze:
        faid.freeze(cfg.train.freeze)
    obj = FAIDObjective(faid, cfg.loss)
    params = [p for p in faid.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.optim.lr)
    ds = SyntheticFaces(seed=0, length=cfg.train.batch_size, image_size=cfg.data.image_size,
                        face_model=None if cfg.model.face_model == "default" else load_face_model(cfg.model.face_model))
    items = ds.__getitems__(list(range(cfg.train.batch_size)))
    images = torch.stack([it["image"] for it in items]).to(device)
    batch = {k: torch.stack([it[k] for it in items]).to(device) for k in ("image", "mask", "colors")}
    return cfg, faid, obj, opt, batch


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def measure(config="default", device="cpu", iters=3, batch_size=None, overrides=(), top=0, prec="fp32"):
    from pyfaid import precision

    cfg, faid, obj, opt, batch = _setup(config, device, batch_size, overrides)
    mixed = precision.resolve(prec, device)
    render_time = [0.0]
    orig = faid.renderer.forward

    def timed(*a, **k):
        _sync(device)
        t = time.perf_counter()
        out = orig(*a, **k)
        _sync(device)
        render_time[0] += time.perf_counter() - t
        return out

    faid.renderer.forward = timed

    def step(i):
        gen = torch.Generator(device=device).manual_seed(i)
        with precision.use(mixed):
            total, *_ = obj(batch, gen)
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()

    step(0)  # warm-up
    _sync(device)
    times, shares = [], []
    for i in range(iters):
        render_time[0] = 0.0
        t = time.perf_counter()
        step(i + 1)
        _sync(device)
        dt = time.perf_counter() - t
        times.append(dt)
        shares.append(render_time[0] / dt)
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.device(device).type == "cuda" else [])
    with profile(activities=acts) as prof:
        step(99)
        _sync(device)
    ev = prof.key_averages()
    attr = "self_device_time_total" if torch.device(device).type == "cuda" else "self_cpu_time_total"
    if top:
        print(ev.table(sort_by=attr, row_limit=top))
        print(ev.table(sort_by="cpu_time_total", row_limit=top))
    total = sum(getattr(e, attr) for e in ev)
    render = sum(getattr(e, attr) for e in ev if e.key.startswith(RENDER_OPS))
    times.sort()
    shares.sort()
    med = times[len(times) // 2]
    return {"cfg": cfg, "ms": med * 1e3, "images_per_s": cfg.train.batch_size / med, "precision": mixed.name,
            "render_fwd_share": shares[len(shares) // 2], "render_ops_share": render / max(total, 1e-9)}


#: The default config's FAID step before the main job started from the pretrained parts: the
#: ResNet-18 at 96 px trained along, no landmark head, segmenter or photo input.
BEFORE = ("model.input_size=96", "model.landmark_head=false", "model.segmenter=false", "model.photo_input=false",
          "train.freeze=[]", "loss.coarse_photo=1.0")


def run(device: str, quick: bool) -> list:
    from pyfaid.encoders import AttributeWeightsNotFound

    rows = []
    for label, base, prec in (("before", BEFORE, "fp32"), ("now", (), "fp32"), ("now", (), "bf16")):
        note, over = "", base
        kw = dict(iters=1 if quick else 3, batch_size=2 if quick else None, prec=prec)
        try:
            m = measure("default", device, overrides=over, **kw)
        except AttributeWeightsNotFound:  # the attribute encoder's weights are not built yet
            note, over = " no-FA(attribute weights missing)", base + ("model.use_fa_features=false", "loss.att=0")
            m = measure("default", device, overrides=over, **kw)
        c = m["cfg"]
        frozen = f" frozen={'+'.join(c.train.freeze)}" if c.train.freeze else ""
        case = (f"default[{label}] B={c.train.batch_size} render={c.data.image_size} cnn={c.model.input_size} "
                f"{c.model.backbone}{frozen}{note}")
        rows.append(row("train_step", case, f"pyfaid {m['precision']}", m["ms"],
                        images_per_s=round(m["images_per_s"], 3), render_fwd_share=round(m["render_fwd_share"], 3),
                        render_ops_share=round(m["render_ops_share"], 3)))
    if device == "cpu":
        from bm_pretrain import measure as trainer_rows

        rows += trainer_rows("default", ("fp32", "bf16"), ("main", "workers"), 1 if quick else 5, 1 if quick else 2)
    return rows


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="default")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--profile-top", type=int, default=0, help="print the profiler's top N ops")
    ap.add_argument("--precision", nargs="+", default=["fp32"], choices=["auto", "fp32", "bf16"],
                    help="precisions to time, interleaved (one row each)")
    ap.add_argument("--rounds", type=int, default=1, help="interleaved rounds over the precisions")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--timing-standins", metavar="DIR", default=None,
                    help="write BFM-sized / random-weight stand-in files to DIR and time with them")
    a = ap.parse_args()
    if a.timing_standins:
        a.set = write_timing_standins(a.timing_standins) + a.set
    if a.threads:
        torch.set_num_threads(a.threads)
    for r in range(a.rounds):
        for p in a.precision:
            m = measure(a.config, a.device, a.iters, a.batch_size, a.set, a.profile_top, prec=p)
            c = m.pop("cfg")
            print(f"{a.config} [{m['precision']}, round {r + 1}]: batch {c.train.batch_size}, render {c.data.image_size}, "
                  f"{c.model.backbone} @{c.model.input_size} on {a.device}, {torch.get_num_threads()} threads: "
                  f"{m['ms']:.1f} ms/step, {m['images_per_s']:.2f} images/s, renderer forward share "
                  f"{m['render_fwd_share']:.1%}, render ops share (fwd+bwd) {m['render_ops_share']:.1%}", flush=True)
