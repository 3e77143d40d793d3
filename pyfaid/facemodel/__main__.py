"""Command line: look at a face model.

    python -m pyfaid.facemodel show --out DIR [--model default|PATH] [--n 16] [--seed 0] [--size 224]

writes ``DIR/mean.png`` (mean face, 5 views), ``DIR/identities.png`` (random identities and albedos,
coefficients ~ N(0, 1)), ``DIR/expressions.png`` (random expressions on the mean identity,
coefficients ~ N(0, 1)) and, for models that carry blendshape labels (the default model),
``DIR/blendshapes.png`` (single named ARKit-style units at full strength). Rendering uses the
dependency-light preview painter (:mod:`pyfaid.facemodel.preview`).
"""

from __future__ import annotations

import argparse
import os
import sys

import cv2
import numpy as np
import torch

from . import load
from .preview import make_grid, render_mesh, rotation_matrix

_BLENDSHAPES = (
    "jawOpen", "mouthSmileLeft+mouthSmileRight", "mouthFrownLeft+mouthFrownRight", "mouthPucker",
    "mouthFunnel", "browInnerUp", "browDownLeft+browDownRight", "eyeBlinkLeft+eyeBlinkRight",
    "eyeWideLeft+eyeWideRight", "cheekPuff", "mouthLeft", "noseSneerLeft+noseSneerRight",
)


def _write(path, img):
    if not cv2.imwrite(path, np.ascontiguousarray(img[:, :, ::-1])):
        raise OSError(f"cannot write {path}")
    print(path)


def show(model_name: str, out: str, n: int = 16, seed: int = 0, size: int = 224) -> list:
    """Render preview grids of a face model into ``out``; returns the written paths."""
    if n < 1:
        raise ValueError(f"--n must be >= 1, got {n}")
    os.makedirs(out, exist_ok=True)
    model = load(model_name)
    g = torch.Generator().manual_seed(seed)
    tri = model.triangles.numpy()
    bg = (0.55, 0.6, 0.65)
    zeros = lambda b, k: torch.zeros(b, k)  # noqa: E731
    paths = []

    mean = model.mean_shape.numpy()
    tex = model.mean_tex.numpy()
    views = [rotation_matrix(0, y) for y in (-1.2, -0.6, 0.0, 0.6, 1.2)]
    paths.append(os.path.join(out, "mean.png"))
    _write(paths[-1], make_grid([render_mesh(mean, tri, tex, size, r, background=bg) for r in views], ncol=5))

    with torch.no_grad():
        ids = torch.randn(n, model.n_id, generator=g)
        texc = torch.randn(n, model.n_tex, generator=g)
        shapes = model.shape(ids, zeros(n, model.n_exp)).numpy()
        albedo = model.texture(texc).clamp(0, 1).numpy()
        imgs = [render_mesh(shapes[i], tri, albedo[i], size, background=bg) for i in range(n)]
        paths.append(os.path.join(out, "identities.png"))
        _write(paths[-1], make_grid(imgs))

        exps = torch.randn(n, model.n_exp, generator=g)
        shapes = model.shape(zeros(n, model.n_id), exps).numpy()
        imgs = [render_mesh(shapes[i], tri, tex, size, background=bg) for i in range(n)]
        paths.append(os.path.join(out, "expressions.png"))
        _write(paths[-1], make_grid(imgs))

        names = model.labels.get("exp_target_names")
        to_coeff = model.labels.get("exp_from_target")
        if names is not None and isinstance(to_coeff, torch.Tensor):
            imgs = []
            for combo in _BLENDSHAPES:
                w = torch.zeros(len(names))
                parts = [p for p in combo.split("+") if p in names]
                if not parts:
                    continue
                for p in parts:
                    w[names.index(p)] = 1.0
                c = (to_coeff.float() @ w)[None]
                s = model.shape(zeros(1, model.n_id), c)[0].numpy()
                im = render_mesh(s, tri, tex, size, background=bg)
                label = parts[0].replace("Left", "") if len(parts) > 1 else parts[0]
                cv2.putText(im, label, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
                imgs.append(im)
            paths.append(os.path.join(out, "blendshapes.png"))
            _write(paths[-1], make_grid(imgs, ncol=4))
    return paths


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pyfaid.facemodel", description="Face model tools.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("show", help="write PNG grids of random identities and expressions")
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--model", default="default", help="'default' or a model path (.npz, BFM .mat or folder)")
    s.add_argument("--n", type=int, default=16, help="faces per grid")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--size", type=int, default=224, help="pixels per face")
    args = ap.parse_args(argv)
    try:
        show(args.model, args.out, args.n, args.seed, args.size)
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
