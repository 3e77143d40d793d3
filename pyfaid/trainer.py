"""The training loop: a :class:`Trainer` made of small steps over declarative stages.

A run is a list of stages (``train.stages`` of the config, see :class:`pyfaid.config.StageConfig`):
each trains ``steps`` steps with one objective (:data:`pyfaid.models.OBJECTIVES`), batch size and
learning rate; the last one runs until ``train.max_steps`` or ``train.max_minutes``. Checkpoints
(``ckpt_<step>.pt``, atomic) hold the trained weights, optimizer, scheduler, step, samples consumed,
RNG states and the resolved config, so ``resume`` continues exactly, across stage boundaries too.
SIGTERM / Ctrl-C finish the current step, save a checkpoint and stop (a second Ctrl-C aborts).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import random
import signal
import sys
import time
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import torchvision
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from pyfaid import checkpoint as ckpt_io
from pyfaid import precision
from pyfaid.config import Config, from_dict, resumed_config
from pyfaid.data.datasets import collate_skip
from pyfaid.data.registry import build_dataset
from pyfaid.data.sampler import ResumableSampler, TrainingView, init_worker, prepare_workers
from pyfaid.distributed import Dist
from pyfaid.evaluate import held_out_landmarks, held_out_psnr
from pyfaid.losses import composite
from pyfaid.models import FAID, OBJECTIVES, StagedObjective, build_faid

__all__ = ["Stage", "stages_of", "Trainer", "resolve_device", "image_grid", "ignore_stop_signals"]


def ignore_stop_signals(worker_id: int = 0) -> None:
    """DataLoader workers ignore SIGINT / SIGTERM: a stop sent to the whole process group (Ctrl-C,
    ``pkill -f``, a cluster's pre-emption) reaches the main process, which finishes its step, saves
    and shuts its workers down; a worker that died of the signal first would crash the run unsaved."""
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, signal.SIG_IGN)


@dataclass(frozen=True)
class Stage:
    """A resolved training stage: global steps ``[start, end)`` (``end`` None = open)."""

    name: str
    objective: str
    start: int
    end: Optional[int]
    batch_size: int
    lr: float

    def holds(self, step: int) -> bool:
        return step >= self.start and (self.end is None or step < self.end)


def stages_of(cfg: Config) -> list:
    """The config's stages with global step ranges, batch sizes and learning rates filled in."""
    declared = cfg.train.stages or (None,)
    out, start = [], 0
    for st in declared:
        if st is None:  # no stages declared: one FAID stage
            out.append(Stage("faid", "faid", 0, None, cfg.train.batch_size, cfg.optim.lr))
            break
        end = start + st.steps if st.steps > 0 else None
        out.append(Stage(st.name, st.objective, start, end, st.batch_size or cfg.train.batch_size,
                         st.lr or cfg.optim.lr))
        start = end if end is not None else start
    if out[-1].end is not None:  # the last stage runs on until max_steps / max_minutes
        out[-1] = Stage(out[-1].name, out[-1].objective, out[-1].start, None, out[-1].batch_size, out[-1].lr)
    return out


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


def image_grid(images, out, extras, count: int):
    """Rows of ``input | render | coarse | fine | I_rot | I_occ`` (missing panels black): ``[3, H, W]``."""
    n = min(count, images.shape[0])
    blank = torch.zeros_like(images[:n])
    cols = [images[:n], composite(out.image[:n], out.mask[:n], images[:n]),
            out.coarse_image[:n] if out.coarse_image is not None else blank, out.image[:n]]
    for key in ("sa_rot", "sa_occ"):
        x = extras.get(key)
        cols.append(blank if x is None else torch.cat([x[:n], blank[x.shape[0]:]], 0)[:n])
    tiles = torch.stack(cols, 1).flatten(0, 1).detach().float().clamp(0, 1).cpu()
    return torchvision.utils.make_grid(tiles, nrow=len(cols), padding=2)


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


def _hardware(dev: torch.device, d: Dist) -> str:
    """A one-line description of what trains: CPU model and threads, or the GPU, and the world size."""
    if dev.type == "cuda":
        what = torch.cuda.get_device_name(dev)
    else:
        cpu = platform.processor() or platform.machine()
        try:
            with open("/proc/cpuinfo") as f:
                cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
        except (OSError, StopIteration):
            pass
        what = f"{cpu}, {torch.get_num_threads()} threads"
    return f"{what}, {d.world} process(es), torch {torch.__version__}"


def _ddp_ignore(objective) -> list:
    """Names DDP should neither broadcast nor reduce: everything but the trained parts (coarse,
    fine, segmenter)."""
    trained = tuple("faid." + p for p in FAID.TRAINED)
    names = [n for n, _ in objective.named_parameters() if not n.startswith(trained)]
    names += [n for n, _ in objective.named_buffers() if not n.startswith(("faid.coarse.", "faid.segmenter."))]
    return names


class Trainer:
    """Trains a FAID model over the config's stages.

    Args:
        cfg: resolved configuration (never modified; a resumed run uses its checkpoint's own).
        resume: continue from the latest checkpoint in ``cfg.train.out``.
        progress: show a tqdm bar (rank 0).
        build_model: optional ``f(cfg, device) -> FAID`` replacing :func:`pyfaid.models.build_faid`.
        dataset: optional dataset (items with ``image`` and ``mask``) replacing ``cfg.data``.
        keep_run_settings: with ``resume``, the run settings (:data:`pyfaid.config.RUN_SETTINGS`) the
            resumed run keeps from its checkpoint instead of taking ``cfg``'s (``"all"``: every one;
            ``python -m pyfaid.train --resume`` without ``--config`` keeps all but those given).
    """

    def __init__(self, cfg: Config, resume: bool = False, progress: bool = True, build_model=None,
                 dataset=None, keep_run_settings=()):
        self.dist = Dist()
        self.dev = resolve_device(cfg.train.device, self.dist)
        if self.dev.type == "cuda":
            torch.cuda.set_device(self.dev)
        self.dist.init(self.dev.type)
        if cfg.train.threads > 0:
            torch.set_num_threads(cfg.train.threads)
        self.out_dir = cfg.train.out
        self.resumed = self._load_resume(cfg) if resume else None
        if self.resumed is not None:
            # The run's own config; only where, how long, on what and how it reports come from the
            # command line (none of these changes what is computed).
            saved = from_dict(precision.saved_config(self.resumed["config"]), source=self.resumed["path"])
            cfg = resumed_config(saved, cfg, keep_run_settings)
        self.cfg = cfg
        self.precision = precision.resolve(cfg.train.precision, self.dev, "train.precision")
        self.progress = progress
        self.stages = stages_of(cfg)
        self._seed()
        self._build(build_model, dataset)

    # ------------------------------------------------------------------ setup
    def _load_resume(self, cfg: Config) -> dict:
        path = ckpt_io.latest_checkpoint(self.out_dir)
        if path is None:
            raise FileNotFoundError(f"--resume: no checkpoint ({ckpt_io.CKPT_PATTERN}) in {self.out_dir}")
        return ckpt_io.load_checkpoint(path)

    def _seed(self):
        seed, rank = self.cfg.train.seed, self.dist.rank
        random.seed(seed + rank)
        np.random.seed(seed + rank)
        torch.manual_seed(seed)  # identical initial weights on every rank

    def _build(self, build_model, dataset):
        cfg = self.cfg
        self.faid = (build_model or build_faid)(cfg, self.dev)
        self.faid.train()
        if cfg.train.freeze:  # before the optimizer: frozen parts get no parameter slots
            self.faid.freeze(cfg.train.freeze)
        self.objective = StagedObjective(self.faid, cfg.loss, [s.objective for s in self.stages])
        self.params = [p for p in self.faid.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(self.params, lr=self.stages[0].lr, betas=tuple(cfg.optim.betas),
                                          weight_decay=cfg.optim.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.StepLR(self.optimizer, step_size=max(1, cfg.optim.decay_every),
                                                         gamma=cfg.optim.lr_decay)
        self.step, self.samples, self.skipped, self.train_seconds = 0, 0, 0, 0.0
        self._t_fit = time.perf_counter()
        if self.resumed is not None:
            self._restore(self.resumed)
        elif cfg.train.init_from:
            self._init_from(cfg.train.init_from, tuple(cfg.train.init_parts))
        self.model = self._wrap_ddp()
        if dataset is None:
            d = cfg.data
            cache = os.path.join(self.out_dir, "aligned_cache") if d.align else None
            dataset = build_dataset(d.dataset, d.root, image_size=d.image_size, align=d.align, cache_dir=cache,
                                    masks=d.masks, seed=d.seed, length=d.length, occlusion=d.occlusion,
                                    **(d.synthetic if d.dataset == "synthetic" else {}))
        self.dataset = dataset if isinstance(dataset, TrainingView) else TrainingView(dataset, cache=cfg.data.cache)
        if len(self.dataset) == 0:
            raise ValueError(f"dataset {cfg.data.dataset!r} is empty")

    def _restore(self, ck: dict):
        d = self.dist
        self.faid.load_trainable_state_dict(ck["model"])
        self.optimizer.load_state_dict(ck["optimizer"])
        self.scheduler.load_state_dict(ck["scheduler"])
        self.step, self.samples = int(ck["step"]), int(ck["samples"])
        self.skipped = int(ck.get("skipped", 0))
        self.train_seconds = float(ck.get("train_seconds", 0.0))
        if ck.get("world_size", 1) == d.world and d.rank == 0:
            set_rng_state(ck["rng"])
        elif "rng" in ck:  # another world size: every rank restarts its RNG from the checkpoint's
            seed = self.cfg.train.seed
            set_rng_state(ck["rng"])
            random.seed(seed + d.rank + 7919 * self.step)
            np.random.seed((seed + d.rank + 7919 * self.step) % 2 ** 32)

    def _init_from(self, path: str, parts: tuple):
        """Start from another run's trained weights: every tensor of the named parts whose name and shape
        match (the coarse model must match when taken, but landmark heads or branch that train here may
        be new: a head starts fresh, a branch from the backbone's last block; other parts start fresh)."""
        unknown = sorted(set(parts) - {"coarse", "fine", "segmenter"})
        if unknown:
            raise ValueError(f"train.init_parts: unknown part(s) {unknown}; choose from coarse, fine, segmenter")
        state = ckpt_io.load_checkpoint(path)["model"]
        own = self.faid.trainable_state_dict()
        prefixes = tuple(p + "." for p in parts)
        fits = {k: v.float() if v.is_floating_point() else v for k, v in state.items()
                if k.startswith(prefixes) and k in own and own[k].shape == v.shape}
        missing = [k for k in own if k.startswith("coarse.") and "coarse" in parts and k not in fits]
        trains = lambda k: any(p.requires_grad for p in self.faid.get_submodule(k.rsplit(".", 1)[0]).parameters())  # noqa: E731
        fixed_missing = [k for k in missing if not (k.startswith(("coarse.landmark",)) and trains(k))]
        if fixed_missing:
            raise ValueError(f"train.init_from={path}: its coarse model does not fit this config "
                             f"(missing or resized: {fixed_missing[:4]})")
        self.faid.load_state_dict(fits, strict=False)
        filled = {"coarse." + k for k in self.faid.coarse.complete_from_backbone([k[len("coarse."):] for k in missing])}
        if self.dist.main:
            names = lambda keys: ", ".join(sorted({".".join(k.split(".")[:2]) for k in keys}))  # noqa: E731
            fresh, copied = names(k for k in own if k not in fits and k not in filled), names(filled)
            print(f"pyfaid.train: started from {path} ({len(fits)} tensors)" + (f"; fresh: {fresh}" if fresh else "")
                  + (f"; from the backbone's last block: {copied}" if copied else ""), file=sys.stderr)

    def _wrap_ddp(self):
        if not self.dist.enabled:
            return self.objective

        DDP._set_params_and_buffers_to_ignore_for_model(self.objective, _ddp_ignore(self.objective))
        # a coarse-only stage still ahead leaves the refiners without gradients
        unused = any(OBJECTIVES[s.objective].coarse_only and (s.end is None or s.end > self.step) for s in self.stages)
        return DDP(self.objective, device_ids=[self.dev.index] if self.dev.type == "cuda" else None,
                   find_unused_parameters=unused)

    def _loader(self, batch_size: int):
        d = self.dist
        sampler = ResumableSampler(len(self.dataset), batch_size, d.rank, d.world, seed=self.cfg.data.seed,
                                   start=self.samples, group=getattr(self.dataset.ds, "views", 1))
        workers = self.cfg.data.num_workers
        if workers > 0:
            prepare_workers()
        return iter(torch.utils.data.DataLoader(self.dataset, batch_sampler=sampler, collate_fn=collate_skip,
                                                num_workers=workers, pin_memory=self.dev.type == "cuda",
                                                worker_init_fn=init_worker if workers > 0 else None))

    def stage_at(self, step: int) -> Stage:
        return next(s for s in self.stages if s.holds(step))

    # ------------------------------------------------------------------ one step
    def _next_batch(self, it) -> dict:
        batch = next(it)
        self.skipped += batch.get("skipped", 0)
        while "image" not in batch:  # every item of this batch was unreadable
            batch = next(it)
            self.skipped += batch.get("skipped", 0)
        keys = ("image", "mask", "landmarks", "landmarks_2d", "landmarks_3d", "landmark_visible", "coeffs", "colors")
        return {k: batch[k].to(self.dev, non_blocking=True) for k in keys if k in batch}

    def train_step(self, batch: dict, stage: Stage):
        """One optimizer step; returns ``(terms as floats, output, extras)``."""
        cfg, d = self.cfg, self.dist
        gen = torch.Generator(device=self.dev).manual_seed(
            (cfg.train.seed * 1_000_003 + self.step * 7919 + d.rank * 104729) % (2 ** 63))
        with precision.use(self.precision):  # the networks in bf16 when mixed; losses, kernels fp32
            total, terms, out, extras = self.model(batch, gen, stage.objective, self.step)
        if not torch.isfinite(total):
            raise FloatingPointError(f"step {self.step}: loss is {total.item()} "
                                     f"(terms: { {k: float(v) for k, v in terms.items()} })")
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        if cfg.optim.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.params, cfg.optim.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        self.samples += stage.batch_size * d.world
        values = {k: float(v.detach()) for k, v in terms.items()}
        values["total"] = float(total.detach())
        return values, out, extras

    # ------------------------------------------------------------------ logging / checkpoints
    def _log(self, writer, values: dict, images_per_s: float, batch, out, extras):
        step, log = self.step, self.cfg.log
        if writer is None:
            return
        if step % log.every == 0 or step == 1:
            for k, v in values.items():
                writer.add_scalar(f"loss/{k}", v, step)
            writer.add_scalar("train/lr", self.scheduler.get_last_lr()[0], step)
            writer.add_scalar("train/images_per_s", images_per_s, step)
            writer.add_scalar("train/skipped_images", self.skipped, step)
        if log.image_every > 0 and (step % log.image_every == 0 or step == 1):
            writer.add_image("reconstruction", image_grid(batch["image"], out, extras, log.image_count), step)

    def save_checkpoint(self) -> Optional[str]:
        """Write ``ckpt_<step>.pt`` atomically (rank 0) and drop all but the last ``keep_last``."""
        if not self.dist.main:
            return None
        cfg = self.cfg
        path = os.path.join(self.out_dir, f"ckpt_{self.step:08d}.pt")
        ckpt_io.save_atomic({"model": self.faid.trainable_state_dict(), "optimizer": self.optimizer.state_dict(),
                             "scheduler": self.scheduler.state_dict(), "step": self.step, "samples": self.samples,
                             "rng": rng_state(), "sampler": {"seed": cfg.data.seed, "position": self.samples},
                             "config": cfg.to_dict(), "world_size": self.dist.world, "skipped": self.skipped,
                             "train_seconds": self.train_seconds + time.perf_counter() - self._t_fit,
                             "hardware": _hardware(self.dev, self.dist)}, path)
        for old in ckpt_io.list_checkpoints(self.out_dir)[:-max(1, cfg.train.keep_last)]:
            with contextlib.suppress(OSError):
                os.remove(old)
        return path

    def _open_writer(self):
        if not self.dist.main:
            return None
        print(f"pyfaid.train: {self.precision.describe()}", file=sys.stderr)
        os.makedirs(self.out_dir, exist_ok=True)
        with open(os.path.join(self.out_dir, "config.json"), "w") as f:
            json.dump(self.cfg.to_dict(), f, indent=1)
        if not self.cfg.log.tensorboard:
            return None

        return SummaryWriter(os.path.join(self.out_dir, "tb"))

    def _enter_stage(self, stage: Stage, fresh: bool):
        """Set the stage's learning rate (a resumed mid-stage run keeps the optimizer's)."""
        if fresh:
            for group in self.optimizer.param_groups:
                group["lr"] = stage.lr

    # ------------------------------------------------------------------ the loop
    def _validate(self, writer):
        """Held-out synthetic landmark errors (and pose), logged to TensorBoard and ``val.jsonl``."""
        if not self.dist.main or self.cfg.data.dataset not in ("synthetic", "cached"):
            return

        res = held_out_landmarks(self.faid, self.cfg, n=min(self.cfg.data.val_size, 100), device=self.dev)
        res["step"] = self.step
        with open(os.path.join(self.out_dir, "val.jsonl"), "a") as f:
            f.write(json.dumps(res) + "\n")
        if writer is not None:
            for k, v in res.items():
                if k not in ("step", "samples"):
                    writer.add_scalar(f"val/{k}", v, self.step)

    def _out_of_time(self, t_start: float) -> bool:
        budget = self.cfg.train.max_minutes * 60.0
        return budget > 0 and self.dist.all_true(time.perf_counter() - t_start > budget)

    def _postfix(self, stage: Stage, values: dict, ips: float, t_start: float) -> dict:
        post = {"stage": stage.name, "loss": f"{values['total']:.4f}"}
        if "photo" in values:
            post["photo"] = f"{values['photo']:.4f}"
        post["img_s"] = f"{ips:.2f}"
        if self.cfg.train.max_minutes > 0:  # the time budget, not max_steps, usually ends the run
            left = self.cfg.train.max_minutes - (time.perf_counter() - t_start) / 60
            post["min_left"] = f"{max(0.0, left):.1f}"
        return post

    def fit(self) -> dict:
        """Train until ``max_steps`` / ``max_minutes`` or a stop request; returns the summary."""
        cfg, d = self.cfg, self.dist
        writer = self._open_writer()
        stage = self.stage_at(self.step)
        # a resumed run keeps its optimizer's rate, unless it resumes right at a stage boundary
        self._enter_stage(stage, fresh=self.resumed is None or self.step == stage.start)
        it = self._loader(stage.batch_size)
        values, last_path, interrupted = {}, None, False
        bar = tqdm(total=cfg.train.max_steps, initial=self.step, disable=not (self.progress and d.main),
                   dynamic_ncols=True, desc="train")
        t0 = self._t_fit = time.perf_counter()
        n0 = 0
        with _StopFlag() as stop, precision.use(self.precision):  # validation too
            while self.step < cfg.train.max_steps:
                if d.all_true(stop.requested):
                    interrupted = True
                    break
                if self._out_of_time(t0):
                    break
                if not stage.holds(self.step):  # a stage boundary: its batch and rate
                    new = self.stage_at(self.step)
                    if new.batch_size != stage.batch_size:
                        it = self._loader(new.batch_size)
                    stage = new
                    self._enter_stage(stage, fresh=True)
                batch = self._next_batch(it)
                values, out, extras = self.train_step(batch, stage)
                n0 += batch["image"].shape[0] * d.world
                ips = n0 / max(time.perf_counter() - t0, 1e-9)
                bar.update(1)
                bar.set_postfix(self._postfix(stage, values, ips, t0))
                self._log(writer, values, ips, batch, out, extras)
                if cfg.train.ckpt_every > 0 and self.step % cfg.train.ckpt_every == 0:
                    last_path = self.save_checkpoint()
                if cfg.train.val_every > 0 and self.step % cfg.train.val_every == 0:
                    self._validate(writer)
            bar.close()
            if self.step > 0 and (last_path is None or not last_path.endswith(f"{self.step:08d}.pt")):
                last_path = self.save_checkpoint()
        elapsed = time.perf_counter() - t0
        summary = {"step": self.step, "interrupted": interrupted, "checkpoint": last_path,
                   "images_per_s": n0 / elapsed if elapsed > 0 else 0.0, "losses": values,
                   "skipped_images": self.skipped, "precision": self.precision.name}
        self._finish(summary, writer, interrupted)
        return summary

    def _finish(self, summary: dict, writer, interrupted: bool):
        cfg, d = self.cfg, self.dist
        if d.main and self.skipped:
            print(f"pyfaid.train: skipped {self.skipped} unreadable images / images without a face", file=sys.stderr)
        if d.main and not interrupted and cfg.train.eval_at_end and cfg.data.val_size > 0 and self.step > 0:
            with precision.use(self.precision):
                summary["eval"] = held_out_psnr(self.faid, cfg, device=self.dev)
            if writer is not None:
                for k, v in summary["eval"].items():
                    if k != "samples":
                        writer.add_scalar(f"eval/psnr_{k}", v, self.step)
        if d.main:
            with open(os.path.join(self.out_dir, "summary.json"), "w") as f:
                json.dump(summary, f, indent=1)
        if writer is not None:
            writer.close()
        d.barrier()
