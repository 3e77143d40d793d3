"""Scaled normalised Laplacian of a triangle mesh: a :class:`Laplacian` or a sparse CSR matrix.

The Chebyshev graph convolution (:func:`pyfaid.graph.cheb_conv`) filters vertex signals with
polynomials of ``L~ = 2 L / lambda_max - I``, where ``L = I - D^-1/2 A D^-1/2`` is the symmetric
normalised Laplacian of the mesh graph (``A``: 0/1 adjacency of the triangle edges, symmetric, no
self loops; ``D``: vertex degrees). Build it once per mesh and reuse it.

:meth:`Laplacian.of_mesh` is the recommended form: its CSR arrays are checked once, when it is
built, and the kernels then skip their per-call checks (on CUDA a device-to-host synchronisation).
:func:`scaled_laplacian` returns the same matrix as a ``torch.sparse_csr_tensor``, which the kernels
accept too and check on every call.
"""

from __future__ import annotations

import math
import operator
import warnings

import torch

from pyfaid._ext import (
    ops,  # the compiled ops (lazy: building a Laplacian needs no import cycle)
)

__all__ = ["Laplacian", "scaled_laplacian", "laplacian_lambda_max"]

#: Relative margin added to the power-iteration estimate of lambda_max (see laplacian_lambda_max).
LAMBDA_MAX_MARGIN = 0.01


