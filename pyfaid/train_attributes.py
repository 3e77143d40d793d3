"""Train pyfaid's attribute encoder (the "FA" features).

Default: synthetic faces (``pyfaid.synth.SyntheticFaces``) with the generator's known labels as
regression targets: identity, expression and albedo coefficients, skin tone and any phenotype labels
of the face model. Head pose is left out on purpose: the attribute loss compares a photo with
renders of it from other viewpoints, so FA features should not encode the pose.

    python -m pyfaid.train_attributes --out attributes_synthetic.pt
    python -m pyfaid.train_attributes --celeba /data/celeba --out attributes_celeba.pt

``--celeba DIR`` trains on CelebA's 40 binary attributes (``DIR/list_attr_celeba.txt`` and
``DIR/img_align_celeba/``; ``DIR/list_eval_partition.txt`` is used for the split when present).
Writes the weights (``--out``) and a JSON card beside them (``.json``): data, epochs, steps,
validation error/accuracy.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from pyfaid.encoders.attributes import AttributeEncoder
from pyfaid.synth import SyntheticFaces

__all__ = ["synthetic_arrays", "celeba_arrays", "fit", "evaluate", "save_encoder", "main",
           "CelebAFormatError"]

# Label groups used as targets, in this order; anything else a face model carries as a phenotype
# label is appended. "angles" (head pose) is excluded on purpose (see the module docstring).
_SYNTH_GROUPS = ("id", "exp", "tex", "skin_tone")
_EXCLUDED = ("angles",)
#: ``--targets attributes`` (the default): what a face *looks like* - the generator's appearance
#: scalars (beard, brows, make-up, hair, skin detail...), skin tone and the named phenotype axes -
#: without the high-dimensional coefficient blocks, which a small CNN cannot read off a photo and
#: which drowned the rest in the loss (R^2 ~0 on every group).
_COEFF_BLOCKS = ("id", "exp", "tex", "id_targets", "exp_targets")


class CelebAFormatError(ValueError):
    """The CelebA folder is missing or does not look like CelebA."""


# ---------------------------------------------------------------------------------- data
def _to_input(images: torch.Tensor, size: int) -> torch.Tensor:
    """``[B,3,H,W]`` float [0,1] -> uint8 ``[B,3,size,size]`` (same resize as AttributeEncoder)."""
    if images.shape[-2:] != (size, size):
        images = F.interpolate(images.float(), size=(size, size), mode="bilinear", align_corners=False,
                               antialias=True)
    return (images.clamp(0, 1) * 255).round().to(torch.uint8)


def synthetic_arrays(n: int, seed: int = 0, input_size: int = 112, batch_size: int = 32,
                     dataset=None, progress: bool = True, exclude=_EXCLUDED, **dataset_kw):
    """Render ``n`` synthetic faces and their label vectors.

    Args:
        n: number of faces.
        seed: ``SyntheticFaces`` seed (use different seeds for training and validation).
        input_size: side of the stored network inputs.
        dataset: a ready dataset with ``batch(indices)`` (default: ``SyntheticFaces(seed, n)``).
        exclude: label names left out of the targets.

    Returns:
        ``(images uint8 [n,3,S,S], targets float32 [n,T], groups)`` with ``groups`` a list of
        ``(name, start, stop)`` column ranges.
    """
    if dataset is None:
        dataset = SyntheticFaces(seed=seed, length=n, **dataset_kw)
    images, targets, groups = [], [], None
    bar = tqdm(total=n, desc=f"render synthetic faces (seed {seed})", disable=not progress, unit="face")
    for start in range(0, n, batch_size):
        idx = list(range(start, min(n, start + batch_size)))
        b = dataset.batch(idx)
        labels = b["labels"]
        names = [g for g in _SYNTH_GROUPS if g in labels and g not in exclude]
        names += sorted(k for k in labels if k not in _SYNTH_GROUPS and k not in exclude)
        cols = [labels[k].reshape(len(idx), -1).float() for k in names]
        if groups is None:
            groups, c = [], 0
            for k, v in zip(names, cols):
                groups.append((k, c, c + v.shape[1]))
                c += v.shape[1]
        targets.append(torch.cat(cols, 1))
        images.append(_to_input(b["image"], input_size))
        bar.update(len(idx))
    bar.close()
    return torch.cat(images), torch.cat(targets), groups


def _read_celeba_attrs(root: Path):
    attr_file = root / "list_attr_celeba.txt"
    img_dir = root / "img_align_celeba"
    if not root.is_dir():
        raise CelebAFormatError(f"CelebA folder {str(root)!r} does not exist")
    if not attr_file.is_file():
        raise CelebAFormatError(f"{root}: missing list_attr_celeba.txt (CelebA's attribute list)")
    if not img_dir.is_dir():
        raise CelebAFormatError(f"{root}: missing the img_align_celeba/ image folder")
    lines = attr_file.read_text().splitlines()
    if len(lines) < 3:
        raise CelebAFormatError(f"{attr_file}: too short to be CelebA's attribute list")
    try:
        count = int(lines[0].strip())
    except ValueError:
        raise CelebAFormatError(f"{attr_file}: line 1 should be the number of images, got {lines[0]!r}")
    names = lines[1].split()
    if len(names) != 40:
        raise CelebAFormatError(f"{attr_file}: line 2 should name 40 attributes, found {len(names)}")
    files, values = [], []
    for ln, line in enumerate(lines[2:], start=3):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 41:
            raise CelebAFormatError(f"{attr_file}:{ln}: expected a file name and 40 values, got {len(parts)} fields")
        try:
            vals = [int(v) for v in parts[1:]]
        except ValueError:
            raise CelebAFormatError(f"{attr_file}:{ln}: attribute values must be -1 or 1")
        if any(v not in (-1, 1) for v in vals):
            raise CelebAFormatError(f"{attr_file}:{ln}: attribute values must be -1 or 1")
        files.append(parts[0])
        values.append(vals)
    if len(files) != count:
        raise CelebAFormatError(f"{attr_file}: header says {count} images, found {len(files)} rows")
    return names, files, np.array(values, np.int8), img_dir


def celeba_arrays(root, max_images: int | None = None, input_size: int = 112, val_fraction: float = 0.05,
                  seed: int = 0, progress: bool = True):
    """Load CelebA images and their 40 binary attributes.

    CelebA's ``img_align_celeba`` images (178x218, aligned by CelebA) are centre-cropped to a
    178x178 square starting 20 rows from the top, which frames the face about as pyfaid's 224
    template does, then resized to ``input_size``.

    Returns:
        ``(train_x, train_y, val_x, val_y, names)``: uint8 images ``[N,3,S,S]`` and 0/1 float
        targets ``[N,40]``.
    """
    root = Path(root)
    names, files, values, img_dir = _read_celeba_attrs(root)
    part_file = root / "list_eval_partition.txt"
    rng = np.random.default_rng(seed)
    if part_file.is_file():
        part = dict(line.split()[:2] for line in part_file.read_text().splitlines() if line.strip())
        is_val = np.array([part.get(f, "0") != "0" for f in files])
    else:
        is_val = rng.random(len(files)) < val_fraction
    order = rng.permutation(len(files))
    if max_images is not None:
        n_val = max(1, int(round(max_images * val_fraction)))
        tr = [i for i in order if not is_val[i]][: max_images - n_val]
        va = [i for i in order if is_val[i]][:n_val]
    else:
        tr = [i for i in order if not is_val[i]]
        va = [i for i in order if is_val[i]]

    def load(indices, desc):
        out = np.zeros((len(indices), 3, input_size, input_size), np.uint8)
        for j, i in enumerate(tqdm(indices, desc=desc, disable=not progress, unit="img")):
            path = img_dir / files[i]
            img = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if img is None:
                raise CelebAFormatError(f"{path}: missing or unreadable image")
            h, w = img.shape[:2]
            side = min(w, h - 20) if h > w else min(w, h)
            top = 20 if h - 20 >= side else 0
            left = (w - side) // 2
            crop = img[top:top + side, left:left + side, ::-1]
            out[j] = cv2.resize(crop, (input_size, input_size), interpolation=cv2.INTER_AREA).transpose(2, 0, 1)
        return torch.from_numpy(out)

    y = torch.from_numpy((values > 0).astype(np.float32))
    return load(tr, "CelebA train"), y[tr], load(va, "CelebA val"), y[va], names


# ------------------------------------------------------------------------------ training
def _batches(n: int, batch_size: int, generator: torch.Generator):
    perm = torch.randperm(n, generator=generator)
    for s in range(0, n - batch_size + 1 if n >= batch_size else 1, batch_size):
        yield perm[s:s + batch_size]


def _dim_weights(groups, num_outputs: int) -> torch.Tensor | None:
    """Per-output loss weights giving every label group the same total weight (None: uniform)."""
    if not groups:
        return None
    w = torch.zeros(num_outputs)
    for _, a, b in groups:
        w[a:b] = 1.0 / ((b - a) * len(groups))
    return w * num_outputs  # mean over outputs of w * se == mean over groups of the group MSE


def _loss(model: AttributeEncoder, x_uint8: torch.Tensor, y: torch.Tensor, augment: bool,
          generator: torch.Generator | None = None, weights: torch.Tensor | None = None):
    x = x_uint8.float() / 255.0
    if augment:  # photometric jitter only: geometry and labels stay consistent
        b = x.shape[0]
        gain = 1.0 + 0.15 * (torch.rand(b, 1, 1, 1, generator=generator) * 2 - 1)
        bias = 0.05 * (torch.rand(b, 3, 1, 1, generator=generator) * 2 - 1)
        x = (x * gain + bias).clamp(0, 1)
    out = model.head(model.features_from_input(x))
    if model.config["task"] == "binary":
        return F.binary_cross_entropy_with_logits(out, y), out
    yz = (y - model.target_mean) / model.target_std
    se = (out - yz) ** 2
    if weights is not None:
        se = se * weights.to(se.device)
    return se.mean(), out


@torch.no_grad()
def evaluate(model: AttributeEncoder, x: torch.Tensor, y: torch.Tensor, groups=None, batch_size: int = 256) -> dict:
    """Validation numbers: regression -> standardised MSE and R^2 per label group; binary -> accuracy."""
    was_training = model.training
    model.eval()
    outs = [model.head(model.features_from_input(x[s:s + batch_size].float() / 255.0))
            for s in range(0, len(x), batch_size)]
    model.train(was_training)
    out = torch.cat(outs)
    if model.config["task"] == "binary":
        pred = (out > 0).float()
        per_attr = (pred == y).float().mean(0)
        majority = torch.maximum(y.mean(0), 1 - y.mean(0))
        res = {"accuracy": float(per_attr.mean()), "majority_baseline_accuracy": float(majority.mean()),
               "bce": float(F.binary_cross_entropy_with_logits(out, y))}
        names = model.config.get("target_names") or []
        if names:
            res["per_attribute_accuracy"] = {n: round(float(a), 4) for n, a in zip(names, per_attr)}
        return res
    yz = (y - model.target_mean) / model.target_std
    se = (out - yz) ** 2
    res = {"mse_standardised": float(se.mean())}
    if groups:
        res["mse_standardised_group_mean"] = float(
            torch.stack([se[:, a:b].mean() for _, a, b in groups]).mean())
    var = yz.var(0, unbiased=False).clamp_min(1e-12)
    r2 = 1 - se.mean(0) / var
    res["r2_mean"] = float(r2.mean())
    if groups:
        res["r2_per_group"] = {g: round(float(r2[a:b].mean()), 4) for g, a, b in groups}
        res["r2_first5_id"] = [round(float(v), 4) for v in r2[groups[0][1]:groups[0][1] + 5]] \
            if groups[0][0] == "id" else None
    return res


def fit(model: AttributeEncoder, train_x, train_y, val_x=None, val_y=None, epochs: int = 10,
        batch_size: int = 64, lr: float = 3e-3, weight_decay: float = 1e-4, max_steps: int | None = None,
        max_seconds: float | None = None, seed: int = 0, progress: bool = True, groups=None) -> dict:
    """Train ``model`` on uint8 images ``[N,3,S,S]`` and targets ``[N,T]``; returns a history dict.

    Regression targets are standardised with the training statistics, stored in the model's
    ``target_mean`` / ``target_std`` buffers; with ``groups`` (``(name, start, stop)`` column
    ranges) every label group weighs the same in the loss, however many columns it has. AdamW with
    a one-cycle learning-rate schedule over ``epochs`` (or ``max_steps``).
    """
    if len(train_x) != len(train_y):
        raise ValueError(f"train_x has {len(train_x)} images but train_y {len(train_y)} rows")
    if len(train_x) == 0:
        raise ValueError("no training images")
    if model.config["task"] == "regression":
        model.target_mean.copy_(train_y.mean(0))
        model.target_std.copy_(train_y.std(0, unbiased=False).clamp_min(1e-6))
    weights = _dim_weights(groups, train_y.shape[1]) if model.config["task"] == "regression" else None
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    bs = min(batch_size, len(train_x))
    steps_per_epoch = max(1, len(train_x) // bs)
    total = epochs * steps_per_epoch if max_steps is None else min(max_steps, epochs * steps_per_epoch)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(total, 2), pct_start=0.15)
    model.train()
    history = {"train_loss": [], "val": [], "steps": 0, "epochs": 0}
    t0 = time.time()
    bar = tqdm(total=total, desc="train attribute encoder", disable=not progress, unit="step")
    step, stop = 0, False
    for epoch in range(epochs):
        run = 0.0
        for idx in _batches(len(train_x), bs, g):
            loss, _ = _loss(model, train_x[idx], train_y[idx], augment=True, generator=g, weights=weights)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            loss_value = float(loss.detach())
            run += loss_value
            history["train_loss"].append(loss_value)
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.4f}", epoch=epoch + 1)
            if step >= total or (max_seconds is not None and time.time() - t0 > max_seconds):
                stop = True
                break
        history["epochs"] = epoch + 1
        if val_x is not None and len(val_x):
            v = evaluate(model, val_x, val_y, groups)
            v["epoch"] = epoch + 1
            history["val"].append(v)
            bar.write(f"epoch {epoch + 1}: val {json.dumps({k: v[k] for k in v if not isinstance(v[k], dict)})}")
        if stop:
            break
    bar.close()
    history["steps"] = step
    history["train_seconds"] = round(time.time() - t0, 1)
    model.eval()
    return history


def save_encoder(model: AttributeEncoder, path, card: dict) -> Path:
    """Write ``path`` (config + state dict + card) and the card as JSON beside it (``.json``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    tmp = path.with_suffix(path.suffix + ".tmp")
    # the card travels as JSON text so the checkpoint loads with weights_only=True
    torch.save({"config": model.config, "state_dict": state, "card": json.dumps(card)}, tmp)
    os.replace(tmp, path)
    path.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    return path


# ---------------------------------------------------------------------------------- CLI
def _cached_synthetic(cache_dir, n: int, seed: int, input_size: int, progress: bool, exclude=_EXCLUDED):
    """``synthetic_arrays`` with an optional on-disk cache keyed by (n, seed, input size, targets)."""
    if cache_dir is None:
        return synthetic_arrays(n, seed, input_size, progress=progress, exclude=exclude)
    tag = "all" if tuple(exclude) == _EXCLUDED else "attributes"
    path = Path(cache_dir) / f"synthetic_n{n}_seed{seed}_s{input_size}_{tag}.pt"
    if path.is_file():
        d = torch.load(path, weights_only=True)
        return d["images"], d["targets"], [tuple(g) for g in json.loads(d["groups"])]
    x, y, groups = synthetic_arrays(n, seed, input_size, progress=progress, exclude=exclude)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"images": x, "targets": y, "groups": json.dumps(groups)}, path)
    return x, y, groups


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m pyfaid.train_attributes", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="attributes_synthetic.pt", help="output weights (.pt); a .json card is written beside it")
    ap.add_argument("--celeba", default=None, metavar="DIR", help="train on CelebA's 40 attributes from DIR")
    ap.add_argument("--max-images", type=int, default=None, help="CelebA: use at most this many images")
    ap.add_argument("--num-train", type=int, default=3000, help="synthetic: training faces")
    ap.add_argument("--num-val", type=int, default=300, help="synthetic: validation faces (another seed)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--feature-dim", type=int, default=128)
    ap.add_argument("--input-size", type=int, default=112)
    ap.add_argument("--max-minutes", type=float, default=None, help="stop training after this long")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--data-cache", default=None, metavar="DIR",
                    help="synthetic: keep the rendered arrays here and reuse them on later runs")
    ap.add_argument("--note", default=None, help="free text stored in the card (e.g. data version)")
    ap.add_argument("--targets", choices=["attributes", "all"], default="attributes",
                    help="synthetic targets: attributes (appearance, skin tone, phenotype axes; default) or all "
                         "(also the coefficient blocks)")
    return ap


