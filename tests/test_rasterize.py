"""Tests of pyfaid.render.rasterize / interpolate and their four ops (CPU, and CUDA when present)."""

import math

import pytest
import torch
import trimesh

from pyfaid._ext import ops
from pyfaid.render import interpolate, rasterize
from reference_render import interpolate_reference, rasterize_bbox, rasterize_bruteforce

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
DTYPES = [torch.float32, torch.float64]
TOL = {torch.float32: 2e-4, torch.float64: 1e-9}


# ---- meshes ------------------------------------------------------------------------------------

def random_mesh(batch, num_vertices, num_faces, dtype=torch.float64, seed=0):
    """Random clip-space triangles (perspective: w in [0.5, 1.5]), partly off screen."""
    g = torch.Generator().manual_seed(seed)
    w = torch.rand(batch, num_vertices, 1, generator=g, dtype=dtype) + 0.5
    xy = (torch.rand(batch, num_vertices, 2, generator=g, dtype=dtype) * 2.4 - 1.2) * w
    z = (torch.rand(batch, num_vertices, 1, generator=g, dtype=dtype) * 1.6 - 0.8) * w
    pos = torch.cat([xy, z, w], -1)
    tri = torch.randint(0, num_vertices, (num_faces, 3), generator=g, dtype=torch.int32)
    return pos, tri


def rotation(angle_y, angle_x, dtype):
    cy, sy, cx, sx = math.cos(angle_y), math.sin(angle_y), math.cos(angle_x), math.sin(angle_x)
    ry = torch.tensor([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]], dtype=dtype)
    rx = torch.tensor([[1, 0, 0], [0, cx, -sx], [0, sx, cx]], dtype=dtype)
    return rx @ ry


def project(verts, fov_deg=40.0, near=0.5, far=10.0, distance=3.0):
    """Camera-space-free OpenGL perspective: verts [B, V, 3] in front of a camera at +z distance."""
    f = 1.0 / math.tan(math.radians(fov_deg) / 2)
    z_cam = verts[..., 2] - distance  # looking down -z
    x = f * verts[..., 0]
    y = f * verts[..., 1]
    z = (far + near) / (near - far) * z_cam + 2 * far * near / (near - far)
    w = -z_cam
    return torch.stack([x, y, z, w], -1)


def sphere_mesh(batch, dtype, subdivisions=2):
    """Closed icosphere, differently rotated per image, projected with perspective."""
    m = trimesh.creation.icosphere(subdivisions=subdivisions)
    v = torch.tensor(m.vertices, dtype=dtype)
    tri = torch.tensor(m.faces, dtype=torch.int32)
    verts = torch.stack([v @ rotation(0.3 + 0.7 * b, 0.2 * b, dtype).T for b in range(batch)])
    return project(verts), tri


def check_against_reference(pos, tri, height, width, dtype):
    rast = rasterize(pos, tri, (height, width))
    ref, amb = rasterize_bruteforce(pos, tri, height, width)
    ref = ref.detach()
    ok = ~amb
    assert rast.shape == (pos.shape[0], height, width, 4)
    assert torch.isfinite(rast).all()
    assert torch.equal(rast[..., 3][ok], ref[..., 3][ok])
    torch.testing.assert_close(rast[..., :3][ok], ref[..., :3][ok], atol=TOL[dtype], rtol=0)
    return rast, ok


# ---- forward against the reference ---------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch,height,width", [(1, 16, 16), (3, 24, 40), (2, 1, 1), (2, 7, 5), (1, 33, 17)])
def test_random_mesh_matches_reference(dtype, batch, height, width):
    pos, tri = random_mesh(batch, 40, 30, dtype, seed=height * 100 + width)
    rast, ok = check_against_reference(pos, tri, height, width, dtype)
    assert ok.float().mean() > 0.9
    assert (rast[..., 3] > 0).any()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("height,width", [(32, 32), (24, 48), (50, 30)])
