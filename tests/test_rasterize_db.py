"""Tests of the image-space derivatives: rasterize(..., grad_db=True) (op rasterize_db) and
interpolate(..., rast_db, diff_attrs) (op interpolate_da), against finite differences of a
plain-PyTorch interpolation, with gradcheck, opcheck and CPU/CUDA parity."""

import pytest
import torch

from pyfaid._ext import ops
from pyfaid.render import MeshTopology, interpolate, rasterize
from reference_render import interpolate_reference, rasterize_bruteforce
from test_rasterize import _gradcheck_scene, random_mesh, sphere_mesh

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def barycentrics_at(pos, tri, rast, shift_x=0.0, shift_y=0.0):
    """Plain-PyTorch perspective-correct (u, v) of rast's triangles at the pixel centres moved by
    (shift_x, shift_y) pixels: [B, H, W, 2] (0 at empty pixels)."""
    B, H, W, _ = rast.shape
    ids = rast[..., 3].round().long() - 1
    covered = ids >= 0
    v = pos[:, tri.long()[ids.clamp(min=0)]]  # [B, B, H, W, 3, 4] -> pick each image's own
    v = v[torch.arange(B), torch.arange(B)]  # [B, H, W, 3, 4]
    ndc_x = (2 * (torch.arange(W, dtype=pos.dtype) + 0.5 + shift_x) / W - 1).view(1, 1, W)
    ndc_y = (2 * (torch.arange(H, dtype=pos.dtype) + 0.5 + shift_y) / H - 1).view(1, H, 1)
    # Solve for the clip-space weights l (sum 1) with sum_k l_k (x_k - ndc_x w_k) = 0 (and for y):
    # the weights of the surface point seen through the (shifted) pixel centre.
    ax = v[..., 0] - ndc_x[..., None] * v[..., 3]
    ay = v[..., 1] - ndc_y[..., None] * v[..., 3]
    m = torch.stack([ax[..., 0] - ax[..., 2], ax[..., 1] - ax[..., 2],
                     ay[..., 0] - ay[..., 2], ay[..., 1] - ay[..., 2]], -1).view(B, H, W, 2, 2)
    rhs = -torch.stack([ax[..., 2], ay[..., 2]], -1)
    eye = torch.eye(2, dtype=pos.dtype)
    m = torch.where(covered[..., None, None], m, eye)
    uv = torch.linalg.solve(m, rhs)
    return torch.where(covered[..., None], uv, torch.zeros_like(uv))


def _scene(dtype=torch.float64, batch=2, size=(20, 26)):
    pos, tri = sphere_mesh(batch, dtype, subdivisions=2)
    return pos, tri, size


def test_rast_db_matches_finite_differences():
    pos, tri, (H, W) = _scene()
    rast, db = rasterize(pos, tri, (H, W), grad_db=True)
    cov = rast[..., 3] > 0
    assert cov.float().mean() > 0.2
    torch.testing.assert_close(barycentrics_at(pos, tri, rast), rast[..., :2], atol=1e-10, rtol=0)
    h = 1e-5
    d_x = (barycentrics_at(pos, tri, rast, h, 0) - barycentrics_at(pos, tri, rast, -h, 0)) / (2 * h)
    d_y = (barycentrics_at(pos, tri, rast, 0, h) - barycentrics_at(pos, tri, rast, 0, -h)) / (2 * h)
    ref = torch.stack([d_x[..., 0], d_y[..., 0], d_x[..., 1], d_y[..., 1]], -1)
    assert ref[cov].abs().max() > 1e-2  # not trivially zero
    torch.testing.assert_close(db[cov], ref[cov], atol=1e-7, rtol=1e-6)
    assert (db[~cov] == 0).all()


