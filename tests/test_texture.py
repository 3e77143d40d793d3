"""Tests of pyfaid.render.texture / texture_mipmaps and the texture ops (CPU, and CUDA when
present): bilinear against torch.nn.functional.grid_sample, nearest against a plain-PyTorch
lookup, trilinear against an explicit mip-pyramid lookup written here in plain PyTorch, gradients
(gradcheck in float64 and against autograd through the references), opcheck, CPU/CUDA parity and
bad input."""

import pytest
import torch

from pyfaid._ext import ops
from pyfaid.render import texture, texture_mipmaps
from reference_texture import (bilinear_reference, mip_level_reference, nearest_reference,
                               pyramid_reference, trilinear_reference)

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _inputs(B=2, Bt=2, H=5, W=7, ht=8, wt=16, C=3, spread=1.6, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    tex = torch.rand(Bt, ht, wt, C, generator=g, dtype=dtype)
    uv = torch.rand(B, H, W, 2, generator=g, dtype=dtype) * spread - (spread - 1) / 2
    return tex, uv


# ---- forward against the references --------------------------------------------------------------

@pytest.mark.parametrize("boundary", ["wrap", "clamp", "zero"])
@pytest.mark.parametrize("Bt,C", [(1, 3), (2, 1), (2, 4), (1, 6)])
def test_bilinear_matches_grid_sample(boundary, Bt, C):
    tex, uv = _inputs(Bt=Bt, C=C, seed=Bt * 10 + C)
    out = texture(tex, uv, filter_mode="linear", boundary_mode=boundary)
    torch.testing.assert_close(out, bilinear_reference(tex, uv, boundary), atol=1e-12, rtol=0)
    torch.testing.assert_close(texture(tex.float(), uv.float(), boundary_mode=boundary),
                               out.float(), atol=2e-6, rtol=0)  # "auto" without uv_da: bilinear


@pytest.mark.parametrize("boundary", ["wrap", "clamp", "zero"])
def test_bilinear_gradients_match_grid_sample(boundary):
    tex, uv = _inputs(Bt=1, seed=3)
    g = torch.randn(2, 5, 7, 3, dtype=tex.dtype)
    ours = torch.autograd.grad(texture(t := tex.clone().requires_grad_(True), u := uv.clone().requires_grad_(True),
                                       boundary_mode=boundary), (t, u), g)
    ref = torch.autograd.grad(bilinear_reference(t2 := tex.clone().requires_grad_(True),
                                                 u2 := uv.clone().requires_grad_(True), boundary), (t2, u2), g)
    torch.testing.assert_close(ours[0], ref[0], atol=1e-12, rtol=0)
    torch.testing.assert_close(ours[1], ref[1], atol=1e-10, rtol=0)


@pytest.mark.parametrize("boundary", ["wrap", "clamp", "zero"])
def test_nearest_matches_reference(boundary):
    tex, uv = _inputs(Bt=2, seed=5)
    out = texture(tex, uv, filter_mode="nearest", boundary_mode=boundary)
    torch.testing.assert_close(out, nearest_reference(tex, uv, boundary), atol=0, rtol=0)
    t = tex.clone().requires_grad_(True)
    u = uv.clone().requires_grad_(True)
    g = torch.randn_like(out)
    gt, gu = torch.autograd.grad(texture(t, u, filter_mode="nearest", boundary_mode=boundary), (t, u), g)
    (gt_ref,) = torch.autograd.grad(nearest_reference(t, uv, boundary), (t,), g)
    torch.testing.assert_close(gt, gt_ref)
    assert (gu == 0).all()


def _uv_da(B=2, H=5, W=7, texels=16, seed=0):
    """Image-space uv derivatives of random directions, for footprints of about 0.5 to 16 texels
    (log-uniform) of a texture side of `texels`: mip levels from 0 to about 4."""
    g = torch.Generator().manual_seed(seed)
    direction = torch.randn(B, H, W, 4, generator=g, dtype=torch.float64)
    size = 2.0 ** (torch.rand(B, H, W, 1, generator=g, dtype=torch.float64) * 5 - 1)
    return direction * size / (1.4 * texels)


@pytest.mark.parametrize("mode", ["linear-mipmap-linear", "linear-mipmap-nearest"])
@pytest.mark.parametrize("boundary", ["wrap", "clamp", "zero"])
@pytest.mark.parametrize("with_bias", [False, True])
def test_mipmap_matches_pyramid_reference(mode, boundary, with_bias):
    tex, uv = _inputs(Bt=1, ht=16, wt=32, seed=7)
    uv_da = _uv_da(seed=8)
    bias = torch.randn(2, 5, 7, dtype=torch.float64) if with_bias else None
    out = texture(tex, uv, uv_da, bias, filter_mode=mode, boundary_mode=boundary)
    ref = trilinear_reference(tex, uv, uv_da, bias, boundary, 5, nearest_level=mode.endswith("nearest"))
    torch.testing.assert_close(out, ref, atol=1e-12, rtol=0)
    # the levels really vary over the image (not all magnification)
    level = mip_level_reference(uv_da, bias, 16, 32, 5)
    assert (level > 0.5).float().mean() > 0.3 and (level < 0.5).any()


def test_trilinear_gradients_match_pyramid_reference():
    tex, uv = _inputs(Bt=2, ht=16, wt=16, seed=9)
    uv_da, bias = _uv_da(seed=10), 0.3 * torch.randn(2, 5, 7, dtype=torch.float64)
    g = torch.randn(2, 5, 7, 3, dtype=torch.float64)
    args = [t.clone().requires_grad_(True) for t in (tex, uv, uv_da, bias)]
    ours = torch.autograd.grad(texture(*args, boundary_mode="clamp"), args, g)
    args = [t.clone().requires_grad_(True) for t in (tex, uv, uv_da, bias)]
    ref = torch.autograd.grad(trilinear_reference(*args, "clamp", 4), args, g)
    for name, a, b in zip(("tex", "uv", "uv_da", "bias"), ours, ref):
        assert b.abs().sum() > 0, name
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-9, msg=name)


