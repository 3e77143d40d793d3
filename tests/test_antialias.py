"""Tests of pyfaid.render.antialias and its ops (CPU, and CUDA when present): coverage along
silhouette edges against a supersampled render, interior edges left alone, gradcheck of colour
and positions in float64, opcheck, a silhouette fit that converges only with antialiasing,
CPU/CUDA parity and bad input."""

import math

import pytest
import torch
import torch.nn.functional as F
import trimesh

from pyfaid._ext import ops
from pyfaid.render import MeshTopology, antialias, interpolate, rasterize
from test_rasterize import project, random_mesh, sphere_mesh

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def polygon_scene(dtype=torch.float64):
    """A perspective quad (two triangles, one closed outline) and a triangle in front of it, with
    no edge near 45 degrees: clip-space pos [1, 7, 4] and tri [3, 3]."""
    xy = torch.tensor([[-0.71, -0.62], [0.58, -0.83], [0.77, 0.61], [-0.55, 0.69],
                       [-0.31, -0.27], [0.36, -0.12], [-0.07, 0.42]], dtype=dtype)
    z = torch.tensor([0.4, 0.35, 0.3, 0.45, -0.2, -0.25, -0.15], dtype=dtype)
    w = torch.tensor([1.0, 1.3, 0.9, 1.1, 1.0, 1.2, 0.8], dtype=dtype)
    pos = torch.cat([xy * w[:, None], (z * w)[:, None], w[:, None]], 1)[None]
    tri = torch.tensor([[0, 1, 2], [0, 2, 3], [4, 5, 6]], dtype=torch.int32)
    return pos, tri


def supersampled(pos, tri, colors, height, width, factor=16):
    """Box-filtered render at factor^2 samples per pixel: per-triangle flat colours [F, C] over a
    zero background -> [B, H, W, C]."""
    rast = rasterize(pos, tri, (height * factor, width * factor))
    ids = rast[..., 3].long()
    table = torch.cat([torch.zeros(1, colors.shape[1], dtype=colors.dtype), colors])
    img = table[ids].permute(0, 3, 1, 2)
    return F.avg_pool2d(img, factor).permute(0, 2, 3, 1)


def flat_render(pos, tri, colors, height, width):
    rast = rasterize(pos, tri, (height, width))
    table = torch.cat([torch.zeros(1, colors.shape[1], dtype=colors.dtype), colors])
    return table[rast[..., 3].long()], rast


def _near_vertices(pos, height, width, radius):
    """[H, W] bool: pixel centres within `radius` pixels of a projected vertex."""
    sx = (pos[0, :, 0] / pos[0, :, 3] + 1) * width / 2
    sy = (pos[0, :, 1] / pos[0, :, 3] + 1) * height / 2
    ys, xs = torch.meshgrid(torch.arange(height) + 0.5, torch.arange(width) + 0.5, indexing="ij")
    d = ((xs[..., None] - sx) ** 2 + (ys[..., None] - sy) ** 2).sqrt()
    return (d < radius).any(-1)


def test_matches_supersampled_coverage_along_edges():
    H, W = 48, 56
    pos, tri = polygon_scene()
    colors = torch.tensor([[1.0, 0.2], [1.0, 0.2], [0.3, 0.9]], dtype=torch.float64)
    color, rast = flat_render(pos, tri, colors, H, W)
    out = antialias(color, rast, pos, MeshTopology(tri, 7))
    ref = supersampled(pos, tri, colors, H, W)
    edge = ((ref - color).abs().amax(-1) > 0.02)[0] & ~_near_vertices(pos, H, W, 2.0)
    assert edge.sum() > 150
    err_aa = (out - ref).abs().amax(-1)[0][edge]
    err_flat = (color - ref).abs().amax(-1)[0][edge]
    assert err_aa.mean() < 0.03, err_aa.mean()
    assert err_aa.max() < 0.12, err_aa.max()
    assert err_flat.mean() > 5 * err_aa.mean()
    # away from the edges nothing changes
    far = ~(F.max_pool2d(edge[None, None].float(), 5, 1, 2)[0, 0] > 0) & ~_near_vertices(pos, H, W, 3.0)
    assert torch.equal(out[0][far], color[0][far])


