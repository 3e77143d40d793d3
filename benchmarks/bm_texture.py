"""Benchmark: pyfaid.render.texture, forward and forward+backward, against its peers.

Image 224 x 224, batch 16, uv a smooth warp of the image over most of the texture (as a face's UV
map gives), C = 3. Cases:
  * bilinear, one 1024 x 1024 texture shared by the batch, and 16 textures of 256 x 256:
    peer ``torch.nn.functional.grid_sample`` (bilinear, align_corners=False, its own NCHW layout,
    the shared texture expanded over the batch);
  * trilinear (linear-mipmap-linear from uv_da), one shared 1024 x 1024 texture with its pyramid
    built once (``texture_mipmaps``): peer the plain-PyTorch mip lookup of
    ``tests/reference_texture.py`` (avg-pooled pyramid, per-pixel level, grid_sample per level,
    blend), whose pyramid is also built once (outside the timing; its backward still flows
    through the pooling, as pyfaid's flows through the pyramid's adjoint).
Both contestants run interleaved in one loop (``time_ms_interleaved``); rows report ``ms``
(median per call) and ``pyfaid_speedup`` (peer ms / pyfaid ms).
"""

from __future__ import annotations

import math
import os
import sys

import torch
import torch.nn.functional as F

from common import add_speedups, row, time_ms_interleaved

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

from pyfaid.render import texture, texture_mipmaps  # noqa: E402
from reference_texture import pyramid_reference, trilinear_reference  # noqa: E402

BENCH = "texture"
BATCH, IMAGE = 16, 224


def warped_uv(batch: int, size: int, device):
    """uv [B, S, S, 2] in about [0.05, 0.95] (a smooth, per-image rotated warp) and its exact
    image-space derivatives uv_da [B, S, S, 4] (du/dX, du/dY, dv/dX, dv/dY)."""
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    xs, ys = xs.requires_grad_(True), ys.requires_grad_(True)
    out, das = [], []
    for b in range(batch):
        a = 0.3 * math.sin(1.3 * b)
        u = 0.5 + 0.42 * (math.cos(a) * xs - math.sin(a) * ys) + 0.03 * torch.sin(3 * ys)
        v = 0.5 + 0.42 * (math.sin(a) * xs + math.cos(a) * ys) + 0.03 * torch.cos(2 * xs)
        du = torch.autograd.grad(u.sum(), (xs, ys), retain_graph=True)
        dv = torch.autograd.grad(v.sum(), (xs, ys))
        step = 2 / (size - 1)  # d(grid) / d(pixel)
        das.append(torch.stack([du[0] * step, du[1] * step, dv[0] * step, dv[1] * step], -1))
        out.append(torch.stack([u, v], -1).detach())
    return torch.stack(out).to(device), torch.stack(das).detach().to(device)


def _bilinear_case(dev, tex_batch, tex_size, iters):
    uv, _ = warped_uv(BATCH, IMAGE, dev)
    tex = torch.rand(tex_batch, tex_size, tex_size, 3, device=dev)
    tex_nchw = tex.permute(0, 3, 1, 2).contiguous()  # grid_sample's own layout, made once
    grid = uv * 2 - 1
    g = torch.randn(BATCH, IMAGE, IMAGE, 3, device=dev)
    g_nchw = g.permute(0, 3, 1, 2).contiguous()

    def ours_fwd():
        return texture(tex, uv, filter_mode="linear", boundary_mode="clamp")

    def peer_fwd():
        return F.grid_sample(tex_nchw.expand(BATCH, -1, -1, -1), grid, mode="bilinear",
                             padding_mode="border", align_corners=False)

    def ours_bwd():
        t, u = tex.detach().requires_grad_(True), uv.detach().requires_grad_(True)
        texture(t, u, filter_mode="linear", boundary_mode="clamp").backward(g)
        return t.grad, u.grad

    def peer_bwd():
        t, u = tex_nchw.detach().requires_grad_(True), grid.detach().requires_grad_(True)
        F.grid_sample(t.expand(BATCH, -1, -1, -1), u, mode="bilinear", padding_mode="border",
                      align_corners=False).backward(g_nchw)
        return t.grad, u.grad

    err = (ours_fwd() - peer_fwd().permute(0, 2, 3, 1)).abs().max().item()
    case = f"bilinear {IMAGE}x{IMAGE} B{BATCH} tex{tex_batch}x{tex_size}^2 C3"
    rows = []
    for mode, ours, peer in (("fwd", ours_fwd, peer_fwd), ("fwd+bwd", ours_bwd, peer_bwd)):
        ms = time_ms_interleaved({"ours": ours, "peer": peer}, dev, warmup=2, iters=iters)
        rows.append(row(BENCH, f"{case} {mode}", "pyfaid", ms["ours"], max_abs_diff=round(err, 7)))
        rows.append(row(BENCH, f"{case} {mode}", "torch-grid_sample", ms["peer"]))
    return rows


def _trilinear_case(dev, tex_size, iters):
    uv, uv_da = warped_uv(BATCH, IMAGE, dev)
    tex = torch.rand(1, tex_size, tex_size, 3, device=dev)
    levels = int(math.log2(tex_size))
    mips = texture_mipmaps(tex)
    g = torch.randn(BATCH, IMAGE, IMAGE, 3, device=dev)

    def ours_fwd():
        return texture(tex, uv, uv_da, mip=mips, boundary_mode="clamp")

    def ours_bwd():
        t, u, d = (x.detach().requires_grad_(True) for x in (tex, uv, uv_da))
        texture(t, u, d, mip=mips, boundary_mode="clamp").backward(g)
        return t.grad, u.grad, d.grad

    def peer_fwd():
        with torch.no_grad():
            return trilinear_reference(tex, uv, uv_da, None, "clamp", levels)

    def peer_bwd():
        t, u, d = (x.detach().requires_grad_(True) for x in (tex, uv, uv_da))
        trilinear_reference(t, u, d, None, "clamp", levels).backward(g)
        return t.grad, u.grad, d.grad

    err = (ours_fwd() - peer_fwd()).abs().max().item()
    case = f"trilinear {IMAGE}x{IMAGE} B{BATCH} tex1x{tex_size}^2 C3"
    rows = []
    for mode, ours, peer in (("fwd", ours_fwd, peer_fwd), ("fwd+bwd", ours_bwd, peer_bwd)):
        ms = time_ms_interleaved({"ours": ours, "peer": peer}, dev, warmup=1, iters=iters)
        rows.append(row(BENCH, f"{case} {mode}", "pyfaid", ms["ours"], max_abs_diff=round(err, 7)))
        rows.append(row(BENCH, f"{case} {mode}", "torch-mip-reference", ms["peer"]))
    # the pyramid itself, built once per texture
    ms = time_ms_interleaved({"ours": lambda: texture_mipmaps(tex),
                              "peer": lambda: pyramid_reference(tex, levels)}, dev, warmup=1, iters=iters)
    rows.append(row(BENCH, f"mip pyramid tex1x{tex_size}^2 C3", "pyfaid", ms["ours"]))
    rows.append(row(BENCH, f"mip pyramid tex1x{tex_size}^2 C3", "torch-avg_pool2d", ms["peer"]))
    return rows


def run(device: str, quick: bool) -> list[dict]:
    dev = torch.device(device)
    iters = 3 if quick else 10
    rows = _bilinear_case(dev, 1, 1024, iters) + _bilinear_case(dev, BATCH, 256, iters)
    rows += _trilinear_case(dev, 1024, iters)
    return add_speedups(rows)


if __name__ == "__main__":
    from common import main

    main(run)