def test_closed_mesh_matches_reference(dtype, height, width):
    pos, tri = sphere_mesh(2, dtype)
    rast, ok = check_against_reference(pos, tri, height, width, dtype)
    covered = rast[..., 3] > 0
    # front faces only: every covered pixel's triangle faces the camera
    assert covered.float().mean() > 0.2
    # the sphere's silhouette is a disc: its centre pixel is covered
    assert covered[:, height // 2, width // 2].all()


@pytest.mark.parametrize("height,width", [(24, 24), (33, 40)])
def test_dense_mesh_of_subpixel_triangles_matches_reference(height, width):
    """Most triangles smaller than a pixel: the setup drops those covering no pixel centre early."""
    pos, tri = sphere_mesh(2, torch.float64, subdivisions=5)  # 20,480 triangles
    rast, ok = check_against_reference(pos, tri, height, width, torch.float64)
    assert ok.float().mean() > 0.95 and (rast[..., 3] > 0).float().mean() > 0.2


def test_bbox_reference_matches_bruteforce():
    pos, tri = random_mesh(2, 60, 80, torch.float64, seed=3)
    pos[..., :2] *= 0.3  # many small triangles
    ref, amb = rasterize_bruteforce(pos, tri, 20, 28)
    fast = rasterize_bbox(pos, tri, 20, 28)
    assert torch.equal(fast[..., 3][~amb], ref[..., 3][~amb])
    torch.testing.assert_close(fast[~amb], ref[~amb])


def test_watertight_on_pixel_centres():
    """Edges through pixel centres (vertical, horizontal, diagonal): every pixel exactly once."""
    H = W = 8
    n = 10  # grid vertices at NDC of pixel centres -1..8 (the outer ring lies off screen)
    coords = torch.tensor([(2 * i + 1) / W - 1 for i in range(-1, n - 1)], dtype=torch.float32)
    gy, gx = torch.meshgrid(coords, coords, indexing="ij")
    w = 2.0
    pos = torch.stack([gx * w, gy * w, torch.zeros_like(gx), torch.full_like(gx, w)], -1).reshape(1, -1, 4)
    faces = []
    for r in range(n - 1):
        for c in range(n - 1):
            a, b, d, e = r * n + c, r * n + c + 1, (r + 1) * n + c, (r + 1) * n + c + 1
            faces += [[a, b, e], [a, e, d]] if (r + c) % 2 else [[a, b, d], [b, e, d]]
    tri = torch.tensor(faces, dtype=torch.int32)
    count = torch.zeros(H, W)
    for f in range(tri.shape[0]):
        count += (rasterize(pos, tri[f:f + 1], (H, W))[0, ..., 3] > 0).float()
    assert torch.equal(count, torch.ones(H, W))
    assert (rasterize(pos, tri, (H, W))[..., 3] > 0).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_perspective_correct_barycentrics(dtype):
    """Interpolating clip-space x, y, z, w gives a point that projects onto the pixel centre."""
    H, W = 20, 26
    pos, tri = random_mesh(2, 30, 25, dtype, seed=7)
    rast = rasterize(pos, tri, (H, W))
    clip = interpolate(pos, rast, tri)
    cov = rast[..., 3] > 0
    xs = (2 * torch.arange(W, dtype=dtype) + 1) / W - 1
    ys = (2 * torch.arange(H, dtype=dtype) + 1) / H - 1
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    ndc_x = (clip[..., 0] / clip[..., 3])[cov]
    ndc_y = (clip[..., 1] / clip[..., 3])[cov]
    torch.testing.assert_close(ndc_x, xs.expand(2, H, W)[cov], atol=tol, rtol=0)
    torch.testing.assert_close(ndc_y, ys[:, None].expand(2, H, W)[cov], atol=tol, rtol=0)
    torch.testing.assert_close(rast[..., 2][cov], (clip[..., 2] / clip[..., 3])[cov], atol=tol, rtol=0)
    assert ((rast[..., 0] >= 0) & (rast[..., 1] >= 0) & (rast[..., 0] + rast[..., 1] <= 1 + tol))[cov].all()


def test_nearest_wins_and_tie_break():
    """Two overlapping triangles: the nearer wins; at equal depth the lower id wins."""
    base = torch.tensor([[-0.9, -0.9, 0.0, 1.0], [0.9, -0.9, 0.0, 1.0], [0.0, 0.9, 0.0, 1.0]], dtype=torch.float64)
    far = base.clone()
    far[:, 2] = 0.5
    near = base.clone()
    near[:, 2] = -0.5
    tri = torch.tensor([[0, 1, 2], [3, 4, 5]], dtype=torch.int32)
    ids = rasterize(torch.cat([far, near]), tri, (8, 8))[0, ..., 3]
    assert set(ids.unique().tolist()) == {0.0, 2.0}
    ids = rasterize(torch.cat([near, far]), tri, (8, 8))[0, ..., 3]
    assert set(ids.unique().tolist()) == {0.0, 1.0}
    ids = rasterize(torch.cat([base, base]), tri, (8, 8))[0, ..., 3]
    assert set(ids.unique().tolist()) == {0.0, 1.0}


def test_both_windings_rasterized():
    pos = torch.tensor([[-0.9, -0.9, 0.0, 1.0], [0.9, -0.9, 0.0, 1.0], [0.0, 0.9, 0.0, 1.0]])
    a = rasterize(pos, torch.tensor([[0, 1, 2]]), (8, 8))
    b = rasterize(pos, torch.tensor([[0, 2, 1]]), (8, 8))
    assert (a[..., 3] > 0).sum() > 10
    assert torch.equal(a[..., 3], b[..., 3])
    torch.testing.assert_close(a[..., 0], b[..., 0])  # first vertex keeps its weight
    torch.testing.assert_close(b[..., 1], torch.where(a[..., 3] > 0, 1 - a[..., 0] - a[..., 1], 0 * a[..., 1]))


def test_result_independent_of_thread_count():
    pos, tri = sphere_mesh(3, torch.float32, subdivisions=3)
    attr = torch.randn(pos.shape[1], 3)
    g = torch.randn(3, 40, 30, 3)
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, 3):
            torch.set_num_threads(n)
            p = pos.clone().requires_grad_(True)
            rast = rasterize(p, tri, (40, 30))
            (gp,) = torch.autograd.grad(interpolate(attr, rast, tri), p, g)
            results.append((rast.detach(), gp))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(results[0][0], results[1][0])
    torch.testing.assert_close(results[0][1], results[1][1])


