"""Tests of the mesh Laplacian and the Chebyshev graph convolution (pyfaid.graph)."""

import pytest
import torch

from conftest import requires_cuda
from pyfaid._ext import ops
from pyfaid.graph import (ChebConv, ChebResBlock, Laplacian, cheb_conv, laplacian_lambda_max,
                          laplacian_mm, scaled_laplacian)


# ---- plain-PyTorch references ------------------------------------------------------------------

def grid_mesh(h: int, w: int) -> torch.Tensor:
    """[F, 3] int32 triangles of a regular h x w vertex grid (two triangles per cell)."""
    idx = torch.arange(h * w).view(h, w)
    a, b = idx[:-1, :-1].reshape(-1), idx[:-1, 1:].reshape(-1)
    c, d = idx[1:, :-1].reshape(-1), idx[1:, 1:].reshape(-1)
    return torch.cat([torch.stack([a, b, c], 1), torch.stack([b, d, c], 1)]).to(torch.int32)


def dense_scaled_laplacian(tri: torch.Tensor, n: int, lam: float) -> torch.Tensor:
    """Dense float64 L~ = 2 L / lam - I, L = I - D^-1/2 A D^-1/2 (isolated vertices: L row 0)."""
    A = torch.zeros(n, n, dtype=torch.float64)
    for t in tri.tolist():
        for i, j in ((t[0], t[1]), (t[1], t[2]), (t[2], t[0])):
            if i != j:
                A[i, j] = A[j, i] = 1.0
    deg = A.sum(1)
    dinv = torch.where(deg > 0, deg.clamp(min=1).rsqrt(), torch.zeros_like(deg))
    L = torch.diag((deg > 0).double()) - dinv[:, None] * A * dinv[None, :]
    return 2.0 * L / lam - torch.eye(n, dtype=torch.float64)


def reference_cheb_conv(x, Ld, weight, bias=None):
    """sum_k T_k(L~) x W_k + b with dense T_k built by matrix products."""
    n = Ld.shape[0]
    T = [torch.eye(n, dtype=x.dtype, device=x.device), Ld.to(x)]
    while len(T) < weight.shape[0]:
        T.append(2 * Ld.to(x) @ T[-1] - T[-2])
    out = sum(T[k] @ x @ weight[k] for k in range(weight.shape[0]))
    return out if bias is None else out + bias


def small_mesh():
    """A 4 x 3 grid plus a degenerate triangle and one isolated vertex (index 12): N = 13."""
    tri = torch.cat([grid_mesh(4, 3), torch.tensor([[0, 0, 1]], dtype=torch.int32)])
    return tri, 13


# ---- Laplacian -------------------------------------------------------------------------------

def test_laplacian_matches_dense():
    tri, n = small_mesh()
    lap = scaled_laplacian(tri, n, lambda_max=1.7)
    assert lap.layout == torch.sparse_csr and lap.shape == (n, n) and lap.dtype == torch.float32
    assert lap.crow_indices().dtype == torch.int64 and lap.col_indices().dtype == torch.int64
    crow, col = lap.crow_indices(), lap.col_indices()
    for i in range(n):  # sorted, unique column indices per row
        c = col[crow[i]:crow[i + 1]]
        assert torch.all(c[1:] > c[:-1])
    ref = dense_scaled_laplacian(tri, n, 1.7)
    torch.testing.assert_close(lap.to_dense().double(), ref, atol=1e-6, rtol=1e-6)
    assert lap.to_dense()[12, 12] == -1.0 and lap.to_dense()[12].abs().sum() == 1.0  # isolated
    lap64 = scaled_laplacian(tri, n, lambda_max=1.7, dtype=torch.float64)
    torch.testing.assert_close(lap64.to_dense(), ref)


