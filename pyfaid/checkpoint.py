"""Checkpoints: atomic writes, finding the latest one of a run, and the one loader.

A training checkpoint (``ckpt_<step>.pt``, written by :mod:`pyfaid.train`) is a dict with the
trained weights (``model``: the coarse + fine state), the resolved ``config``, and the optimizer,
scheduler, step, sample count and RNG states for an exact resume. An inference checkpoint (the
shipped pretrained model, or :func:`export_inference`) holds only ``model`` and ``config``.

    model = load_model("runs/default")          # a run folder: its latest checkpoint
    model = load_model("runs/default/ckpt_00001000.pt", device="cuda")
"""

from __future__ import annotations

import argparse
import copy
import glob
import hashlib
import json
import os
import sys
from typing import Optional, Union

import torch

from pyfaid.config import ConfigError, from_dict
from pyfaid.fileio import atomic_path
from pyfaid.models import build_faid

__all__ = ["CKPT_PATTERN", "PRETRAINED", "pretrained_available", "save_atomic", "list_checkpoints",
           "latest_checkpoint", "resolve_checkpoint", "load_checkpoint", "load_model", "export_inference", "sha256"]

CKPT_PATTERN = "ckpt_*.pt"

#: The pretrained model shipped in the package (``checkpoint="pretrained"``).
PRETRAINED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets", "pretrained", "faid.pt")


def pretrained_available() -> bool:
    """True when the package ships its pretrained model (``pyfaid/assets/pretrained/faid.pt``)."""
    return os.path.isfile(PRETRAINED)

PathLike = Union[str, os.PathLike]


def save_atomic(obj, path: PathLike) -> None:
    """``torch.save`` to a temporary file in the same folder, then ``os.replace`` it into place.

    A failure while writing leaves no file at ``path`` (nor a stale temporary file); an existing
    checkpoint at ``path`` is only replaced by a complete one.
    """
    with atomic_path(path, fsync=True) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)  # a file object: the archive's inner name is fixed, so equal objects give equal bytes


def _step_of(path: str) -> int:
    try:
        return int(os.path.basename(path)[5:-3])
    except ValueError:
        return -1


def list_checkpoints(out_dir: PathLike) -> list:
    """Checkpoint paths (``ckpt_<step>.pt``) under ``out_dir``, sorted by step."""
    paths = glob.glob(os.path.join(os.fspath(out_dir), CKPT_PATTERN))
    return sorted((p for p in paths if _step_of(p) >= 0), key=_step_of)


def latest_checkpoint(out_dir: PathLike) -> Optional[str]:
    """The highest-step checkpoint of a run folder, or None."""
    ck = list_checkpoints(out_dir)
    return ck[-1] if ck else None


def resolve_checkpoint(path: PathLike) -> str:
    """A checkpoint file: ``path`` itself, the latest checkpoint of the run folder ``path``, or the
    shipped model for ``"pretrained"``.

    Raises:
        FileNotFoundError: no such file, or a folder without checkpoints.
    """
    path = os.fspath(path)
    if path == "pretrained":
        if not pretrained_available():
            raise FileNotFoundError(f"this pyfaid installation ships no pretrained model ({PRETRAINED} is missing); "
                                    "train one with `python -m pyfaid.train --config pretrain` or pass --checkpoint")
        return PRETRAINED
    if os.path.isdir(path):
        found = latest_checkpoint(path)
        if found is None:
            raise FileNotFoundError(f"checkpoint folder {path} holds no {CKPT_PATTERN} "
                                    "(train one with `python -m pyfaid.train --out FOLDER`)")
        return found
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path}: no such file or run folder")
    return path


def load_checkpoint(path: PathLike, map_location="cpu") -> dict:
    """Read and check a pyfaid checkpoint (file or run folder).

    Returns:
        the checkpoint dict (``model`` and ``config`` always present), with ``path`` added.

    Raises:
        FileNotFoundError: no such checkpoint. ValueError: unreadable, or not a pyfaid checkpoint.
    """
    file = resolve_checkpoint(path)
    try:
        ckpt = torch.load(file, map_location=map_location, weights_only=False)
    except Exception as exc:  # noqa: BLE001 - report which file is broken
        raise ValueError(f"checkpoint {file}: cannot be read by torch.load ({exc})") from exc
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        raise ValueError(f"checkpoint {file}: not a pyfaid checkpoint (needs 'model' and 'config')")
    for shard in ckpt.pop("shards", []):  # an inference file split into parts of at most 25 MB
        part = os.path.join(os.path.dirname(file), shard)
        if not os.path.isfile(part):
            raise FileNotFoundError(f"checkpoint {file}: its part {part} is missing")
        try:
            ckpt["model"].update(torch.load(part, map_location=map_location, weights_only=True))
        except Exception as exc:  # noqa: BLE001
            raise ValueError(f"checkpoint {file}: its part {part} cannot be read ({exc})") from exc
    ckpt["path"] = file
    return ckpt


def load_model(checkpoint: Union[PathLike, dict], device="cpu"):
    """Build the FAID model a checkpoint describes and load its weights; returned in eval mode.

    Args:
        checkpoint: a checkpoint file, a run folder (its latest checkpoint) or a loaded dict.
        device: where to put the model.

    Returns:
        :class:`pyfaid.models.FAID` (its face model is ``model.face_model``).
    """
    ckpt = checkpoint if isinstance(checkpoint, dict) else load_checkpoint(checkpoint)
    where = ckpt.get("path", "checkpoint")
    try:
        cfg = from_dict(ckpt["config"], source=where)
    except ConfigError as exc:
        raise ValueError(f"{where}: its config does not fit this pyfaid version ({exc})") from exc
    model = build_faid(cfg, device=device)
    state = {k: (v.float() if torch.is_tensor(v) and v.is_floating_point() else v) for k, v in ckpt["model"].items()}
    try:
        model.load_trainable_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(f"{where}: {exc}") from exc
    return model.eval()