def _card(model, args, data, hist, data_seconds, argv) -> dict:
    return {
        "model": "pyfaid AttributeEncoder",
        "task": model.config["task"],
        "input_size": args.input_size,
        "feature_dim": args.feature_dim,
        "parameters": sum(p.numel() for p in model.parameters()),
        "data": data,
        "epochs": hist["epochs"],
        "steps": hist["steps"],
        "batch_size": args.batch_size,
        "lr": args.lr,
        "train_seconds": hist["train_seconds"],
        "data_seconds": round(data_seconds, 1),
        "final_train_loss": round(float(np.mean(hist["train_loss"][-20:])), 5),
        "validation": hist["val"][-1] if hist["val"] else None,
        "validation_history": [{k: v for k, v in h.items() if not isinstance(v, dict)} for h in hist["val"]],
        "command": "python -m pyfaid.train_attributes " + " ".join(argv if argv is not None else sys.argv[1:]),
        "torch": str(torch.__version__),
        "note": args.note,
    }


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    progress = not args.no_progress
    t0 = time.time()
    try:
        if args.celeba:
            tx, ty, vx, vy, names = celeba_arrays(args.celeba, args.max_images, args.input_size, seed=args.seed,
                                                  progress=progress)
            groups = None
            model = AttributeEncoder(40, args.feature_dim, input_size=args.input_size, task="binary",
                                     target_names=names)
            data = {"dataset": "CelebA", "root": str(Path(args.celeba).resolve()), "num_train": len(tx),
                    "num_val": len(vx), "targets": "40 binary attributes (list_attr_celeba.txt)",
                    "framing": "img_align_celeba centre-cropped 178x178 from row 20"}
        else:
            val_seed = args.seed + 1_000_003
            exclude = _EXCLUDED + (_COEFF_BLOCKS if args.targets == "attributes" else ())
            tx, ty, groups = _cached_synthetic(args.data_cache, args.num_train, args.seed, args.input_size, progress,
                                               exclude)
            vx, vy, _ = _cached_synthetic(args.data_cache, args.num_val, val_seed, args.input_size, progress, exclude)
            names = [f"{g}[{i}]" for g, a, b in groups for i in range(b - a)]
            model = AttributeEncoder(ty.shape[1], args.feature_dim, input_size=args.input_size,
                                     task="regression", target_names=names)
            data = {"dataset": "pyfaid.synth.SyntheticFaces (default face model, occlusion on)",
                    "train_seed": args.seed, "val_seed": val_seed, "num_train": len(tx), "num_val": len(vx),
                    "targets": {g: b - a for g, a, b in groups},
                    "excluded_labels": list(exclude)}
    except (CelebAFormatError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    data_seconds = time.time() - t0
    model.to(args.device)
    hist = fit(model, tx.to(args.device), ty.to(args.device), vx.to(args.device), vy.to(args.device),
               epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
               max_seconds=None if args.max_minutes is None else args.max_minutes * 60, progress=progress,
               groups=groups)
    model.cpu()
    card = _card(model, args, data, hist, data_seconds, argv)
    out = save_encoder(model, args.out, card)
    print(f"wrote {out} and {out.with_suffix('.json')}; validation: "
          f"{json.dumps({k: v for k, v in (card['validation'] or {}).items() if not isinstance(v, dict)})}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
