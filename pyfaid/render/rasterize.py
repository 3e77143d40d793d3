"""Differentiable triangle rasterization and attribute interpolation (nvdiffrast conventions).

``rasterize`` turns clip-space triangles into a per-pixel buffer of perspective-correct
barycentrics, depth and triangle ids (and, with ``grad_db=True``, the barycentrics' image-space
derivatives); ``interpolate`` combines per-vertex attributes with it (and, given those derivatives,
gives the attributes' image-space derivatives, which mip-level selection in
:func:`pyfaid.render.texture` needs). Gradients flow from interpolated attributes to the attributes
and, through the barycentrics (u, v) and their derivatives, to the clip-space vertex positions. The
kernels are ``torch.ops.pyfaid.rasterize``, ``rasterize_db``, ``interpolate``, ``interpolate_da``
and their ``_backward`` ops (CPU and CUDA).

Pass the triangles as a :class:`~pyfaid.render.MeshTopology` when a mesh is drawn more than once:
its indices were checked when it was built, so the kernels skip their per-call range check, and
the CUDA path then never waits for the device.
"""

from __future__ import annotations

from typing import Sequence, Union

import torch

from pyfaid._ext import check_device, ops
from pyfaid.precision import fp32_input
from pyfaid.render.topology import as_triangles

__all__ = ["rasterize", "rasterize_db", "interpolate"]


