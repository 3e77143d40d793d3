"""Tests of pyfaid.render.vertex_normals and pyfaid.render.sh_shading (CPU and CUDA kernels).

The references below are plain PyTorch: normals by index_add of the unnormalised face normals,
shading by Deep3DFaceRecon's compute_color formula written out (without its 0.8 ambient offset).
"""

import math

import pytest
import torch

from conftest import requires_cuda
from pyfaid._ext import ops
from pyfaid.render import sh_shading, vertex_normals

from reference_shading import sh_shading_ref, vertex_normals_ref

# ---- inputs --------------------------------------------------------------------------------


def grid_mesh(rows=5, cols=6, batch=2, dtype=torch.float64, device="cpu", isolated=0):
    """A bumpy grid (counter-clockwise from +z) with `isolated` unused vertices appended."""
    ys, xs = torch.meshgrid(torch.arange(rows, dtype=dtype), torch.arange(cols, dtype=dtype), indexing="ij")
    base = torch.stack([xs, ys, torch.zeros_like(xs)], -1).reshape(-1, 3)
    tris = []
    for r in range(rows - 1):
        for c in range(cols - 1):
            i = r * cols + c
            tris += [(i, i + 1, i + cols + 1), (i, i + cols + 1, i + cols)]
    tri = torch.tensor(tris, dtype=torch.int32, device=device)
    verts = base.unsqueeze(0).repeat(batch, 1, 1)
    verts = verts + 0.3 * torch.randn(batch, rows * cols, 3, dtype=dtype)
    if isolated:
        verts = torch.cat([verts, torch.randn(batch, isolated, 3, dtype=dtype)], 1)
    return verts.to(device), tri


def sh_inputs(B=2, N=50, dtype=torch.float64, device="cpu"):
    n = torch.nn.functional.normalize(torch.randn(B, N, 3, dtype=dtype), dim=-1)
    albedo = torch.rand(B, N, 3, dtype=dtype)
    gamma = 0.5 * torch.randn(B, 27, dtype=dtype)
    return n.to(device), albedo.to(device), gamma.to(device)


def _tol(dtype):
    return dict(atol=1e-5, rtol=1e-4) if dtype == torch.float32 else dict(atol=1e-10, rtol=1e-9)


# ---- vertex normals ------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_vertex_normals_forward_matches_reference(device, dtype):
    verts, tri = grid_mesh(batch=3, dtype=dtype, device=device, isolated=2)
    out = vertex_normals(verts, tri)
    torch.testing.assert_close(out, vertex_normals_ref(verts, tri), **_tol(dtype))
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(out.shape[:2], dtype=dtype, device=device))


def test_vertex_normals_area_weighting_and_orientation(device):
    # Vertex 0 is shared by a triangle in the xy plane (normal +z, twice-area 4) and one in the
    # yz plane (normal +x, twice-area 1): the area-weighted normal is (1, 0, 4) / sqrt(17).
    verts = torch.tensor([[0, 0, 0], [2, 0, 0], [0, 2, 0], [0, 1, 0], [0, 0, 1]], dtype=torch.float64)
    tri = torch.tensor([[0, 1, 2], [0, 3, 4]], dtype=torch.int32)
    out = vertex_normals(verts.to(device), tri.to(device)).cpu()
    torch.testing.assert_close(out[0], torch.tensor([1, 0, 4], dtype=torch.float64) / math.sqrt(17))
    torch.testing.assert_close(out[1], torch.tensor([0, 0, 1], dtype=torch.float64))  # CCW from +z
    torch.testing.assert_close(out[4], torch.tensor([1, 0, 0], dtype=torch.float64))
    flipped = vertex_normals(verts.to(device), tri.flip(1).to(device)).cpu()  # clockwise -> -z
    torch.testing.assert_close(flipped[1], torch.tensor([0, 0, -1], dtype=torch.float64))


def test_vertex_normals_unbatched_and_int64(device):
    verts, tri = grid_mesh(batch=1, device=device)
    out = vertex_normals(verts[0], tri.long())
    assert out.shape == verts[0].shape
    torch.testing.assert_close(out, vertex_normals(verts, tri)[0])


