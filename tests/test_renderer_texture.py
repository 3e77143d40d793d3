"""The face renderer's UV-textured render and its antialias option: what the Fragments keep, the
antialiased image and coverage, a silhouette fit that needs them, the textured render against the
per-vertex one, and the Reconstruction's and turntable's textured renders."""

import pytest
import torch

from pyfaid.reconstruct import turntable
from pyfaid.reconstruct.predict import crop_renderer, default_face_model
from pyfaid.reconstruct.result import make_reconstruction
from pyfaid.render import Fragments, Renderer, UVTexture, antialias, bake, rasterize, rasterize_mesh
from pyfaid.metrics import psnr


@pytest.fixture(scope="module")
def fm():
    return default_face_model("cpu")


def _coeffs(fm, trans=(0.0, 0.0, 0.0), yaw=-0.35, light=True):
    lay = fm.layout
    c = lay.zeros(1)
    g = torch.Generator().manual_seed(3)
    c[0, lay.slice("id")] = 0.5 * torch.randn(fm.n_id, generator=g)
    c[0, lay.slice("angle")] = torch.tensor([0.1, yaw, 0.05])
    c[0, lay.slice("trans")] = torch.tensor(trans)
    if light:
        gam = lay.slice("gamma").start
        c[0, gam] = 0.25
        c[0, gam + 1:gam + 4] = torch.tensor([0.1, 0.25, -0.1])
    return c


def _outline(mask: torch.Tensor) -> torch.Tensor:
    """``[B, 1, H, W]`` pixels within one pixel of a change of the 0/1 ``mask``."""
    near = torch.nn.functional.max_pool2d(mask, 3, 1, 1) != -torch.nn.functional.max_pool2d(-mask, 3, 1, 1)
    return near


# ------------------------------------------------------------------------------------ fragments
def test_fragments_keep_clip_positions_and_derivatives(fm):
    mesh = fm.mesh(_coeffs(fm))
    camera = Renderer(96).camera
    plain = rasterize_mesh(mesh, camera)
    with_db = rasterize_mesh(mesh, camera, grad_db=True)
    pos = camera.clip(mesh.vertices_world)
    assert torch.equal(plain.pos_clip, pos) and plain.rast_db is None
    ref_rast, ref_db = rasterize(pos, fm.topology, (96, 96), grad_db=True)
    assert torch.equal(plain.rast, ref_rast) and torch.equal(with_db.rast, ref_rast)
    assert torch.equal(with_db.rast_db, ref_db) and float(ref_db.abs().sum()) > 0
    later = plain.with_derivatives()
    assert torch.equal(later.rast_db, ref_db) and later.rast is plain.rast
    assert with_db.with_derivatives() is with_db
    by_hand = Fragments(plain.rast, plain.vertices_cam, plain.topology, camera)
    with pytest.raises(ValueError, match="clip-space positions"):
        by_hand.with_derivatives()


# ------------------------------------------------------------------------------------ antialias
def test_antialias_option_changes_only_the_outline(fm):
    c = _coeffs(fm)
    plain, aa = Renderer(128)(fm, c), Renderer(128, antialias=True)(fm, c)
    assert plain.alpha is None and torch.equal(plain.mask, plain.fragments.mask)
    assert torch.equal(plain.image, Renderer(128, antialias=False)(fm, c).image)
    hard = plain.mask
    outline = _outline(hard)
    coverage_changed = aa.mask != hard
    assert int(coverage_changed.sum()) > 50 and not bool((coverage_changed & ~outline).any())
    # the image changes along the outline and the inner silhouettes (the nose over the cheek): few pixels
    image_changed = (aa.image != plain.image).any(1, keepdim=True)
    assert 0 < float(image_changed[~outline].float().sum()) < 0.02 * float(hard.sum())
    assert float(aa.mask.min()) >= 0 and float(aa.mask.max()) <= 1
    soft = (aa.mask > 0) & (aa.mask < 1)
    assert int(soft.sum()) > 50
    # the coverage is what antialias makes of the image over any background: compositing after
    # antialiasing equals antialiasing the composite
    background = torch.tensor([0.2, 0.5, 0.9]).reshape(1, 3, 1, 1)
    over = (plain.image + (1 - hard) * background).permute(0, 2, 3, 1).contiguous()
    want = antialias(over, plain.rast, aa.fragments.pos_clip, fm.topology).permute(0, 3, 1, 2)
    torch.testing.assert_close(aa.image + (1 - aa.mask) * background, want, atol=2e-6, rtol=0)


