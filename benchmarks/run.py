"""Run every ``benchmarks/bm_*.py``, print one table and write the rows as JSON.

Usage:
    python benchmarks/run.py [--device cpu|cuda] [--only rasterize,cheb] [--quick] [--out FILE]
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import sys
import traceback

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def _load(path):
    spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _table(rows):
    cols = ["bench", "case", "impl", "ms"]
    extra = sorted({k for r in rows for k in r} - set(cols))
    cols += extra
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in cols}
    lines = ["  ".join(c.ljust(widths[c]) for c in cols), "  ".join("-" * widths[c] for c in cols)]
    for r in rows:
        lines.append("  ".join(str(r.get(c, "")).ljust(widths[c]) for c in cols))
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--only", default="", help="comma-separated benchmark names (bm_<name>.py)")
    ap.add_argument("--quick", action="store_true", help="small sizes / few iterations (smoke run)")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: all cores)")
    ap.add_argument("--out", default=None, help="JSON output (default benchmarks/results/<date>-<device>.json)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    names = sorted(f for f in os.listdir(HERE) if f.startswith("bm_") and f.endswith(".py"))
    if args.only:
        wanted = {w.strip() for w in args.only.split(",")}
        names = [n for n in names if n[3:-3] in wanted]
    rows, failed = [], []
    for name in names:
        print(f"== {name} ({args.device})", flush=True)
        try:
            got = _load(os.path.join(HERE, name)).run(args.device, args.quick)
            rows.extend(got)
            print(_table(got) if got else "(no rows)", flush=True)
        except Exception:  # report and continue with the other benchmarks
            traceback.print_exc()
            failed.append(name)
    meta = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "device": args.device,
        "gpu": torch.cuda.get_device_name() if args.device == "cuda" else None,
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "quick": args.quick,
        "failed": failed,
    }
    out = args.out or os.path.join(HERE, "results", f"{meta['date'][:10]}-{args.device}.json")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=1)
    if rows:
        print("\n" + _table(rows))
    print(f"\nwrote {out}" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