def test_mip_pyramid_and_passing_it_in():
    tex = torch.rand(2, 8, 32, 3, dtype=torch.float64)  # reaches 1 x 4, then halves along x only
    mips = texture_mipmaps(tex)
    ref = pyramid_reference(tex, 5)[1:]
    assert len(mips) == 5 and [tuple(m.shape) for m in mips.levels] == [tuple(r.shape) for r in ref]
    for a, b in zip(mips.levels, ref):
        torch.testing.assert_close(a, b, atol=1e-14, rtol=0)
    assert len(texture_mipmaps(tex, max_mip_level=2)) == 2
    _, uv = _inputs(Bt=2, seed=11)
    uv_da = _uv_da(seed=12)
    a = texture(tex, uv, uv_da, mip=mips)
    torch.testing.assert_close(a, texture(tex, uv, uv_da), atol=0, rtol=0)
    # gradients reach tex through the passed-in pyramid too (the op pushes them down the levels)
    t = tex.clone().requires_grad_(True)
    g = torch.randn_like(a)
    (ga,) = torch.autograd.grad(texture(t, uv, uv_da, mip=texture_mipmaps(t)), (t,), g)
    (gb,) = torch.autograd.grad(trilinear_reference(t, uv, uv_da, None, "wrap", 5), (t,), g)
    torch.testing.assert_close(ga, gb, atol=1e-12, rtol=0)
    # max_mip_level limits the levels used, 0 turns mipmapping off
    torch.testing.assert_close(texture(tex, uv, uv_da, max_mip_level=0), texture(tex, uv), atol=0, rtol=0)
    torch.testing.assert_close(texture(tex, uv, uv_da, mip=mips, max_mip_level=2),
                               trilinear_reference(tex, uv, uv_da, None, "wrap", 2), atol=1e-12, rtol=0)


# ---- gradcheck / opcheck ----------------------------------------------------------------------

@pytest.mark.parametrize("boundary", ["wrap", "clamp", "zero"])
def test_gradcheck_bilinear(boundary):
    tex, uv = _inputs(B=2, Bt=1, H=3, W=4, ht=4, wt=8, seed=13)
    tex.requires_grad_(True)
    uv.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t, u: texture(t, u, boundary_mode=boundary), (tex, uv))


def test_gradcheck_trilinear():
    tex, uv = _inputs(B=2, Bt=2, H=3, W=4, ht=8, wt=8, C=2, seed=14)
    uv_da = _uv_da(2, 3, 4, texels=8, seed=15)
    bias = 0.2 * torch.randn(2, 3, 4, dtype=torch.float64)
    inputs = [t.requires_grad_(True) for t in (tex, uv, uv_da, bias)]
    assert torch.autograd.gradcheck(lambda *a: texture(*a, boundary_mode="zero"), inputs)


def _op_inputs(device, mip=True):
    tex, uv = _inputs(Bt=1, ht=8, wt=8, seed=16)
    tex, uv = tex.to(device), uv.to(device)
    levels = ops.texture_mip(tex, -1) if mip else []
    return tex, levels, uv, _uv_da(texels=8, seed=17).to(device), torch.randn(2, 5, 7, dtype=tex.dtype, device=device)