def test_interior_edges_are_left_alone():
    """On a closed sphere only the outline is blended: the shared edges between front-facing
    triangles (different ids, one smooth surface) are not silhouettes."""
    pos, tri = sphere_mesh(2, torch.float64, subdivisions=3)
    H, W = 40, 40
    rast = rasterize(pos, tri, (H, W))
    color = interpolate(torch.rand(pos.shape[1], 3, dtype=torch.float64), rast, tri)
    out = antialias(color, rast, pos, MeshTopology(tri, pos.shape[1]))
    covered = rast[..., 3] > 0
    inner = -F.max_pool2d(-covered[:, None].float(), 3, 1, 1)[:, 0] > 0  # covered with all 8 neighbours
    ids = rast[..., 3]
    assert (ids[:, :, 1:] != ids[:, :, :-1]).sum() > 200  # many interior id changes
    assert torch.equal(out[inner], color[inner])
    changed = (out != color).any(-1)
    assert changed.sum() > 50 and not (changed & inner).any()


def _gradcheck_scene():
    """One triangle over the background on 9 x 10 pixels, its edges crossing pixel pairs away from
    the thresholds (crossing at 0, 1/2 or 1 pixel, or the slack), checked."""
    pos = torch.tensor([[[-0.63, -0.71, 0.1, 1.0], [0.74, -0.38, 0.2, 1.2], [-0.12, 0.81, 0.0, 0.9]]],
                       dtype=torch.float64)
    tri = torch.tensor([[0, 1, 2]], dtype=torch.int32)
    color = torch.rand(1, 9, 10, 2, dtype=torch.float64)
    rast = rasterize(pos, tri, (9, 10))
    _, alpha, edge = ops.antialias(color, rast, pos, tri, MeshTopology(tri, 3).triangle_neighbors())
    alpha = alpha[edge >= 0]
    assert alpha.numel() > 10
    dc = 0.5 - alpha.abs()
    assert (dc > 0.01).all() and (dc < 0.49).all() and ((alpha.abs() - 0.25).abs() > 1e-3).all()
    return pos, tri, color


def test_gradcheck_color_and_pos():
    pos, tri, color = _gradcheck_scene()
    topo = MeshTopology(tri, 3)
    rast = rasterize(pos, tri, (9, 10))
    c = color.clone().requires_grad_(True)
    p = pos.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda c_, p_: antialias(c_, rast, p_, topo), (c, p), eps=1e-7, atol=1e-6)
    # the position gradient is real: it moves the outline
    out = antialias(color, rast, p, topo)
    (gp,) = torch.autograd.grad(out.sum(), p)
    assert gp[..., :2].abs().sum() > 1e-3 and (gp[..., 2] == 0).all()


def _op_samples(device, dtype=torch.float64):
    pos, tri = sphere_mesh(2, dtype, subdivisions=1)
    pos, tri = pos.to(device), tri.to(device)
    rast = ops.rasterize(pos, tri, 12, 14)
    color = torch.rand(2, 12, 14, 3, dtype=dtype, device=device)
    nb = MeshTopology(tri, pos.shape[1]).triangle_neighbors(device)
    return color, rast, pos, tri, nb


@pytest.mark.parametrize("flags", [{}, {"check_indices": False}])
def test_opcheck(device, flags):
    color, rast, pos, tri, nb = _op_samples(device)
    torch.library.opcheck(ops.antialias.default,
                          (color.clone().requires_grad_(True), rast, pos.clone().requires_grad_(True), tri, nb),
                          flags)
    _, alpha, edge = ops.antialias(color, rast, pos, tri, nb)
    assert (edge >= 0).sum() > 10
    torch.library.opcheck(ops.antialias_backward.default,
                          (torch.randn_like(color), color, rast, pos, tri, alpha, edge), flags)


