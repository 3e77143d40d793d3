"""Differentiable triangle rasterization and attribute interpolation (nvdiffrast conventions).

``rasterize`` turns clip-space triangles into a per-pixel buffer of perspective-correct
barycentrics, depth and triangle ids; ``interpolate`` combines per-vertex attributes with it.
Gradients flow from interpolated attributes to the attributes and, through the barycentrics
(u, v), to the clip-space vertex positions. The kernels are ``torch.ops.pyfaid.rasterize``,
``rasterize_backward``, ``interpolate`` and ``interpolate_backward`` (CPU and CUDA).

Pass the triangles as a :class:`~pyfaid.render.MeshTopology` when a mesh is drawn more than once:
its indices were checked when it was built, so the kernels skip their per-call range check, and
the CUDA path then never waits for the device.
"""

from __future__ import annotations

from typing import Sequence

import torch

from pyfaid._ext import check_device, ops
from pyfaid.precision import fp32_input
from pyfaid.render.topology import as_triangles

__all__ = ["rasterize", "interpolate"]


def rasterize(pos: torch.Tensor, tri, resolution: int | Sequence[int], *, cpu_path: str = "auto",
              simd: bool = True) -> torch.Tensor:
    """Rasterize clip-space triangles.

    Pixel ``(x, y)`` has its centre at NDC ``((2x + 1) / W - 1, (2y + 1) / H - 1)``; row 0 is NDC
    ``y = -1`` (as in nvdiffrast). The nearest triangle (smallest ``z/w`` in ``[-1, 1]``) wins; on
    equal depth the lower triangle id wins. Both windings are drawn. Triangles with a vertex at
    ``w <= 0``, non-finite coordinates, zero area, or entirely outside the clip volume are skipped;
    pixels whose ``z/w`` falls outside ``[-1, 1]`` are not covered (per-pixel near/far clipping).

    Args:
        pos: ``[B, V, 4]`` or ``[V, 4]`` clip-space positions ``(x, y, z, w)``, float32 or float64
            (under ``torch.autocast`` also bfloat16 / float16, cast to float32).
        tri: ``[F, 3]`` vertex indices (any integer dtype; converted to int32; their range is
            checked on every call, on CUDA with a device-to-host synchronisation), or a
            :class:`~pyfaid.render.MeshTopology` (indices checked once, when it was built; the
            recommended form for a mesh rendered more than once).
        resolution: ``(H, W)`` or a single int for a square image.
        cpu_path: CPU rasterizer: ``"auto"`` (direct up to 512 x 512 pixels, binned above),
            ``"direct"`` or ``"binned"``; all give bit-identical results. The environment variable
            ``PYFAID_CPU_RASTER=binned|direct`` overrides it (for debugging). Ignored on CUDA.
        simd: use the CPU's AVX2 kernels where it has them (bit-identical results); False forces
            the scalar code, and so does ``PYFAID_CPU_SIMD=0`` whatever this says. The backward
            pass follows the same choice. Ignored on CUDA.

    Returns:
        ``[B, H, W, 4]`` tensor ``(u, v, z/w, triangle_id + 1)`` (``B = 1`` for ``[V, 4]`` input);
        ``u, v`` are the perspective-correct barycentric weights of the triangle's first and second
        vertex. Empty pixels are all zero. Differentiable with respect to ``pos`` through ``u, v``.
    """
    if isinstance(resolution, int):
        height = width = resolution
    else:
        height, width = (int(r) for r in resolution)
    pos = fp32_input(pos)  # under autocast: float32 in, as the op computes
    check_device(pos, "pos")
    if pos.dim() == 2:
        pos = pos.unsqueeze(0)
    tri, checked = as_triangles(tri, pos.device, pos.shape[-2], "pos")
    check_device(tri, "tri")
    return ops.rasterize(pos.contiguous(), tri, height, width, check_indices=not checked,
                         cpu_path=cpu_path, simd=simd)


