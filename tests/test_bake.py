"""pyfaid.render.bake: UV-space rasterization, vertex-colour and photo baking, seam padding,
texture lookup; against plain-PyTorch references and scenes whose answer is known."""


import numpy as np
import pytest
import torch

from pyfaid.render import bake


# ----------------------------------------------------------------------------- scenes
def quad_grid(x0, x1, y0, y1, z, uv_box, n=9, facing_away=False):
    """An n x n vertex grid over [x0, x1] x [y0, y1] at depth z, UVs spread linearly over uv_box
    (u0, u1, v0, v1). Returns (points [n*n, 3], triangles [2 (n-1)^2, 3], uv [n*n, 2])."""
    xs, ys = torch.meshgrid(torch.linspace(x0, x1, n), torch.linspace(y0, y1, n), indexing="xy")
    pts = torch.stack([xs.reshape(-1), ys.reshape(-1), torch.full((n * n,), float(z))], 1)
    u0, u1, v0, v1 = uv_box
    uv = torch.stack([u0 + (xs.reshape(-1) - x0) / (x1 - x0) * (u1 - u0),
                      v0 + (ys.reshape(-1) - y0) / (y1 - y0) * (v1 - v0)], 1)
    i = (torch.arange(n - 1)[None, :] + n * torch.arange(n - 1)[:, None]).reshape(-1)
    tri = torch.cat([torch.stack([i, i + 1, i + n + 1], 1), torch.stack([i, i + n + 1, i + n], 1)])
    if facing_away:
        tri = tri[:, [0, 2, 1]]
    return pts, tri, uv


def merge(*parts):
    pts, tris, uvs, off = [], [], [], 0
    for p, t, u in parts:
        pts.append(p)
        tris.append(t + off)
        uvs.append(u)
        off += p.shape[0]
    return torch.cat(pts), torch.cat(tris), torch.cat(uvs)


def perspective(points, focal=2.0, eye_z=5.0, near=1.0, far=10.0):
    """Clip space of a camera at (0, 0, eye_z) looking down -z (rasterize's convention: row 0 at
    NDC y = -1 is the top of the image, so world y up maps to NDC -y)."""
    d = eye_z - points[:, 2]
    z = (far + near) / (far - near) * d - 2 * far * near / (far - near)
    return torch.stack([focal * points[:, 0], -focal * points[:, 1], z, d], 1)


def reference_bake(uv, tri, colors, size):
    """Plain-PyTorch twin of bake_vertex_colors before padding: every texel centre against every
    triangle, barycentric interpolation in UV space. Returns (texture [H, W, C], covered [H, W])."""
    h = w = size
    cu = (torch.arange(w, dtype=torch.float64) + 0.5) / w
    cv = 1.0 - (torch.arange(h, dtype=torch.float64) + 0.5) / h
    gv, gu = torch.meshgrid(cv, cu, indexing="ij")
    p = torch.stack([gu.reshape(-1), gv.reshape(-1)], 1)  # [P, 2]
    a, b, c = (uv.double()[tri[:, k]] for k in range(3))  # [F, 2]
    den = (b[:, 1] - c[:, 1]) * (a[:, 0] - c[:, 0]) + (c[:, 0] - b[:, 0]) * (a[:, 1] - c[:, 1])
    l0 = ((b[:, 1] - c[:, 1])[None] * (p[:, None, 0] - c[None, :, 0]) + (c[:, 0] - b[:, 0])[None] * (p[:, None, 1] - c[None, :, 1])) / den
    l1 = ((c[:, 1] - a[:, 1])[None] * (p[:, None, 0] - c[None, :, 0]) + (a[:, 0] - c[:, 0])[None] * (p[:, None, 1] - c[None, :, 1])) / den
    l2 = 1 - l0 - l1
    inside = (l0 >= 0) & (l1 >= 0) & (l2 >= 0)  # [P, F]
    covered = inside.any(1)
    f = inside.float().argmax(1)
    col = colors.double()
    out = (l0[torch.arange(len(p)), f, None] * col[tri[f, 0]] + l1[torch.arange(len(p)), f, None] * col[tri[f, 1]]
           + l2[torch.arange(len(p)), f, None] * col[tri[f, 2]])
    out = torch.where(covered[:, None], out, torch.zeros_like(out))
    return out.reshape(h, w, -1).float(), covered.reshape(h, w)


