"""Train the FAID model.

    python -m pyfaid.train                                   # configs/default.yaml (offline, CPU)
    python -m pyfaid.train --config configs/celeba_bfm.yaml --device cuda --out runs/celeba
    python -m pyfaid.train --out runs/x --resume             # continue exactly where it stopped
    torchrun --nproc_per_node 4 -m pyfaid.train --config celeba_bfm   # data parallel (DDP)

``--max-steps N`` counts every step, resumed ones included. Checkpoints ``ckpt_<step>.pt`` under
``--out`` hold the trained weights, optimizer, scheduler, step, RNG states, the number of samples
consumed and the resolved config; they are written atomically. Ctrl-C / SIGTERM finishes the current
step, saves a checkpoint and exits (a second Ctrl-C aborts at once). TensorBoard logs go to
``<out>/tb``.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import math
import os
import random
import signal
import sys
import time
from typing import Optional

import numpy as np
import torch
import torch.distributed as dist

from pyfaid.config import Config, ConfigError, apply_overrides, from_dict, load_config

CKPT_PATTERN = "ckpt_*.pt"


# ----------------------------------------------------------------------------- distributed helpers
class Dist:
    """Rank / world size of this process (single process when not launched by torchrun)."""

    def __init__(self):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.enabled = self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def init(self, device_type: str):
        if self.enabled and not dist.is_initialized():
            dist.init_process_group("nccl" if device_type == "cuda" else "gloo")

    def all_true(self, flag: bool) -> bool:
        """True on every rank if ``flag`` is true on any rank."""
        if not self.enabled:
            return flag
        t = torch.tensor([1.0 if flag else 0.0])
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item() > 0)

    def barrier(self):
        if self.enabled:
            dist.barrier()


class ResumableSampler(torch.utils.data.Sampler):
    """Infinite, shuffled, distributed batch sampler whose position is the number of samples consumed.

    Global batch ``t`` is ``perm_e[pos : pos + batch * world]`` of the epoch's permutation (seeded by
    ``seed + epoch``, wrapping into the next epoch); rank ``r`` takes the ``r``-th contiguous chunk.
    The sequence of global batches therefore depends only on the samples consumed, so a run resumes
    exactly, and resumes on a different number of processes with the same global data order.

    Args:
        length: dataset size. batch_size: per-process batch. rank, world: this process.
        seed: shuffling seed. start: samples already consumed (from a checkpoint).
    """

    def __init__(self, length: int, batch_size: int, rank: int = 0, world: int = 1, seed: int = 0,
                 start: int = 0):
        if length <= 0:
            raise ValueError("ResumableSampler: empty dataset")
        self.length, self.batch, self.rank, self.world = length, batch_size, rank, world
        self.seed, self.start = seed, start
        self._perms = {}

    def _perm(self, epoch: int) -> torch.Tensor:
        if epoch not in self._perms:
            g = torch.Generator().manual_seed(self.seed * 100003 + epoch)
            self._perms = {epoch: torch.randperm(self.length, generator=g)}
        return self._perms[epoch]

    def global_batch(self, pos: int) -> list:
        out, n = [], self.batch * self.world
        while len(out) < n:
            epoch, off = divmod(pos + len(out), self.length)
            take = min(n - len(out), self.length - off)
            out += self._perm(epoch)[off:off + take].tolist()
        return out

    def __iter__(self):
        pos = self.start
        while True:
            g = self.global_batch(pos)
            yield g[self.rank * self.batch:(self.rank + 1) * self.batch]
            pos += self.batch * self.world

    def __len__(self):  # infinite; DataLoader only needs it for len()
        return 2 ** 62


# ----------------------------------------------------------------------------- data
class _Slim(torch.utils.data.Dataset):
    """Keep only the keys training needs (cheaper collate), optionally caching items in memory."""

    def __init__(self, ds, keys=("image", "mask", "clean", "landmarks"), cache: bool = False):
        self.ds, self.keys, self.cache = ds, keys, {} if cache else None

    def __len__(self):
        return len(self.ds)

    def _slim(self, item):
        return None if item is None else {k: item[k] for k in self.keys if k in item}

    def __getitems__(self, indices):
        """Batched fetch (SyntheticFaces renders a whole batch at once)."""
        todo = [i for i in indices if self.cache is None or i not in self.cache]
        if todo:
            if hasattr(self.ds, "__getitems__"):
                got = self.ds.__getitems__(todo)
            else:
                got = [self.ds[i] for i in todo]
            got = dict(zip(todo, (self._slim(it) for it in got)))
            if self.cache is None:
                return [got[i] for i in indices]
            self.cache.update(got)
        return [self.cache[i] for i in indices]

    def __getitem__(self, i):
        if self.cache is not None and i in self.cache:
            return self.cache[i]
        item = self._slim(self.ds[i])
        if self.cache is not None:
            self.cache[i] = item
        return item


def build_dataset(cfg: Config, out_dir: Optional[str] = None):
    """The training dataset named by ``cfg.data`` (items: ``image``, ``mask``)."""
    d = cfg.data
    if d.dataset == "synthetic":
        from pyfaid.data import SyntheticFaces

        ds = SyntheticFaces(seed=d.seed, length=d.length, image_size=d.image_size, occlusion=d.occlusion)
    else:
        from pyfaid.data.datasets import AFLW2000, CelebA, ImageFolderFaces

        cache_dir = os.path.join(out_dir, "aligned_cache") if (out_dir and d.align) else None
        if d.dataset == "folder":
            ds = ImageFolderFaces(d.root, d.image_size, d.align, cache_dir, d.masks)
        elif d.dataset == "celeba":
            ds = CelebA(d.root, d.image_size, d.align, cache_dir, d.masks)
        elif d.dataset == "aflw2000":
            ds = AFLW2000(d.root, d.image_size, d.align, cache_dir)
        else:
            raise ConfigError(f"data.dataset: unknown dataset {d.dataset!r} "
                              "(synthetic | folder | celeba | aflw2000)")
    return _Slim(ds, cache=d.cache)


def _collate(items):
    from pyfaid.data.datasets import collate_skip

    return collate_skip(items)


# ----------------------------------------------------------------------------- checkpoints
def rng_state() -> dict:
    s = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        s["cuda"] = torch.cuda.get_rng_state_all()
    return s


def set_rng_state(s: dict):
    random.setstate(s["python"])
    np.random.set_state(s["numpy"])
    torch.set_rng_state(s["torch"])
    if "cuda" in s and torch.cuda.is_available() and len(s["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(s["cuda"])


def save_atomic(obj, path: str):
    """``torch.save`` to a temporary file in the same folder, then ``os.replace`` it into place.

    A failure while writing leaves no file at ``path`` (nor a stale temporary file); an existing
    checkpoint at ``path`` is only replaced by a complete one.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.tmp{os.getpid()}")
    try:
        torch.save(obj, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def list_checkpoints(out_dir: str) -> list:
    """Checkpoint paths under ``out_dir`` sorted by step."""
    paths = glob.glob(os.path.join(out_dir, CKPT_PATTERN))
    def step(p):
        try:
            return int(os.path.basename(p)[5:-3])
        except ValueError:
            return -1
    return sorted((p for p in paths if step(p) >= 0), key=step)


def latest_checkpoint(out_dir: str) -> Optional[str]:
    ck = list_checkpoints(out_dir)
    return ck[-1] if ck else None


# ----------------------------------------------------------------------------- evaluation
@torch.no_grad()
def evaluate_synthetic(faid, cfg: Config, n: Optional[int] = None, batch_size: int = 8,
                       device="cpu") -> dict:
    """Masked PSNR (dB) of the coarse render, the fine render and the mean face on held-out
    occluded synthetic faces (``cfg.data.val_seed``, disjoint from training).

    The input is the occluded image; the target is the clean image. Two masks: ``visible`` (face
    pixels not covered by an occluder, the dataset's mask) and ``face`` (the whole ground-truth face
    region, occluded pixels included: how well hidden regions are recovered).
    """
    from pyfaid.data import SyntheticFaces
    from pyfaid.losses import masked_psnr

    n = n or cfg.data.val_size
    ds = SyntheticFaces(seed=cfg.data.val_seed, length=n, image_size=cfg.data.image_size, occlusion=True)
    was_training = faid.training
    faid.eval()
    res = {k: [] for k in ("coarse_visible", "fine_visible", "mean_visible", "coarse_face", "fine_face",
                           "mean_face")}
    fm = faid.face_model
    for s in range(0, n, batch_size):
        items = [ds[i] for i in range(s, min(n, s + batch_size))]
        img = torch.stack([it["image"] for it in items]).to(device)
        clean = torch.stack([it["clean"] for it in items]).to(device)
        vis = torch.stack([it["mask"] for it in items]).to(device)
        gt = torch.stack([it["coeffs"] for it in items]).to(device)
        face = faid.renderer(fm, gt)["mask"] if fm.num_vertices == items[0]["vertices"].shape[0] else vis
        rec = faid(img, render_coarse=True)
        mean = faid.renderer(fm, torch.zeros_like(gt))["image"]
        for name, pred in (("coarse", rec.coarse_image), ("fine", rec.image), ("mean", mean)):
            res[f"{name}_visible"].append(masked_psnr(pred, clean, vis))
            res[f"{name}_face"].append(masked_psnr(pred, clean, face))
    faid.train(was_training)
    out = {}
    for k, v in res.items():
        t = torch.cat(v)
        out[k] = float(t[torch.isfinite(t)].mean())
    out["samples"] = n
    return out


# ----------------------------------------------------------------------------- image grid
def image_grid(images, recon, extras, count: int):
    """Rows of ``input | render | coarse | fine | I_rot | I_occ`` (missing panels black): ``[3, H, W]``."""
    import torchvision

    from pyfaid.losses import composite

    n = min(count, images.shape[0])
    blank = torch.zeros_like(images[:n])
    cols = [images[:n], composite(recon.image[:n], recon.mask[:n], images[:n]),
            recon.coarse_image[:n] if recon.coarse_image is not None else blank, recon.image[:n]]
    for key in ("sa_rot", "sa_occ"):
        x = extras.get(key)
        cols.append(blank if x is None else torch.cat([x[:n], blank[x.shape[0]:]], 0)[:n])
    tiles = torch.stack(cols, 1).flatten(0, 1).detach().float().clamp(0, 1).cpu()
    return torchvision.utils.make_grid(tiles, nrow=len(cols), padding=2)


# ----------------------------------------------------------------------------- training
class _StopFlag:
    """SIGTERM / first Ctrl-C request a clean stop after the current step; a second Ctrl-C aborts."""

    def __init__(self):
        self.requested = False
        self._old = {}

    def _handler(self, signum, frame):
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self):
        for s in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError):  # not the main thread
                self._old[s] = signal.signal(s, self._handler)
        return self

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)


