"""Chebyshev spectral graph convolution on meshes (Defferrard et al. 2016), with pyfaid's op.

``cheb_conv(x, lap, W, b) = sum_k T_k(L~) x W_k + b`` where ``T_k`` are Chebyshev polynomials of the
scaled Laplacian ``L~``: a :class:`pyfaid.graph.Laplacian` (:meth:`~pyfaid.graph.Laplacian.of_mesh`;
checked once, the recommended form) or a sparse CSR tensor from :func:`pyfaid.graph.scaled_laplacian`
(checked on every call; on CUDA that check synchronises with the host). The whole K-term recurrence
runs in one compiled op (CPU and CUDA) without any dense ``N x N`` matrix; its backward reuses the
same recurrence because ``L~`` is symmetric.
"""

from __future__ import annotations

import math
from typing import Union

import torch
from torch import nn

from pyfaid._ext import check_device, ops
from pyfaid.graph.activations import ELU
from pyfaid.graph.laplacian import Laplacian
from pyfaid.precision import fp32_input

__all__ = ["cheb_conv", "laplacian_mm", "ChebConv", "ChebResBlock"]

LaplacianLike = Union[Laplacian, torch.Tensor]


def _csr_parts(lap: LaplacianLike, x: torch.Tensor, n: int):
    """``(crow int64, col int64, val in x's dtype, checked)`` of ``lap`` for ``n`` vertices.

    ``checked`` is True for a :class:`Laplacian` (validated when built; its arrays come on
    ``x``'s device, cached) and False for a CSR tensor, whose content the op then checks.
    """
    if isinstance(lap, Laplacian):
        if x.dtype not in (torch.float32, torch.float64):
            raise TypeError(f"`x` must be float32 or float64, got {x.dtype}")
        if lap.num_vertices != n:
            raise ValueError(f"`lap` must be [N, N] with N = {n} (vertices of `x`), got a Laplacian "
                             f"of N = {lap.num_vertices}")
        return (*lap.parts(x.device, x.dtype), True)
    if not isinstance(lap, torch.Tensor) or lap.layout != torch.sparse_csr:
        raise TypeError("`lap` must be a pyfaid.graph.Laplacian or a sparse CSR tensor from "
                        f"pyfaid.graph.scaled_laplacian, got {getattr(lap, 'layout', type(lap))}")
    if lap.dim() != 2 or lap.shape[0] != lap.shape[1] or lap.shape[0] != n:
        raise ValueError(f"`lap` must be [N, N] with N = {n} (vertices of `x`), got shape "
                         f"{tuple(lap.shape)}")
    crow, col, val = lap.crow_indices(), lap.col_indices(), lap.values()
    if crow.dtype != torch.int64:
        crow, col = crow.long(), col.long()
    if val.dtype != x.dtype:
        val = val.to(x.dtype)
    return crow.contiguous(), col.contiguous(), val.detach().contiguous(), False


