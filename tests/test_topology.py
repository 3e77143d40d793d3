"""Per-mesh inputs checked once: MeshTopology for the rendering ops, Laplacian for the graph ops.

A MeshTopology (or Laplacian) gives the same results as the plain tensor (or CSR tensor); the
Python wrappers then pass ``check_indices=False`` (``check_laplacian=False``) to the ops, which
skip their per-call content checks (a host synchronisation on CUDA) but keep every shape, dtype and
device check. A plain tensor is still checked on every call.
"""

import sys

import pytest
import torch

from conftest import requires_cuda
from pyfaid._ext import ops
from pyfaid.graph import ChebConv, Laplacian, cheb_conv, laplacian_mm, scaled_laplacian
from pyfaid.render import MeshTopology, interpolate, rasterize, sh_shading, vertex_normals
from pyfaid.render.topology import as_triangles
from test_rasterize import random_mesh, sphere_mesh


# ---- MeshTopology ------------------------------------------------------------------------------

def test_mesh_topology_construction_errors():
    tri = torch.tensor([[0, 1, 2], [2, 1, 3]])
    with pytest.raises(TypeError, match="`triangles` must be a torch.Tensor"):
        MeshTopology([[0, 1, 2]], 3)
    with pytest.raises(TypeError, match="`triangles` must hold integer vertex indices"):
        MeshTopology(tri.float(), 4)
    with pytest.raises(TypeError, match="`triangles` must hold integer vertex indices"):
        MeshTopology(tri.bool(), 4)
    with pytest.raises(ValueError, match=r"`triangles` must be \[F, 3\]"):
        MeshTopology(tri[:, :2], 4)
    with pytest.raises(ValueError, match=r"`triangles` must be \[F, 3\]"):
        MeshTopology(tri.reshape(-1), 4)
    with pytest.raises(ValueError, match="`num_vertices` must be >= 1"):
        MeshTopology(tri, 0)
    with pytest.raises(ValueError, match=r"indices in \[0, 3\], outside \[0, 3\)"):
        MeshTopology(tri, 3)
    bad = tri.clone()
    bad[1, 0] = -1
    with pytest.raises(ValueError, match=r"indices in \[-1, 3\]"):
        MeshTopology(bad, 4)


def test_mesh_topology_holds_checked_int32_copies():
    tri = torch.tensor([[0, 1, 2], [2, 1, 3]])  # int64 in
    topo = MeshTopology(tri, 4)
    assert topo.num_vertices == 4 and topo.num_triangles == 2 and repr(topo) == "MeshTopology(V=4, F=2)"
    assert topo.triangles.dtype == torch.int32 and torch.equal(topo.triangles, tri.int())
    assert topo.on("cpu") is topo.on(torch.device("cpu"))  # cached, not copied again
    out, checked = as_triangles(topo, torch.device("cpu"), 4, "pos")
    assert checked and out is topo.on("cpu")
    out, checked = as_triangles(tri, torch.device("cpu"), 4, "pos")
    assert not checked and out.dtype == torch.int32
    with pytest.raises(ValueError, match="MeshTopology has 4 vertices but `pos` has 5 rows"):
        as_triangles(topo, torch.device("cpu"), 5, "pos")
    with pytest.raises(TypeError, match="`tri` must hold integer vertex indices"):
        as_triangles(tri.float(), torch.device("cpu"), 4, "pos")
    with pytest.raises(ValueError, match="MeshTopology has 4 vertices but `verts` has 5"):
        vertex_normals(torch.randn(5, 3), topo)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_topology_and_tensor_give_identical_results(dtype):
    """Every rendering op, forward and backward, gives the same bits for both kinds of `tri`."""
    pos, tri = sphere_mesh(2, dtype, subdivisions=3)
    V = pos.shape[1]
    topo = MeshTopology(tri, V)
    attr = torch.randn(2, V, 3, dtype=dtype)
    g_img = torch.randn(2, 40, 36, 3, dtype=dtype)
    verts = pos[..., :3].contiguous()
    g_n = torch.randn_like(verts)
    results = []
    for t in (tri, topo):
        p, a, v = (x.clone().requires_grad_(True) for x in (pos, attr, verts))
        rast = rasterize(p, t, (40, 36))
        img = interpolate(a, rast, t)
        normals = vertex_normals(v, t)
        grads = torch.autograd.grad((img * g_img).sum() + (normals * g_n).sum(), (p, a, v))
        results.append((rast.detach(), img.detach(), normals.detach(), *grads))
    assert (results[0][0][..., 3] > 0).float().mean() > 0.2
    for name, x, y in zip(("rast", "image", "normals", "grad_pos", "grad_attr", "grad_verts"), *results):
        assert torch.equal(x, y), name