@pytest.mark.parametrize("shared_attr", [True, False])
def test_out_da_matches_finite_differences_of_interpolation(shared_attr):
    pos, tri, (H, W) = _scene()
    attr = torch.randn((pos.shape[1], 5) if shared_attr else (2, pos.shape[1], 5), dtype=torch.float64)
    rast, db = rasterize(pos, tri, (H, W), grad_db=True)
    out, out_da = interpolate(attr, rast, tri, db, diff_attrs=[3, 0, 4])
    assert out_da.shape == (2, H, W, 6)
    torch.testing.assert_close(out, interpolate(attr, rast, tri))  # the same `out`
    h = 1e-5

    def interp_at(sx, sy):
        r = rast.clone()
        r[..., :2] = barycentrics_at(pos, tri, rast, sx, sy)
        return interpolate_reference(attr, r, tri)

    d_x = (interp_at(h, 0) - interp_at(-h, 0)) / (2 * h)
    d_y = (interp_at(0, h) - interp_at(0, -h)) / (2 * h)
    ref = torch.stack([d_x[..., [3, 0, 4]], d_y[..., [3, 0, 4]]], -1).flatten(-2)  # (dX, dY) per channel
    cov = rast[..., 3] > 0
    torch.testing.assert_close(out_da[cov], ref[cov], atol=1e-7, rtol=1e-6)
    assert (out_da[~cov] == 0).all()
    # "all" (the default with rast_db) lists every channel in order
    _, all_da = interpolate(attr, rast, tri, db)
    assert all_da.shape == (2, H, W, 10)
    torch.testing.assert_close(all_da[..., [6, 7, 0, 1, 8, 9]], out_da)


def test_existing_results_unchanged():
    """grad_db and rast_db add outputs; rast and out keep their bits."""
    pos, tri = random_mesh(2, 40, 30, torch.float32, seed=4)
    attr = torch.randn(2, 40, 3)
    rast = rasterize(pos, tri, (17, 23))
    rast2, db = rasterize(pos, tri, (17, 23), grad_db=True)
    assert torch.equal(rast, rast2) and db.shape == rast.shape
    out = interpolate(attr, rast, tri)
    out2, da = interpolate(attr, rast, tri, db, diff_attrs=[1])
    assert torch.equal(out, out2) and da.shape == (2, 17, 23, 2)


def test_gradcheck_rast_db_pos():
    pos, tri = _gradcheck_scene()
    pos = pos.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda p: rasterize(p, tri, (8, 10), grad_db=True)[1], (pos,),
                                    eps=1e-6, atol=1e-5)


def test_gradcheck_out_da_attr_and_rast_db():
    pos, tri = _gradcheck_scene()
    rast, db = rasterize(pos, tri, (8, 10), grad_db=True)
    attr = torch.randn(2, 6, 3, dtype=torch.float64, requires_grad=True)
    db = db.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, d: interpolate(a, rast, tri, d, diff_attrs=[2, 0])[1],
                                    (attr, db), fast_mode=True)
    shared = torch.randn(6, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a: interpolate(a, rast, tri, db.detach())[1], (shared,),
                                    fast_mode=True)


def test_gradcheck_out_da_to_pos():
    """out_da reaches pos through rast_db (and out through (u, v)), as one graph."""
    pos, tri = _gradcheck_scene()
    attr = torch.randn(1, 6, 2, dtype=torch.float64)
    topo = MeshTopology(tri, 6)

    def fn(p):
        rast, db = rasterize(p, topo, (8, 10), grad_db=True)
        out, da = interpolate(attr, rast, topo, db)
        return out, da

    assert torch.autograd.gradcheck(fn, (pos.requires_grad_(True),), eps=1e-6, atol=1e-5)


def _samples(device, dtype=torch.float64):
    pos, tri = random_mesh(2, 20, 15, dtype, seed=2)
    pos, tri = pos.to(device), tri.to(device)
    rast = ops.rasterize(pos, tri, 9, 11)
    db = ops.rasterize_db(pos, tri, rast)
    attr = torch.randn(2, 20, 3, dtype=dtype, device=device)
    return pos, tri, rast, db, attr


@pytest.mark.parametrize("flags", [{}, {"check_indices": False}])
def test_opcheck(device, flags):
    pos, tri, rast, db, attr = _samples(device)
    torch.library.opcheck(ops.rasterize_db.default, (pos.clone().requires_grad_(True), tri, rast), flags)
    torch.library.opcheck(ops.rasterize_db_backward.default, (torch.randn_like(db), pos, tri, rast), flags)
    for a in (attr, attr[:1]):
        torch.library.opcheck(ops.interpolate_da.default,
                              (a.clone().requires_grad_(True), rast, tri, db.clone().requires_grad_(True), [2, 0]),
                              flags)
    g = torch.randn(2, 9, 11, 4, dtype=attr.dtype, device=device)
    torch.library.opcheck(ops.interpolate_da_backward.default, (g, attr, rast, tri, db, [1, 1]), flags)


