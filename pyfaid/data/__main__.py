"""Command line for pyfaid.data.

    python -m pyfaid.data preview --out DIR [--n 16] [--seed 0] [--per-row 8] [--size 224] [--real DIR]
    python -m pyfaid.data preview --out DIR --yaws 0 30 60 80 [--per-row 6] [--seed 0]
    python -m pyfaid.data cache --out DIR --n N [--size 224] [--seed 0] [--shard 1000] [--batch 32] [--colors]
    python -m pyfaid.data measure-alignment [--n 1500] [--seed 987654] [--out pyfaid/synth/assets/alignment_residuals.json]
    python -m pyfaid.data export --format aflw2000|300w --out DIR [--n 200] [--seed 1000003] [--size 320]

``preview`` writes ``DIR/synthetic_preview.png``: for each group of samples, a row of clean
pictures, a row of the same samples with occluders, and a row of masks (white: visible face, red:
face under an occluder or hair, dark red: occluder off the face, green dots: the 300-W landmarks,
blue: hidden ones). With ``--real DIR`` (a folder of photos), a row of those photos aligned by
MTCNN follows each group, for comparison (the photos stay in memory; only the grid is written).
With ``--yaws``, it writes ``DIR/landmarks_preview.png`` instead: one row per yaw (faces turned
either way), each face drawn twice at double size: the 3D-style points (the model's landmark
vertices projected; red where the face hides them, yellow where seen) and the 2D-style points
(green: the jaw on the head's outline, see :mod:`pyfaid.synth.contour`).

``export`` writes synthetic faces (in photo-like frames, the face at 0.6 of the picture, so a
detector finds it) as an annotated landmark set that ``python -m pyfaid.evaluate --data FORMAT:DIR``
scores like real photos: ``aflw2000`` (``NAME.jpg`` + ``NAME.mat`` with the 3D-style ``pt3d_68``, depth
included, and ``Pose_Para``) or ``300w`` (``NAME.png`` + ``NAME.pts`` with the 2D-style points). The
default seed is the held-out one (``data.val_seed``), disjoint from training.

``cache`` renders a pretraining cache that :class:`pyfaid.data.CachedFaces` reads (see
:mod:`pyfaid.data.cache`); it resumes where it stopped. ``measure-alignment`` measures MTCNN's
framing errors on photo-like synthetic frames and writes the table
:class:`pyfaid.synth.alignment.AlignmentJitter` samples from.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

import cv2
import numpy as np
import torch

from pyfaid.config import DataConfig
from pyfaid.data.cache import write_cache
from pyfaid.data.datasets import list_images, read_image
from pyfaid.data.landmarks import write_aflw2000, write_pts
from pyfaid.encoders import align_faces
from pyfaid.synth import SyntheticFaces
from pyfaid.synth.alignment import write_table
from pyfaid.synth.measure_alignment import measure_residuals


def _mask_vis(face: torch.Tensor, occ: torch.Tensor) -> torch.Tensor:
    """[1, H, W] face and occluder masks to an RGB [3, H, W] picture."""
    vis = face * (1 - occ)
    r = vis + face * occ + 0.45 * (1 - face) * occ
    g = vis
    b = vis
    return torch.cat([r, g, b], 0)


def _draw_points(img: torch.Tensor, points: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
    """Dots on a [3, H, W] picture: green where visible, blue where hidden."""
    arr = np.ascontiguousarray((img.permute(1, 2, 0).numpy() * 255).astype(np.uint8))
    for (x, y), v in zip(points.numpy(), visible.numpy()):
        cv2.circle(arr, (int(round(x)), int(round(y))), 1, (0, 220, 0) if v else (40, 40, 255), -1)
    return torch.from_numpy(arr).permute(2, 0, 1).float() / 255.0


def _real_row(folder: str, n: int, size: int) -> list:
    """Up to n photos from a folder, aligned by MTCNN, resized to ``size``."""
    paths = list_images(folder)
    if not paths:
        raise ValueError(f"--real {folder}: no photos found")
    rng = np.random.default_rng(0)
    picks = [paths[i] for i in rng.choice(len(paths), size=min(len(paths), 3 * n), replace=False)]
    images = [im for im in (read_image(p) for p in picks) if im is not None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = align_faces(images)
    crops = res.crops[res.valid][:n]
    if size != 224:
        crops = torch.nn.functional.interpolate(crops, size=(size, size), mode="bilinear", antialias=True,
                                                align_corners=False)
    return list(crops)


def preview(out_dir: str, n: int = 16, seed: int = 0, per_row: int = 8, size: int = 224,
            real: str | None = None) -> str:
    """Render ``n`` synthetic samples and write a PNG grid; returns its path."""
    if n < 1:
        raise ValueError(f"--n must be >= 1, got {n}")
    if per_row < 1:
        raise ValueError(f"--per-row must be >= 1, got {per_row}")
    ds = SyntheticFaces(seed=seed, length=n, image_size=size, occlusion=True)
    t0 = time.perf_counter()
    batch = ds.batch(range(n))
    elapsed = time.perf_counter() - t0
    photos = _real_row(real, n, size) if real else []
    tiles = []
    for start in range(0, n, per_row):
        stop = min(start + per_row, n)
        rows = []
        for key in ("clean", "image", "mask") + (("real",) if photos else ()):
            row = []
            for b in range(start, stop):
                if key == "mask":
                    vis = _mask_vis(batch["face_mask"][b], batch["occluder_mask"][b])
                    row.append(_draw_points(vis * 0.8, batch["landmarks_2d"][b], batch["landmark_visible"][b]))
                elif key == "real":
                    row.append(photos[b] if b < len(photos) else torch.zeros(3, size, size))
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


def _landmark_tile(img: torch.Tensor, points: torch.Tensor, colours, scale: int = 2) -> np.ndarray:
    """A [3, H, W] picture enlarged ``scale`` times, with the points drawn (BGR colours per point)."""
    arr = (img.permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    arr = cv2.resize(np.ascontiguousarray(arr[..., ::-1]), None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    pts = (points.numpy() + 0.5) * scale - 0.5
    cv2.polylines(arr, [np.round(pts[:17] * 16).astype(np.int32)], False, colours[0], 1, cv2.LINE_AA, 4)
    for (x, y), c in zip(pts, colours):
        cv2.circle(arr, (int(round(x * 16)), int(round(y * 16))), 2 * 16, c, -1, cv2.LINE_AA, 4)
    return arr


def landmark_preview(out_dir: str, yaws, per_row: int = 6, seed: int = 0, size: int = 224) -> str:
    """Write ``landmarks_preview.png``: both landmark conventions on faces at the given yaws."""
    if per_row < 1:
        raise ValueError(f"--per-row must be >= 1, got {per_row}")
    rows = []
    for yaw in yaws:
        ds = SyntheticFaces(seed=seed, length=per_row, image_size=size, occlusion=False, yaw=float(yaw))
        b = ds.batch(range(per_row))
        tiles = []
        for i in range(per_row):
            c3 = [(0, 220, 255) if v else (40, 40, 230) for v in b["landmark_3d_visible"][i].tolist()]
            c2 = [(60, 230, 60)] * 68
            t3 = _landmark_tile(b["clean"][i], b["landmarks_3d"][i], c3)
            t2 = _landmark_tile(b["clean"][i], b["landmarks_2d"][i], c2)
            tiles.append(np.concatenate([t3, t2], 1))
        row = np.concatenate(tiles, 1)
        cv2.putText(row, f"yaw {yaw:g} / -{yaw:g}", (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2)
        rows.append(row)
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "landmarks_preview.png")
    if not cv2.imwrite(path, np.concatenate(rows, 0)):
        raise OSError(f"could not write {path}")
    print(f"wrote {path} ({len(yaws)} yaws x {per_row} faces; left of each pair 3D-style, right 2D-style)")
    return path


def export_landmark_set(out_dir: str, fmt: str, n: int = 200, seed: int = 1000003, size: int = 320,
                        batch: int = 16) -> str:
    """Write ``n`` synthetic faces as an annotated set (``fmt``: ``aflw2000`` or ``300w``); returns the folder."""
    if fmt not in ("aflw2000", "300w"):
        raise ValueError(f"--format must be aflw2000 or 300w, got {fmt!r}")
    if n < 1:
        raise ValueError(f"--n must be >= 1, got {n}")
    ds = SyntheticFaces(seed=seed, length=n, image_size=size, occlusion=False, face_scale=0.6)
    os.makedirs(out_dir, exist_ok=True)
    fm = ds.face_model
    for start in range(0, n, batch):
        b = ds.batch(range(start, min(n, start + batch)))
        depth = b["vertices"][:, fm.landmark_idx, 2].double()  # camera distance of the landmark vertices
        mean = depth.mean(1, keepdim=True)
        z = ((mean - depth) * ds.renderer.camera.focal / mean).numpy()  # pixels, towards the camera
        for k, i in enumerate(b["index"].tolist()):
            stem = os.path.join(out_dir, f"synthetic_{seed}_{i:05d}")
            img = (b["clean"][k].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
            if fmt == "aflw2000":
                xyz = np.concatenate([b["landmarks_3d"][k].numpy(), z[k][:, None]], 1)
                write_aflw2000(stem, img, xyz, b["labels"]["angles"][k].numpy())
            else:
                if not cv2.imwrite(stem + ".png", np.ascontiguousarray(img[..., ::-1])):
                    raise OSError(f"could not write {stem}.png")
                write_pts(stem + ".pts", b["landmarks_2d"][k].numpy())
    print(f"wrote {n} synthetic faces (seed {seed}) as {fmt} to {out_dir}")
    return out_dir


def measure_alignment(n: int, seed: int, out: str, device: str = "cpu") -> str:
    """Measure MTCNN's residual framing on synthetic frames and write the table file."""
    table, meta = measure_residuals(n, seed=seed, device=device)
    if len(table) == 0:
        raise RuntimeError("MTCNN found no face in any synthetic frame; nothing written")
    write_table(table, meta, out)
    print(f"wrote {out}: {meta['found']} of {meta['faces']} faces found, MTCNN {meta['mtcnn_ms_per_frame']} ms/frame")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pyfaid.data", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("preview", help="write a PNG grid of synthetic samples")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--n", type=int, default=16, help="number of samples")
    p.add_argument("--seed", type=int, default=0, help="dataset seed")
    p.add_argument("--per-row", type=int, default=8, help="samples per row")
    p.add_argument("--size", type=int, default=224, help="picture side in pixels")
    p.add_argument("--real", default=None, help="optional folder of photos to show aligned beside the samples")
    p.add_argument("--yaws", type=float, nargs="+", default=None,
                   help="instead: both landmark conventions on faces at these yaws (landmarks_preview.png)")
    c = sub.add_parser("cache", help="render a pretraining cache (resumable)")
    c.add_argument("--out", required=True, help="cache folder")
    c.add_argument("--n", type=int, required=True, help="number of items")
    c.add_argument("--size", type=int, default=224, help="picture side in pixels")
    c.add_argument("--seed", type=int, default=0, help="dataset seed")
    c.add_argument("--shard", type=int, default=1000, help="items per shard")
    c.add_argument("--batch", type=int, default=32, help="items rendered per batch")
    c.add_argument("--threads", type=int, default=None, help="torch/OpenCV threads (default: theirs)")
    c.add_argument("--colors", action="store_true", help="also store the per-vertex albedo (uint8)")
    e = sub.add_parser("export", help="write synthetic faces as an annotated landmark set (aflw2000 or 300w)")
    e.add_argument("--format", required=True, choices=["aflw2000", "300w"], help="annotation layout")
    e.add_argument("--out", required=True, help="output folder")
    e.add_argument("--n", type=int, default=200, help="number of faces")
    e.add_argument("--seed", type=int, default=None, help="dataset seed (default: the held-out data.val_seed)")
    e.add_argument("--size", type=int, default=320, help="picture side in pixels")
    m = sub.add_parser("measure-alignment", help="measure MTCNN's framing errors on synthetic frames")
    m.add_argument("--n", type=int, default=1500, help="number of synthetic frames")
    m.add_argument("--seed", type=int, default=987654, help="dataset seed (one no training run uses)")
    m.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets",
                                                 "alignment_residuals.json"), help="table file to write")
    m.add_argument("--device", default="cpu", help="where MTCNN runs")
    args = parser.parse_args(argv)
    try:
        if args.command == "preview" and args.yaws:
            landmark_preview(args.out, args.yaws, args.per_row if args.per_row != 8 else 6, args.seed, args.size)
        elif args.command == "preview":
            preview(args.out, args.n, args.seed, args.per_row, args.size, args.real)
        elif args.command == "cache":
            if args.threads:
                torch.set_num_threads(args.threads)
                cv2.setNumThreads(args.threads)
            write_cache(args.out, args.n, image_size=args.size, seed=args.seed, shard_size=args.shard,
                        batch_size=args.batch, colors=args.colors)
        elif args.command == "export":
            seed = DataConfig().val_seed if args.seed is None else args.seed
            export_landmark_set(args.out, args.format, args.n, seed, args.size)
        else:
            measure_alignment(args.n, args.seed, args.out, args.device)
    except (ValueError, OSError, RuntimeError) as exc:
        print(f"python -m pyfaid.data {args.command}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