def rasterize(pos: torch.Tensor, tri, resolution: int | Sequence[int], *, grad_db: bool = False,
              cpu_path: str = "auto", simd: bool = True):
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
        grad_db: also return ``rast_db``, the image-space derivatives of the barycentrics
            (nvdiffrast's ``grad_db``), for :func:`interpolate`'s ``rast_db``.
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
        With ``grad_db=True``, the pair ``(rast, rast_db)``: ``rast_db [B, H, W, 4]`` =
        ``(du/dX, du/dY, dv/dX, dv/dY)`` at each pixel centre, ``X`` along a row and ``Y`` down the
        rows, in pixels (exact derivatives of ``u, v``; 0 at empty pixels), also differentiable
        with respect to ``pos``.
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
    pos = pos.contiguous()
    rast = ops.rasterize(pos, tri, height, width, check_indices=not checked, cpu_path=cpu_path,
                         simd=simd)
    if not grad_db:
        return rast
    return rast, ops.rasterize_db(pos, tri, rast, check_indices=False)  # indices checked above


def rasterize_db(pos: torch.Tensor, tri, rast: torch.Tensor) -> torch.Tensor:
    """The barycentric derivatives of an existing raster: what ``rasterize(..., grad_db=True)``
    returns second, for a ``rast`` made without it (no second rasterization).

    Args:
        pos: ``[B, V, 4]`` or ``[V, 4]`` the clip-space positions ``rast`` was rasterized from.
        tri: ``[F, 3]`` its triangles (or their MeshTopology).
        rast: ``[B, H, W, 4]`` the :func:`rasterize` output.

    Returns:
        ``[B, H, W, 4]`` ``(du/dX, du/dY, dv/dX, dv/dY)`` in pixels (0 at empty pixels),
        differentiable with respect to ``pos``.
    """
    check_device(pos, "pos")
    check_device(rast, "rast")
    if pos.dim() == 2:
        pos = pos.unsqueeze(0)
    tri, checked = as_triangles(tri, pos.device, pos.shape[-2], "pos")
    check_device(tri, "tri")
    return ops.rasterize_db(pos.contiguous(), tri, rast.contiguous(), check_indices=not checked)


def interpolate(attr: torch.Tensor, rast: torch.Tensor, tri, rast_db: torch.Tensor | None = None,
                diff_attrs: Union[str, Sequence[int], None] = None, *, simd: bool = True):
    """Interpolate per-vertex attributes over a rasterized image.

    ``out = u * attr[t0] + v * attr[t1] + (1 - u - v) * attr[t2]`` at covered pixels, 0 elsewhere.
    Given ``rast_db``, also the image-space derivatives of the attributes (nvdiffrast's
    ``out_da``): ``da/dX = du/dX (a0 - a2) + dv/dX (a1 - a2)`` and likewise for ``Y``.

    Args:
        attr: ``[B, V, C]`` per-image or ``[V, C]`` (or ``[1, V, C]``) shared vertex attributes
            (under ``torch.autocast``, bfloat16 / float16 attributes are cast to float32).
        rast: ``[B, H, W, 4]`` output of :func:`rasterize`.
        tri: ``[F, 3]`` the triangles passed to :func:`rasterize` (or their MeshTopology).
        rast_db: ``[B, H, W, 4]`` barycentric derivatives from ``rasterize(..., grad_db=True)``.
        diff_attrs: the channels of ``attr`` to differentiate: a sequence of indices, or ``"all"``
            (the default when ``rast_db`` is given). Needs ``rast_db``.
        simd: use the CPU's AVX2 kernel (float32, ``C = 3``) where it has one, in the forward and
            backward pass; False forces the scalar code (bit-identical results).
            ``PYFAID_CPU_SIMD=0`` turns it off whatever this says. Ignored on CUDA.

    Returns:
        ``[B, H, W, C]`` interpolated attributes, differentiable with respect to ``attr`` and,
        through ``rast``'s ``u, v`` channels, to the positions given to :func:`rasterize`. With
        ``rast_db``, the pair ``(out, out_da)``: ``out_da [B, H, W, 2 N]`` holds
        ``(da/dX, da/dY)`` of each of the N listed channels in turn (0 at empty pixels),
        differentiable with respect to ``attr`` and ``rast_db``.

    Raises:
        ValueError: ``diff_attrs`` without ``rast_db``, or a channel outside ``[0, C)``.
    """
    attr, rast = fp32_input(attr), fp32_input(rast)  # under autocast: float32 in
    check_device(attr, "attr")
    check_device(rast, "rast")
    if attr.dim() == 2:
        attr = attr.unsqueeze(0)
    tri, checked = as_triangles(tri, attr.device, attr.shape[-2], "attr")
    check_device(tri, "tri")
    attr, rast = attr.contiguous(), rast.contiguous()
    out = ops.interpolate(attr, rast, tri, check_indices=not checked, simd=simd)
    if rast_db is None:
        if diff_attrs is not None:
            raise ValueError("interpolate: `diff_attrs` needs `rast_db` (rasterize(..., grad_db=True))")
        return out
    check_device(rast_db, "rast_db")
    channels = _diff_channels(diff_attrs, attr.shape[-1])
    out_da = ops.interpolate_da(attr, rast, tri, rast_db.contiguous(), channels,
                                check_indices=False)  # the interpolate call checked them
    return out, out_da


def _diff_channels(diff_attrs, num_channels: int) -> list:
    """``diff_attrs`` (None / "all" / indices) as a list of channel indices in ``[0, C)``."""
    if diff_attrs is None or (isinstance(diff_attrs, str) and diff_attrs == "all"):
        return list(range(num_channels))
    if isinstance(diff_attrs, str) or not all(isinstance(c, int) for c in diff_attrs):
        raise ValueError(f"interpolate: `diff_attrs` must be 'all' or a sequence of channel indices, "
                         f"got {diff_attrs!r}")
    channels = [int(c) for c in diff_attrs]
    bad = [c for c in channels if not 0 <= c < num_channels]
    if bad:
        raise ValueError(f"interpolate: `diff_attrs` entries must lie in [0, {num_channels}) (the "
                         f"channels of `attr`), got {bad}")
    return channels


# ---- shapes for tracing ------------------------------------------------------------------------

@torch.library.register_fake("pyfaid::rasterize")
def _rasterize_fake(pos, tri, height, width, *, check_indices=True, cpu_path="auto", simd=True):
    torch._check(pos.dim() == 3 and pos.shape[2] == 4, lambda: "pos must have shape [B, V, 4]")
    torch._check(tri.dim() == 2 and tri.shape[1] == 3, lambda: "tri must have shape [F, 3]")
    return pos.new_empty((pos.shape[0], height, width, 4))


@torch.library.register_fake("pyfaid::rasterize_backward")
def _rasterize_backward_fake(grad_rast, pos, tri, rast, *, check_indices=True, simd=True):
    return torch.empty_like(pos)


@torch.library.register_fake("pyfaid::rasterize_db")
def _rasterize_db_fake(pos, tri, rast, *, check_indices=True):
    return torch.empty_like(rast)


@torch.library.register_fake("pyfaid::rasterize_db_backward")
def _rasterize_db_backward_fake(grad_db, pos, tri, rast, *, check_indices=True):
    return torch.empty_like(pos)


@torch.library.register_fake("pyfaid::interpolate_da")
def _interpolate_da_fake(attr, rast, tri, rast_db, diff_attrs, *, check_indices=True):
    torch._check(attr.dim() == 3, lambda: "attr must have shape [B, V, C]")
    return attr.new_empty((rast.shape[0], rast.shape[1], rast.shape[2], 2 * len(diff_attrs)))


@torch.library.register_fake("pyfaid::interpolate_da_backward")
def _interpolate_da_backward_fake(grad_da, attr, rast, tri, rast_db, diff_attrs, *, check_indices=True):
    return torch.empty_like(attr), torch.empty_like(rast_db)


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


def _rasterize_db_setup_context(ctx, inputs, keyword_only_inputs, output):
    pos, tri, rast = inputs
    ctx.check_indices = keyword_only_inputs["check_indices"]
    ctx.save_for_backward(pos, tri, rast)


def _rasterize_db_backward(ctx, grad_db):
    pos, tri, rast = ctx.saved_tensors
    grad_pos = None
    if ctx.needs_input_grad[0]:
        grad_pos = ops.rasterize_db_backward(grad_db.contiguous(), pos, tri, rast,
                                             check_indices=ctx.check_indices)
    return grad_pos, None, None  # rast_db depends on rast only through its triangle ids


torch.library.register_autograd(
    "pyfaid::rasterize_db", _rasterize_db_backward, setup_context=_rasterize_db_setup_context
)


def _interpolate_da_setup_context(ctx, inputs, keyword_only_inputs, output):
    attr, rast, tri, rast_db, diff_attrs = inputs
    ctx.check_indices = keyword_only_inputs["check_indices"]
    ctx.diff_attrs = list(diff_attrs)
    ctx.save_for_backward(attr, rast, tri, rast_db)


def _interpolate_da_backward(ctx, grad_da):
    attr, rast, tri, rast_db = ctx.saved_tensors
    grad_attr, grad_db = ops.interpolate_da_backward(grad_da.contiguous(), attr, rast, tri, rast_db,
                                                     ctx.diff_attrs, check_indices=ctx.check_indices)
    return (
        grad_attr if ctx.needs_input_grad[0] else None,
        None,  # out_da depends on rast only through its triangle ids
        None,
        grad_db if ctx.needs_input_grad[3] else None,
        None,
    )


torch.library.register_autograd(
    "pyfaid::interpolate_da", _interpolate_da_backward, setup_context=_interpolate_da_setup_context
)