def cheb_conv(x: torch.Tensor, lap: LaplacianLike, weight: torch.Tensor,
              bias: torch.Tensor | None = None) -> torch.Tensor:
    """Chebyshev graph convolution ``sum_k T_k(L~) x W_k + bias``.

    ``T_0 x = x``, ``T_1 x = L~ x``, ``T_k x = 2 L~ T_{k-1} x - T_{k-2} x``. Differentiable with
    respect to ``x``, ``weight`` and ``bias``; the Laplacian is a constant.

    Args:
        x: ``[B, N, Fin]`` or ``[N, Fin]`` vertex features, float32 or float64 (under
            ``torch.autocast`` also bfloat16 / float16: cast to float32, as are weight and bias).
        lap: the ``[N, N]`` scaled Laplacian: a :class:`~pyfaid.graph.Laplacian` (checked once;
            its copy on ``x``'s device in ``x``'s dtype is used), or a sparse CSR tensor from
            :func:`pyfaid.graph.scaled_laplacian` on ``x``'s device (symmetric; its values are cast
            to ``x``'s dtype, its content checked on every call).
        weight: ``[K, Fin, Fout]`` filter weights, ``K >= 1`` Chebyshev terms.
        bias: optional ``[Fout]``.

    Returns:
        ``[B, N, Fout]`` (or ``[N, Fout]`` for a 2-D ``x``).
    """
    if not isinstance(x, torch.Tensor) or x.dim() not in (2, 3):
        raise ValueError(f"cheb_conv: `x` must be [B, N, Fin] or [N, Fin], got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x)}")
    if not isinstance(weight, torch.Tensor) or weight.dim() != 3 or weight.shape[0] < 1:
        raise ValueError("cheb_conv: `weight` must be [K, Fin, Fout] with K >= 1, got "
                         f"{tuple(weight.shape) if isinstance(weight, torch.Tensor) else type(weight)}")
    # under autocast: float32 in, as the op computes
    x, weight, bias = fp32_input(x), fp32_input(weight), fp32_input(bias)
    check_device(x, "x")
    squeeze = x.dim() == 2
    if squeeze:
        x = x.unsqueeze(0)
    crow, col, val, checked = _csr_parts(lap, x, x.shape[1])
    out = ops.cheb_conv(x.contiguous(), crow, col, val, weight.contiguous(),
                        None if bias is None else bias.contiguous(), check_laplacian=not checked)
    return out.squeeze(0) if squeeze else out


@torch.library.register_fake("pyfaid::cheb_conv")
def _cheb_conv_fake(x, crow, col, val, weight, bias, *, check_laplacian=True):
    torch._check(x.dim() == 3 and weight.dim() == 3)
    return x.new_empty((x.shape[0], x.shape[1], weight.shape[2]))


@torch.library.register_fake("pyfaid::cheb_conv_backward")
def _cheb_conv_backward_fake(grad_out, x, crow, col, val, weight, has_bias, *,
                             check_laplacian=True):
    grad_b = weight.new_empty((weight.shape[2],) if has_bias else (0,))
    return x.new_empty(x.shape), weight.new_empty(weight.shape), grad_b


def _setup_context(ctx, inputs, keyword_only_inputs, output):
    x, crow, col, val, weight, bias = inputs
    ctx.has_bias = bias is not None
    ctx.check_laplacian = keyword_only_inputs["check_laplacian"]  # passed on to the backward op
    ctx.save_for_backward(x, crow, col, val, weight)


def _backward(ctx, grad_out):
    x, crow, col, val, weight = ctx.saved_tensors
    grad_x, grad_w, grad_b = ops.cheb_conv_backward(grad_out.contiguous(), x, crow, col, val, weight,
                                                    ctx.has_bias, check_laplacian=ctx.check_laplacian)
    return grad_x, None, None, None, grad_w, (grad_b if ctx.has_bias else None)


torch.library.register_autograd("pyfaid::cheb_conv", _backward, setup_context=_setup_context)


def laplacian_mm(lap: LaplacianLike, x: torch.Tensor) -> torch.Tensor:
    """One sparse product ``L~ x`` with pyfaid's CSR kernel (differentiable in ``x``).

    The backward pass is ``L~ grad`` (``lap`` must be symmetric, as scaled_laplacian's is).

    Args:
        lap: ``[N, N]`` Laplacian: a :class:`~pyfaid.graph.Laplacian` (checked once) or a sparse
            CSR tensor from :func:`pyfaid.graph.scaled_laplacian` (checked on every call).
        x: ``[N, C]`` or ``[B, N, F]`` features, float32 or float64 (under ``torch.autocast``
            also bfloat16 / float16, cast to float32).

    Returns:
        ``L~ x`` with ``x``'s shape.
    """
    if not isinstance(x, torch.Tensor) or x.dim() not in (2, 3):
        raise ValueError("laplacian_mm: `x` must be [N, C] or [B, N, F], got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x)}")
    x = fp32_input(x)  # under autocast: float32 in, as the op computes
    check_device(x, "x")
    n = x.shape[-2]
    crow, col, val, checked = _csr_parts(lap, x, n)
    if x.dim() == 2:
        return ops.cheb_spmm(crow, col, val, x.contiguous(), check_laplacian=not checked)
    b, _, f = x.shape
    y = ops.cheb_spmm(crow, col, val, x.transpose(0, 1).reshape(n, b * f),  # node-major [N, B*F]
                      check_laplacian=not checked)
    return y.view(n, b, f).transpose(0, 1).contiguous()