# ---- CPU paths: binned, direct, scalar and SIMD give the same bits --------------------------------

def dense_grid(batch, n=97, seed=0):
    """An n x n grid of sub-pixel triangles on a wavy surface with jittered vertices, per-image
    rotations; V is not a multiple of 8 and the triangle order mixes both halves of each quad."""
    g = torch.Generator().manual_seed(seed)
    ys, xs = torch.meshgrid(torch.linspace(-0.8, 0.8, n), torch.linspace(-0.8, 0.8, n), indexing="ij")
    zs = 0.2 * torch.cos(3 * xs) * torch.sin(2 * ys)
    v = torch.stack([xs, ys, zs], -1).reshape(-1, 3).double()
    v = v + 0.002 * torch.randn(v.shape, generator=g, dtype=torch.float64)
    verts = torch.stack([v @ rotation(0.4 * b, 0.25 * b, torch.float64).T for b in range(batch)])
    a = (torch.arange(n - 1)[:, None] * n + torch.arange(n - 1)[None, :]).reshape(-1)
    quads = torch.stack([a, a + 1, a + n, a + n + 1], -1)
    tri = torch.cat([quads[:, [0, 1, 2]], quads[:, [1, 3, 2]]], 0).to(torch.int32)
    return project(verts).float(), tri


def soup_with_bad_vertices(batch):
    """Random triangles, many small, with vertices behind the eye, NaN, huge, and repeated."""
    pos, tri = random_mesh(batch, 301, 613, torch.float32, seed=21)
    pos[:, 100:200, :2] *= 0.05  # small triangles
    pos[:, :7, 3] = -0.5
    pos[:, 7:9, 0] = float("nan")
    pos[:, 9:11, 1] = 1e30
    tri[:40, 1] = tri[:40, 0]  # zero area
    return pos, tri


def _run_all(pos, tri, height, width, attr, grad_out, grad_rast, cpu_path="auto", simd=True):
    rast = ops.rasterize(pos, tri, height, width, cpu_path=cpu_path, simd=simd)
    out = ops.interpolate(attr, rast, tri, simd=simd)
    ga, gr = ops.interpolate_backward(grad_out, attr, rast, tri, simd=simd)
    gp = ops.rasterize_backward(grad_rast, pos, tri, rast, simd=simd)
    return rast, out, ga, gr, gp


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ["grid", "soup", "sphere"])
@pytest.mark.parametrize("batch,height,width", [(3, 64, 80), (1, 61, 47), (4, 13, 9)])
def test_cpu_paths_are_bit_identical(monkeypatch, dtype, case, batch, height, width):
    """The binned and direct rasterizers, with and without the AVX2 kernels (``cpu_path`` and
    ``simd`` arguments), give identical results for all four ops (B < threads exercises the
    split-and-merge path)."""
    monkeypatch.delenv("PYFAID_CPU_RASTER", raising=False)  # the debugging overrides stay off
    monkeypatch.delenv("PYFAID_CPU_SIMD", raising=False)
    if case == "grid":
        pos, tri = dense_grid(batch)
    elif case == "soup":
        pos, tri = soup_with_bad_vertices(batch)
    else:
        pos, tri = sphere_mesh(batch, torch.float32, subdivisions=4)
    pos = pos.to(dtype)
    g = torch.Generator().manual_seed(batch * 7 + height)
    shared = case == "sphere"
    attr = torch.randn(1 if shared else batch, pos.shape[1], 3, generator=g, dtype=dtype)
    grad_out = torch.randn(batch, height, width, 3, generator=g, dtype=dtype)
    grad_rast = torch.randn(batch, height, width, 4, generator=g, dtype=dtype)
    grad_rast[:, ::3, :, 1] = 0  # pixels with only one non-zero barycentric gradient
    threads = torch.get_num_threads()
    results = {}
    try:
        torch.set_num_threads(max(2, threads))
        for path in ("binned", "direct"):
            for simd in (True, False):
                results[path, simd] = _run_all(pos, tri, height, width, attr, grad_out, grad_rast,
                                               cpu_path=path, simd=simd)
    finally:
        torch.set_num_threads(threads)
    base = results["binned", False]
    assert (base[0][..., 3] > 0).float().mean() > 0.1
    for key, res in results.items():
        for name, a, b in zip(("rast", "out", "grad_attr", "grad_rast", "grad_pos"), base, res):
            assert torch.equal(a, b), f"{name} differs between binned/scalar and {key}"
    if batch == 1:  # and the direct path agrees with the reference where no centre is ambiguous
        ref, amb = rasterize_bruteforce(pos.double(), tri, height, width)
        rast = results["direct", True][0]
        assert torch.equal(rast[..., 3][~amb], ref[..., 3][~amb].to(dtype))


