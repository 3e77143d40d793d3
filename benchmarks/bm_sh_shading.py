"""Benchmark: spherical-harmonic shading (pyfaid.render.sh_shading) against its peers.

Peers, measured in the same run on the same inputs:
  * ``eager``: Deep3DFaceRecon's ``compute_color`` formula written out in eager PyTorch
    (9 basis images, concatenation, a batched matmul per channel, then the albedo product);
  * ``compile``: ``torch.compile`` of that same function (compiled once per shape and mode
    before timing; if it fails to compile, the row reports the error instead of a time).

Cases: per vertex (batch 16, 35,709 vertices: the BFM face) and per pixel (batch 16, 224x224),
each as forward only and as forward + backward (gradients for normals, albedo and gamma).
"""

from __future__ import annotations

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from reference_shading import sh_shading_ref  # noqa: E402

from pyfaid.render import sh_shading  # noqa: E402

# The eager peer is the tests' plain-PyTorch reference: Deep3DFaceRecon's formula.
sh_shading_eager = sh_shading_ref


def _inputs(B, N, device, requires_grad):
    n = torch.nn.functional.normalize(torch.randn(B, N, 3, device=device), dim=-1)
    a = torch.rand(B, N, 3, device=device)
    g = torch.randn(B, 27, device=device) * 0.3
    return [t.requires_grad_(requires_grad) for t in (n, a, g)]


def _forward_backward(fn, inputs, grad):
    def step():
        for t in inputs:
            t.grad = None
        fn(*inputs).backward(grad)
    return step


def run(device: str = "cpu", quick: bool = False) -> list[dict]:
    iters = 3 if quick else 10
    warmup = 1 if quick else 2
    max_s = 5.0 if quick else 20.0
    B = 16
    cases = [("vertex B16 N35709", 35709), ("pixel B16 224x224", 224 * 224)]
    rows = []
    for case, N in cases:
        compiled = torch.compile(sh_shading_eager, dynamic=False)
        impls = {"pyfaid": sh_shading, "eager": sh_shading_eager, "compile": compiled}
        for mode in ("fwd", "fwd+bwd"):
            need_grad = mode == "fwd+bwd"
            inputs = _inputs(B, N, device, need_grad)
            grad = torch.rand(B, N, 3, device=device)
            for name, fn in impls.items():
                step = _forward_backward(fn, inputs, grad) if need_grad else (lambda fn=fn: fn(*inputs))
                try:
                    ms = common.time_ms(step, device, warmup=warmup, iters=iters, max_seconds=max_s)
                except Exception as exc:  # torch.compile may fail on some setups: report, go on
                    rows.append(common.row("sh_shading", f"{case} {mode}", name, float("nan"),
                                           error=f"{type(exc).__name__}: {str(exc)[:120]}"))
                    continue
                rows.append(common.row("sh_shading", f"{case} {mode}", name, ms,
                                       per_image_ms=round(ms / B, 4)))
    return common.add_speedups(rows)


if __name__ == "__main__":
    common.main(run)