def _fit_outline(fm, use_antialias: bool, steps: int = 60, size: int = 112):
    """Fit the face's translation so that its flat-white silhouette covers a target silhouette."""
    lay = fm.layout
    white = torch.ones(1, fm.num_vertices, 3)
    renderer = Renderer(size, antialias=use_antialias)
    with torch.no_grad():
        target = renderer(fm, _coeffs(fm, light=False), colors=white)
    start = lay.slice("trans").start
    trans = torch.tensor([0.3, -0.25, 0.0], requires_grad=True)  # ~15 px off at 112 x 112
    opt = torch.optim.Adam([trans], lr=0.02)
    for _ in range(steps):
        c = _coeffs(fm, light=False)
        c = torch.cat([c[:, :start], trans[None], c[:, start + 3:]], dim=1)
        out = renderer(fm, c, colors=white)  # one colour inside: the interiors carry no gradient
        loss = ((out.image - target.image) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    got, want = out.fragments.mask > 0, target.fragments.mask > 0
    return float((got & want).sum() / (got | want).sum()), trans.detach()


def test_silhouette_fit_converges_with_antialias_only(fm):
    torch.manual_seed(0)
    iou_plain, t_plain = _fit_outline(fm, False)
    iou_aa, t_aa = _fit_outline(fm, True)
    assert iou_aa > 0.98 and float(t_aa[:2].abs().max()) < 0.02, (iou_aa, t_aa)
    assert iou_plain < 0.7 and float(t_plain[:2].abs().min()) > 0.2, (iou_plain, t_plain)
    # the antialiased coverage itself pulls the outline (a mask loss, e.g. against a segmentation)
    trans = torch.zeros(3, requires_grad=True)
    c = _coeffs(fm)
    start = fm.layout.slice("trans").start
    c = torch.cat([c[:, :start], trans[None], c[:, start + 3:]], dim=1)
    mask = Renderer(96, antialias=True)(fm, c).mask
    (g,) = torch.autograd.grad((mask * torch.linspace(0, 1, 96)).sum(), trans)  # more coverage to the right
    assert float(g[0]) > 0
    assert not Renderer(96)(fm, c).mask.requires_grad


# ------------------------------------------------------------------------------------ textured render
def test_albedo_texture_renders_like_the_vertex_colours(fm):
    c = _coeffs(fm)
    renderer = Renderer(224)
    ref = renderer(fm, c)
    tex = bake.bake_vertex_colors(fm.uv_atlas(1024), ref.mesh.albedo[0])
    uv_tex = fm.uv_texture(tex)
    assert len(uv_tex.mips) == 10 and uv_tex.image.shape == (1, 1024, 1024, 3)
    for mode in ("linear-mipmap-linear", "linear"):
        got = renderer(fm, c, texture=uv_tex) if mode != "linear" else renderer.draw(fm.mesh(c), uv_tex, filter_mode=mode)
        assert torch.equal(got.mask, ref.mask)
        assert float(psnr(got.image, ref.image, ref.mask)[0]) > 42, mode
        torch.testing.assert_close(got.shaded, ref.shaded, atol=1e-5, rtol=1e-5)
    # unlit: the bare texture; a constant one reads back exactly
    flat = fm.uv_texture(torch.full((64, 96, 3), 0.25))
    assert len(flat.mips) == 5  # 64 x 96 halves 5 times evenly (96 -> 3)
    out = renderer.draw(fm.mesh(c), flat, lit=False)
    inside = out.mask.expand_as(out.image) > 0
    torch.testing.assert_close(out.image[inside], torch.full_like(out.image[inside], 0.25), atol=1e-6, rtol=0)
    assert float(out.image[~inside].abs().max()) == 0


def test_textured_render_gradients(fm):
    c = _coeffs(fm).requires_grad_(True)
    image = torch.full((256, 256, 3), 0.5, requires_grad=True)
    g = torch.Generator().manual_seed(0)
    detail = image + 0.3 * torch.rand(256, 256, 3, generator=g)  # a texture with detail to follow
    for aa in (False, True):
        out = Renderer(96, antialias=aa)(fm, c, texture=fm.uv_texture(detail))
        weight = torch.rand(out.image.shape, generator=g)
        gc, gi = torch.autograd.grad((out.image * weight).sum(), (c, image))
        lay = fm.layout
        for part in ("id", "angle", "gamma", "trans"):
            assert float(gc[0, lay.slice(part)].abs().sum()) > 0, (aa, part)
        assert bool(torch.isfinite(gc).all()) and float(gi.abs().sum()) > 0


def test_textured_render_bad_input(fm):
    c = _coeffs(fm)
    renderer = Renderer(64)
    mesh = fm.mesh(c)
    frags = renderer.rasterize(mesh)
    with pytest.raises(ValueError, match="float64"):
        renderer.shade_texture(frags, mesh, fm.uv_texture(torch.zeros(32, 32, 3, dtype=torch.float64)))
    with pytest.raises(ValueError, match="Ht, Wt, 3"):
        renderer.shade_texture(frags, mesh, fm.uv_texture(torch.zeros(32, 32, 4)))
    other = UVTexture.of(torch.zeros(8, 8, 3), torch.rand(3, 2), torch.tensor([[0, 1, 2]]))
    with pytest.raises(ValueError, match="1 triangles"):
        renderer.shade_texture(frags, mesh, other)
    with pytest.raises(ValueError, match="filter_mode"):
        renderer.shade_texture(frags, mesh, fm.uv_texture(torch.zeros(8, 8, 3)), filter_mode="auto")
    with pytest.raises(ValueError, match="uv_faces"):
        UVTexture.of(torch.zeros(8, 8, 3), torch.rand(2, 2), torch.tensor([[0, 1, 2]]))
    with pytest.raises(TypeError, match="image"):
        UVTexture.of(torch.zeros(8, 8, 3, dtype=torch.int32), torch.rand(3, 2), torch.tensor([[0, 1, 2]]))


# ------------------------------------------------------------------------------------ reconstruction
def test_reconstruction_and_turntable_render_the_texture(fm):
    renderer = crop_renderer("cpu")
    c = _coeffs(fm)[0]
    with torch.no_grad():
        photo = renderer(fm, c[None])
    rec = make_reconstruction(fm, renderer, (photo.mask * photo.image + (1 - photo.mask) * 0.3)[0], c, None, None,
                              "synthetic", None, [])
    # the per-vertex render is what it was
    assert torch.equal(rec.render().image, renderer(fm, c[None], colors=rec.albedo[None]).image)
    tex = rec.texture("albedo", 512)
    uv_tex = fm.uv_texture(tex)
    got = rec.render(texture=tex)
    want = renderer.draw(fm.mesh(c[None], rec.albedo[None]), uv_tex)
    assert torch.equal(got.image, want.image)
    assert torch.equal(rec.render(texture=uv_tex).image, got.image)
    assert torch.equal(rec.render(texture=(tex * 255 + 0.5).to(torch.uint8)).mask, got.mask)
    assert float(psnr(got.image, rec.render().image, got.mask)[0]) > 38
    aa = rec.render(texture=uv_tex, antialias=True, image_size=160)
    assert aa.image.shape == (1, 3, 160, 160) and aa.alpha is not None
    frame = turntable.render_textured(rec, uv_tex, image_size=160, background=1.0)
    torch.testing.assert_close(frame["image"], (aa.image + (1 - aa.mask) * 1.0)[0].clamp(0, 1), atol=0, rtol=0)
    with pytest.raises(ValueError, match="render_albedo"):
        rec.render(lit=False)
    with pytest.raises(ValueError, match="H, W, 3"):
        rec.render(texture=torch.zeros(16, 16))