# ----------------------------------------------------------------------------- UV raster
def test_uv_to_clip_puts_v1_on_the_top_row():
    uv = torch.tensor([[0.0, 1.0], [1.0, 1.0], [0.0, 0.0]])
    clip = bake.uv_to_clip(uv)
    assert torch.equal(clip[:, 3], torch.ones(3))
    # NDC y = -1 is row 0 (the image's top), where v = 1
    torch.testing.assert_close(clip[:, :2], torch.tensor([[-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0]]))
    atlas = bake.UVAtlas(uv, torch.tensor([[0, 1, 2]]), torch.tensor([[0, 1, 2]]), 3, size=16, padding=0)
    m = atlas.mask
    assert m[0, 0] and m[0, 14] and m[14, 0] and not m[15, 15]  # the triangle is the top-left half


def test_vertex_bake_matches_plain_pytorch_twin():
    pts, tri, uv = merge(quad_grid(-1, 1, -1, 1, 0, (0.05, 0.6, 0.1, 0.9), n=5),
                         quad_grid(0, 1, 0, 1, 0, (0.7, 0.95, 0.2, 0.6), n=3))
    colors = torch.rand(pts.shape[0], 3, generator=torch.Generator().manual_seed(1))
    atlas = bake.UVAtlas(uv, tri, tri, pts.shape[0], size=48, padding=0)
    got = bake.bake_vertex_colors(atlas, colors, background=None)
    ref, covered = reference_bake(uv, tri, colors, 48)
    both = atlas.mask & covered
    # coverage agrees except possibly on texel centres exactly on an edge
    assert (atlas.mask != covered).sum() <= 0.01 * covered.sum()
    torch.testing.assert_close(got[both], ref[both], atol=1e-5, rtol=0)
    assert torch.equal(got[~atlas.mask], torch.zeros_like(got[~atlas.mask]))


def test_known_linear_texture_comes_back():
    """Per-vertex colours that are a linear function of (u, v) bake to that function exactly."""
    pts, tri, uv = quad_grid(-1, 1, -1, 1, 0, (0.0, 1.0, 0.0, 1.0), n=7)
    f = lambda q: torch.stack([q[..., 0], q[..., 1], 1 - 0.5 * q[..., 0]], -1)  # noqa: E731
    atlas = bake.UVAtlas(uv, tri, tri, pts.shape[0], size=(32, 40))
    tex = bake.bake_vertex_colors(atlas, f(uv))
    assert tex.shape == (32, 40, 3) and bool(atlas.mask.all())
    cu = (torch.arange(40) + 0.5) / 40
    cv = 1 - (torch.arange(32) + 0.5) / 32
    gv, gu = torch.meshgrid(cv, cu, indexing="ij")
    torch.testing.assert_close(tex, f(torch.stack([gu, gv], -1)), atol=1e-5, rtol=0)
    # and texture_lookup reads it back at any (u, v) inside (bilinear of a linear function)
    q = torch.rand(50, 2, generator=torch.Generator().manual_seed(0)) * 0.9 + 0.05
    torch.testing.assert_close(bake.texture_lookup(tex, q), f(q), atol=1e-5, rtol=0)


def test_texture_lookup_orientation():
    tex = torch.zeros(4, 4, 3)
    tex[0, :, 0] = 1.0  # top row red
    tex[-1, :, 2] = 1.0  # bottom row blue
    out = bake.texture_lookup(tex, torch.tensor([[[0.5, 0.99], [0.5, 0.01]]]))
    assert out.shape == (1, 2, 3)
    torch.testing.assert_close(out[0, 0], torch.tensor([1.0, 0.0, 0.0]))
    torch.testing.assert_close(out[0, 1], torch.tensor([0.0, 0.0, 1.0]))