def test_cpu_path_argument_and_variable_are_checked(monkeypatch):
    pos, tri = random_mesh(1, 10, 4, torch.float32)
    monkeypatch.delenv("PYFAID_CPU_RASTER", raising=False)
    with pytest.raises(RuntimeError, match="`cpu_path` must be auto, binned or direct, got 'tiled'"):
        rasterize(pos, tri, 8, cpu_path="tiled")
    for path in ("auto", "binned", "direct"):
        assert rasterize(pos, tri, 8, cpu_path=path, simd=False).shape == (1, 8, 8, 4)
    # The environment variable (a debugging override) is read, and checked, even when the
    # argument names a path.
    monkeypatch.setenv("PYFAID_CPU_RASTER", "tiled")
    with pytest.raises(RuntimeError, match="PYFAID_CPU_RASTER must be auto, binned or direct"):
        ops.rasterize(pos, tri, 8, 8, cpu_path="direct")
    monkeypatch.setenv("PYFAID_CPU_RASTER", "auto")
    assert ops.rasterize(pos, tri, 8, 8, cpu_path="binned").shape == (1, 8, 8, 4)


def test_simd_argument_through_autograd():
    """rasterize/interpolate(simd=False), forward and backward through autograd, give the bits of
    the default path (tests/test_topology.py checks that the flag reaches the backward ops)."""
    pos, tri = dense_grid(2, n=41)
    attr = torch.randn(2, pos.shape[1], 3)
    g = torch.randn(2, 30, 34, 3)
    grads = []
    for simd in (True, False):
        p = pos.clone().requires_grad_(True)
        a = attr.clone().requires_grad_(True)
        out = interpolate(a, rasterize(p, tri, (30, 34), simd=simd), tri, simd=simd)
        grads.append((out.detach(), *torch.autograd.grad(out, (p, a), g)))
    for x, y in zip(*grads):
        assert torch.equal(x, y)


# ---- interpolate -------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shared_attr", [True, False])
def test_interpolate_matches_reference(dtype, shared_attr):
    pos, tri = random_mesh(3, 30, 25, dtype, seed=11)
    rast = rasterize(pos, tri, (12, 18))
    attr = torch.randn((30, 5) if shared_attr else (3, 30, 5), dtype=dtype)
    out = interpolate(attr, rast, tri)
    assert out.shape == (3, 12, 18, 5)
    torch.testing.assert_close(out, interpolate_reference(attr, rast, tri))
    assert (out[rast[..., 3] == 0] == 0).all()


def test_interpolate_backward_matches_reference():
    pos, tri = random_mesh(2, 30, 25, torch.float64, seed=12)
    rast = rasterize(pos, tri, (12, 18)).requires_grad_(True)
    attr = torch.randn(2, 30, 4, dtype=torch.float64, requires_grad=True)
    g = torch.randn(2, 12, 18, 4, dtype=torch.float64)
    ga, gr = torch.autograd.grad(interpolate(attr, rast, tri), (attr, rast), g)
    ga_ref, gr_ref = torch.autograd.grad(interpolate_reference(attr, rast, tri), (attr, rast), g)
    torch.testing.assert_close(ga, ga_ref)
    torch.testing.assert_close(gr[..., :2], gr_ref[..., :2])
    assert (gr[..., 2:] == 0).all()