# ---- check_indices / check_laplacian ------------------------------------------------------------

def _scene_with_unused_bad_triangle():
    """A mesh, its raster, and the same triangles plus one with an index V (never rasterized)."""
    pos, tri = random_mesh(2, 30, 25, torch.float64, seed=4)
    rast = ops.rasterize(pos, tri, 12, 14)
    bad_tri = torch.cat([tri, torch.tensor([[0, 1, 30]], dtype=torch.int32)])
    return pos, tri, bad_tri, rast


def test_bad_indices_raise_through_the_default_path():
    pos, tri, bad_tri, rast = _scene_with_unused_bad_triangle()
    attr = torch.randn(2, 30, 3, dtype=torch.float64)
    g = torch.randn(2, 12, 14, 3, dtype=torch.float64)
    verts = pos[..., :3].contiguous()
    msg = r"`tri` (indices must lie|holds vertex ind).*30"
    with pytest.raises(RuntimeError, match=msg):
        rasterize(pos, bad_tri, (12, 14))
    with pytest.raises(RuntimeError, match=msg):
        interpolate(attr, rast, bad_tri)
    with pytest.raises(RuntimeError, match=msg):
        vertex_normals(verts, bad_tri)
    with pytest.raises(RuntimeError, match=msg):
        ops.rasterize_backward(torch.randn_like(rast), pos, bad_tri, rast)
    with pytest.raises(RuntimeError, match=msg):
        ops.interpolate_backward(g, attr, rast, bad_tri)
    with pytest.raises(RuntimeError, match=msg):
        ops.vertex_normals_backward(torch.randn_like(verts), verts, bad_tri)


def test_check_indices_false_skips_the_range_check():
    """The bad triangle is never read (no pixel shows it), so skipping the check is observable
    without undefined behaviour: the unchecked calls return what the valid triangles give."""
    pos, tri, bad_tri, rast = _scene_with_unused_bad_triangle()
    attr = torch.randn(2, 30, 3, dtype=torch.float64)
    g = torch.randn(2, 12, 14, 3, dtype=torch.float64)
    g_rast = torch.randn_like(rast)
    assert torch.equal(ops.interpolate(attr, rast, bad_tri, check_indices=False),
                       ops.interpolate(attr, rast, tri))
    for x, y in zip(ops.interpolate_backward(g, attr, rast, bad_tri, check_indices=False),
                    ops.interpolate_backward(g, attr, rast, tri)):
        assert torch.equal(x, y)
    assert torch.equal(ops.rasterize_backward(g_rast, pos, bad_tri, rast, check_indices=False),
                       ops.rasterize_backward(g_rast, pos, tri, rast))
    # Ops that read every triangle: unchecked calls on valid indices give the checked results,
    # and the shape / dtype checks still run.
    assert torch.equal(ops.rasterize(pos, tri, 12, 14, check_indices=False), rast)
    verts = pos[..., :3].contiguous()
    assert torch.equal(ops.vertex_normals(verts, tri, check_indices=False), ops.vertex_normals(verts, tri))
    assert torch.equal(ops.vertex_normals_backward(verts, verts, tri, check_indices=False),
                       ops.vertex_normals_backward(verts, verts, tri))
    with pytest.raises(RuntimeError, match="`tri` must be Int"):
        ops.rasterize(pos, tri.long(), 12, 14, check_indices=False)
    with pytest.raises(RuntimeError, match="`tri` must have shape"):
        ops.vertex_normals(verts, tri[:, :2].contiguous(), check_indices=False)


def test_check_laplacian_false_skips_the_csr_check():
    """A non-finite value is safe to compute with, so the skipped check shows in the output."""
    tri = torch.tensor([[0, 1, 2], [1, 3, 2]])
    lap = scaled_laplacian(tri, 4)
    crow, col, val = lap.crow_indices(), lap.col_indices(), lap.values().clone()
    val[0] = float("nan")
    x = torch.randn(2, 4, 3)
    w = torch.randn(2, 3, 5)
    with pytest.raises(RuntimeError, match="`val` has a non-finite entry"):
        ops.cheb_conv(x, crow, col, val, w, None)
    assert torch.isnan(ops.cheb_conv(x, crow, col, val, w, None, check_laplacian=False)).any()
    with pytest.raises(RuntimeError, match="`val` has a non-finite entry"):
        ops.cheb_spmm(crow, col, val, x[0])
    assert torch.isnan(ops.cheb_spmm(crow, col, val, x[0], check_laplacian=False)).any()
    g = torch.randn(2, 4, 5)
    with pytest.raises(RuntimeError, match="`val` has a non-finite entry"):
        ops.cheb_conv_backward(g, x, crow, col, val, w, False)
    gx, _, _ = ops.cheb_conv_backward(g, x, crow, col, val, w, False, check_laplacian=False)
    assert torch.isnan(gx).any()
    with pytest.raises(RuntimeError, match="`crow` must have N \\+ 1"):  # shapes still checked
        ops.cheb_conv(x, crow[:-1], col, val, w, None, check_laplacian=False)