def test_vertex_normals_isolated_and_degenerate(device):
    # vertex 3: no triangle; triangle (4, 5, 6) is degenerate (collinear); vertex 7: only a
    # triangle with a repeated index.
    verts = torch.tensor([[0, 0, 0], [1, 0, 0], [0, 1, 0], [5, 5, 5], [0, 0, 0], [1, 1, 1], [2, 2, 2],
                          [3, 0, 1]], dtype=torch.float64, device=device).unsqueeze(0)
    tri = torch.tensor([[0, 1, 2], [4, 5, 6], [7, 7, 1]], dtype=torch.int32, device=device)
    verts.requires_grad_(True)
    out = vertex_normals(verts, tri)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(1, 8, dtype=torch.float64, device=device))
    up = torch.tensor([0, 0, 1], dtype=torch.float64, device=device)
    for v in (3, 4, 5, 6, 7):
        torch.testing.assert_close(out[0, v], up)
    out.sum().backward()
    assert torch.isfinite(verts.grad).all()
    assert (verts.grad[0, 3:] == 0).all()


def test_vertex_normals_empty(device):
    verts, tri = grid_mesh(batch=2, device=device)
    assert vertex_normals(verts[:0], tri).shape == (0, verts.shape[1], 3)
    no_tri = torch.zeros(0, 3, dtype=torch.int32, device=device)
    out = vertex_normals(verts, no_tri)
    assert (out == torch.tensor([0.0, 0.0, 1.0], dtype=verts.dtype, device=device)).all()


def test_vertex_normals_gradcheck(device):
    verts, tri = grid_mesh(rows=3, cols=4, batch=2, device=device, isolated=1)
    verts.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: vertex_normals(v, tri), (verts,))