def _check_mesh(tri: torch.Tensor, num_vertices: int,
                what: str = "scaled_laplacian") -> tuple[torch.Tensor, int]:
    """Validated (int64 triangles, N); messages start with ``what``."""
    try:
        n = operator.index(num_vertices)  # int, numpy integer, 0-d integer tensor
    except TypeError:
        n = None
    if n is None or isinstance(num_vertices, bool) or n < 1:
        raise ValueError(f"{what}: `num_vertices` must be a positive int, got {num_vertices!r}")
    num_vertices = n
    tri = torch.as_tensor(tri)
    if tri.is_floating_point() or tri.is_complex() or tri.dtype == torch.bool:
        raise TypeError(f"{what}: `tri` must be an integer tensor, got {tri.dtype}")
    if tri.dim() != 2 or tri.shape[1] != 3:
        raise ValueError(f"{what}: `tri` must be [F, 3], got shape {tuple(tri.shape)}")
    if tri.numel() > 0:
        lo, hi = int(tri.min()), int(tri.max())
        if lo < 0 or hi >= num_vertices:
            raise IndexError(
                f"{what}: `tri` has vertex indices in [{lo}, {hi}], outside [0, {num_vertices - 1}] "
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


def _scaled_laplacian_csr(tri, num_vertices: int, lambda_max: float | None, what: str):
    """(crow int64 [N+1], col int64 [nnz], val float64 [nnz], lambda_max) of L~ on tri's device."""
    tri, n = _check_mesh(tri, num_vertices, what)
    rows, cols = _adjacency(tri, n)
    off, diag = _normalized_laplacian(rows, cols, n, tri.device)
    if lambda_max is None:
        lam = _estimate_lambda_max(rows, cols, off, diag, n, 300)
    else:
        lam = float(lambda_max)
        if not math.isfinite(lam) or lam <= 0.0:
            raise ValueError(f"{what}: `lambda_max` must be a finite number > 0, got {lambda_max!r}")
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
        raise ValueError(f"{what}: non-finite Laplacian values")
    return crow, all_cols.contiguous(), vals.contiguous(), lam


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
        ``torch.sparse_csr_tensor`` of shape ``[N, N]``. :meth:`Laplacian.of_mesh` builds the same
        matrix as a :class:`Laplacian` (checked once; the recommended input of the kernels).

    Raises:
        IndexError: ``tri`` references a vertex outside ``[0, num_vertices)``.
        ValueError: bad shapes, or ``lambda_max`` not a finite positive number.
    """
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"scaled_laplacian: `dtype` must be torch.float32 or torch.float64, got {dtype}")
    crow, col, val, _ = _scaled_laplacian_csr(tri, num_vertices, lambda_max, "scaled_laplacian")
    return _sparse_csr(crow, col, val.to(dtype))


def _sparse_csr(crow: torch.Tensor, col: torch.Tensor, val: torch.Tensor) -> torch.Tensor:
    n = crow.numel() - 1
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Sparse CSR tensor support is in beta.*")
        return torch.sparse_csr_tensor(crow, col, val, size=(n, n), check_invariants=False)


def _device_key(device) -> torch.device:
    """``device`` as a cache key: ``cuda`` means the current CUDA device."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device


class Laplacian:
    """A scaled mesh Laplacian ``L~`` (``[N, N]``, CSR), validated once, for the Chebyshev kernels.

    The CSR arrays are checked when the object is built, on the CPU: ``crow`` (``[N + 1]``) starts
    at 0, ends at ``nnz`` and never decreases, every ``col`` index (``[nnz]``) lies in ``[0, N)``,
    every value (``[nnz]``) is finite, and the matrix is symmetric up to rounding (the backward
    passes use ``L~`` as its own adjoint). :func:`~pyfaid.graph.cheb_conv`,
    :func:`~pyfaid.graph.laplacian_mm`, :class:`~pyfaid.graph.ChebConv` and
    :class:`~pyfaid.graph.ChebResBlock` then pass ``check_laplacian=False`` to the ops, which skip
    their per-call checks of the CSR content (on CUDA a device-to-host synchronisation).

    The object need not be moved to a device: the kernels take its arrays on the input's device in
    the input's dtype (:meth:`parts`), copied once and cached. Values are kept in float64, so the
    float32 and float64 copies are both rounded once from the same numbers. The arrays must not be
    modified after construction (the checks are not repeated).

    Args:
        crow: ``[N + 1]`` integer row pointers.
        col: ``[nnz]`` integer column indices.
        val: ``[nnz]`` floating-point values.
        lambda_max: the ``lambda_max`` the matrix was scaled with, when known (kept for reference).

    Raises:
        TypeError / ValueError naming the array and the problem.
    """

    def __init__(self, crow: torch.Tensor, col: torch.Tensor, val: torch.Tensor,
                 lambda_max: float | None = None):
        for t, name in ((crow, "crow"), (col, "col"), (val, "val")):
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"Laplacian: `{name}` must be a torch.Tensor, got "
                                f"{type(t).__name__}")
            if t.dim() != 1:
                raise ValueError(f"Laplacian: `{name}` must be 1-D, got shape {tuple(t.shape)}")
        for t, name in ((crow, "crow"), (col, "col")):
            if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
                raise TypeError(f"Laplacian: `{name}` must hold integer indices, got {t.dtype}")
        if not val.dtype.is_floating_point:
            raise TypeError(f"Laplacian: `val` must be floating point, got {val.dtype}")
        if crow.numel() < 2:
            raise ValueError(f"Laplacian: `crow` must have N + 1 >= 2 entries, got {crow.numel()}")
        if col.numel() != val.numel():
            raise ValueError(f"Laplacian: `col` and `val` must have the same length, got "
                             f"{col.numel()} and {val.numel()}")
        n, nnz = crow.numel() - 1, col.numel()
        crow_c = crow.detach().to("cpu", torch.int64).contiguous()
        col_c = col.detach().to("cpu", torch.int64).contiguous()
        val_c = val.detach().to("cpu", torch.float64).contiguous()
        if int(crow_c[0]) != 0 or int(crow_c[-1]) != nnz:
            raise ValueError(f"Laplacian: `crow` must start at 0 and end at nnz = {nnz} (the length "
                             f"of `col`), got {int(crow_c[0])} and {int(crow_c[-1])}")
        steps = crow_c[1:] - crow_c[:-1]
        if bool((steps < 0).any()):
            i = int(torch.nonzero(steps < 0)[0])
            raise ValueError(f"Laplacian: `crow` must be non-decreasing, but crow[{i}] = "
                             f"{int(crow_c[i])} > crow[{i + 1}] = {int(crow_c[i + 1])}")
        if nnz and (int(col_c.min()) < 0 or int(col_c.max()) >= n):
            raise ValueError(f"Laplacian: `col` holds indices in [{int(col_c.min())}, "
                             f"{int(col_c.max())}], outside [0, {n}) for N = {n} vertices")
        if not bool(torch.isfinite(val_c).all()):
            raise ValueError("Laplacian: `val` has non-finite entries")
        rows = torch.repeat_interleave(torch.arange(n), steps)
        # L~ - L~^T as one coalesced COO matrix (duplicates summed, explicit zeros allowed); its
        # indices were checked above.
        index = torch.stack([torch.cat([rows, col_c]), torch.cat([col_c, rows])])
        diff = torch.sparse_coo_tensor(index, torch.cat([val_c, -val_c]), (n, n),
                                       check_invariants=False).coalesce().values()
        scale = float(val_c.abs().max()) if nnz else 0.0
        if diff.numel() and float(diff.abs().max()) > 1e-6 * max(scale, 1.0):
            raise ValueError(f"Laplacian: the matrix must be symmetric (the backward pass uses it as "
                             f"its own adjoint); max |L - L^T| = {float(diff.abs().max()):.3g}")
        self.num_vertices = n
        self.lambda_max = None if lambda_max is None else float(lambda_max)
        self._crow, self._col, self._val = crow_c, col_c, val_c  # validated CPU master copy
        self._index: dict = {}   # device -> (crow, col), int64
        self._values: dict = {}  # (device, dtype) -> val

    @classmethod
    def of_mesh(cls, tri: torch.Tensor, num_vertices: int,
                lambda_max: float | None = None) -> "Laplacian":
        """The scaled Laplacian of a triangle mesh (the matrix of :func:`scaled_laplacian`).

        Args:
            tri: ``[F, 3]`` integer vertex indices of the triangles, in ``[0, num_vertices)``.
            num_vertices: number of vertices ``N`` (vertices no triangle uses are allowed).
            lambda_max: largest eigenvalue of ``L`` used for scaling; ``None`` estimates it with
                :func:`laplacian_lambda_max`.

        Returns:
            A :class:`Laplacian` of ``N`` vertices.

        Raises:
            IndexError / TypeError / ValueError as :func:`scaled_laplacian`.
        """
        crow, col, val, lam = _scaled_laplacian_csr(tri, num_vertices, lambda_max,
                                                    "Laplacian.of_mesh")
        return cls(crow, col, val, lambda_max=lam)

    @classmethod
    def from_csr(cls, lap: torch.Tensor) -> "Laplacian":
        """A :class:`Laplacian` from a square ``torch.sparse_csr_tensor`` (as :func:`scaled_laplacian`
        returns)."""
        if not isinstance(lap, torch.Tensor) or lap.layout != torch.sparse_csr:
            raise TypeError("Laplacian.from_csr: `lap` must be a sparse CSR tensor, got "
                            f"{getattr(lap, 'layout', type(lap).__name__)}")
        if lap.dim() != 2 or lap.shape[0] != lap.shape[1]:
            raise ValueError(f"Laplacian.from_csr: `lap` must be square [N, N], got shape "
                             f"{tuple(lap.shape)}")
        return cls(lap.crow_indices(), lap.col_indices(), lap.values())

    @property
    def nnz(self) -> int:
        return self._col.numel()

    def parts(self, device, dtype: torch.dtype = torch.float32):
        """``(crow [N + 1] int64, col [nnz] int64, val [nnz] dtype)`` on ``device`` (cached).

        The first call for a device (and dtype) copies the arrays there; later calls return the
        same tensors, without any synchronisation.
        """
        device = _device_key(device)
        if dtype not in (torch.float32, torch.float64):
            raise TypeError(f"Laplacian: `dtype` must be torch.float32 or torch.float64, got {dtype}")
        index = self._index.get(device)
        if index is None:
            index = self._index[device] = (self._crow.to(device), self._col.to(device))
        val = self._values.get((device, dtype))
        if val is None:
            val = self._values[device, dtype] = self._val.to(dtype).to(device)
        return index[0], index[1], val

    def to_sparse_csr(self, device="cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The matrix as a ``torch.sparse_csr_tensor`` ``[N, N]`` on ``device`` in ``dtype``."""
        return _sparse_csr(*self.parts(device, dtype))

    def __repr__(self) -> str:
        lam = "" if self.lambda_max is None else f", lambda_max={self.lambda_max:.6g}"
        return f"Laplacian(N={self.num_vertices}, nnz={self.nnz}{lam})"