class _RecordingOps:
    """Stands in for ``torch.ops.pyfaid`` inside a wrapper module: records every call's keyword
    arguments, then runs the real op."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        op = getattr(ops, name)

        def call(*args, **kwargs):
            self.calls.append((name, kwargs))
            return op(*args, **kwargs)

        return call

    def flags(self, key):
        """{op name: set of the values its calls got for keyword ``key``}, for ops that take it."""
        out = {}
        for name, kw in self.calls:
            if key in kw:
                out.setdefault(name, set()).add(kw[key])
        return out


@pytest.fixture
def recorded(monkeypatch):
    """Records the ops called by pyfaid.render.rasterize / shading and pyfaid.graph.cheb."""
    rec = _RecordingOps()
    for module in ("pyfaid.render.rasterize", "pyfaid.render.shading", "pyfaid.graph.cheb"):
        monkeypatch.setattr(sys.modules[module], "ops", rec)
    return rec


@pytest.mark.parametrize("prepared", [True, False])
def test_prepared_inputs_reach_forward_and_backward_ops_unchecked(recorded, prepared):
    pos, tri = sphere_mesh(1, torch.float32, subdivisions=2)
    V = pos.shape[1]
    t = MeshTopology(tri, V) if prepared else tri
    lap = Laplacian.of_mesh(tri, V) if prepared else scaled_laplacian(tri, V)
    p = pos.clone().requires_grad_(True)
    v = pos[..., :3].detach().clone().requires_grad_(True)
    feat = torch.randn(1, V, 4, requires_grad=True)
    img = interpolate(feat, rasterize(p, t, (16, 16), simd=False), t, simd=False)
    n = vertex_normals(v, t)
    h = cheb_conv(feat, lap, torch.randn(3, 4, 2), torch.randn(2))
    (img.sum() + n.sum() + h.sum() + laplacian_mm(lap, feat).sum()).backward()
    expect = {not prepared}
    render_ops = ("rasterize", "rasterize_backward", "interpolate", "interpolate_backward")
    assert recorded.flags("check_indices") == {
        name: expect for name in render_ops + ("vertex_normals", "vertex_normals_backward")}
    assert recorded.flags("check_laplacian") == {
        name: expect for name in ("cheb_conv", "cheb_conv_backward", "cheb_spmm")}
    simd = recorded.flags("simd")
    assert all(simd[name] == {False} for name in render_ops)  # carried into the backward ops too


# ---- CUDA: no host synchronisation ----------------------------------------------------------------

@requires_cuda
def test_cuda_ops_with_prepared_inputs_do_not_synchronise():
    """One forward + backward of every op with MeshTopology / Laplacian inputs under
    torch.cuda.set_sync_debug_mode("error"): any device-to-host wait raises."""
    dev = torch.device("cuda")
    pos, tri = sphere_mesh(2, torch.float32, subdivisions=3)
    V = pos.shape[1]
    topo = MeshTopology(tri, V)
    lap = Laplacian.of_mesh(tri, V)
    conv = ChebConv(3, 3, K=3).to(dev)
    pos = pos.to(dev).requires_grad_(True)
    verts = pos.detach()[..., :3].contiguous().requires_grad_(True)
    albedo = torch.rand(2, V, 3, device=dev, requires_grad=True)
    gamma = torch.randn(2, 27, device=dev, requires_grad=True)

    def step():
        normals = vertex_normals(verts, topo)
        colors = sh_shading(normals, albedo, gamma)
        colors = colors + conv(colors, lap) + laplacian_mm(lap, colors)
        image = interpolate(colors, rasterize(pos, topo, (64, 48)), topo)
        image.square().sum().backward()

    step()  # first use: the per-device copies of the topology and the Laplacian are made here
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        step()
    finally:
        torch.cuda.set_sync_debug_mode(0)
    torch.cuda.synchronize()
    assert all(torch.isfinite(t.grad).all() for t in (pos, verts, albedo, gamma, conv.weight))