def test_seam_padding_copies_the_nearest_covered_texel():
    # two islands with different colours, far enough apart that no gutter texel is equidistant
    pts, tri, uv = merge(quad_grid(0, 1, 0, 1, 0, (0.1, 0.35, 0.1, 0.9), n=2),
                         quad_grid(0, 1, 0, 1, 0, (0.65, 0.9, 0.3, 0.7), n=2))
    colors = torch.cat([torch.tensor([[1.0, 0.0, 0.0]]).expand(4, 3), torch.tensor([[0.0, 0.0, 1.0]]).expand(4, 3)])
    size, pad = 64, 3
    atlas = bake.UVAtlas(uv, tri, tri, 8, size=size, padding=pad)
    tex = bake.bake_vertex_colors(atlas, colors, background=0.25)
    m = atlas.mask.numpy()
    cy, cx = np.nonzero(m)
    yy, xx = np.mgrid[:size, :size]
    d2 = (yy.reshape(-1, 1) - cy[None]) ** 2 + (xx.reshape(-1, 1) - cx[None]) ** 2
    near = d2.argmin(1)
    dist = np.sqrt(d2.min(1)).reshape(size, size)
    want = tex.numpy()[cy[near], cx[near]].reshape(size, size, 3)
    gutter = ~m & (dist <= pad)
    assert gutter.sum() > 100
    np.testing.assert_array_equal(tex.numpy()[gutter], want[gutter])
    beyond = ~m & (dist > pad)
    np.testing.assert_array_equal(tex.numpy()[beyond], np.full((beyond.sum(), 3), 0.25, np.float32))
    # "mean" background: the mean colour of the covered texels
    tex2 = bake.bake_vertex_colors(atlas, colors)
    mean = tex2[atlas.mask].mean(0)
    torch.testing.assert_close(tex2[torch.from_numpy(beyond)][0], mean, atol=0.02, rtol=0)
    # padding=-1 fills every empty texel
    full = bake.bake_vertex_colors(bake.UVAtlas(uv, tri, tri, 8, size=size, padding=-1), colors)
    red = tex.numpy()[cy, cx, 0] > 0.5
    d_red = np.sqrt(d2[:, red].min(1)).reshape(size, size)
    d_blue = np.sqrt(d2[:, ~red].min(1)).reshape(size, size)
    clear = ~m & (np.abs(d_red - d_blue) > 0.5)  # not (nearly) equidistant from both islands
    assert clear.sum() > 0.9 * (~m).sum()
    np.testing.assert_array_equal(full.numpy()[clear], want[clear])


# ----------------------------------------------------------------------------- photo bake
def _photo_scene(size=96):
    back = quad_grid(-3, 3, -1, 1, 0.0, (0.02, 0.48, 0.02, 0.98), n=25)  # wider than the image
    front = quad_grid(-0.3, 0.3, -0.3, 0.3, 1.0, (0.55, 0.95, 0.55, 0.95), n=5)  # hides the centre
    away = quad_grid(-0.6, 0.6, 1.2, 1.5, 0.5, (0.55, 0.95, 0.05, 0.45), n=5, facing_away=True)
    pts, tri, uv = merge(back, front, away)
    normals = torch.zeros_like(pts)
    normals[:, 2] = 1.0
    normals[back[0].shape[0] + front[0].shape[0]:, 2] = -1.0
    atlas = bake.UVAtlas(uv, tri, tri, pts.shape[0], size=size)
    return pts, tri, uv, normals, atlas, (back[0].shape[0], front[0].shape[0])


def _ramp_image(h=64, w=64):
    """R = (col + 0.5) / w, G = (row + 0.5) / h, B = 0.5: sampled at NDC (x, y) it is
    ((x + 1) / 2, (y + 1) / 2, 0.5)."""
    r = ((torch.arange(w) + 0.5) / w)[None].expand(h, w)
    g = ((torch.arange(h) + 0.5) / h)[:, None].expand(h, w)
    return torch.stack([r, g, torch.full((h, w), 0.5)])


def test_photo_bake_projects_divides_by_shading_and_blends():
    pts, tri, uv, normals, atlas, (nb, nf) = _photo_scene()
    clip = perspective(pts)
    image = 0.5 * _ramp_image()  # the photo = albedo (the ramp) x shading 0.5
    shading = torch.full((pts.shape[0], 3), 0.5)
    model_albedo = torch.full((pts.shape[0], 3), 0.1)
    vis = torch.ones(64, 64)
    vis[:, 56:] = 0.0  # an occluder over the image's right edge (x > 0.75 in NDC)
    out = bake.bake_photo(atlas, image, clip, pts, normals, (0.0, 0.0, 5.0), model_albedo, shading,
                          visibility=vis, feather=0)
    tex, weight = out["texture"], out["weight"]
    assert tex.shape == (96, 96, 3) and weight.shape == (96, 96)
    assert float(weight.min()) >= 0 and float(weight.max()) <= 1

    # every texel's surface point and where it projects
    p_t = atlas.interpolate(pts)
    c_t = atlas.interpolate(clip)
    ndc = c_t[..., :2] / c_t[..., 3:].clamp_min(1e-6)
    owner = atlas.interpolate(torch.cat([torch.zeros(nb), torch.ones(nf), 2 * torch.ones(pts.shape[0] - nb - nf)])[:, None])[..., 0]
    m = atlas.mask
    back, front, away = m & (owner < 0.01), m & ((owner - 1).abs() < 0.01), m & (owner > 1.99)
    x, y = p_t[..., 0], p_t[..., 1]
    hidden = back & (x.abs() < 0.3) & (y.abs() < 0.3)  # behind the front quad (|NDC| < 0.15 -> |x| < 0.375)
    outside = back & (ndc[..., 0].abs() > 1.05)
    occluded = back & (ndc[..., 0] > 0.8) & (ndc[..., 0] < 0.95)
    seen = back & (ndc[..., 0].abs() < 0.7) & ((x.abs() > 0.45) | (y.abs() > 0.45))
    for name, sel in (("hidden", hidden), ("outside", outside), ("occluded", occluded), ("away", away)):
        assert sel.sum() > 10, name
        assert float(weight[sel].max()) == 0.0, name
        torch.testing.assert_close(tex[sel], torch.full_like(tex[sel], 0.1), msg=name)
    for sel in (seen, front):
        assert sel.sum() > 50
        assert float(weight[sel].min()) > 1 - 1e-6
        want = torch.stack([(ndc[..., 0] + 1) / 2, (ndc[..., 1] + 1) / 2, torch.full_like(x, 0.5)], -1)[sel]
        torch.testing.assert_close(tex[sel], want, atol=2e-3, rtol=0)  # ramp / shading: the albedo


