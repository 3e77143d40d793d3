"""pyfaid.reconstruct.prior: the robust albedo fit, painting the vertices a photo hides from the face
itself (its mirror side, its albedo model), the occluders' margin, and the fill's settings."""

import pytest
import torch

from pyfaid.facemodel import MorphableModel
from pyfaid.reconstruct import prior as P
from pyfaid.reconstruct.predict import crop_renderer, default_face_model


def _albedo_model(n_vertices: int = 600, n_tex: int = 6, seed: int = 0) -> MorphableModel:
    g = torch.Generator().manual_seed(seed)
    v = torch.rand(n_vertices, 3, generator=g)
    tri = torch.stack([torch.arange(n_vertices - 2), torch.arange(1, n_vertices - 1), torch.arange(2, n_vertices)], 1)
    tex = 0.05 * torch.randn(3 * n_vertices, n_tex, generator=g)
    return MorphableModel(v, torch.zeros(3 * n_vertices, 1), torch.zeros(3 * n_vertices, 1),
                          0.4 + 0.2 * torch.rand(n_vertices, 3, generator=g), tex, tri,
                          torch.arange(68), torch.ones(n_vertices, dtype=torch.bool))


def test_robust_albedo_fit_is_not_moved_by_an_outlier_patch():
    """Colours from the model plus noise, a quarter of the vertices painted with an occluder's colour:
    the robust fit recovers the coefficients and marks the patch as outliers; a least-squares fit of
    the same colours is pulled far off."""
    fm = _albedo_model()
    g = torch.Generator().manual_seed(1)
    truth = torch.randn(1, fm.n_tex, generator=g)
    colors = fm.texture(truth) + 0.01 * torch.randn(1, fm.num_vertices, 3, generator=g)
    patch = torch.zeros(fm.num_vertices, dtype=torch.bool)
    patch[100:250] = True
    colors[0, patch] = torch.tensor([0.1, 0.8, 0.2])
    weights = torch.ones(1, fm.num_vertices)
    d, inlier = P.robust_albedo_fit(fm, colors, weights, ridge=1e-6)
    assert float((d - truth).abs().max()) < 0.03
    assert float(inlier[0, patch].max()) == 0.0 and float(inlier[0, ~patch].mean()) > 0.8
    # the same objective without rejection (one least-squares solve from the mean)
    ls, _ = P.robust_albedo_fit(fm, colors, weights, ridge=1e-6, iters=1, cut=float("inf"))
    assert float((ls - truth).abs().max()) > 0.1
    # vertices with weight 0 are not fitted: the patch alone given weight 0 gives the truth too
    d2, _ = P.robust_albedo_fit(fm, colors, (~patch).float()[None], ridge=1e-6)
    assert float((d2 - truth).abs().max()) < 0.03
    with pytest.raises(ValueError, match="weights"):
        P.robust_albedo_fit(fm, colors, weights[:, :10])


def test_resolve_fill():
    assert P.resolve_fill(True) is P.DEFAULT_PRIOR and P.resolve_fill(False) is None
    assert P.resolve_fill("harmonic") == P.FillPrior(symmetry=False, albedo=False)
    assert P.resolve_fill("hold") is P.HOLD and not P.HOLD.paint
    with pytest.raises(ValueError, match="fill"):
        P.resolve_fill("sideways")
    with pytest.raises(ValueError, match="learned"):
        P.FillPrior(learned=2.0)


def _face_setup():
    fm = default_face_model("cpu")
    renderer = crop_renderer("cpu")
    c = fm.layout.zeros(1)
    c[0, fm.layout.slice("gamma").start] = 0.3
    return fm, renderer, c


def test_paint_hidden_takes_the_mirror_side_and_the_skin_tone():
    """A face whose albedo is the model's with a darker skin tone, its image-left half hidden: the
    hidden vertices with a visible partner take the partner's colour, and none keeps the grey the
    fit started from; the visible ones keep theirs."""
    fm, renderer, c = _face_setup()
    g = torch.Generator().manual_seed(0)
    tone = torch.zeros(1, fm.n_tex)
    tone[0, 0] = 1.5  # the first albedo direction: skin tone
    truth = fm.texture(tone)
    truth = (truth + 0.02 * torch.randn(truth.shape, generator=g)).clamp(0, 1)  # detail the model lacks
    vis = torch.ones(1, 1, 224, 224)
    vis[..., :, :112] = 0  # the image-left half of the face is hidden
    grey = torch.full_like(truth, 0.5)
    start = torch.where((fm.mean_shape[:, 0] < 0)[None, :, None], grey, truth)  # fitting left it grey
    out = P.paint_hidden(fm, renderer, c, start, vis, P.FillPrior(symmetry=True, albedo=True), base=grey)
    rast = renderer.rasterize(fm.mesh(c, truth)).rast
    from pyfaid.reconstruct.fill import hidden_vertices

    hid, _ = hidden_vertices(rast, fm.topology.triangles, vis, fm.num_vertices)
    assert hid.sum() > 2000
    torch.testing.assert_close(out[~hid], start[~hid])
    m = fm.mirror_idx
    mirrored = hid[0] & (m >= 0) & ~hid[0][m.clamp_min(0)]
    err_sym = (out[0, mirrored] - truth[0, mirrored]).abs().mean()
    assert float(err_sym) < 0.04, float(err_sym)  # the partner's colour (its detail differs: noise 0.02)
    assert float((out[0, hid[0]] - 0.5).abs().mean()) > 0.1  # not the grey fitting started from
    harmonic = P.paint_hidden(fm, renderer, c, start, vis, P.FILL_STEPS["harmonic"], base=grey)
    assert float((harmonic[0, mirrored] - truth[0, mirrored]).abs().mean()) > 2 * float(err_sym)


def test_grow_occluders_spares_the_outline():
    cover = torch.zeros(1, 1, 64, 64)
    cover[..., 8:56, 8:56] = 1
    vis = cover.clone()
    vis[..., 30:34, 30:34] = 0  # an occluder in the middle
    vis[..., 8:10, :] = 0  # hair along the top of the outline
    out = P.grow_occluders(vis, cover, 2.0)
    assert float(out[..., 27:37, 27:37].sum()) < float(vis[..., 27:37, 27:37].sum()) - 20  # grown
    torch.testing.assert_close(out[..., 10:14, 20:44], vis[..., 10:14, 20:44])  # the outline's band is not
    assert torch.equal(P.grow_occluders(vis, cover, 0.0), vis)
