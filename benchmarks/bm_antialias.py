"""Benchmark: pyfaid.render.antialias against the rasterize call it follows, and 2 x 2
supersampling (the usual way to get smooth outlines without it).

Mesh: bm_rasterize's face-sized grid (35,709 vertices, 70,312 triangles; an open surface, so
its border is a silhouette, and its bent sides fold away from the camera), 224 x 224, batch 16,
per-vertex colours (C = 3), the triangles as a MeshTopology (its adjacency built once, outside
the timing). Rows:
  * ``rasterize``: the rasterize call alone (the cost antialias is measured against);
  * ``pyfaid``: antialias of the interpolated image (forward), and forward+backward of
    rasterize + interpolate + antialias with gradients to positions and colours;
  * ``rasterize+interpolate``: the same pipeline without antialias (forward+backward);
  * ``ssaa-2x2``: rasterize + interpolate at 448 x 448 and a 2 x 2 average pool (forward,
    forward+backward): supersampling smooths outlines too, but gives no gradient at silhouettes.
All contestants of a case run interleaved in one loop (``time_ms_interleaved``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bm_rasterize import face_patch_case
from common import row, time_ms_interleaved

from pyfaid.render import antialias, interpolate, rasterize

BENCH = "antialias"


def run(device: str, quick: bool) -> list[dict]:
    dev = torch.device(device)
    batch, res, iters, pos, tri, topo, attr = face_patch_case(dev, quick, 3)
    topo.triangle_neighbors(dev)  # per-mesh data, built once
    rast = rasterize(pos, topo, (res, res))
    color = interpolate(attr, rast, topo)
    g = torch.randn(batch, res, res, 3, device=dev)

    def render(p, a, use_aa):
        r = rasterize(p, topo, (res, res))
        c = interpolate(a, r, topo)
        return antialias(c, r, p, topo) if use_aa else c

    def fwd_bwd(use_aa):
        p, a = pos.detach().requires_grad_(True), attr.detach().requires_grad_(True)
        render(p, a, use_aa).backward(g)
        return p.grad, a.grad

    def ssaa(p, a):
        r = rasterize(p, topo, (2 * res, 2 * res))
        c = interpolate(a, r, topo).permute(0, 3, 1, 2)
        return F.avg_pool2d(c, 2).permute(0, 2, 3, 1)

    def ssaa_fwd_bwd():
        p, a = pos.detach().requires_grad_(True), attr.detach().requires_grad_(True)
        ssaa(p, a).backward(g)
        return p.grad, a.grad

    out = antialias(color, rast, pos, topo)
    changed = round((out != color).any(-1).float().mean().item(), 4)
    case = f"{res}x{res} B{batch} F{tri.shape[0]}"
    ms = time_ms_interleaved({"aa": lambda: antialias(color, rast, pos, topo),
                              "rast": lambda: rasterize(pos, topo, (res, res)),
                              "ssaa": lambda: ssaa(pos, attr)}, dev, warmup=2, iters=iters)
    rows = [row(BENCH, f"{case} fwd", "pyfaid", ms["aa"], per_image_ms=round(ms["aa"] / batch, 4),
                pixels_changed=changed, cost_vs_rasterize=round(ms["aa"] / ms["rast"], 2)),
            row(BENCH, f"{case} fwd", "rasterize", ms["rast"], per_image_ms=round(ms["rast"] / batch, 4)),
            row(BENCH, f"{case} fwd", "ssaa-2x2", ms["ssaa"], per_image_ms=round(ms["ssaa"] / batch, 4),
                note="rasterize + interpolate at 2x, pooled")]
    ms = time_ms_interleaved({"aa": lambda: fwd_bwd(True), "plain": lambda: fwd_bwd(False),
                              "ssaa": ssaa_fwd_bwd}, dev, warmup=1, iters=iters)
    rows += [row(BENCH, f"{case} fwd+bwd", "pyfaid", ms["aa"], per_image_ms=round(ms["aa"] / batch, 4),
                 note="rasterize + interpolate + antialias"),
             row(BENCH, f"{case} fwd+bwd", "rasterize+interpolate", ms["plain"],
                 per_image_ms=round(ms["plain"] / batch, 4), note="no antialias"),
             row(BENCH, f"{case} fwd+bwd", "ssaa-2x2", ms["ssaa"], per_image_ms=round(ms["ssaa"] / batch, 4))]
    return rows


if __name__ == "__main__":
    from common import main

    main(run)
