"""Chebyshev graph convolution on a face-sized mesh: pyfaid vs PyTorch Geometric vs torch.sparse.

Mesh: a regular triangulated 189 x 189 vertex grid cut to N = 35,709 vertices (the size of a face
model), scaled Laplacian with lambda_max from pyfaid.graph.laplacian_lambda_max (passed to every
implementation). pyfaid gets it as a ``pyfaid.graph.Laplacian`` (checked once: the recommended
input), the torch.sparse peer as the CSR tensor. Cases: K in {3, 6}, Fin -> Fout in {3->16,
64->64, 256->256}, batch in {1, 16}; benches ``cheb_fwd`` (forward) and ``cheb_fwd_bwd`` (forward +
backward to x, W, b).

Peers, in the same run:
  * ``pyg``: ``torch_geometric.nn.ChebConv(normalization='sym')`` with the same weights and
    lambda_max. Batches are given to it as ``x [B, N, F]`` with the single mesh ``edge_index``
    (PyG's node_dim broadcasting, impl ``pyg_batched``) when its per-edge message tensor
    ``[B, E, F]`` stays under 1 GiB, otherwise as a Python loop over the batch (``pyg_loop``).
    It rebuilds its normalised edge weights from edge_index on every call, as PyG does.
  * ``torch_sparse_mm``: the same K-term recurrence in eager PyTorch with ``torch.sparse.mm`` on
    the CSR Laplacian, features in the [N, B*F] layout, dense GEMMs per term, autograd backward.

``quick=True`` runs only the target case (K=6, 64->64, batch 16), one product width and the copy.

Bandwidth (``cheb_spmm`` rows): one sparse product ``L~ X`` at width C = B*F, for pyfaid's kernel
(``torch.ops.pyfaid.cheb_spmm`` on the Laplacian object's arrays, ``check_laplacian=False``) and
``torch.sparse.mm``; ``gbps`` counts the CSR arrays plus one
read of X and one write of the output (ideal traffic: each neighbour row read once) over the time.
The ``memcpy`` row copies a 256 MiB tensor (read + write) as the machine's reference bandwidth.
"""

from __future__ import annotations

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402

from pyfaid._ext import ops  # noqa: E402
from pyfaid.graph import Laplacian, cheb_conv, laplacian_lambda_max, scaled_laplacian  # noqa: E402

N_FACE = 35709
PYG_BATCH_BYTES = 1 << 30


def face_sized_mesh(n: int = N_FACE, side: int = 189) -> torch.Tensor:
    """[F, 3] int64 triangles of a side x side grid, keeping triangles whose vertices are < n."""
    idx = torch.arange(side * side).view(side, side)
    a, b = idx[:-1, :-1].reshape(-1), idx[:-1, 1:].reshape(-1)
    c, d = idx[1:, :-1].reshape(-1), idx[1:, 1:].reshape(-1)
    tri = torch.cat([torch.stack([a, b, c], 1), torch.stack([b, d, c], 1)])
    return tri[(tri < n).all(1)]


def torch_sparse_cheb(x, L, weight, bias):
    """sum_k T_k(L) x W_k + b with torch.sparse.mm, features node-major [N, B*F]."""
    B, N, Fin = x.shape
    K, _, Fout = weight.shape
    X = x.transpose(0, 1).reshape(N, B * Fin)
    out = X.view(N * B, Fin) @ weight[0]
    t0, t1 = X, None
    if K > 1:
        t1 = torch.sparse.mm(L, X)
        out = out + t1.view(N * B, Fin) @ weight[1]
    for k in range(2, K):
        t2 = 2 * torch.sparse.mm(L, t1) - t0
        out = out + t2.view(N * B, Fin) @ weight[k]
        t0, t1 = t1, t2
    out = out + bias
    return out.view(N, B, Fout).transpose(0, 1)


def _pyg_runner(pyg_conv, edge_index, lam, batched):
    def fwd(x):
        if batched:
            return pyg_conv(x, edge_index, lambda_max=lam)
        return torch.stack([pyg_conv(xi, edge_index, lambda_max=lam) for xi in x])
    return fwd