@pytest.mark.parametrize("mode", ["nearest", "linear", "linear-mipmap-nearest", "linear-mipmap-linear"])
def test_opcheck(device, mode):
    tex, levels, uv, uv_da, bias = _op_inputs(device)
    mip = "mipmap" in mode
    levels = levels if mip else []
    for da, b in ((uv_da, None), (None, bias), (uv_da, bias)) if mip else ((None, None),):
        args = (tex.clone().requires_grad_(True), levels, uv.clone().requires_grad_(True),
                None if da is None else da.clone().requires_grad_(True),
                None if b is None else b.clone().requires_grad_(True), mode, "clamp")
        torch.library.opcheck(ops.texture.default, args)
        g = torch.randn(2, 5, 7, 3, dtype=tex.dtype, device=device)
        torch.library.opcheck(ops.texture_backward.default, (g, tex, levels, uv, da, b, mode, "wrap"))
    torch.library.opcheck(ops.texture_mip.default, (tex, -1))
    torch.library.opcheck(ops.texture_mip.default, (tex, 1))


# ---- edge cases and bad input ------------------------------------------------------------------

def test_non_finite_uv_reads_zero_and_huge_uv_is_defined():
    tex, uv = _inputs(Bt=1, seed=18)
    uv[0, 0, 0, 0] = float("nan")
    uv[0, 0, 1, 1] = float("inf")
    uv[0, 0, 2] = 1e30
    uv[0, 0, 3] = -1e30
    for boundary in ("wrap", "clamp", "zero"):
        for mode in ("nearest", "linear"):
            out = texture(tex, uv, filter_mode=mode, boundary_mode=boundary)
            assert (out[0, 0, :2] == 0).all() and torch.isfinite(out).all()
    torch.testing.assert_close(texture(tex, uv, boundary_mode="clamp")[0, 0, 2], tex[0, -1, -1])
    torch.testing.assert_close(texture(tex, uv, boundary_mode="clamp")[0, 0, 3], tex[0, 0, 0])


def test_bad_inputs():
    tex, uv = _inputs(Bt=1, ht=6, wt=8, seed=19)
    uv_da = _uv_da(seed=20)
    with pytest.raises(RuntimeError, match=r"odd extent.*max_mip_level=1"):
        texture(tex, uv, uv_da)  # 6 x 8 -> 3 x 4 -> odd
    assert texture(tex, uv, uv_da, max_mip_level=1).shape == (2, 5, 7, 3)
    with pytest.raises(ValueError, match="filter_mode"):
        texture(tex, uv, filter_mode="cubic")
    with pytest.raises(ValueError, match="boundary_mode"):
        texture(tex, uv, boundary_mode="mirror")
    with pytest.raises(ValueError, match="uv_da.*mip_level_bias"):
        texture(tex, uv, filter_mode="linear-mipmap-linear")
    with pytest.raises(ValueError, match="mip.*shape"):
        texture(tex, uv, uv_da, mip=texture_mipmaps(torch.rand(1, 8, 8, 3, dtype=tex.dtype)))
    with pytest.raises(ValueError, match="max_mip_level"):
        texture(tex, uv, uv_da, max_mip_level=-2)
    with pytest.raises(RuntimeError, match="uv"):
        texture(tex, uv[..., :1].contiguous())
    with pytest.raises(RuntimeError, match="uv"):
        texture(tex, uv.float())
    with pytest.raises(RuntimeError, match="tex.*batch"):
        texture(torch.cat([tex] * 3), uv)
    with pytest.raises(RuntimeError, match="tex"):
        texture(tex[0], uv)
    with pytest.raises(RuntimeError, match="uv_da"):
        texture(tex, uv, uv_da[..., :2].contiguous(), max_mip_level=1)
    with pytest.raises(RuntimeError, match="mip_level_bias"):
        texture(tex, uv, mip_level_bias=torch.zeros(2, 5, 6, dtype=tex.dtype), max_mip_level=1)
    with pytest.raises(RuntimeError, match="mip"):
        ops.texture(tex, [torch.zeros(1, 2, 2, 3, dtype=tex.dtype)], uv, uv_da, None,
                    "linear-mipmap-linear", "wrap")
    with pytest.raises(RuntimeError, match="filter_mode"):
        ops.texture(tex, [], uv, None, None, "bilinear", "wrap")