def test_vertex_normals_gradient_matches_reference(device):
    verts, tri = grid_mesh(batch=2, dtype=torch.float32, device=device)
    verts.requires_grad_(True)
    w = torch.randn_like(verts)
    (g,) = torch.autograd.grad((vertex_normals(verts, tri) * w).sum(), verts)
    (g_ref,) = torch.autograd.grad((vertex_normals_ref(verts, tri) * w).sum(), verts)
    torch.testing.assert_close(g, g_ref, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("flags", [{}, {"check_indices": False}])
def test_vertex_normals_opcheck(device, flags):
    verts, tri = grid_mesh(batch=2, device=device)
    torch.library.opcheck(ops.vertex_normals, (verts.requires_grad_(True), tri), flags)
    torch.library.opcheck(ops.vertex_normals_backward, (torch.randn_like(verts), verts.detach(), tri), flags)


def test_vertex_normals_bad_inputs(device):
    verts, tri = grid_mesh(batch=1, device=device)
    with pytest.raises(ValueError, match="verts"):
        vertex_normals(verts[..., :2].contiguous(), tri)
    with pytest.raises(TypeError, match="verts"):
        vertex_normals(verts.half(), tri)
    with pytest.raises(TypeError, match="tri"):
        vertex_normals(verts, tri.float())
    with pytest.raises(ValueError, match="tri"):
        vertex_normals(verts, tri[:, :2])
    bad = tri.clone()
    bad[3, 1] = verts.shape[1]
    with pytest.raises(RuntimeError, match="tri"):
        vertex_normals(verts, bad)
    bad[3, 1] = -1
    with pytest.raises(RuntimeError, match="tri"):
        vertex_normals(verts, bad)
    # the op itself checks too (callers that bypass the Python wrapper)
    with pytest.raises(RuntimeError, match="tri"):
        ops.vertex_normals(verts, tri.long())
    with pytest.raises(RuntimeError, match="verts"):
        ops.vertex_normals(verts[0], tri)
    with pytest.raises(RuntimeError, match="grad_normals"):
        ops.vertex_normals_backward(verts[:, :3], verts, tri)


# ---- SH shading ----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sh_shading_forward_matches_reference(device, dtype):
    n, a, g = sh_inputs(B=3, N=5000, dtype=dtype, device=device)  # > one CPU chunk, with a remainder
    torch.testing.assert_close(sh_shading(n, a, g), sh_shading_ref(n, a, g), **_tol(dtype))


def test_sh_shading_deep3d_constants(device):
    # Normal +z, white albedo: each coefficient alone gives its basis function's value.
    n = torch.tensor([[[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]], dtype=torch.float64, device=device)
    a = torch.ones_like(n)
    expect_z = [math.sqrt(math.pi) / 2, 0, math.sqrt(math.pi), 0, 0, 0, 2.4270323906946243 / math.sqrt(3), 0, 0]
    for k in range(9):
        g = torch.zeros(1, 27, dtype=torch.float64, device=device)
        g[0, k] = 1.0  # red channel only
        out = sh_shading(n, a, g)
        torch.testing.assert_close(out[0, 0], torch.tensor([expect_z[k], 0, 0], dtype=torch.float64, device=device))
    g = torch.zeros(1, 27, dtype=torch.float64, device=device)
    g[0, 9 + 3] = 1.0  # green channel, -a1 c1 x at x = 1
    torch.testing.assert_close(sh_shading(n, a, g)[0, 1, 1].item(), -math.sqrt(math.pi))
    # no hidden ambient offset: zero light gives black
    assert (sh_shading(n, a, torch.zeros(1, 27, dtype=torch.float64, device=device)) == 0).all()


def test_sh_shading_per_pixel_and_broadcast(device):
    n, a, g = sh_inputs(B=2, N=6 * 7, device=device)
    img_n, img_a = n.reshape(2, 6, 7, 3), a.reshape(2, 6, 7, 3)
    out = sh_shading(img_n, img_a, g)
    assert out.shape == (2, 6, 7, 3)
    torch.testing.assert_close(out.reshape(2, -1, 3), sh_shading_ref(n, a, g))
    shared = sh_shading(n, a[:1], g.reshape(2, 3, 9))
    torch.testing.assert_close(shared, sh_shading_ref(n, a[:1].expand_as(n), g))


def test_sh_shading_gradients_match_reference(device):
    n, a, g = sh_inputs(B=3, N=9000, dtype=torch.float32, device=device)
    grad = torch.randn_like(n)
    ins = [t.clone().requires_grad_(True) for t in (n, a, g)]
    got = torch.autograd.grad(sh_shading(*ins), ins, grad)
    ins64 = [t.double().requires_grad_(True) for t in (n, a, g)]
    want = torch.autograd.grad(sh_shading_ref(*ins64), ins64, grad.double())
    for x, y, name in zip(got, want, ("normals", "albedo", "gamma")):
        torch.testing.assert_close(x.double(), y, atol=1e-4, rtol=1e-4, msg=lambda m: f"{name}: {m}")


def test_sh_shading_gradcheck(device):
    n, a, g = sh_inputs(B=2, N=7, device=device)
    ins = tuple(t.requires_grad_(True) for t in (n, a, g))
    assert torch.autograd.gradcheck(sh_shading, ins)


def test_sh_shading_backward_deterministic(device):
    n, a, g = sh_inputs(B=2, N=10000, dtype=torch.float32, device=device)
    go = torch.randn_like(n)
    first = ops.sh_shading_backward(go, n, a, g)
    second = ops.sh_shading_backward(go, n, a, g)
    for x, y in zip(first, second):
        assert torch.equal(x, y)


def test_sh_shading_opcheck(device):
    n, a, g = sh_inputs(B=2, N=11, device=device)
    torch.library.opcheck(ops.sh_shading, tuple(t.clone().requires_grad_(True) for t in (n, a, g)))
    torch.library.opcheck(ops.sh_shading_backward, (torch.randn_like(n), n, a, g))


def test_sh_shading_empty(device):
    n, a, g = sh_inputs(B=2, N=0, device=device)
    ins = [t.requires_grad_(True) for t in (n, a, g)]
    out = sh_shading(*ins)
    assert out.shape == (2, 0, 3)
    out.sum().backward()
    assert (ins[2].grad == 0).all() and ins[0].grad.shape == (2, 0, 3)
    n, a, g = sh_inputs(B=0, N=5, device=device)
    assert sh_shading(n, a, g).shape == (0, 5, 3)


def test_sh_shading_bad_inputs(device):
    n, a, g = sh_inputs(B=2, N=5, device=device)
    with pytest.raises(ValueError, match="gamma"):
        sh_shading(n, a, g[:, :26])
    with pytest.raises(ValueError, match="gamma"):
        sh_shading(n, a, g[:1])
    with pytest.raises(ValueError, match="albedo"):
        sh_shading(n, a[:, :4], g)
    with pytest.raises(ValueError, match="normals"):
        sh_shading(n[..., :2], a[..., :2], g)
    with pytest.raises(TypeError, match="albedo"):
        sh_shading(n, a.float(), g)
    with pytest.raises(TypeError, match="normals"):
        sh_shading(n.to(torch.int64), a, g)
    with pytest.raises(TypeError, match="gamma"):
        sh_shading(n, a, g.float())
    # the op itself checks too
    with pytest.raises(RuntimeError, match="gamma"):
        ops.sh_shading(n, a, g[:, :26].contiguous())
    with pytest.raises(RuntimeError, match="albedo"):
        ops.sh_shading(n, a.float(), g)
    with pytest.raises(RuntimeError, match="normals"):
        ops.sh_shading(n.transpose(0, 1), a, g)
    with pytest.raises(RuntimeError, match="grad_out"):
        ops.sh_shading_backward(n[:, :2], n, a, g)


# ---- CPU / CUDA parity -------------------------------------------------------------------


@requires_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_matches_cpu(dtype):
    verts, tri = grid_mesh(rows=20, cols=30, batch=3, dtype=dtype, isolated=2)
    gn = torch.randn_like(verts)
    torch.testing.assert_close(vertex_normals(verts.cuda(), tri.cuda()).cpu(), vertex_normals(verts, tri), **_tol(dtype))
    torch.testing.assert_close(ops.vertex_normals_backward(gn.cuda(), verts.cuda(), tri.cuda()).cpu(),
                               ops.vertex_normals_backward(gn, verts, tri), **_tol(dtype))
    n, a, g = sh_inputs(B=3, N=70000, dtype=dtype)
    go = torch.randn_like(n)
    torch.testing.assert_close(sh_shading(n.cuda(), a.cuda(), g.cuda()).cpu(), sh_shading(n, a, g), **_tol(dtype))
    got = ops.sh_shading_backward(go.cuda(), n.cuda(), a.cuda(), g.cuda())
    want = ops.sh_shading_backward(go, n, a, g)
    tol = dict(atol=1e-3, rtol=1e-4) if dtype == torch.float32 else _tol(dtype)
    for x, y in zip(got, want):
        torch.testing.assert_close(x.cpu(), y, **tol)


@requires_cuda
def test_cuda_errors_name_arguments():
    verts, tri = grid_mesh(batch=1, device="cuda")
    bad = tri.clone()
    bad[0, 0] = 10_000
    with pytest.raises(RuntimeError, match="tri"):
        vertex_normals(verts, bad)
    with pytest.raises(ValueError, match="tri"):
        vertex_normals(verts, tri.cpu())


def test_ops_compose_under_torch_compile():
    # normals -> shading traced as one graph (register_fake + register_autograd), gradients intact
    verts, tri = grid_mesh(batch=2, dtype=torch.float32)
    verts.requires_grad_(True)
    albedo, gamma = torch.rand_like(verts), torch.randn(2, 27)

    def loss(v, shade, normals):
        return shade(normals(v, tri), albedo, gamma).square().sum()

    compiled = torch.compile(lambda v: loss(v, sh_shading, vertex_normals), fullgraph=True)
    (got,) = torch.autograd.grad(compiled(verts), verts)
    (want,) = torch.autograd.grad(loss(verts, sh_shading_ref, vertex_normals_ref), verts)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