def test_bad_inputs():
    pos, tri = random_mesh(1, 10, 4, torch.float32)
    rast, db = rasterize(pos, tri, (6, 7), grad_db=True)
    attr = torch.randn(10, 3)
    with pytest.raises(ValueError, match="diff_attrs.*rast_db"):
        interpolate(attr, rast, tri, diff_attrs=[0])
    with pytest.raises(ValueError, match=r"diff_attrs.*\[0, 3\)"):
        interpolate(attr, rast, tri, db, diff_attrs=[3])
    with pytest.raises(ValueError, match="diff_attrs"):
        interpolate(attr, rast, tri, db, diff_attrs="some")
    with pytest.raises(RuntimeError, match="rast_db"):
        interpolate(attr, rast, tri, db[:, :3].contiguous())
    with pytest.raises(RuntimeError, match="rast_db"):
        interpolate(attr, rast, tri, db.double())
    with pytest.raises(RuntimeError, match=r"diff_attrs.*\[0, 3\)"):
        ops.interpolate_da(attr[None], rast, tri, db, [5])
    with pytest.raises(RuntimeError, match="rast"):
        ops.rasterize_db(pos, tri, rast[..., :3].contiguous())
    with pytest.raises(RuntimeError, match="batch"):
        ops.rasterize_db(pos, tri, torch.cat([rast, rast]))
    with pytest.raises(RuntimeError, match="grad_db"):
        ops.rasterize_db_backward(db[:, :2].contiguous(), pos, tri, rast)
    with pytest.raises(RuntimeError, match="grad_da"):
        ops.interpolate_da_backward(torch.zeros(1, 6, 7, 3), attr[None], rast, tri, db, [0])


@requires_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_matches_cpu(dtype):
    pos, tri = sphere_mesh(3, dtype, subdivisions=3)
    H, W = 37, 53
    _, amb = rasterize_bruteforce(pos, tri, H, W)
    rast = rasterize(pos, tri, (H, W))
    db_cpu = ops.rasterize_db(pos, tri, rast)
    db_gpu = ops.rasterize_db(pos.cuda(), tri.cuda(), rast.cuda()).cpu()
    tol = dict(atol=1e-4, rtol=1e-4) if dtype == torch.float32 else {}
    torch.testing.assert_close(db_cpu, db_gpu, **tol)
    g = torch.randn_like(db_cpu)
    gp_cpu = ops.rasterize_db_backward(g, pos, tri, rast)
    gp_gpu = ops.rasterize_db_backward(g.cuda(), pos.cuda(), tri.cuda(), rast.cuda()).cpu()
    torch.testing.assert_close(gp_cpu, gp_gpu, atol=1e-3 if dtype == torch.float32 else 1e-9, rtol=1e-3)
    attr = torch.randn(1, pos.shape[1], 4, dtype=dtype)
    da_cpu = ops.interpolate_da(attr, rast, tri, db_cpu, [0, 3, 1])
    da_gpu = ops.interpolate_da(attr.cuda(), rast.cuda(), tri.cuda(), db_cpu.cuda(), [0, 3, 1]).cpu()
    torch.testing.assert_close(da_cpu, da_gpu)
    gd = torch.randn_like(da_cpu)
    ga_c, gdb_c = ops.interpolate_da_backward(gd, attr, rast, tri, db_cpu, [0, 3, 1])
    ga_g, gdb_g = ops.interpolate_da_backward(gd.cuda(), attr.cuda(), rast.cuda(), tri.cuda(),
                                              db_cpu.cuda(), [0, 3, 1])
    torch.testing.assert_close(ga_c, ga_g.cpu(), **(dict(atol=1e-3, rtol=1e-4) if dtype == torch.float32 else {}))
    torch.testing.assert_close(gdb_c, gdb_g.cpu())