def test_grad_pos_matches_reference():
    """grad pos through rasterize -> interpolate equals autograd through the reference."""
    H, W = 16, 20
    pos, tri = random_mesh(2, 30, 25, torch.float64, seed=5)
    attr = torch.randn(2, 30, 3, dtype=torch.float64)
    _, amb = rasterize_bruteforce(pos, tri, H, W)
    g = torch.randn(2, H, W, 3, dtype=torch.float64) * (~amb)[..., None]
    p1 = pos.clone().requires_grad_(True)
    (ours,) = torch.autograd.grad(interpolate(attr, rasterize(p1, tri, (H, W)), tri), p1, g)
    p2 = pos.clone().requires_grad_(True)
    ref_rast, _ = rasterize_bruteforce(p2, tri, H, W)
    (ref,) = torch.autograd.grad(interpolate_reference(attr, ref_rast, tri), p2, g)
    assert ours.abs().sum() > 0
    torch.testing.assert_close(ours, ref)
    assert (ours[..., 2] == 0).all()  # z/w carries no gradient


# ---- gradcheck ---------------------------------------------------------------------------------

def _gradcheck_scene():
    """Two perspective triangles, two images on 8x10, no pixel centre near an edge (checked)."""
    pos = torch.tensor([[[-0.7, -0.6, 0.1, 1.0], [0.8, -0.7, 0.3, 1.4], [0.1, 0.9, -0.2, 0.8],
                         [-0.9, 0.2, 0.5, 1.1], [0.5, 0.55, 0.4, 1.2], [-0.2, -0.95, 0.2, 0.9]]],
                       dtype=torch.float64)
    pos = torch.cat([pos, pos * torch.tensor([1.0, 1.0, 1.0, 1.05], dtype=torch.float64)])
    tri = torch.tensor([[0, 1, 2], [3, 4, 5]], dtype=torch.int32)
    _, amb = rasterize_bruteforce(pos, tri, 8, 10, tol=1e-3, ztol=1e-3)
    assert not amb.any(), "test scene has pixel centres near edges"
    return pos, tri


def test_gradcheck_interpolate_attr():
    pos, tri = _gradcheck_scene()
    rast = rasterize(pos, tri, (8, 10))
    attr = torch.randn(2, 6, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a: interpolate(a, rast, tri), (attr,), fast_mode=True)
    shared = torch.randn(6, 2, dtype=torch.float64, requires_grad=True)  # broadcast over the batch
    assert torch.autograd.gradcheck(lambda a: interpolate(a, rast, tri), (shared,), fast_mode=True)


def test_gradcheck_pos_through_rasterize():
    pos, tri = _gradcheck_scene()
    attr = torch.randn(1, 6, 3, dtype=torch.float64)
    pos = pos.requires_grad_(True)  # [2, 6, 4]: both images, one shared attribute set

    def fn(p):
        return interpolate(attr, rasterize(p, tri, (8, 10)), tri)

    assert torch.autograd.gradcheck(fn, (pos,), eps=1e-6, atol=1e-5)


# ---- opcheck -----------------------------------------------------------------------------------

def _op_samples(device, dtype=torch.float64):
    pos, tri = random_mesh(2, 20, 15, dtype, seed=2)
    pos, tri = pos.to(device), tri.to(device)
    rast = ops.rasterize(pos, tri, 9, 11)
    attr = torch.randn(2, 20, 3, dtype=dtype, device=device)
    return pos, tri, rast, attr


_FLAG_SETS = [{}, {"check_indices": False, "simd": False}]


@pytest.mark.parametrize("flags", _FLAG_SETS)
def test_opcheck_rasterize(device, flags):
    pos, tri, rast, _ = _op_samples(device)
    paths = [{}] if not flags else [{"cpu_path": "binned"}, {"cpu_path": "direct"}]
    for path in paths:
        torch.library.opcheck(ops.rasterize.default, (pos.clone().requires_grad_(True), tri, 9, 11),
                              {**flags, **path})
    torch.library.opcheck(ops.rasterize_backward.default, (torch.randn_like(rast), pos, tri, rast), flags)


@pytest.mark.parametrize("flags", _FLAG_SETS)
def test_opcheck_interpolate(device, flags):
    pos, tri, rast, attr = _op_samples(device)
    torch.library.opcheck(ops.interpolate.default,
                          (attr.clone().requires_grad_(True), rast.clone().requires_grad_(True), tri), flags)
    torch.library.opcheck(ops.interpolate.default, (attr[:1].clone().requires_grad_(True), rast, tri), flags)
    g = torch.randn(2, 9, 11, 3, dtype=attr.dtype, device=device)
    torch.library.opcheck(ops.interpolate_backward.default, (g, attr, rast, tri), flags)


# ---- edge cases with defined results -----------------------------------------------------------------

def test_empty_mesh():
    pos = torch.randn(2, 5, 4)
    rast = rasterize(pos, torch.zeros(0, 3, dtype=torch.int32), (6, 7))
    assert rast.shape == (2, 6, 7, 4) and (rast == 0).all()
    out = interpolate(torch.randn(5, 3), rast, torch.zeros(0, 3, dtype=torch.int32))
    assert (out == 0).all()