@requires_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("mode", ["nearest", "linear", "linear-mipmap-nearest", "linear-mipmap-linear"])
def test_cuda_matches_cpu(dtype, mode):
    tex, uv = _inputs(B=3, Bt=1, H=19, W=23, ht=32, wt=64, C=3, dtype=dtype, seed=21)
    uv_da = _uv_da(3, 19, 23, texels=64, seed=22).to(dtype)
    bias = 0.3 * torch.randn(3, 19, 23, dtype=dtype)
    mip = "mipmap" in mode
    args = (tex, uv, uv_da if mip else None, bias if mip else None)
    g = torch.randn(3, 19, 23, 3, dtype=dtype)
    res = []
    for dev in ("cpu", "cuda"):
        a = [None if t is None else t.to(dev).requires_grad_(True) for t in args]
        out = texture(*a, filter_mode=mode, boundary_mode="wrap")
        grads = torch.autograd.grad(out, [t for t in a if t is not None], g.to(dev))
        res.append([out.detach().cpu()] + [x.cpu() for x in grads])
    tol = dict(atol=1e-4, rtol=1e-4) if dtype == torch.float32 else dict(atol=1e-10, rtol=1e-9)
    for a, b in zip(*res):
        torch.testing.assert_close(a, b, **tol)
    mips_cpu = texture_mipmaps(tex).levels
    mips_gpu = texture_mipmaps(tex.cuda()).levels
    for a, b in zip(mips_cpu, mips_gpu):
        torch.testing.assert_close(a, b.cpu(), **tol)


@pytest.mark.parametrize("boundary", ["wrap", "clamp", "zero"])
@pytest.mark.parametrize("Bt,C", [(1, 3), (3, 4), (1, 1), (3, 5)])
def test_simd_and_scalar_paths_agree(monkeypatch, boundary, Bt, C):
    """float32 bilinear lookups go through the AVX2 kernels where the CPU has them; the scalar
    kernels (PYFAID_CPU_SIMD=0) give the same values and gradients (texel gradients summed in
    the same order), also with non-finite and far-off uv and pixel counts not a multiple of 8."""
    tex, uv = _inputs(B=3, Bt=Bt, H=9, W=13, ht=16, wt=32, C=C, spread=3.0, dtype=torch.float32, seed=C)
    uv[0, 0, :5] = torch.tensor([[float("nan"), 0.5], [0.5, float("inf")], [1e30, -1e30], [-1.0, 2.0], [0.0, 1.0]])
    g = torch.randn(3, 9, 13, C)
    res = []
    for simd in ("1", "0"):
        monkeypatch.setenv("PYFAID_CPU_SIMD", simd)
        t, u = tex.clone().requires_grad_(True), uv.clone().requires_grad_(True)
        out = texture(t, u, boundary_mode=boundary)
        res.append((out.detach(), *torch.autograd.grad(out, (t, u), g)))
    for name, a, b in zip(("out", "grad_tex", "grad_uv"), *res):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("boundary", ["wrap", "clamp", "zero"])
@pytest.mark.parametrize("C", [3, 4])
def test_simd_row_paths_agree_with_scalar_inside_and_at_the_last_texels(monkeypatch, boundary, C):
    """The AVX2 kernels read both horizontal taps of a row with one load and add texel gradients
    as whole rows when every lane of eight pixels allows it (uv inside the texture); near the
    texture's last texels (where a row read would run past its end) and on clamped or wrapped
    edges they take the general path. Both give the scalar kernels' values bit for bit, and the
    row path is checked against the plain-PyTorch reference too."""
    g0 = torch.Generator().manual_seed(7 + C)
    tex = torch.rand(2, 6, 10, C, generator=g0)
    inner = 0.1 + 0.8 * torch.rand(2, 4, 16, 2, generator=g0)  # every tap inside: the row path
    last = 1.0 - 0.06 * torch.rand(2, 4, 16, 2, generator=g0)  # around the last texel
    uv = torch.cat([inner, last], 1)
    g = torch.randn(2, 8, 16, C, generator=g0)
    res = []
    for simd in ("1", "0"):
        monkeypatch.setenv("PYFAID_CPU_SIMD", simd)
        t, u = tex.clone().requires_grad_(True), uv.clone().requires_grad_(True)
        out = texture(t, u, filter_mode="linear", boundary_mode=boundary)
        res.append((out.detach(), *torch.autograd.grad(out, (t, u), g)))
    for name, a, b in zip(("out", "grad_tex", "grad_uv"), *res):
        assert torch.equal(a, b), name
    ref = bilinear_reference(tex.double(), uv.double(), boundary)
    torch.testing.assert_close(res[0][0].double(), ref, atol=1e-5, rtol=0)