def test_lambda_max_estimate_bounds_the_spectrum():
    tri = grid_mesh(9, 8)
    n = 72
    true = torch.linalg.eigvalsh(torch.eye(n, dtype=torch.float64) + dense_scaled_laplacian(tri, n, 2.0)).max()
    est = laplacian_lambda_max(tri, n)
    assert float(true) <= est <= min(2.0, float(true) * 1.02)
    lap = scaled_laplacian(tri, n)  # estimated: spectrum of L~ inside [-1, 1]
    ev = torch.linalg.eigvalsh(lap.to_dense().double())
    assert ev.min() >= -1 - 1e-6 and ev.max() <= 1 + 1e-6
    torch.testing.assert_close(lap.to_dense().double(), dense_scaled_laplacian(tri, n, est), atol=1e-6, rtol=1e-6)


def test_laplacian_without_edges_is_minus_identity():
    lap = scaled_laplacian(torch.zeros(0, 3, dtype=torch.int64), 4)
    torch.testing.assert_close(lap.to_dense(), -torch.eye(4))


def test_laplacian_bad_inputs():
    tri, n = small_mesh()
    with pytest.raises(IndexError, match="tri"):
        scaled_laplacian(tri, 5)
    with pytest.raises(IndexError, match="tri"):
        scaled_laplacian(torch.tensor([[0, 1, -1]]), 5)
    with pytest.raises(ValueError, match="tri"):
        scaled_laplacian(tri[:, :2], n)
    with pytest.raises(TypeError, match="tri"):
        scaled_laplacian(tri.float(), n)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="lambda_max"):
            scaled_laplacian(tri, n, lambda_max=bad)
    for bad_n in (0, 2.5, True):
        with pytest.raises(ValueError, match="num_vertices"):
            scaled_laplacian(tri, bad_n)


# ---- Laplacian object (checked once) ------------------------------------------------------------

def test_laplacian_object_matches_csr():
    tri, n = small_mesh()
    lap = Laplacian.of_mesh(tri, n, lambda_max=1.7)
    assert lap.num_vertices == n and lap.lambda_max == 1.7 and repr(lap).startswith("Laplacian(N=13")
    for dtype in (torch.float32, torch.float64):
        csr = scaled_laplacian(tri, n, lambda_max=1.7, dtype=dtype)
        crow, col, val = lap.parts("cpu", dtype)
        assert torch.equal(crow, csr.crow_indices()) and torch.equal(col, csr.col_indices())
        assert val.dtype == dtype and torch.equal(val, csr.values())
        assert torch.equal(lap.to_sparse_csr("cpu", dtype).to_dense(), csr.to_dense())
    assert lap.parts("cpu")[2] is lap.parts(torch.device("cpu"))[2]  # cached: no second copy
    est = Laplacian.of_mesh(tri, n)  # lambda_max estimated as scaled_laplacian does
    assert est.lambda_max == laplacian_lambda_max(tri, n)
    assert torch.equal(est.to_sparse_csr().to_dense(), scaled_laplacian(tri, n).to_dense())
    back = Laplacian.from_csr(scaled_laplacian(tri, n, lambda_max=1.7))
    assert torch.equal(back.parts("cpu")[2], lap.parts("cpu")[2])


def _csr_arrays():
    tri, n = small_mesh()
    csr = scaled_laplacian(tri, n, dtype=torch.float64)
    return csr.crow_indices().clone(), csr.col_indices().clone(), csr.values().clone(), n