def sha256(path: PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


#: Largest file an export writes; bigger models are split into parts (the repository keeps every
#: version of a shipped model in its history, so files stay small).
MAX_FILE_BYTES = 25_000_000


def _split(state: dict, max_bytes: int) -> list:
    """Group the tensors of a state dict into parts of at most ``max_bytes`` (in name order), the
    fine stage (``fine.*``) in parts of its own: it is what gets trained again on its own, and a new
    fine stage then rewrites only its small part(s), not the coarse model's."""
    groups = [{k: v for k, v in state.items() if not k.startswith("fine.")},
              {k: v for k, v in state.items() if k.startswith("fine.")}]
    parts = []
    for group in groups:
        cur, size = {}, 0
        for k, v in group.items():
            n = v.numel() * v.element_size() if torch.is_tensor(v) else 64
            if cur and size + n > max_bytes * 0.97:  # leave room for the pickle framing
                parts.append(cur)
                cur, size = {}, 0
            cur[k] = v
            size += n
        if cur:
            parts.append(cur)
    return parts or [{}]


def export_inference(checkpoint: Union[PathLike, dict], out: PathLike, half: bool = True, card: Optional[dict] = None,
                     max_bytes: int = MAX_FILE_BYTES, coarse_only: bool = False) -> str:
    """Write an inference-only copy of a training checkpoint (weights + config, fp16 by default)
    and its card ``<out>.json`` (what it was trained on, how long, on what, and the files' SHA-256).
    The weights go to parts ``<out stem>-<k>.pt`` beside it (at most ``max_bytes`` each, the fine
    stage in parts of its own), which :func:`load_checkpoint` reads back; ``out`` itself holds the
    config, the step and the list of parts.

    Args:
        checkpoint: training checkpoint (file, run folder or dict).
        out: destination ``.pt``.
        half: store floating-point weights as float16 (they are loaded back as float32).
        card: more card entries (metrics, limits, the command that made it).
        max_bytes: largest file.
        coarse_only: leave the fine stage out (``model.fine: false`` in the exported config), for a
            checkpoint whose refiners were never trained (a pre-training run): its colours are then
            the coarse model's, and the card says so.

    Returns:
        the written path.
    """
    ckpt = checkpoint if isinstance(checkpoint, dict) else load_checkpoint(checkpoint)
    state = {k: (v.half() if half and torch.is_tensor(v) and v.is_floating_point() else v)
             for k, v in ckpt["model"].items() if not (coarse_only and k.startswith("fine."))}
    config = ckpt["config"]
    if coarse_only:
        config = copy.deepcopy(config)
        config["model"]["fine"] = False
    out = os.fspath(out)
    stem = os.path.splitext(out)[0]
    # ``out`` holds the config, the step and the list of parts; the weights are all in the parts, so
    # a part's bytes depend on its tensors alone (a new fine stage leaves the coarse model's part as it was)
    shards = []
    for k, part in enumerate(_split(state, max_bytes), 1):
        shard = f"{stem}-{k}.pt"
        save_atomic(part, shard)
        shards.append(os.path.basename(shard))
    save_atomic({"model": {}, "config": config, "step": ckpt.get("step"), "shards": shards}, out)
    files = [out] + [os.path.join(os.path.dirname(out), sh) for sh in shards]
    info = {"file": os.path.basename(out), "parts": shards, "sha256": {os.path.basename(f): sha256(f) for f in files},
            "bytes": sum(os.path.getsize(f) for f in files),
            "dtype": "float16" if half else "float32", "step": ckpt.get("step"), "samples": ckpt.get("samples"),
            "train_hours": round(float(ckpt.get("train_seconds", 0.0)) / 3600, 2),
            "hardware": ckpt.get("hardware"), "source": ckpt.get("path"),
            "stages": "coarse regressor only (the fine stage was not trained)" if coarse_only else "coarse + fine",
            "config": config}
    info.update(card or {})
    tmp = os.fspath(out) + ".json.tmp"
    with open(tmp, "w") as f:
        json.dump(info, f, indent=1)
    os.replace(tmp, os.path.splitext(os.fspath(out))[0] + ".json")
    return os.fspath(out)


def main(argv=None) -> int:
    """``python -m pyfaid.checkpoint export RUN_OR_CKPT OUT.pt [--card extra.json]``."""
    ap = argparse.ArgumentParser(prog="python -m pyfaid.checkpoint",
                                 description="Export a training checkpoint as an inference file with its card.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    ex = sub.add_parser("export", help="fp16 inference weights + <out>.json card")
    ex.add_argument("checkpoint", help="training checkpoint or run folder")
    ex.add_argument("out", help="destination .pt")
    ex.add_argument("--card", default=None, help="a JSON file of more card entries (metrics, limits)")
    ex.add_argument("--float32", action="store_true", help="keep float32 weights")
    ex.add_argument("--coarse-only", action="store_true",
                    help="leave out the fine stage (a pre-training run, whose refiners were never trained)")
    args = ap.parse_args(argv)
    try:
        card = json.load(open(args.card)) if args.card else None
        path = export_inference(args.checkpoint, args.out, half=not args.float32, card=card,
                                 coarse_only=args.coarse_only)
    except (FileNotFoundError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path} ({os.path.getsize(path) / 1e6:.1f} MB) and its card")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