def interpolate(attr: torch.Tensor, rast: torch.Tensor, tri, *, simd: bool = True) -> torch.Tensor:
    """Interpolate per-vertex attributes over a rasterized image.

    ``out = u * attr[t0] + v * attr[t1] + (1 - u - v) * attr[t2]`` at covered pixels, 0 elsewhere.

    Args:
        attr: ``[B, V, C]`` per-image or ``[V, C]`` (or ``[1, V, C]``) shared vertex attributes
            (under ``torch.autocast``, bfloat16 / float16 attributes are cast to float32).
        rast: ``[B, H, W, 4]`` output of :func:`rasterize`.
        tri: ``[F, 3]`` the triangles passed to :func:`rasterize` (or their MeshTopology).
        simd: use the CPU's AVX2 kernel (float32, ``C = 3``) where it has one, in the forward and
            backward pass; False forces the scalar code (bit-identical results).
            ``PYFAID_CPU_SIMD=0`` turns it off whatever this says. Ignored on CUDA.

    Returns:
        ``[B, H, W, C]`` interpolated attributes, differentiable with respect to ``attr`` and,
        through ``rast``'s ``u, v`` channels, to the positions given to :func:`rasterize`.
    """
    attr, rast = fp32_input(attr), fp32_input(rast)  # under autocast: float32 in
    check_device(attr, "attr")
    check_device(rast, "rast")
    if attr.dim() == 2:
        attr = attr.unsqueeze(0)
    tri, checked = as_triangles(tri, attr.device, attr.shape[-2], "attr")
    check_device(tri, "tri")
    return ops.interpolate(attr.contiguous(), rast.contiguous(), tri, check_indices=not checked,
                           simd=simd)


# ---- shapes for tracing ------------------------------------------------------------------------

@torch.library.register_fake("pyfaid::rasterize")
def _rasterize_fake(pos, tri, height, width, *, check_indices=True, cpu_path="auto", simd=True):
    torch._check(pos.dim() == 3 and pos.shape[2] == 4, lambda: "pos must have shape [B, V, 4]")
    torch._check(tri.dim() == 2 and tri.shape[1] == 3, lambda: "tri must have shape [F, 3]")
    return pos.new_empty((pos.shape[0], height, width, 4))


@torch.library.register_fake("pyfaid::rasterize_backward")
def _rasterize_backward_fake(grad_rast, pos, tri, rast, *, check_indices=True, simd=True):
    return torch.empty_like(pos)


@torch.library.register_fake("pyfaid::interpolate")
def _interpolate_fake(attr, rast, tri, *, check_indices=True, simd=True):
    torch._check(attr.dim() == 3, lambda: "attr must have shape [B, V, C]")
    torch._check(rast.dim() == 4 and rast.shape[3] == 4, lambda: "rast must have shape [B, H, W, 4]")
    return attr.new_empty((rast.shape[0], rast.shape[1], rast.shape[2], attr.shape[2]))


@torch.library.register_fake("pyfaid::interpolate_backward")
def _interpolate_backward_fake(grad_out, attr, rast, tri, *, check_indices=True, simd=True):
    return torch.empty_like(attr), torch.empty_like(rast)


# ---- autograd -------------------------------------------------------------------------------
# The keyword-only flags of the forward op go to its backward op unchanged.

def _rasterize_setup_context(ctx, inputs, keyword_only_inputs, output):
    pos, tri, _height, _width = inputs
    ctx.check_indices = keyword_only_inputs["check_indices"]
    ctx.simd = keyword_only_inputs["simd"]
    ctx.save_for_backward(pos, tri, output)


def _rasterize_backward(ctx, grad_rast):
    pos, tri, rast = ctx.saved_tensors
    grad_pos = None
    if ctx.needs_input_grad[0]:
        grad_pos = ops.rasterize_backward(grad_rast.contiguous(), pos, tri, rast,
                                          check_indices=ctx.check_indices, simd=ctx.simd)
    return grad_pos, None, None, None


torch.library.register_autograd(
    "pyfaid::rasterize", _rasterize_backward, setup_context=_rasterize_setup_context
)


def _interpolate_setup_context(ctx, inputs, keyword_only_inputs, output):
    attr, rast, tri = inputs
    ctx.check_indices = keyword_only_inputs["check_indices"]
    ctx.simd = keyword_only_inputs["simd"]
    ctx.save_for_backward(attr, rast, tri)


def _interpolate_backward(ctx, grad_out):
    attr, rast, tri = ctx.saved_tensors
    grad_attr, grad_rast = ops.interpolate_backward(grad_out.contiguous(), attr, rast, tri,
                                                    check_indices=ctx.check_indices, simd=ctx.simd)
    return (
        grad_attr if ctx.needs_input_grad[0] else None,
        grad_rast if ctx.needs_input_grad[1] else None,
        None,
    )


torch.library.register_autograd(
    "pyfaid::interpolate", _interpolate_backward, setup_context=_interpolate_setup_context
)