def test_laplacian_object_validation_errors():
    crow, col, val, n = _csr_arrays()
    Laplacian(crow, col, val)  # valid
    with pytest.raises(TypeError, match="`crow` must be a torch.Tensor"):
        Laplacian(crow.tolist(), col, val)
    with pytest.raises(ValueError, match="`col` must be 1-D"):
        Laplacian(crow, col[None], val)
    with pytest.raises(TypeError, match="`crow` must hold integer indices"):
        Laplacian(crow.double(), col, val)
    with pytest.raises(TypeError, match="`val` must be floating point"):
        Laplacian(crow, col, val.long())
    with pytest.raises(ValueError, match="`col` and `val` must have the same length"):
        Laplacian(crow, col, val[:-1])
    with pytest.raises(ValueError, match="`crow` must have N \\+ 1 >= 2 entries"):
        Laplacian(crow[:1], col, val)
    bad = crow.clone()
    bad[0] = 1
    with pytest.raises(ValueError, match="`crow` must start at 0 and end at nnz"):
        Laplacian(bad, col, val)
    bad = crow.clone()
    bad[3] = bad[4] + 1
    with pytest.raises(ValueError, match=r"`crow` must be non-decreasing, but crow\[3\]"):
        Laplacian(bad, col, val)
    for index in (n, -1):
        bad = col.clone()
        bad[5] = index
        with pytest.raises(ValueError, match="`col` holds indices in .* outside \\[0, 13\\)"):
            Laplacian(crow, bad, val)
    for value in (float("nan"), float("inf")):
        bad = val.clone()
        bad[2] = value
        with pytest.raises(ValueError, match="`val` has non-finite entries"):
            Laplacian(crow, col, bad)
    bad = val.clone()
    bad[1] += 0.25  # an off-diagonal entry without its mirror
    with pytest.raises(ValueError, match="must be symmetric"):
        Laplacian(crow, col, bad)
    with pytest.raises(TypeError, match="`lap` must be a sparse CSR tensor"):
        Laplacian.from_csr(torch.eye(3))
    with pytest.raises(IndexError, match="Laplacian.of_mesh: `tri`"):
        Laplacian.of_mesh(small_mesh()[0], 5)
    with pytest.raises(ValueError, match="Laplacian.of_mesh: `lambda_max`"):
        Laplacian.of_mesh(*small_mesh(), lambda_max=0.0)
    lap = Laplacian(crow, col, val)
    with pytest.raises(ValueError, match="N = 14 \\(vertices of `x`\\), got a Laplacian of N = 13"):
        cheb_conv(torch.randn(1, 14, 3), lap, torch.randn(2, 3, 3))
    with pytest.raises(TypeError, match="`x` must be float32 or float64"):
        laplacian_mm(lap, torch.randn(13, 2).half())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_laplacian_object_gives_csr_results(device, dtype):
    """cheb_conv and laplacian_mm, forward and gradients: the same bits as the CSR input."""
    tri, n = small_mesh()
    lap = Laplacian.of_mesh(tri, n)
    csr = scaled_laplacian(tri, n, dtype=dtype).to(device)
    x = torch.randn(3, n, 4, dtype=dtype, device=device)
    w = torch.randn(3, 4, 5, dtype=dtype, device=device)
    b = torch.randn(5, dtype=dtype, device=device)
    g = torch.randn(3, n, 5, dtype=dtype, device=device)
    results = []
    for L in (csr, lap):
        xs, ws, bs = (t.clone().requires_grad_(True) for t in (x, w, b))
        out = cheb_conv(xs, L, ws, bs)
        grads = torch.autograd.grad(out, (xs, ws, bs), g)
        mm = laplacian_mm(L, xs)
        (g_mm,) = torch.autograd.grad(mm, xs, torch.ones_like(mm))
        results.append((out.detach(), *grads, mm.detach(), g_mm, laplacian_mm(L, x[0])))
    for a, r in zip(*results):
        assert torch.equal(a, r)
    conv = ChebConv(4, 5, K=3).to(device, dtype)
    block = ChebResBlock(4, K=2).to(device, dtype)
    assert torch.equal(conv(x, lap), conv(x, csr)) and torch.equal(block(x, lap), block(x, csr))


def test_gradcheck_through_laplacian_object(device):
    tri, n = small_mesh()
    lap = Laplacian.of_mesh(tri, n)
    x = torch.randn(2, n, 3, dtype=torch.float64, device=device, requires_grad=True)
    w = torch.randn(3, 3, 4, dtype=torch.float64, device=device, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, device=device, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w, b: cheb_conv(x, lap, w, b), (x, w, b))
    assert torch.autograd.gradcheck(lambda x: laplacian_mm(lap, x), (x,))


