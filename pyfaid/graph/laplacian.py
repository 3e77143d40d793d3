"""Scaled normalised Laplacian of a triangle mesh, as a sparse CSR matrix.

The Chebyshev graph convolution (:func:`pyfaid.graph.cheb_conv`) filters vertex signals with
polynomials of ``L~ = 2 L / lambda_max - I``, where ``L = I - D^-1/2 A D^-1/2`` is the symmetric
normalised Laplacian of the mesh graph (``A``: 0/1 adjacency of the triangle edges, symmetric, no
self loops; ``D``: vertex degrees). Build it once per mesh and reuse it.
"""

from __future__ import annotations

import math
import operator
import warnings

import torch

__all__ = ["scaled_laplacian", "laplacian_lambda_max"]

#: Relative margin added to the power-iteration estimate of lambda_max (see laplacian_lambda_max).
LAMBDA_MAX_MARGIN = 0.01


def _check_mesh(tri: torch.Tensor, num_vertices: int) -> tuple[torch.Tensor, int]:
    """Validated (int64 triangles, N)."""
    try:
        n = operator.index(num_vertices)  # int, numpy integer, 0-d integer tensor
    except TypeError:
        n = None
    if n is None or isinstance(num_vertices, bool) or n < 1:
        raise ValueError(f"scaled_laplacian: `num_vertices` must be a positive int, got {num_vertices!r}")
    num_vertices = n
    tri = torch.as_tensor(tri)
    if tri.is_floating_point() or tri.is_complex() or tri.dtype == torch.bool:
        raise TypeError(f"scaled_laplacian: `tri` must be an integer tensor, got {tri.dtype}")
    if tri.dim() != 2 or tri.shape[1] != 3:
        raise ValueError(f"scaled_laplacian: `tri` must be [F, 3], got shape {tuple(tri.shape)}")
    if tri.numel() > 0:
        lo, hi = int(tri.min()), int(tri.max())
        if lo < 0 or hi >= num_vertices:
            raise IndexError(
                f"scaled_laplacian: `tri` has vertex indices in [{lo}, {hi}], outside [0, {num_vertices - 1}] "
                f"for num_vertices={num_vertices}")
    return tri.long(), num_vertices


