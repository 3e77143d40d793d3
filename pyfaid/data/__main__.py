"""Command line for pyfaid.data.

    python -m pyfaid.data preview --out DIR [--n 16] [--seed 0] [--per-row 8]

writes ``DIR/synthetic_preview.png``: for each group of samples, a row of clean renders, a row of
the same samples with occluders, and a row of masks (white: visible face, red: face under an
occluder, dark red: occluder off the face).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import cv2
import numpy as np
import torch


def _mask_vis(face: torch.Tensor, occ: torch.Tensor) -> torch.Tensor:
    """[1, H, W] face and occluder masks to an RGB [3, H, W] picture."""
    vis = face * (1 - occ)
    r = vis + face * occ + 0.45 * (1 - face) * occ
    g = vis
    b = vis
    return torch.cat([r, g, b], 0)


def preview(out_dir: str, n: int = 16, seed: int = 0, per_row: int = 8) -> str:
    """Render ``n`` synthetic samples and write a PNG grid; returns its path."""
    from pyfaid.data import SyntheticFaces

    if n < 1:
        raise ValueError(f"--n must be >= 1, got {n}")
    ds = SyntheticFaces(seed=seed, length=n, occlusion=True)
    t0 = time.perf_counter()
    batch = ds.batch(range(n))
    elapsed = time.perf_counter() - t0
    tiles = []
    for start in range(0, n, per_row):
        stop = min(start + per_row, n)
        rows = []
        for key in ("clean", "image", "mask"):
            row = []
            for b in range(start, stop):
                if key == "mask":
                    row.append(_mask_vis(batch["face_mask"][b], batch["occluder_mask"][b]))
                else:
                    row.append(batch[key][b])
            while len(row) < per_row:
                row.append(torch.zeros_like(row[0]))
            rows.append(torch.cat(row, 2))
        tiles.append(torch.cat(rows, 1))
    grid = torch.cat(tiles, 1).clamp(0, 1)
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "synthetic_preview.png")
    rgb = (grid.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    if not cv2.imwrite(path, rgb[..., ::-1]):
        raise OSError(f"could not write {path}")
    print(f"wrote {path} ({n} samples, generated in {elapsed:.2f} s)")
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pyfaid.data", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("preview", help="write a PNG grid of synthetic samples")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--n", type=int, default=16, help="number of samples")
    p.add_argument("--seed", type=int, default=0, help="dataset seed")
    p.add_argument("--per-row", type=int, default=8, help="samples per row")
    args = parser.parse_args(argv)
    if args.command == "preview":
        preview(args.out, args.n, args.seed, args.per_row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