@torch.library.register_fake("pyfaid::cheb_spmm")
def _cheb_spmm_fake(crow, col, val, x, *, check_laplacian=True):
    return x.new_empty(x.shape)


def _spmm_setup_context(ctx, inputs, keyword_only_inputs, output):
    crow, col, val, _ = inputs
    ctx.check_laplacian = keyword_only_inputs["check_laplacian"]
    ctx.save_for_backward(crow, col, val)


def _spmm_backward(ctx, grad):
    crow, col, val = ctx.saved_tensors
    return None, None, None, ops.cheb_spmm(crow, col, val, grad.contiguous(),
                                           check_laplacian=ctx.check_laplacian)


torch.library.register_autograd("pyfaid::cheb_spmm", _spmm_backward, setup_context=_spmm_setup_context)


class ChebConv(nn.Module):
    """Chebyshev graph convolution layer (``K`` terms) on a fixed mesh Laplacian.

    Args:
        in_channels: ``Fin``.
        out_channels: ``Fout``.
        K: number of Chebyshev terms (filter support: K-1 rings), ``K >= 1``.
        bias: add a learnable ``[Fout]`` bias.

    Shape:
        forward(x ``[B, N, Fin]`` or ``[N, Fin]``, lap: a :class:`~pyfaid.graph.Laplacian` or sparse
        CSR ``[N, N]``) -> ``[B, N, Fout]`` (or ``[N, Fout]``).
    """

    def __init__(self, in_channels: int, out_channels: int, K: int, bias: bool = True):
        super().__init__()
        if K < 1:
            raise ValueError(f"ChebConv: `K` must be >= 1, got {K}")
        self.in_channels, self.out_channels, self.K = in_channels, out_channels, K
        self.weight = nn.Parameter(torch.empty(K, in_channels, out_channels))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Glorot-uniform weights (per Chebyshev term, fan_in = Fin, fan_out = Fout), zero bias."""
        bound = math.sqrt(6.0 / (self.in_channels + self.out_channels))
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor, lap: LaplacianLike) -> torch.Tensor:
        return cheb_conv(x, lap, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, K={self.K}, bias={self.bias is not None}"


_ACTIVATIONS = {"elu": ELU, "relu": nn.ReLU, "leaky_relu": lambda: nn.LeakyReLU(0.2)}


class ChebResBlock(nn.Module):
    """Spectral residual block: ``act(x + conv2(act(conv1(x))))`` with two ``ChebConv(C, C, K)``.

    Args:
        channels: feature width ``C`` (input and output).
        K: Chebyshev terms of both convolutions.
        activation: ``"elu"`` (default), ``"relu"`` or ``"leaky_relu"`` (slope 0.2).

    Shape:
        forward(x ``[B, N, C]`` or ``[N, C]``, lap: a :class:`~pyfaid.graph.Laplacian` or sparse CSR
        ``[N, N]``) -> same shape as ``x``.
    """

    def __init__(self, channels: int, K: int, activation: str = "elu"):
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"ChebResBlock: `activation` must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        self.conv1 = ChebConv(channels, channels, K)
        self.conv2 = ChebConv(channels, channels, K)
        self.act = _ACTIVATIONS[activation]()

    def forward(self, x: torch.Tensor, lap: LaplacianLike) -> torch.Tensor:
        h = self.act(self.conv1(x, lap))
        return self.act(x + self.conv2(h, lap))