def resolve_device(name: str, d: Dist) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError("--device cuda: no CUDA GPU is available (use --device cpu)")
        return torch.device("cuda", d.local_rank if d.enabled else (torch.device(name).index or 0))
    if name != "cpu":
        raise ValueError(f"unknown device {name!r} (cpu | cuda | auto)")
    return torch.device("cpu")


def _ddp_ignore(objective) -> list:
    """Names DDP should neither broadcast nor reduce: everything but the trained coarse/fine parts."""
    names = [n for n, _ in objective.named_parameters() if not n.startswith(("faid.coarse.", "faid.fine."))]
    names += [n for n, _ in objective.named_buffers() if not n.startswith("faid.coarse.")]
    return names


def train(cfg: Config, out_dir: Optional[str] = None, max_steps: Optional[int] = None,
          device: Optional[str] = None, resume: bool = False, progress: bool = True,
          build_model=None, dataset=None, return_model: bool = False):
    """Run training.

    Args:
        cfg: resolved configuration (replaced by the checkpoint's own when resuming).
        out_dir, max_steps, device, resume: as the command-line flags.
        build_model: optional ``f(cfg, device) -> FAID`` replacing :func:`build_faid`.
        dataset: optional dataset (items with ``image`` and ``mask``) replacing ``cfg.data``.
        return_model: also return the trained model.

    Returns:
        summary dict (steps, images/s, last loss terms, evaluation), or ``(summary, model)``.
    """
    from tqdm import tqdm

    from pyfaid.models.faid import FAIDObjective, build_faid

    d = Dist()
    out_dir = out_dir or cfg.train.out
    cfg.train.out = out_dir
    if max_steps is not None:
        cfg.train.max_steps = int(max_steps)
    if device is not None:
        cfg.train.device = device
    dev = resolve_device(cfg.train.device, d)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    d.init(dev.type)
    if cfg.train.threads > 0:
        torch.set_num_threads(cfg.train.threads)

    ckpt = None
    if resume:
        path = latest_checkpoint(out_dir)
        if path is None:
            raise FileNotFoundError(f"--resume: no checkpoint ({CKPT_PATTERN}) in {out_dir}")
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        saved = from_dict(ckpt["config"], source=path)
        saved.train.max_steps, saved.train.device, saved.train.out = (
            cfg.train.max_steps, cfg.train.device, cfg.train.out)
        cfg = saved
    seed = cfg.train.seed
    random.seed(seed + d.rank)
    np.random.seed(seed + d.rank)
    torch.manual_seed(seed)  # identical initial weights on every rank

    faid = (build_model or build_faid)(cfg, dev)
    faid.train()
    objective = FAIDObjective(faid, cfg.loss)
    params = [p for p in faid.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=cfg.optim.lr, betas=tuple(cfg.optim.betas),
                                 weight_decay=cfg.optim.weight_decay)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=max(1, cfg.optim.decay_every),
                                                gamma=cfg.optim.lr_decay)
    step, samples = 0, 0
    if ckpt is not None:
        faid.load_trainable_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        step, samples = int(ckpt["step"]), int(ckpt["samples"])
        if ckpt.get("world_size", 1) == d.world and d.rank == 0:
            set_rng_state(ckpt["rng"])
        elif "rng" in ckpt:  # another world size: every rank restarts its RNG from the checkpoint's
            set_rng_state(ckpt["rng"])
            random.seed(seed + d.rank + 7919 * step)
            np.random.seed((seed + d.rank + 7919 * step) % 2 ** 32)
    model = objective
    if d.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP

        DDP._set_params_and_buffers_to_ignore_for_model(objective, _ddp_ignore(objective))
        model = DDP(objective, device_ids=[dev.index] if dev.type == "cuda" else None,
                    find_unused_parameters=cfg.train.coarse_steps > step)  # the coarse stage leaves the refiners unused

    if dataset is None:
        dataset = build_dataset(cfg, out_dir)
    if len(dataset) == 0:
        raise ValueError(f"dataset {cfg.data.dataset!r} is empty")
    coarse_steps = max(0, cfg.train.coarse_steps)
    coarse_lr = cfg.optim.coarse_lr if cfg.optim.coarse_lr > 0 else cfg.optim.lr

    def make_loader(batch_size):
        sampler = ResumableSampler(len(dataset), batch_size, d.rank, d.world, seed=cfg.data.seed,
                                   start=samples)
        return iter(torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=_collate,
                                                num_workers=cfg.data.num_workers,
                                                pin_memory=dev.type == "cuda"))

    B = cfg.train.batch_size
    if step < coarse_steps:
        B = cfg.train.coarse_batch_size or B
        if ckpt is None:  # a resumed run has the rate in its optimizer state
            for group in optimizer.param_groups:
                group["lr"] = coarse_lr
    it = make_loader(B)

    writer = None
    if d.main:
        os.makedirs(out_dir, exist_ok=True)
        with open(os.path.join(out_dir, "config.json"), "w") as f:
            json.dump(cfg.to_dict(), f, indent=1)
        if cfg.log.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(os.path.join(out_dir, "tb"))

    def checkpoint():
        if not d.main:
            return None
        path = os.path.join(out_dir, f"ckpt_{step:08d}.pt")
        save_atomic({"model": faid.trainable_state_dict(), "optimizer": optimizer.state_dict(),
                     "scheduler": scheduler.state_dict(), "step": step, "samples": samples,
                     "rng": rng_state(), "sampler": {"seed": cfg.data.seed, "position": samples},
                     "config": cfg.to_dict(), "world_size": d.world, "skipped": skipped}, path)
        for old in list_checkpoints(out_dir)[:-max(1, cfg.train.keep_last)]:
            with contextlib.suppress(OSError):
                os.remove(old)
        return path

    max_steps = cfg.train.max_steps
    skipped = 0
    last_terms, last_path = {}, None
    bar = tqdm(total=max_steps, initial=step, disable=not (progress and d.main), dynamic_ncols=True,
               desc="train")
    t0, n0 = time.perf_counter(), 0
    t_start = t0
    interrupted = False
    with _StopFlag() as stop:
        while step < max_steps:
            if d.all_true(stop.requested):
                interrupted = True
                break
            budget = cfg.train.max_minutes * 60.0
            if budget > 0 and d.all_true(time.perf_counter() - t_start > budget):
                break
            if step == coarse_steps > 0:  # the coarse stage is over: FAID stage batch and rate
                if B != cfg.train.batch_size:
                    B = cfg.train.batch_size
                    it = make_loader(B)
                for group in optimizer.param_groups:
                    group["lr"] = cfg.optim.lr
            coarse_only = step < coarse_steps
            batch = next(it)
            skipped += batch.get("skipped", 0)
            while "image" not in batch:  # every item of this batch was unreadable
                batch = next(it)
                skipped += batch.get("skipped", 0)
            images = batch["image"].to(dev, non_blocking=True)
            mask = batch["mask"].to(dev, non_blocking=True) if "mask" in batch else None
            gen = torch.Generator(device=dev).manual_seed(
                (seed * 1_000_003 + step * 7919 + d.rank * 104729) % (2 ** 63))
            lms = batch["landmarks"].to(dev, non_blocking=True) if "landmarks" in batch else None
            total, terms, recon, extras = model(images, mask, gen, landmarks=lms, coarse_only=coarse_only)
            if not torch.isfinite(total):
                raise FloatingPointError(f"step {step}: loss is {total.item()} "
                                         f"(terms: { {k: float(v) for k, v in terms.items()} })")
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            if cfg.optim.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip)
            optimizer.step()
            scheduler.step()
            step += 1
            samples += B * d.world
            n0 += images.shape[0] * d.world
            last_terms = {k: float(v.detach()) for k, v in terms.items()}
            last_terms["total"] = float(total.detach())
            ips = n0 / max(time.perf_counter() - t0, 1e-9)
            bar.update(1)
            post = {"stage": "coarse" if coarse_only else "faid", "loss": f"{last_terms['total']:.4f}",
                    "photo": f"{last_terms['photo']:.4f}", "img_s": f"{ips:.2f}"}
            if cfg.train.max_minutes > 0:  # the time budget, not max_steps, usually ends the run
                post["min_left"] = f"{max(0.0, cfg.train.max_minutes - (time.perf_counter() - t_start) / 60):.1f}"
            bar.set_postfix(post)
            if writer is not None and (step % cfg.log.every == 0 or step == 1):
                for k, v in last_terms.items():
                    writer.add_scalar(f"loss/{k}", v, step)
                writer.add_scalar("train/lr", scheduler.get_last_lr()[0], step)
                writer.add_scalar("train/images_per_s", ips, step)
                writer.add_scalar("train/skipped_images", skipped, step)
            if writer is not None and cfg.log.image_every > 0 and (step % cfg.log.image_every == 0 or step == 1):
                writer.add_image("reconstruction", image_grid(images, recon, extras, cfg.log.image_count), step)
            if cfg.train.ckpt_every > 0 and step % cfg.train.ckpt_every == 0:
                last_path = checkpoint()
        bar.close()
        if step > 0 and (last_path is None or not last_path.endswith(f"{step:08d}.pt")):
            last_path = checkpoint()
    elapsed = time.perf_counter() - t0
    summary = {"step": step, "interrupted": interrupted, "checkpoint": last_path,
               "images_per_s": n0 / elapsed if elapsed > 0 else 0.0, "losses": last_terms,
               "skipped_images": skipped}
    if d.main and skipped:
        print(f"pyfaid.train: skipped {skipped} unreadable images / images without a face", file=sys.stderr)
    if d.main and not interrupted and cfg.train.eval_at_end and cfg.data.val_size > 0 and step > 0:
        summary["eval"] = evaluate_synthetic(faid, cfg, device=dev)
        if writer is not None:
            for k, v in summary["eval"].items():
                if k != "samples":
                    writer.add_scalar(f"eval/psnr_{k}", v, step)
    if d.main:
        with open(os.path.join(out_dir, "summary.json"), "w") as f:
            json.dump(summary, f, indent=1)
    if writer is not None:
        writer.close()
    d.barrier()
    return (summary, faid) if return_model else summary


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pyfaid.train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="default", help="YAML path or bundled name (default: default)")
    ap.add_argument("--out", default=None, help="output folder (default: train.out of the config)")
    ap.add_argument("--max-steps", type=int, default=None, help="total steps, resumed ones included")
    ap.add_argument("--device", default=None, help="cpu | cuda (default: train.device of the config)")
    ap.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="override a config value (repeatable)")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    try:
        cfg = load_config(args.config, args.set)
    except ConfigError as exc:
        print(f"pyfaid.train: config error: {exc}", file=sys.stderr)
        return 2
    summary = train(cfg, args.out, args.max_steps, args.device, args.resume, progress=not args.no_progress)
    if Dist().main:
        print(json.dumps(summary, indent=1))
    if dist.is_initialized():
        dist.destroy_process_group()
    return 130 if summary["interrupted"] else 0


if __name__ == "__main__":
    sys.exit(main())