def test_photo_bake_feathering_and_dark_shading():
    pts, tri, uv, normals, atlas, _ = _photo_scene(64)
    clip = perspective(pts)
    args = (atlas, _ramp_image(), clip, pts, normals, torch.tensor([0.0, 0.0, 5.0]), torch.zeros(pts.shape[0], 3))
    w_sharp = bake.bake_photo(*args, torch.ones(pts.shape[0], 3), feather=0)["weight"]
    w_soft = bake.bake_photo(*args, torch.ones(pts.shape[0], 3), feather=2)["weight"]
    assert set(torch.unique(w_sharp).tolist()) <= {0.0, 1.0}
    between = (w_soft > 0.01) & (w_soft < 0.99)
    assert between.sum() > 20  # a soft edge, and only inside the photo's region (eroded first)
    assert bool((w_soft <= w_sharp + 1e-6).all())
    # too dark to divide by: no photo at all
    dark = bake.bake_photo(*args, torch.full((pts.shape[0], 3), 0.02))
    assert float(dark["weight"].max()) == 0.0


def test_bake_errors_name_the_input():
    pts, tri, uv = quad_grid(0, 1, 0, 1, 0, (0.0, 1.0, 0.0, 1.0), n=3)
    atlas = bake.UVAtlas(uv, tri, tri, 9, size=16)
    with pytest.raises(ValueError, match="colors"):
        bake.bake_vertex_colors(atlas, torch.rand(8, 3))
    with pytest.raises(ValueError, match="uv_faces"):
        bake.UVAtlas(uv, tri[:-1], tri, 9, size=16)
    with pytest.raises(ValueError, match="at least 2"):
        bake.UVAtlas(uv, tri, tri, 9, size=1)
    clip = perspective(pts)
    n = torch.zeros(9, 3)
    n[:, 2] = 1
    one = torch.ones(9, 3)
    with pytest.raises(ValueError, match="image"):
        bake.bake_photo(atlas, torch.rand(16, 16, 3), clip, pts, n, (0, 0, 5), one, one)
    with pytest.raises(ValueError, match="pos_clip"):
        bake.bake_photo(atlas, torch.rand(3, 16, 16), clip[:, :3], pts, n, (0, 0, 5), one, one)
    with pytest.raises(ValueError, match="visibility"):
        bake.bake_photo(atlas, torch.rand(3, 16, 16), clip, pts, n, (0, 0, 5), one, one, visibility=torch.ones(8, 8))
    with pytest.raises(ValueError, match="no triangle covers"):
        bake.UVAtlas(torch.tensor([[0.5, 0.5], [0.5, 0.5], [0.5, 0.5]]), torch.tensor([[0, 1, 2]]),
                     torch.tensor([[0, 1, 2]]), 3, size=8)


def test_atlas_for_model_is_cached():
    import trimesh

    from pyfaid.facemodel import MorphableModel

    mesh = trimesh.creation.icosphere(subdivisions=2)
    n = len(mesh.vertices)
    fm = MorphableModel(mesh.vertices, np.zeros((3 * n, 1)), np.zeros((3 * n, 1)), np.full((n, 3), 0.5),
                        np.zeros((3 * n, 1)), mesh.faces, np.arange(68) % n, np.ones(n, bool))
    a = fm.uv_atlas(64)
    assert fm.uv_atlas(64) is a and fm.uv_atlas(32) is not a
    assert a.mask.float().mean() > 0.3  # the generated layout covers a good part of the square
    tex = bake.bake_vertex_colors(a, fm.mean_tex)
    torch.testing.assert_close(tex, torch.full_like(tex, 0.5))