def test_triangle_neighbors():
    topo = MeshTopology(torch.tensor([[0, 1, 2], [2, 1, 3], [1, 0, 4], [1, 0, 5], [3, 3, 2]]), 6)
    nb = topo.triangle_neighbors()
    assert nb.dtype == torch.int32 and nb.shape == (5, 3)
    assert nb[0].tolist() == [1, -1, -1]  # edge (1, 2) shared with triangle 1; (0, 1) by three
    assert nb[1].tolist() == [-1, -1, 0]
    assert nb[2].tolist() == [-1, -1, -1] and nb[4].tolist() == [-1, -1, -1]
    assert topo.triangle_neighbors() is nb  # built once


def test_silhouette_fit_converges_only_with_antialias():
    """Fit a sphere's screen position and size to a target mask. The colour is constant, so the
    only gradient to the vertices is the silhouette's, which antialias provides: without it the
    parameters get no gradient at all and stay where they started."""
    H = W = 48
    tri_sphere = sphere_mesh(1, torch.float64, subdivisions=3)[1]
    base = torch.tensor(trimesh.creation.icosphere(subdivisions=3).vertices, dtype=torch.float32)
    topo = MeshTopology(tri_sphere, base.shape[0])
    white = torch.ones(1, base.shape[0], 1)

    def render(params, use_aa):
        shift, log_scale = params[:2], params[2]
        v = base * torch.exp(log_scale) + torch.cat([shift, torch.zeros(1)])
        pos = project(v[None].double()).float()
        rast = rasterize(pos, topo, (H, W))
        img = interpolate(white, rast, topo)
        return antialias(img, rast, pos, topo) if use_aa else img

    target_params = torch.tensor([0.35, -0.25, math.log(0.8)])
    with torch.no_grad():
        target = render(target_params, True)
    results = {}
    for use_aa in (True, False):
        params = torch.tensor([-0.2, 0.25, math.log(1.15)], requires_grad=True)
        opt = torch.optim.Adam([params], lr=0.03)
        first = None
        for _ in range(120):
            loss = ((render(params, use_aa) - target) ** 2).mean()
            first = loss.item() if first is None else first
            opt.zero_grad()
            loss.backward()
            opt.step()
        results[use_aa] = (first, loss.item(), (params.detach() - target_params).abs().max().item())
    first, last, err = results[True]
    assert last < 0.02 * first and err < 0.02, results
    first, last, err = results[False]
    assert last > 0.5 * first and err > 0.3, results


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_pruning_changes_nothing(monkeypatch, dtype):
    """The kernels analyse only the pixel pairs near possible silhouette edges; analysing every
    pair (PYFAID_AA_ALL_PAIRS=1) gives the same blends, on a dense sphere seen from inside and
    outside and on random overlapping triangles."""
    pos, tri = sphere_mesh(3, dtype, subdivisions=4)
    pos[1, :, :2] *= 3.0  # partly off screen, large triangles
    soup = random_mesh(3, 60, 40, dtype, seed=5)
    pos = torch.cat([pos, soup[0]], 1)
    tri = torch.cat([tri, soup[1] + pos.shape[1] - 60])
    rast = rasterize(pos, tri, (53, 47))
    nb = MeshTopology(tri, pos.shape[1]).triangle_neighbors()
    color = torch.rand(3, 53, 47, 3, dtype=dtype)
    monkeypatch.delenv("PYFAID_AA_ALL_PAIRS", raising=False)
    pruned = ops.antialias(color, rast, pos, tri, nb)
    monkeypatch.setenv("PYFAID_AA_ALL_PAIRS", "1")
    full = ops.antialias(color, rast, pos, tri, nb)
    assert (full[2] >= 0).sum() > 100
    for a, b in zip(pruned, full):
        assert torch.equal(a, b)