def test_fine_model_laplacian_follows_the_input_device(device):
    """FineModel keeps a Laplacian (no buffer to move): its forward uses the input's device."""
    from pyfaid.models.fine import FineModel

    tri = grid_mesh(5, 4)
    mean = torch.randn(20, 3)
    model = FineModel(tri, mean, feat_dim=6, hidden=8, nodes=8, code=4, blocks=1).to(device)
    assert isinstance(model.lap, Laplacian) and "lap" not in dict(model.named_buffers())
    fine, residual = model(torch.rand(2, 20, 3, device=device), torch.randn(2, 6, device=device))
    assert fine.device.type == device.type and residual.shape == (2, 20, 3)


# ---- forward ---------------------------------------------------------------------------------

@pytest.mark.parametrize("K", [1, 2, 3, 5])
@pytest.mark.parametrize("fin,fout", [(3, 5), (6, 2), (4, 4)])
@pytest.mark.parametrize("B", [1, 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_forward_matches_reference(device, K, fin, fout, B, dtype):
    tri, n = small_mesh()
    lap = scaled_laplacian(tri, n, lambda_max=1.8, dtype=dtype).to(device)
    Ld = dense_scaled_laplacian(tri, n, 1.8)
    x = torch.randn(B, n, fin, dtype=dtype, device=device)
    w = torch.randn(K, fin, fout, dtype=dtype, device=device)
    b = torch.randn(fout, dtype=dtype, device=device)
    tol = dict(atol=1e-4, rtol=1e-4) if dtype == torch.float32 else dict(atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(cheb_conv(x, lap, w, b), reference_cheb_conv(x, Ld, w, b), **tol)
    torch.testing.assert_close(cheb_conv(x, lap, w), reference_cheb_conv(x, Ld, w), **tol)
    torch.testing.assert_close(cheb_conv(x[0], lap, w, b), reference_cheb_conv(x[0], Ld, w, b), **tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_forward_wide_features(device, dtype):
    """Feature widths beyond one CPU column tile / one CUDA column chunk."""
    tri = grid_mesh(4, 4)
    lap = scaled_laplacian(tri, 16, dtype=dtype).to(device)
    Ld = dense_scaled_laplacian(tri, 16, laplacian_lambda_max(tri, 16))
    x = torch.randn(3, 16, 230, dtype=dtype, device=device)
    w = torch.randn(4, 230, 230, dtype=dtype, device=device) / 15
    tol = dict(atol=1e-3, rtol=1e-3) if dtype == torch.float32 else dict(atol=1e-9, rtol=1e-9)
    torch.testing.assert_close(cheb_conv(x, lap, w), reference_cheb_conv(x, Ld, w), **tol)
    g = torch.randn(3, 16, 230, dtype=dtype, device=device)
    gx, gw, _ = ops.cheb_conv_backward(g, x, lap.crow_indices(), lap.col_indices(),
                                       lap.values().to(dtype), w, False)
    xr, wr = x.clone().requires_grad_(), w.clone().requires_grad_()
    reference_cheb_conv(xr, Ld, wr).backward(g)
    torch.testing.assert_close(gx, xr.grad, **tol)
    torch.testing.assert_close(gw, wr.grad, **tol)


# ---- gradients -------------------------------------------------------------------------------

@pytest.mark.parametrize("fin,fout", [(3, 4), (2, 7), (5, 2)])  # backward routes A, B; Clenshaw forward
@pytest.mark.parametrize("K", [1, 2, 4])
def test_gradcheck(device, fin, fout, K):
    tri, n = small_mesh()
    lap = scaled_laplacian(tri, n, dtype=torch.float64).to(device)
    x = torch.randn(2, n, fin, dtype=torch.float64, device=device, requires_grad=True)
    w = torch.randn(K, fin, fout, dtype=torch.float64, device=device, requires_grad=True)
    b = torch.randn(fout, dtype=torch.float64, device=device, requires_grad=True)
    # Full Jacobians once per route (K = 4); fast mode (random projections) for the rest.
    fast = K != 4
    assert torch.autograd.gradcheck(lambda x, w, b: cheb_conv(x, lap, w, b), (x, w, b), fast_mode=fast)
    assert torch.autograd.gradcheck(lambda x, w: cheb_conv(x[0], lap, w), (x, w), fast_mode=True)


def test_gradients_match_reference(device):
    tri, n = small_mesh()
    lap = scaled_laplacian(tri, n, lambda_max=1.9).to(device)
    Ld = dense_scaled_laplacian(tri, n, 1.9)
    for fin, fout in [(3, 4), (2, 7), (5, 2)]:
        x = torch.randn(2, n, fin, device=device, requires_grad=True)
        w = torch.randn(3, fin, fout, device=device, requires_grad=True)
        b = torch.randn(fout, device=device, requires_grad=True)
        g = torch.randn(2, n, fout, device=device)
        got = torch.autograd.grad(cheb_conv(x, lap, w, b), (x, w, b), g)
        ref = torch.autograd.grad(reference_cheb_conv(x, Ld, w, b), (x, w, b), g)
        for a, r in zip(got, ref):
            torch.testing.assert_close(a, r, atol=1e-4, rtol=1e-4)


def test_opcheck(device):
    tri, n = small_mesh()
    lap = scaled_laplacian(tri, n).to(device)
    crow, col, val = lap.crow_indices(), lap.col_indices(), lap.values()
    for (fin, fout, has_bias), kwargs in zip([(3, 4, True), (2, 7, False), (5, 2, True)],
                                             [{}, {"check_laplacian": False}, {"check_laplacian": True}]):
        x = torch.randn(2, n, fin, device=device, requires_grad=True)
        w = torch.randn(3, fin, fout, device=device, requires_grad=True)
        b = torch.randn(fout, device=device, requires_grad=True) if has_bias else None
        torch.library.opcheck(ops.cheb_conv.default, (x, crow, col, val, w, b), kwargs)
        g = torch.randn(2, n, fout, device=device)
        torch.library.opcheck(ops.cheb_conv_backward.default, (g, x.detach(), crow, col, val, w.detach(), has_bias),
                              kwargs)


# ---- CPU / CUDA parity -----------------------------------------------------------------------

@requires_cuda
@pytest.mark.parametrize("fin,fout,B", [(3, 16, 1), (16, 3, 4), (64, 64, 3), (40, 200, 2)])
def test_cuda_matches_cpu(fin, fout, B):
    tri = grid_mesh(15, 13)
    n = 15 * 13
    lap = scaled_laplacian(tri, n)
    x = torch.randn(B, n, fin)
    w = torch.randn(5, fin, fout) / fin ** 0.5
    b = torch.randn(fout)
    g = torch.randn(B, n, fout)
    xs = [t.clone().requires_grad_() for t in (x, x.cuda())]
    ws = [t.clone().requires_grad_() for t in (w, w.cuda())]
    bs = [t.clone().requires_grad_() for t in (b, b.cuda())]
    outs = []
    for i, (dev, L) in enumerate([("cpu", lap), ("cuda", lap.to("cuda"))]):
        out = cheb_conv(xs[i], L, ws[i], bs[i])
        out.backward(g.to(dev))
        outs.append(out)
    torch.testing.assert_close(outs[1].cpu(), outs[0], atol=1e-4, rtol=1e-4)
    for t in (xs, ws, bs):
        torch.testing.assert_close(t[1].grad.cpu(), t[0].grad, atol=1e-3, rtol=1e-4)


# ---- PyTorch Geometric peer -----------------------------------------------------------------

@pytest.mark.parametrize("B", [None, 3])
def test_matches_torch_geometric(device, B):
    pyg = pytest.importorskip("torch_geometric.nn")
    tri = grid_mesh(6, 5)
    n = 30
    lam = laplacian_lambda_max(tri, n)
    lap = scaled_laplacian(tri, n, lambda_max=lam).to(device)
    e = torch.cat([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]]).long()
    edge_index = torch.unique(torch.cat([e, e.flip(1)]), dim=0).t().contiguous().to(device)
    K, fin, fout = 4, 5, 6
    ours = ChebConv(fin, fout, K).to(device)
    with torch.no_grad():
        ours.bias.normal_()
    peer = pyg.ChebConv(fin, fout, K, normalization="sym").to(device)
    with torch.no_grad():
        for k in range(K):
            peer.lins[k].weight.copy_(ours.weight[k].t())
        peer.bias.copy_(ours.bias)
    shape = (n, fin) if B is None else (B, n, fin)
    x = torch.randn(shape, device=device)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    out = ours(x1, lap)
    ref = peer(x2, edge_index, lambda_max=lam)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)
    g = torch.randn_like(out)
    out.backward(g)
    ref.backward(g)
    torch.testing.assert_close(x1.grad, x2.grad, atol=1e-5, rtol=1e-4)
    for k in range(K):
        torch.testing.assert_close(ours.weight.grad[k], peer.lins[k].weight.grad.t(), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(ours.bias.grad, peer.bias.grad, atol=1e-4, rtol=1e-4)


# ---- modules ---------------------------------------------------------------------------------

def test_modules(device):
    tri, n = small_mesh()
    lap = scaled_laplacian(tri, n).to(device)
    conv = ChebConv(3, 8, K=3).to(device)
    x = torch.randn(2, n, 3, device=device)
    torch.testing.assert_close(conv(x, lap), cheb_conv(x, lap, conv.weight, conv.bias))
    assert conv.weight.shape == (3, 3, 8) and float(conv.weight.detach().abs().max()) <= (6 / 11) ** 0.5
    assert ChebConv(3, 8, K=2, bias=False).bias is None
    block = ChebResBlock(8, K=3).to(device)
    h = torch.randn(2, n, 8, device=device)
    Ld = dense_scaled_laplacian(tri, n, laplacian_lambda_max(tri, n)).to(device)
    act = torch.nn.functional.elu
    ref = act(h + reference_cheb_conv(act(reference_cheb_conv(h, Ld, block.conv1.weight, block.conv1.bias)),
                                      Ld, block.conv2.weight, block.conv2.bias))
    torch.testing.assert_close(block(h, lap), ref, atol=1e-4, rtol=1e-4)
    assert block(h[0], lap).shape == (n, 8)
    with pytest.raises(ValueError, match="K"):
        ChebConv(3, 8, K=0)
    with pytest.raises(ValueError, match="activation"):
        ChebResBlock(8, 2, activation="tanhh")


def test_elu_matches_torch(device):
    from pyfaid.graph import ELU, elu

    for dtype, tol in ((torch.float32, 1e-6), (torch.float64, 1e-12)):
        x = torch.cat([torch.randn(2, 300, 5, device=device, dtype=dtype) * 3,
                       torch.tensor([0.0, -0.0, 1e-8, -1e-8, -40.0, 40.0], device=device, dtype=dtype).view(1, 6, 1)
                       .expand(2, 6, 5)], 1).requires_grad_()
        ref = x.detach().clone().requires_grad_()
        g = torch.randn_like(x)
        y, yr = elu(x), torch.nn.functional.elu(ref)
        torch.testing.assert_close(y, yr, atol=tol, rtol=0)
        y.backward(g)
        yr.backward(g)
        torch.testing.assert_close(x.grad, ref.grad, atol=tol, rtol=tol)
    xd = torch.randn(4, 7, device=device, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(elu, (xd,))
    assert torch.equal(ELU()(xd.detach()), elu(xd.detach()))
    with pytest.raises(TypeError, match="floating"):
        elu(torch.arange(3, device=device))
    # the residual block's activation has no state: its state dict is the convolutions' alone
    assert set(ChebResBlock(4, 2).state_dict()) == {"conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias"}


# ---- bad inputs ------------------------------------------------------------------------------

def test_bad_inputs(device):
    tri, n = small_mesh()
    lap = scaled_laplacian(tri, n).to(device)
    crow, col, val = lap.crow_indices(), lap.col_indices(), lap.values()
    x = torch.randn(2, n, 3, device=device)
    w = torch.randn(2, 3, 4, device=device)
    with pytest.raises(RuntimeError, match="weight"):
        ops.cheb_conv(x, crow, col, val, torch.randn(0, 3, 4, device=device), None)
    with pytest.raises(ValueError, match="weight"):
        cheb_conv(x, lap, torch.randn(0, 3, 4, device=device))
    with pytest.raises(RuntimeError, match="`x`"):
        cheb_conv(x, lap, torch.randn(2, 5, 4, device=device))
    with pytest.raises(ValueError, match="`x`"):
        cheb_conv(torch.randn(n, device=device), lap, w)
    with pytest.raises(ValueError, match="lap"):
        cheb_conv(torch.randn(2, n + 1, 3, device=device), lap, w)
    with pytest.raises(TypeError, match="lap"):
        cheb_conv(x, lap.to_dense(), w)
    with pytest.raises(RuntimeError, match="bias"):
        cheb_conv(x, lap, w, torch.randn(5, device=device))
    with pytest.raises(RuntimeError, match="crow"):
        ops.cheb_conv(x, crow[:-1], col, val, w, None)
    bad_col = col.clone()
    bad_col[3] = n
    with pytest.raises(RuntimeError, match="col"):
        ops.cheb_conv(x, crow, bad_col, val, w, None)
    bad_col[3] = -1
    with pytest.raises(RuntimeError, match="col"):
        ops.cheb_conv(x, crow, bad_col, val, w, None)
    bad_crow = crow.clone()
    bad_crow[2] = int(crow[3]) + 1  # crow[2] > crow[3]
    with pytest.raises(RuntimeError, match="crow"):
        ops.cheb_conv(x, bad_crow, col, val, w, None)
    for bad in (float("nan"), float("inf")):
        bad_val = val.clone()
        bad_val[5] = bad
        with pytest.raises(RuntimeError, match="val"):
            ops.cheb_conv(x, crow, col, bad_val, w, None)
        with pytest.raises(RuntimeError, match="val"):
            ops.cheb_conv_backward(torch.randn(2, n, 4, device=device), x, crow, col, bad_val, w, False)
    with pytest.raises(RuntimeError, match="val"):
        ops.cheb_conv(x.double(), crow, col, val, w.double(), None)  # float32 Laplacian values
    with pytest.raises(RuntimeError, match="crow"):
        ops.cheb_conv(x, crow.int(), col, val, w, None)
    with pytest.raises(RuntimeError, match="contiguous"):
        ops.cheb_conv(x.transpose(0, 1), crow, col, val, w, None)
    with pytest.raises(RuntimeError, match="grad_out"):
        ops.cheb_conv_backward(torch.randn(2, n, 5, device=device), x, crow, col, val, w, False)


# ---- single sparse product -------------------------------------------------------------------

def test_laplacian_mm(device):
    tri, n = small_mesh()
    lap = scaled_laplacian(tri, n, dtype=torch.float64).to(device)
    Ld = dense_scaled_laplacian(tri, n, laplacian_lambda_max(tri, n)).to(device)
    x = torch.randn(n, 7, dtype=torch.float64, device=device, requires_grad=True)
    torch.testing.assert_close(laplacian_mm(lap, x), Ld @ x)
    xb = torch.randn(3, n, 5, dtype=torch.float64, device=device, requires_grad=True)
    torch.testing.assert_close(laplacian_mm(lap, xb), Ld @ xb)
    assert torch.autograd.gradcheck(lambda t: laplacian_mm(lap, t), (x,))
    assert torch.autograd.gradcheck(lambda t: laplacian_mm(lap, t), (xb,))
    torch.library.opcheck(ops.cheb_spmm.default, (lap.crow_indices(), lap.col_indices(), lap.values(), x))
    torch.library.opcheck(ops.cheb_spmm.default, (lap.crow_indices(), lap.col_indices(), lap.values(), x),
                          {"check_laplacian": False})
    with pytest.raises(RuntimeError, match="crow"):
        ops.cheb_spmm(lap.crow_indices()[:-1], lap.col_indices(), lap.values(), x.detach())