def test_culled_triangles_give_empty_image():
    tri = torch.tensor([[0, 1, 2]], dtype=torch.int32)
    big = torch.tensor([[-0.9, -0.9, 0.0, 1.0], [0.9, -0.9, 0.0, 1.0], [0.0, 0.9, 0.0, 1.0]])
    behind = big.clone()
    behind[0, 3] = -1.0  # one vertex behind the camera
    zero_w = big.clone()
    zero_w[1, 3] = 0.0
    outside = big.clone()
    outside[:, 0] += 3.0  # right of the clip volume
    too_far = big.clone()
    too_far[:, 2] = 2.0  # beyond the far plane
    degenerate = big.clone()
    degenerate[2] = degenerate[0] * 0.5 + degenerate[1] * 0.5
    nan = big.clone()
    nan[2, 0] = float("nan")
    for pos in (behind, zero_w, outside, too_far, degenerate, nan):
        rast = rasterize(pos, tri, (8, 8))
        assert (rast == 0).all()
    same = big.clone()
    same[1] = same[0]  # two identical vertices
    assert (rasterize(same, tri, (8, 8)) == 0).all()
    # a culled triangle does not hide a valid one behind it
    assert (rasterize(torch.cat([behind, big + torch.tensor([0, 0, 0.5, 0])]),
                      torch.tensor([[0, 1, 2], [3, 4, 5]]), (8, 8))[..., 3] == 2).any()


def test_near_plane_clips_per_pixel():
    """A triangle crossing z/w = -1 covers only the pixels behind the near plane."""
    pos = torch.tensor([[-1.0, -1.0, -3.0, 1.0], [1.0, -1.0, 1.0, 1.0], [-1.0, 1.0, 1.0, 1.0],
                        [1.0, 1.0, 1.0, 1.0]], dtype=torch.float64)
    tri = torch.tensor([[0, 1, 2], [1, 3, 2]], dtype=torch.int32)
    rast = rasterize(pos, tri, (16, 16))
    cov = rast[..., 3] > 0
    assert 0 < cov.sum() < 256
    assert (rast[..., 2][cov] >= -1).all() and (rast[..., 2][cov] <= 1).all()


def test_one_pixel_and_non_square():
    pos = torch.tensor([[-1.0, -1.0, 0.0, 1.0], [3.0, -1.0, 0.0, 1.0], [-1.0, 3.0, 0.0, 1.0]])
    tri = torch.tensor([[0, 1, 2]], dtype=torch.int32)
    r = rasterize(pos, tri, (1, 1))
    assert r.shape == (1, 1, 1, 4) and r[0, 0, 0, 3] == 1
    torch.testing.assert_close(r[0, 0, 0, :2], torch.tensor([0.5, 0.25]))
    r = rasterize(pos, tri, (3, 9))
    assert r.shape == (1, 3, 9, 4) and (r[..., 3] == 1).all()
    r = rasterize(pos, tri, 5)
    assert r.shape == (1, 5, 5, 4)


def test_large_triangle_many_tiles():
    """A screen-filling quad and a small triangle in front: tiles and bboxes at image edges."""
    pos = torch.tensor([[-3, -3, 0.5, 1], [3, -3, 0.5, 1], [-3, 3, 0.5, 1], [3, 3, 0.5, 1],
                        [0.1, 0.1, 0, 1], [0.6, 0.2, 0, 1], [0.3, 0.7, 0, 1]], dtype=torch.float32)
    tri = torch.tensor([[0, 1, 2], [1, 3, 2], [4, 5, 6]], dtype=torch.int32)
    check_against_reference(pos[None], tri, 70, 45, torch.float32)
    assert (rasterize(pos, tri, (70, 45))[..., 3] > 0).all()


# ---- bad input --------------------------------------------------------------------------------