def test_no_edges_no_change_and_empty():
    pos = torch.tensor([[[-3.0, -3.0, 0.0, 1.0], [3.0, -3.0, 0.0, 1.0], [0.0, 3.0, 0.0, 1.0]]])
    tri = torch.tensor([[0, 1, 2]], dtype=torch.int32)
    rast = rasterize(pos, tri, (6, 7))
    color = torch.rand(1, 6, 7, 3)
    assert torch.equal(antialias(color, rast, pos, tri), color)  # plain [F, 3] topology works too
    empty = torch.zeros(1, 0, 7, 4)
    assert antialias(torch.zeros(1, 0, 7, 3), empty, pos, tri).shape == (1, 0, 7, 3)


def test_bad_inputs():
    color, rast, pos, tri, nb = _op_samples("cpu")
    topo = MeshTopology(tri, pos.shape[1])
    with pytest.raises(ValueError, match="vertices"):
        antialias(color, rast, pos[:, :10].contiguous(), topo)
    with pytest.raises(TypeError, match="topology"):
        antialias(color, rast, pos, [[0, 1, 2]])
    with pytest.raises(RuntimeError, match="rast"):
        antialias(color, rast[:, :5].contiguous(), pos, topo)
    with pytest.raises(RuntimeError, match="pos.*batch"):
        antialias(color, rast, pos[:1].contiguous(), topo)
    with pytest.raises(RuntimeError, match="dtype"):
        antialias(color.float(), rast.float(), pos, topo)
    with pytest.raises(RuntimeError, match="color"):
        antialias(color[..., 0].contiguous(), rast, pos, topo)
    with pytest.raises(RuntimeError, match="neighbors"):
        ops.antialias(color, rast, pos, tri, nb[:3].contiguous())
    bad = nb.clone()
    bad[0, 0] = tri.shape[0]
    with pytest.raises(RuntimeError, match="neighbors"):
        ops.antialias(color, rast, pos, tri, bad)
    _, alpha, edge = ops.antialias(color, rast, pos, tri, nb)
    with pytest.raises(RuntimeError, match="pair_edge"):
        ops.antialias_backward(color, color, rast, pos, tri, alpha, edge.float())


@requires_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_matches_cpu(dtype):
    pos, tri = sphere_mesh(3, dtype, subdivisions=3)
    H, W = 41, 37
    rast = rasterize(pos, tri, (H, W))
    color = torch.rand(3, H, W, 4, dtype=dtype)
    nb = MeshTopology(tri, pos.shape[1]).triangle_neighbors()
    out_c, alpha_c, edge_c = ops.antialias(color, rast, pos, tri, nb)
    out_g, alpha_g, edge_g = ops.antialias(color.cuda(), rast.cuda(), pos.cuda(), tri.cuda(), nb.cuda())
    tol = dict(atol=1e-4, rtol=1e-4) if dtype == torch.float32 else {}
    assert (edge_c >= 0).sum() > 50
    assert torch.equal(edge_c, edge_g.cpu())  # the same IEEE operations in the same order
    torch.testing.assert_close(alpha_c, alpha_g.cpu(), **tol)
    torch.testing.assert_close(out_c, out_g.cpu(), **tol)
    g = torch.randn_like(color)
    gc_c, gp_c = ops.antialias_backward(g, color, rast, pos, tri, alpha_c, edge_c)
    gc_g, gp_g = ops.antialias_backward(g.cuda(), color.cuda(), rast.cuda(), pos.cuda(), tri.cuda(),
                                        alpha_c.cuda(), edge_c.cuda())
    torch.testing.assert_close(gc_c, gc_g.cpu(), **tol)
    torch.testing.assert_close(gp_c, gp_g.cpu(), **(dict(atol=1e-3, rtol=1e-3) if dtype == torch.float32 else {}))