def run(device: str, quick: bool) -> list[dict]:
    dev = torch.device(device)
    rows: list[dict] = []
    tri = face_sized_mesh()
    n = N_FACE
    lam = laplacian_lambda_max(tri, n)
    lap = scaled_laplacian(tri, n, lambda_max=lam).to(dev)  # CSR, for torch.sparse
    lap_obj = Laplacian.of_mesh(tri, n, lambda_max=lam)   # pyfaid's input, checked once
    crow, col, val = lap_obj.parts(dev, torch.float32)
    nnz = col.numel()
    e = torch.cat([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]])
    edge_index = torch.unique(torch.cat([e, e.flip(1)]), dim=0).t().contiguous().to(dev)
    n_edges_pyg = edge_index.shape[1] + n  # PyG adds one self loop per vertex
    iters = 2 if quick else 10  # quick: 1 warm-up + 2 timed calls per row
    max_s = 8.0 if quick else 20.0

    # ---- reference bandwidth: large copy (read + write) ----
    src = torch.empty(64 << 20, device=dev).uniform_()
    dst = torch.empty_like(src)
    ms = common.time_ms(lambda: dst.copy_(src), dev, warmup=1, iters=iters)
    mem_gbps = 2 * src.numel() * 4 / ms / 1e6
    rows.append(common.row("memcpy", "256MiB copy", "torch", ms, gbps=round(mem_gbps, 1)))
    del src, dst

    # ---- sparse part alone: one product at width C ----
    csr_bytes = (n + 1) * 8 + nnz * 8 + nnz * 4
    for C in ([1024] if quick else [3, 16, 64, 1024, 4096]):
        X = torch.randn(n, C, device=dev)
        moved = csr_bytes + 2 * n * C * 4
        for impl, fn in [("pyfaid", lambda: ops.cheb_spmm(crow, col, val, X, check_laplacian=False)),
                         ("torch_sparse_mm", lambda: torch.sparse.mm(lap, X))]:
            ms = common.time_ms(fn, dev, warmup=1, iters=iters * 2, max_seconds=max_s)
            gb = moved / ms / 1e6
            rows.append(common.row("cheb_spmm", f"N={n} C={C}", impl, ms, gbps=round(gb, 1),
                                   frac_of_memcpy=round(gb / mem_gbps, 2)))
        del X

    # ---- full convolution ----
    if quick:
        cases = [(6, 64, 64, 16)]  # the target case
    else:
        cases = [(K, fi, fo, B) for K in (3, 6) for fi, fo in ((3, 16), (64, 64), (256, 256))
                 for B in (1, 16)]
    from torch_geometric.nn import ChebConv as PygChebConv

    for K, fin, fout, B in cases:
        case = f"N={n} K={K} {fin}->{fout} B={B}"
        w = (torch.randn(K, fin, fout, device=dev) / fin ** 0.5).requires_grad_()
        b = torch.randn(fout, device=dev).requires_grad_()
        x = torch.randn(B, n, fin, device=dev).requires_grad_()
        pyg = PygChebConv(fin, fout, K, normalization="sym").to(dev)
        with torch.no_grad():
            for k in range(K):
                pyg.lins[k].weight.copy_(w[k].t())
            pyg.bias.copy_(b)
        batched = B * n_edges_pyg * fin * 4 <= PYG_BATCH_BYTES
        pyg_fwd = _pyg_runner(pyg, edge_index, lam, batched)
        impls = [
            ("pyfaid", lambda: cheb_conv(x, lap_obj, w, b)),
            ("pyg_batched" if batched else "pyg_loop", lambda: pyg_fwd(x)),
            ("torch_sparse_mm", lambda: torch_sparse_cheb(x, lap, w, b)),
        ]
        g = torch.randn(B, n, fout, device=dev)
        for impl, fn in impls:
            with torch.no_grad():
                ms = common.time_ms(fn, dev, warmup=1, iters=iters, max_seconds=max_s)
            rows.append(common.row("cheb_fwd", case, impl, ms, per_image_ms=round(ms / B, 3)))

            def fwd_bwd(fn=fn):
                x.grad = w.grad = b.grad = None
                pyg.zero_grad(set_to_none=True)
                fn().backward(g)

            ms = common.time_ms(fwd_bwd, dev, warmup=1, iters=iters, max_seconds=max_s)
            rows.append(common.row("cheb_fwd_bwd", case, impl, ms, per_image_ms=round(ms / B, 3)))
        del x, w, b, g, pyg
    rows += _hierarchy_rows(dev, iters, max_s)
    return common.add_speedups(rows)


def _hierarchy_rows(dev, iters: int, max_s: float) -> list[dict]:
    """The refiners' other per-level ops at the default model's sizes, forward + backward: the
    up-map 8,634 -> 34,521 vertices (3 weighted sources each) as pyfaid's sparse ``LevelMap``
    against the plain gather (``gather_mean``), and pyfaid's ``elu`` against ATen's."""
    from pyfaid.facemodel.hierarchy import LevelMap, gather_mean
    from pyfaid.graph import elu

    rows = []
    g = torch.Generator().manual_seed(0)
    n_fine, n_coarse, B, C = 34521, 8634, 4, 16
    idx = torch.randint(0, n_coarse, (n_fine, 3), generator=g)
    wts = torch.rand(n_fine, 3, generator=g)
    wts = wts / wts.sum(1, keepdim=True)
    lmap, idx_d, w_d = LevelMap(idx, wts, n_coarse), idx.to(dev), wts.to(dev)
    x = torch.randn(B, n_coarse, C, device=dev, requires_grad=True)
    gy = torch.randn(B, n_fine, C, device=dev)
    case = f"up {n_coarse}->{n_fine} k=3 B={B} C={C}"
    for impl, fn in (("pyfaid", lambda: lmap(x)), ("torch_gather", lambda: gather_mean(x, idx_d, w_d))):
        def fwd_bwd(fn=fn):
            x.grad = None
            fn().backward(gy)
        rows.append(common.row("level_map_fwd_bwd", case, impl,
                               common.time_ms(fwd_bwd, dev, warmup=1, iters=iters * 2, max_seconds=max_s)))
    h = torch.randn(B, n_coarse, C, device=dev, requires_grad=True)
    gh = torch.randn_like(h)
    for impl, fn in (("pyfaid", lambda: elu(h)), ("torch_elu", lambda: torch.nn.functional.elu(h))):
        def fwd_bwd(fn=fn):
            h.grad = None
            fn().backward(gh)
        rows.append(common.row("elu_fwd_bwd", f"[{B}, {n_coarse}, {C}]", impl,
                               common.time_ms(fwd_bwd, dev, warmup=1, iters=iters * 2, max_seconds=max_s)))
    return rows


if __name__ == "__main__":
    common.main(run)