def test_bad_inputs():
    pos, tri = random_mesh(1, 10, 4, torch.float32)
    with pytest.raises(RuntimeError, match="pos"):
        ops.rasterize(pos.to(torch.int32), tri, 4, 4)
    with pytest.raises(RuntimeError, match="pos"):
        ops.rasterize(pos.half(), tri, 4, 4)
    with pytest.raises(RuntimeError, match="tri"):
        ops.rasterize(pos, tri.long(), 4, 4)
    with pytest.raises(TypeError, match="tri"):
        rasterize(pos, tri.float(), (4, 4))
    bad = tri.clone()
    bad[0, 1] = 10
    with pytest.raises(RuntimeError, match=r"tri.*\[0, 10\)"):
        rasterize(pos, bad, (4, 4))
    bad[0, 1] = -1
    with pytest.raises(RuntimeError, match="tri"):
        rasterize(pos, bad, (4, 4))
    with pytest.raises(RuntimeError, match="contiguous"):
        ops.rasterize(pos.transpose(0, 1).contiguous().transpose(0, 1).expand(2, -1, -1), tri, 4, 4)
    with pytest.raises(RuntimeError, match="pos"):
        ops.rasterize(pos[..., :3].contiguous(), tri, 4, 4)
    with pytest.raises(RuntimeError, match="pos"):
        ops.rasterize(pos[0], tri, 4, 4)
    with pytest.raises(RuntimeError, match="tri"):
        ops.rasterize(pos, tri[:, :2].contiguous(), 4, 4)
    with pytest.raises(RuntimeError, match="height"):
        ops.rasterize(pos, tri, 0, 4)
    rast = rasterize(pos, tri, (4, 4))
    attr = torch.randn(1, 10, 3)
    with pytest.raises(RuntimeError, match="rast.*same dtype"):
        ops.interpolate(attr.double(), rast, tri)
    with pytest.raises(RuntimeError, match="attr"):
        ops.interpolate(attr[0], rast, tri)
    with pytest.raises(RuntimeError, match="attr"):
        ops.interpolate(torch.randn(3, 10, 3), rast, tri)
    with pytest.raises(RuntimeError, match="tri"):
        interpolate(torch.randn(5, 3), rast, tri)  # tri indexes beyond attr's 5 rows
    with pytest.raises(RuntimeError, match="rast"):
        ops.interpolate(attr, rast[..., :3].contiguous(), tri)
    with pytest.raises(RuntimeError, match="rast"):
        ops.interpolate(attr, rast.transpose(1, 2), tri)
    big_id = rast.clone()
    big_id[0, 0, 0, 3] = 100
    with pytest.raises(RuntimeError, match="rast"):
        ops.interpolate(attr, big_id, tri)
    with pytest.raises(RuntimeError, match="grad_rast"):
        ops.rasterize_backward(torch.zeros(1, 4, 5, 4), pos, tri, rast)
    with pytest.raises(RuntimeError, match="grad_out"):
        ops.interpolate_backward(torch.zeros(1, 4, 4, 2), attr, rast, tri)


def test_cuda_tensor_on_cpu_only_build_raises_clearly():
    from types import SimpleNamespace

    from pyfaid import _ext

    if _ext.WITH_CUDA:
        pytest.skip("this build has CUDA kernels")
    fake_cuda = SimpleNamespace(is_cuda=True)  # stands in for a CUDA tensor without a GPU
    with pytest.raises(RuntimeError, match="`pos` is a CUDA tensor.*no CUDA kernels"):
        rasterize(fake_cuda, torch.zeros(1, 3, dtype=torch.int32), (4, 4))
    with pytest.raises(RuntimeError, match="`attr` is a CUDA tensor.*no CUDA kernels"):
        interpolate(fake_cuda, torch.zeros(1, 4, 4, 4), torch.zeros(1, 3, dtype=torch.int32))


# ---- CPU / CUDA parity -----------------------------------------------------------------------------

@requires_cuda
@pytest.mark.parametrize("dtype", DTYPES)
def test_cuda_matches_cpu(dtype):
    H, W = 37, 53
    pos, tri = sphere_mesh(3, dtype, subdivisions=3)
    pos2, tri2 = random_mesh(3, 200, 300, dtype, seed=9)
    pos = torch.cat([pos, pos2 + 0.0], 1)
    tri = torch.cat([tri, tri2 + sphere_mesh(1, dtype, 3)[0].shape[1]])
    _, amb = rasterize_bruteforce(pos, tri, H, W)
    r_cpu = rasterize(pos, tri, (H, W))
    r_gpu = rasterize(pos.cuda(), tri.cuda(), (H, W)).cpu()
    ok = ~amb
    assert torch.equal(r_cpu[..., 3][ok], r_gpu[..., 3][ok])
    torch.testing.assert_close(r_cpu[ok], r_gpu[ok], atol=TOL[dtype], rtol=0)
    # interpolate + both backward ops, on the CPU's rast
    attr = torch.randn(3, pos.shape[1], 4, dtype=dtype)
    g = torch.randn(3, H, W, 4, dtype=dtype)
    out_cpu = interpolate(attr, r_cpu, tri)
    out_gpu = interpolate(attr.cuda(), r_cpu.cuda(), tri.cuda()).cpu()
    torch.testing.assert_close(out_cpu, out_gpu)
    ga_c, gr_c = ops.interpolate_backward(g, attr, r_cpu, tri)
    ga_g, gr_g = ops.interpolate_backward(g.cuda(), attr.cuda(), r_cpu.cuda(), tri.cuda())
    # grad_attr sums many pixels per vertex; CUDA's atomics add them in another order
    acc_tol = dict(atol=1e-4, rtol=1e-5) if dtype == torch.float32 else {}
    torch.testing.assert_close(ga_c, ga_g.cpu(), **acc_tol)
    torch.testing.assert_close(gr_c, gr_g.cpu())
    gp_c = ops.rasterize_backward(gr_c, pos, tri, r_cpu)
    gp_g = ops.rasterize_backward(gr_c.cuda(), pos.cuda(), tri.cuda(), r_cpu.cuda()).cpu()
    torch.testing.assert_close(gp_c, gp_g, atol=1e-3 if dtype == torch.float32 else 1e-9, rtol=1e-3)


