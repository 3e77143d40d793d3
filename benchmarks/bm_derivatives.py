"""Benchmark: the image-space derivatives, ``rasterize(grad_db=True)`` (nvdiffrast's rast_db) and
``interpolate(rast_db=, diff_attrs=)`` (its out_da), against screen-space finite differences.

Mesh: bm_rasterize's face-sized grid (35,709 vertices, 70,312 triangles), 224 x 224, two UV-like
attributes per vertex. Rows, the contestants of a case interleaved in one loop:
  * ``pyfaid``: rasterize with ``grad_db`` + interpolate with the derivatives of both attributes
    (forward), and forward+backward with gradients to the positions and the attributes;
  * ``no-derivatives``: rasterize + interpolate alone (what the derivatives cost on top);
  * ``finite-diff``: rasterize + interpolate, then the attributes' differences to the right and
    lower neighbour pixel in plain PyTorch (the usual stand-in: one-sided, wrong across triangle and
    silhouette edges, where the analytic derivative stays the triangle's own).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bm_rasterize import face_patch_case
from common import row, time_ms_interleaved

from pyfaid.render import interpolate, rasterize

BENCH = "derivatives"


def run(device: str, quick: bool) -> list[dict]:
    dev = torch.device(device)
    batch, res, iters, pos, tri, topo, attr = face_patch_case(dev, quick, 2)

    def analytic(p, a):
        rast, db = rasterize(p, topo, (res, res), grad_db=True)
        out, da = interpolate(a, rast, topo, rast_db=db, diff_attrs="all")
        return out.sum() + da.sum()

    def plain(p, a):
        return interpolate(a, rasterize(p, topo, (res, res)), topo).sum()

    def finite_diff(p, a):
        out = interpolate(a, rasterize(p, topo, (res, res)), topo)
        dx = F.pad(out[:, :, 1:] - out[:, :, :-1], (0, 0, 0, 1))
        dy = F.pad(out[:, 1:] - out[:, :-1], (0, 0, 0, 0, 0, 1))
        return out.sum() + dx.sum() + dy.sum()

    def backward(fn):
        p, a = pos.detach().requires_grad_(True), attr.detach().requires_grad_(True)
        fn(p, a).backward()
        return p.grad, a.grad

    case = f"{res}x{res} B{batch} F{tri.shape[0]} C2"
    rows = []
    for mode, wrap in (("fwd", lambda fn: (lambda: fn(pos, attr))), ("fwd+bwd", lambda fn: (lambda: backward(fn)))):
        ms = time_ms_interleaved({"pyfaid": wrap(analytic), "plain": wrap(plain), "fd": wrap(finite_diff)}, dev,
                                 warmup=1, iters=iters)
        rows += [row(BENCH, f"{case} {mode}", "pyfaid", ms["pyfaid"], cost_vs_no_derivatives=round(
                     ms["pyfaid"] / ms["plain"], 2), note="rast_db + out_da, analytic"),
                 row(BENCH, f"{case} {mode}", "no-derivatives", ms["plain"]),
                 row(BENCH, f"{case} {mode}", "finite-diff", ms["fd"], note="one-sided pixel differences")]
    return rows