def _adjacency(tri: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted (row, col) of the symmetric edge set of ``tri``, without self loops or duplicates."""
    e = torch.cat([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]], dim=0)  # [3F, 2]
    e = e[e[:, 0] != e[:, 1]]  # degenerate triangles repeat a vertex
    e = torch.cat([e, e.flip(1)], dim=0)
    key = torch.unique(e[:, 0] * n + e[:, 1])  # sorted: by row, then column
    return key // n, key % n


def _normalized_laplacian(rows, cols, n, device):
    """(values, diagonal) of L = I - D^-1/2 A D^-1/2 in float64; isolated vertices get L_ii = 0."""
    deg = torch.bincount(rows, minlength=n).to(torch.float64)
    dinv = torch.where(deg > 0, deg.clamp(min=1).rsqrt(), torch.zeros_like(deg))
    off = -(dinv[rows] * dinv[cols])
    diag = (deg > 0).to(torch.float64)
    return off, diag


def _power_iteration(rows, cols, off, diag, n, iters: int) -> float:
    """Rayleigh quotient of L after ``iters`` power-iteration steps (a lower bound of lambda_max).

    The products use pyfaid's CSR kernel (``torch.ops.pyfaid.cheb_spmm``), in float64.
    """
    from pyfaid._ext import ops  # the compiled ops (lazy: building a Laplacian needs no import cycle)

    device = off.device
    idx = torch.arange(n, device=device)
    r, c = torch.cat([rows, idx]), torch.cat([cols, idx])
    order = torch.argsort(r * n + c)
    col = c[order].contiguous()
    val = torch.cat([off, diag])[order].contiguous()
    crow = torch.zeros(n + 1, dtype=torch.int64, device=device)
    crow[1:] = torch.cumsum(torch.bincount(r, minlength=n), 0)
    gen = torch.Generator().manual_seed(0)  # deterministic: the same mesh gives the same Laplacian
    v = torch.rand(n, 1, generator=gen, dtype=torch.float64).to(device) + 0.5
    v[1::2] *= -1  # start far from the eigenvector D^1/2 1 of eigenvalue 0
    v = v / v.norm()
    for _ in range(iters):  # the CSR is valid by construction: no per-product check
        w = ops.cheb_spmm(crow, col, val, v, check_laplacian=False)
        v = w / w.norm().clamp_min(1e-300)  # stays 0 when L v = 0 (no edges)
    return float((v * ops.cheb_spmm(crow, col, val, v, check_laplacian=False)).sum())


def _estimate_lambda_max(rows, cols, off, diag, n, iters: int) -> float:
    theta = _power_iteration(rows, cols, off, diag, n, iters)
    if theta <= 0.0:
        return 2.0
    return min(2.0, theta * (1.0 + LAMBDA_MAX_MARGIN))


def laplacian_lambda_max(tri: torch.Tensor, num_vertices: int, iters: int = 300) -> float:
    """Estimate of the largest eigenvalue of the mesh's normalised Laplacian ``L``.

    Power iteration on ``L`` (positive semi-definite, spectrum in ``[0, 2]``) from a fixed start
    vector, so the result is deterministic. Its Rayleigh quotient approaches lambda_max from below;
    the estimate is raised by ``LAMBDA_MAX_MARGIN`` (1 %) and capped at 2, the bound every
    normalised Laplacian satisfies. A slight overestimate only shrinks the spectrum of ``L~`` inside
    ``[-1, 1]``, which is safe for the Chebyshev recurrence; an underestimate would let it leave that
    interval. A mesh without edges (``L = 0``) gets 2.

    Args:
        tri: ``[F, 3]`` integer triangle indices.
        num_vertices: number of vertices ``N``.
        iters: power-iteration steps.

    Returns:
        lambda_max as a Python float in ``(0, 2]``.
    """
    tri, num_vertices = _check_mesh(tri, num_vertices)
    rows, cols = _adjacency(tri, num_vertices)
    off, diag = _normalized_laplacian(rows, cols, num_vertices, tri.device)
    return _estimate_lambda_max(rows, cols, off, diag, num_vertices, iters)


def scaled_laplacian(tri: torch.Tensor, num_vertices: int, lambda_max: float | None = None,
                     dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Scaled normalised Laplacian ``L~ = 2 L / lambda_max - I`` of a triangle mesh, as CSR.

    ``L = I - D^-1/2 A D^-1/2`` with ``A`` the symmetric 0/1 adjacency of the triangle edges (no self
    loops, duplicate edges counted once). An isolated vertex (degree 0, e.g. unused by ``tri``) has
    a zero row in ``L`` (Chung's convention), so its row of ``L~`` is ``-e_i``: finite, and the
    Chebyshev filters act on it as ``T_k(-1) = (-1)^k``. The result is symmetric, has sorted column
    indices (diagonal included) and int64 indices; it lives on ``tri``'s device.

    Args:
        tri: ``[F, 3]`` integer vertex indices of the triangles, in ``[0, num_vertices)``.
        num_vertices: number of vertices ``N`` (vertices no triangle uses are allowed).
        lambda_max: largest eigenvalue of ``L`` used for scaling; ``None`` estimates it with
            :func:`laplacian_lambda_max` (power iteration, 1 % over, capped at 2). Pass ``2.0`` to
            match PyTorch Geometric's ``ChebConv`` default for ``normalization='sym'``.
        dtype: value dtype (float32 or float64); computed in float64 either way.

    Returns:
        ``torch.sparse_csr_tensor`` of shape ``[N, N]``.

    Raises:
        IndexError: ``tri`` references a vertex outside ``[0, num_vertices)``.
        ValueError: bad shapes, or ``lambda_max`` not a finite positive number.
    """
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"scaled_laplacian: `dtype` must be torch.float32 or torch.float64, got {dtype}")
    tri, n = _check_mesh(tri, num_vertices)
    rows, cols = _adjacency(tri, n)
    off, diag = _normalized_laplacian(rows, cols, n, tri.device)
    if lambda_max is None:
        lam = _estimate_lambda_max(rows, cols, off, diag, n, 300)
    else:
        lam = float(lambda_max)
        if not math.isfinite(lam) or lam <= 0.0:
            raise ValueError(f"scaled_laplacian: `lambda_max` must be a finite number > 0, got {lambda_max!r}")
    # L~ = 2 L / lam - I: off-diagonal 2 L_ij / lam, diagonal 2 L_ii / lam - 1.
    idx = torch.arange(n, device=tri.device)
    all_rows = torch.cat([rows, idx])
    all_cols = torch.cat([cols, idx])
    vals = torch.cat([off * (2.0 / lam), diag * (2.0 / lam) - 1.0])
    order = torch.argsort(all_rows * n + all_cols)
    all_rows, all_cols, vals = all_rows[order], all_cols[order], vals[order]
    crow = torch.zeros(n + 1, dtype=torch.int64, device=tri.device)
    crow[1:] = torch.cumsum(torch.bincount(all_rows, minlength=n), 0)
    if not bool(torch.isfinite(vals).all()):  # cannot happen for a finite lam > 0; kept as a guard
        raise ValueError("scaled_laplacian: non-finite Laplacian values")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Sparse CSR tensor support is in beta.*")
        return torch.sparse_csr_tensor(crow, all_cols, vals.to(dtype), size=(n, n),
                                       check_invariants=False)