def _tile_list_entries(pos, tri, height, width, tile=16):
    """Upper estimate of the CUDA tile lists' total length: the tiles each triangle's clamped
    screen bbox overlaps (triangles with a vertex at w <= 0 left out)."""
    w = pos[..., 3]
    sx = (pos[..., 0] / w + 1) * width / 2 - 0.5  # pixel index coordinates
    sy = (pos[..., 1] / w + 1) * height / 2 - 0.5
    t = tri.long()
    x0, x1 = sx[:, t].amin(-1).ceil(), sx[:, t].amax(-1).floor()
    y0, y1 = sy[:, t].amin(-1).ceil(), sy[:, t].amax(-1).floor()
    on_screen = (x0 <= x1) & (y0 <= y1) & (x1 >= 0) & (x0 <= width - 1) & (y1 >= 0) & (y0 <= height - 1)
    x0, x1 = x0.clamp(0, width - 1), x1.clamp(0, width - 1)
    y0, y1 = y0.clamp(0, height - 1), y1.clamp(0, height - 1)
    n = (x1 // tile - x0 // tile + 1) * (y1 // tile - y0 // tile + 1)
    return int((n * (on_screen & (w[:, t] > 0).all(-1))).sum())


@requires_cuda
@pytest.mark.parametrize("dtype", DTYPES)
def test_cuda_tile_list_overflow_matches_cpu(dtype):
    """Many large overlapping triangles: the tile lists exceed their fixed capacity (2 entries
    per triangle + 64 per tile, rasterize_cuda.cu), and the tiles past it scan every triangle of
    their image instead. The result equals the CPU's, as for lists that fit."""
    H, W, B = 96, 112, 2
    pos, tri = random_mesh(B, 600, 900, dtype, seed=31)
    pos[..., :2] *= 1.5  # most triangles span many tiles
    small_pos, small_tri = sphere_mesh(B, dtype, subdivisions=3)  # and a mesh of small ones
    pos = torch.cat([pos, small_pos], 1)
    tri = torch.cat([tri, small_tri + 600])
    tiles = ((H + 15) // 16) * ((W + 15) // 16)
    assert _tile_list_entries(pos, tri, H, W) > 2 * (2 * B * tri.shape[0] + 64 * B * tiles)
    _, amb = rasterize_bruteforce(pos, tri, H, W)
    r_cpu = rasterize(pos, tri, (H, W))
    r_gpu = rasterize(pos.cuda(), tri.cuda(), (H, W)).cpu()
    ok = ~amb
    assert (r_cpu[..., 3] > 0).float().mean() > 0.5
    assert torch.equal(r_cpu[..., 3][ok], r_gpu[..., 3][ok])
    torch.testing.assert_close(r_cpu[ok], r_gpu[ok], atol=TOL[dtype], rtol=0)


@requires_cuda
def test_cuda_edge_cases_and_errors():
    pos, tri = random_mesh(2, 10, 6, torch.float32)
    pos, tri = pos.cuda(), tri.cuda()
    assert (rasterize(pos, tri[:0], (5, 6)) == 0).all()
    assert rasterize(pos, tri, (1, 1)).shape == (2, 1, 1, 4)
    bad = tri.clone()
    bad[0, 0] = 10
    with pytest.raises(RuntimeError, match=r"`tri` indices must lie in \[0, 10\)"):
        rasterize(pos, bad, (4, 4))
    # unchecked on CUDA, a triangle with an out-of-range index is culled, never read
    assert not (ops.rasterize(pos, bad, 16, 16, check_indices=False)[..., 3] == 1).any()
    with pytest.raises(RuntimeError, match="tri"):
        interpolate(torch.randn(5, 2, device="cuda"), rasterize(pos, tri, (4, 4)), tri)
    pos.requires_grad_(True)
    out = interpolate(torch.randn(10, 3, device="cuda"), rasterize(pos, tri, (16, 16)), tri)
    out.sum().backward()
    assert torch.isfinite(pos.grad).all()
