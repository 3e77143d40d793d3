"""Differentiable texture sampling with mipmaps (nvdiffrast's ``texture``), CPU and CUDA.

``texture(tex, uv)`` reads a ``[B or 1, Ht, Wt, C]`` texture at per-pixel texture coordinates
``uv [B, H, W, 2]`` (u along a texture row, v down the rows, texel centres at ``(i + 0.5) / Wt``):
nearest, bilinear, or, given the coordinates' image-space derivatives ``uv_da`` (from
:func:`pyfaid.render.interpolate` with ``rast_db``), mipmapped (``linear-mipmap-nearest`` /
``linear-mipmap-linear``). Gradients go to the texture, the coordinates and ``uv_da`` (through the
mip level). The kernels are ``torch.ops.pyfaid.texture_mip``, ``texture`` and ``texture_backward``.

The mip pyramid (2 x 2 box filter per level) is a cache of the texture's values:
:func:`texture_mipmaps` builds it once and :func:`texture` takes it back through ``mip=``, so a
texture drawn many times is filtered once. Gradients reach ``tex`` through :func:`texture` itself
(its backward pushes the coarser levels' gradients down the pyramid), so a pyramid built outside
autograd is fine; rebuild it when the texture's values change (e.g. after an optimiser step).
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch

from pyfaid._ext import check_device, ops

__all__ = ["TextureMips", "texture", "texture_mipmaps"]

FILTER_MODES = ("auto", "nearest", "linear", "linear-mipmap-nearest", "linear-mipmap-linear")
BOUNDARY_MODES = ("wrap", "clamp", "zero")


class TextureMips:
    """The coarser mip levels of one texture, built by :func:`texture_mipmaps`.

    Attributes:
        levels: ``(level 1, level 2, ...)``, level ``i`` of shape
            ``[Bt, max(Ht >> i, 1), max(Wt >> i, 1), C]`` (each texel the mean of the 2 x 2, or
            2 x 1 once a side is 1, texels below it).
        base_shape: ``(Bt, Ht, Wt, C)`` of the texture they were built from.
    """

    def __init__(self, levels: Sequence[torch.Tensor], base_shape: Sequence[int]):
        self.levels = tuple(levels)
        self.base_shape = tuple(int(s) for s in base_shape)

    def __len__(self) -> int:
        return len(self.levels)

    def __repr__(self) -> str:
        return f"TextureMips(base_shape={self.base_shape}, levels={len(self.levels)})"


def texture_mipmaps(tex: torch.Tensor, max_mip_level: Optional[int] = None) -> TextureMips:
    """Build the mip pyramid of ``tex`` once, for :func:`texture`'s ``mip=``.

    Args:
        tex: ``[Bt, Ht, Wt, C]`` float32/float64 texture.
        max_mip_level: at most this many coarser levels (None: down to 1 x 1).

    Returns:
        A :class:`TextureMips` (no autograd history: :func:`texture` differentiates to ``tex``).

    Raises:
        RuntimeError: a side with an odd size above 1 on the way down (as nvdiffrast: use sides
            that are powers of two, or limit ``max_mip_level``).
    """
    check_device(tex, "tex")
    limit = -1 if max_mip_level is None else _level_limit(max_mip_level)
    with torch.no_grad():
        levels = ops.texture_mip(tex.detach().contiguous(), limit)
    return TextureMips(levels, tex.shape)


def texture(tex: torch.Tensor, uv: torch.Tensor, uv_da: Optional[torch.Tensor] = None,
            mip_level_bias: Optional[torch.Tensor] = None, mip: Optional[TextureMips] = None,
            filter_mode: str = "auto", boundary_mode: str = "wrap",
            max_mip_level: Optional[int] = None) -> torch.Tensor:
    """Sample a texture at per-pixel texture coordinates (nvdiffrast's layout and semantics).

    Args:
        tex: ``[Bt, Ht, Wt, C]`` texture, ``Bt`` 1 (shared by every image) or ``B``.
        uv: ``[B, H, W, 2]`` texture coordinates; ``(0, 0)`` is the outer corner of texel
            ``tex[:, 0, 0]``, ``(1, 1)`` of ``tex[:, -1, -1]``.
        uv_da: ``[B, H, W, 4]`` image-space derivatives ``(du/dX, du/dY, dv/dX, dv/dY)`` of
            ``uv`` (``interpolate(uv, rast, tri, rast_db, diff_attrs="all")[1]``): they pick the
            mip level.
        mip_level_bias: ``[B, H, W]`` added to the mip level (alone: the level itself).
        mip: the pyramid from :func:`texture_mipmaps` (built here, each call, when None).
        filter_mode: ``"nearest"``, ``"linear"`` (bilinear), ``"linear-mipmap-nearest"``,
            ``"linear-mipmap-linear"`` (trilinear), or ``"auto"``: trilinear when ``uv_da`` or
            ``mip_level_bias`` is given, else bilinear.
        boundary_mode: ``"wrap"`` (repeat), ``"clamp"`` (to the centres of the border texels) or
            ``"zero"`` (zeros outside).
        max_mip_level: use at most this many coarser levels (0: no mipmapping).

    Returns:
        ``[B, H, W, C]`` samples; non-finite ``uv`` read 0. Differentiable with respect to
        ``tex``, ``uv`` (not in ``"nearest"`` mode), and, in ``"linear-mipmap-linear"`` mode,
        ``uv_da`` and ``mip_level_bias``.

    Raises:
        ValueError: an unknown mode, a mipmap mode without ``uv_da`` or ``mip_level_bias``, or a
            ``mip`` built from a texture of another shape, dtype or device.
    """
    if filter_mode not in FILTER_MODES:
        raise ValueError(f"texture: `filter_mode` must be one of {FILTER_MODES}, got {filter_mode!r}")
    if boundary_mode not in BOUNDARY_MODES:
        raise ValueError(f"texture: `boundary_mode` must be one of {BOUNDARY_MODES}, got {boundary_mode!r}")
    for t, name in ((tex, "tex"), (uv, "uv"), (uv_da, "uv_da"), (mip_level_bias, "mip_level_bias")):
        if t is not None:
            check_device(t, name)
    has_level_input = uv_da is not None or mip_level_bias is not None
    if filter_mode == "auto":
        filter_mode = "linear-mipmap-linear" if has_level_input else "linear"
    levels = []
    if "mipmap" in filter_mode:
        if not has_level_input:
            raise ValueError(f"texture: filter_mode {filter_mode!r} needs `uv_da` or `mip_level_bias`")
        levels = _levels(tex, mip, max_mip_level)
        if not levels:  # a 1 x 1 texture, or max_mip_level=0
            filter_mode = "linear"
    opt = [None if t is None else t.contiguous() for t in (uv_da, mip_level_bias)]
    return ops.texture(tex.contiguous(), levels, uv.contiguous(), opt[0], opt[1], filter_mode,
                       boundary_mode)


def _level_limit(max_mip_level) -> int:
    if int(max_mip_level) != max_mip_level or max_mip_level < 0:
        raise ValueError(f"texture: `max_mip_level` must be a non-negative integer, got {max_mip_level!r}")
    return int(max_mip_level)


def _levels(tex: torch.Tensor, mip: Optional[TextureMips], max_mip_level) -> list:
    """The coarser levels to use: ``mip``'s (checked against ``tex``) or freshly built ones."""
    limit = -1 if max_mip_level is None else _level_limit(max_mip_level)
    if mip is None:
        with torch.no_grad():
            return list(ops.texture_mip(tex.detach().contiguous(), limit))
    if not isinstance(mip, TextureMips):
        raise ValueError(f"texture: `mip` must be a TextureMips from texture_mipmaps(), got {type(mip).__name__}")
    if mip.base_shape != tuple(tex.shape):
        raise ValueError(f"texture: `mip` was built from a texture of shape {mip.base_shape}, but `tex` "
                         f"has shape {tuple(tex.shape)}")
    levels = list(mip.levels if limit < 0 else mip.levels[:limit])
    for lvl in levels:
        if lvl.dtype != tex.dtype or lvl.device != tex.device:
            raise ValueError(f"texture: `mip` holds {lvl.dtype} levels on {lvl.device}, but `tex` is "
                             f"{tex.dtype} on {tex.device} (build it from this texture)")
    return levels


# ---- shapes for tracing ------------------------------------------------------------------------

def _mip_shapes(tex, max_mip_level: int) -> list:
    bt, h, w, c = tex.shape
    shapes = []
    while (h > 1 or w > 1) and (max_mip_level < 0 or len(shapes) < max_mip_level):
        torch._check((w == 1 or w % 2 == 0) and (h == 1 or h % 2 == 0),
                     lambda: "texture_mip: an odd extent above 1 cannot be halved")
        h, w = max(h // 2, 1), max(w // 2, 1)
        shapes.append((bt, h, w, c))
    return shapes


@torch.library.register_fake("pyfaid::texture_mip")
def _texture_mip_fake(tex, max_mip_level):
    return [tex.new_empty(s) for s in _mip_shapes(tex, max_mip_level)]


@torch.library.register_fake("pyfaid::texture")
def _texture_fake(tex, mip, uv, uv_da, mip_level_bias, filter_mode, boundary_mode):
    torch._check(tex.dim() == 4, lambda: "tex must have shape [B, H, W, C]")
    torch._check(uv.dim() == 4 and uv.shape[3] == 2, lambda: "uv must have shape [B, H, W, 2]")
    return tex.new_empty((uv.shape[0], uv.shape[1], uv.shape[2], tex.shape[3]))


@torch.library.register_fake("pyfaid::texture_backward")
def _texture_backward_fake(grad_out, tex, mip, uv, uv_da, mip_level_bias, filter_mode, boundary_mode):
    return (torch.empty_like(tex), torch.empty_like(uv),
            torch.empty_like(uv_da) if uv_da is not None else tex.new_empty((0,)),
            torch.empty_like(mip_level_bias) if mip_level_bias is not None else tex.new_empty((0,)))


# ---- autograd -------------------------------------------------------------------------------

def _texture_setup_context(ctx, inputs, output):
    tex, mip, uv, uv_da, bias, filter_mode, boundary_mode = inputs
    ctx.modes = (filter_mode, boundary_mode)
    ctx.num_levels = len(mip)
    ctx.has = (uv_da is not None, bias is not None)
    saved = [tex, uv, *mip]
    if uv_da is not None:
        saved.append(uv_da)
    if bias is not None:
        saved.append(bias)
    ctx.save_for_backward(*saved)


def _texture_backward(ctx, grad_out):
    saved = list(ctx.saved_tensors)
    tex, uv = saved[0], saved[1]
    mip = saved[2:2 + ctx.num_levels]
    rest = saved[2 + ctx.num_levels:]
    uv_da = rest.pop(0) if ctx.has[0] else None
    bias = rest.pop(0) if ctx.has[1] else None
    g_tex, g_uv, g_da, g_bias = ops.texture_backward(grad_out.contiguous(), tex, mip, uv, uv_da, bias,
                                                     *ctx.modes)
    need = ctx.needs_input_grad
    return (g_tex if need[0] else None, [None] * ctx.num_levels, g_uv if need[2] else None,
            g_da if uv_da is not None and need[3] else None,
            g_bias if bias is not None and need[4] else None, None, None)


torch.library.register_autograd("pyfaid::texture", _texture_backward, setup_context=_texture_setup_context)
