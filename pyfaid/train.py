"""Train the FAID model.

    python -m pyfaid.train                                   # configs/default.yaml (offline, CPU)
    python -m pyfaid.train --config configs/celeba_bfm.yaml --device cuda --out runs/celeba
    python -m pyfaid.train --out runs/x --resume             # continue exactly where it stopped
    torchrun --nproc_per_node 4 -m pyfaid.train --config celeba_bfm   # data parallel (DDP)

``--max-steps N`` counts every step, resumed ones included. Checkpoints ``ckpt_<step>.pt`` under
``--out`` hold the trained weights, optimizer, scheduler, step, RNG states, the number of samples
consumed and the resolved config; they are written atomically. Ctrl-C / SIGTERM finishes the current
step, saves a checkpoint and exits (a second Ctrl-C aborts at once). TensorBoard logs go to
``<out>/tb``. The training loop itself is :class:`pyfaid.trainer.Trainer`.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Optional

import torch.distributed as dist

from pyfaid.config import RUN_SETTINGS, Config, ConfigError, load_config, replace
from pyfaid.distributed import Dist
from pyfaid.trainer import Trainer

__all__ = ["train", "main"]


def train(cfg: Config, out_dir: Optional[str] = None, max_steps: Optional[int] = None,
          device: Optional[str] = None, resume: bool = False, progress: bool = True,
          build_model=None, dataset=None, return_model: bool = False, keep_run_settings=()):
    """Run training (see :class:`pyfaid.trainer.Trainer`).

    Args:
        cfg: resolved configuration (not modified; a resumed run uses its checkpoint's own).
        out_dir, max_steps, device, resume: as the command-line flags (None keeps the config's).
        build_model: optional ``f(cfg, device) -> FAID`` replacing :func:`pyfaid.models.build_faid`.
        dataset: optional dataset (items with ``image`` and ``mask``) replacing ``cfg.data``.
        return_model: also return the trained model.
        keep_run_settings: with ``resume``, the run settings kept from the checkpoint (see
            :class:`~pyfaid.trainer.Trainer`).

    Returns:
        summary dict (steps, images/s, last loss terms, evaluation), or ``(summary, model)``.
    """
    changes = {k: v for k, v in (("out", out_dir), ("max_steps", None if max_steps is None else int(max_steps)),
                                 ("device", device)) if v is not None}
    if changes:
        cfg = replace(cfg, train=changes)
    trainer = Trainer(cfg, resume=resume, progress=progress, build_model=build_model, dataset=dataset,
                      keep_run_settings=keep_run_settings)
    summary = trainer.fit()
    return (summary, trainer.faid) if return_model else summary


def _kept_on_resume(args) -> tuple:
    """``--resume`` without ``--config`` continues the run as it was set up: every run setting stays
    the checkpoint's except those this command gives (``--max-steps``, ``--threads``, ``--device``,
    ``--out``, ``--set``)."""
    if not args.resume or args.config is not None:
        return ()
    given = {key.split("=", 1)[0].strip() for key in args.set} | {"train.out"}
    given |= {name for name, flag in (("train.max_steps", args.max_steps), ("train.threads", args.threads),
                                      ("train.device", args.device)) if flag is not None}
    return tuple(n for n in RUN_SETTINGS if n not in given and not any(g.startswith(n + ".") for g in given))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pyfaid.train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=None, help="YAML path or bundled name (default: default; with "
                    "--resume and no --config, the run's own settings: how long, where, how it reports)")
    ap.add_argument("--out", default=None, help="output folder (default: train.out of the config)")
    ap.add_argument("--max-steps", type=int, default=None, help="total steps, resumed ones included")
    ap.add_argument("--device", default=None, help="cpu | cuda (default: train.device of the config)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads of the training process "
                    "(train.threads; loader workers use one each)")
    ap.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="override a config value (repeatable)")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    try:
        cfg = load_config(args.config or "default",
                          args.set + ([f"train.threads={args.threads}"] if args.threads else []))
    except ConfigError as exc:
        print(f"pyfaid.train: config error: {exc}", file=sys.stderr)
        return 2
    summary = train(cfg, args.out, args.max_steps, args.device, args.resume, progress=not args.no_progress,
                    keep_run_settings=_kept_on_resume(args))
    if Dist().main:
        print(json.dumps(summary, indent=1))
    if dist.is_initialized():
        dist.destroy_process_group()
    return 130 if summary["interrupted"] else 0


if __name__ == "__main__":
    sys.exit(main())
