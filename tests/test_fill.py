"""pyfaid.reconstruct.fill: which rendered vertices the photo hides, and the harmonic fill of their
fitted colour offsets (against a dense reference), plus the fill inside fitting on an occluded face."""

import numpy as np
import pytest
import torch

from pyfaid.reconstruct.predict import Prediction, crop_renderer, default_face_model
from pyfaid.reconstruct.fitting import fit_prediction
from pyfaid.reconstruct.fill import fill_hidden, hidden_vertices
from pyfaid.render import vertex_average


def _grid(n: int = 9):
    """A triangulated n x n grid: vertices ``[n*n, 2]`` (x, y) and edges ``[E, 2]``."""
    xy = np.stack(np.meshgrid(np.arange(n), np.arange(n), indexing="xy"), -1).reshape(-1, 2).astype(np.float64)
    tris = []
    for r in range(n - 1):
        for c in range(n - 1):
            a, b, d, e = r * n + c, r * n + c + 1, (r + 1) * n + c, (r + 1) * n + c + 1
            tris += [(a, b, e), (a, e, d)]
    tri = torch.tensor(tris)
    e = torch.cat([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]]).sort(dim=1).values
    return xy, torch.unique(e, dim=0)


def _dense_fill(x: np.ndarray, hidden: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Reference: the same Laplace problem, dense least squares of the edge energy."""
    n = len(x)
    a = np.zeros((n, n))
    a[edges[:, 0], edges[:, 1]] = a[edges[:, 1], edges[:, 0]] = 1
    lap = np.diag(a.sum(1)) - a
    h, k = np.flatnonzero(hidden), np.flatnonzero(~hidden)
    out = x.copy()
    out[h] = np.linalg.solve(lap[np.ix_(h, h)], -lap[np.ix_(h, k)] @ x[k])
    return out


def test_fill_matches_a_dense_reference_and_keeps_the_rest():
    xy, edges = _grid()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, len(xy), 3, generator=g, dtype=torch.float64)
    hidden = torch.from_numpy((np.abs(xy - 4) <= 2).all(1))[None]  # a 5 x 5 hole in the middle
    out = fill_hidden(x, hidden, edges)
    ref = _dense_fill(x[0].numpy(), hidden[0].numpy(), edges.numpy())
    np.testing.assert_allclose(out[0].numpy(), ref, atol=1e-9)
    assert torch.equal(out[0][~hidden[0]], x[0][~hidden[0]])
    assert not torch.equal(out[0][hidden[0]], x[0][hidden[0]])


def test_fill_reproduces_a_linear_field_and_leaves_cut_off_regions():
    xy, edges = _grid()
    lin = torch.from_numpy(np.stack([xy[:, 0], 2 * xy[:, 1] - xy[:, 0], np.ones(len(xy))], 1))[None]
    noisy = lin.clone()
    hidden = torch.from_numpy((np.abs(xy - 4) <= 2).all(1))[None]
    noisy[hidden] = 7.0  # the "occluder's colour"
    np.testing.assert_allclose(fill_hidden(noisy, hidden, edges).numpy(), lin.numpy(), atol=1e-9)
    # nothing kept to interpolate from: values stay
    everything = torch.ones_like(hidden)
    assert torch.equal(fill_hidden(noisy, everything, edges), noisy)
    with pytest.raises(ValueError, match="hidden"):
        fill_hidden(noisy, hidden[:, :5], edges)


def _square_rast(size: int = 16):
    """A rasterization of two triangles covering the whole square, vertices at its corners."""
    yy, xx = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    u, v = xx / size, yy / size
    lower = u >= v  # triangle 0: (0,0) (1,0) (1,1); triangle 1: (0,0) (1,1) (0,1)
    b0 = torch.where(lower, 1 - u, 1 - v)  # weight of each triangle's first vertex, (0, 0)
    b1 = torch.where(lower, u - v, u)  # of its second: (1, 0) / (1, 1)
    rast = torch.stack([b0, b1, torch.zeros_like(u), torch.where(lower, 1.0, 2.0)], -1)[None]
    return rast, torch.tensor([[0, 1, 2], [0, 2, 3]])


def test_vertex_average_and_hidden_vertices():
    rast, tri = _square_rast()
    ones = torch.ones(1, 1, 16, 16)
    avg, seen = vertex_average(rast, tri, ones, 5)
    assert seen[0].tolist() == [True, True, True, True, False]  # vertex 4 is not rendered
    np.testing.assert_allclose(avg[0, :4, 0].numpy(), 1.0, atol=1e-6)
    hid, sup = hidden_vertices(rast, tri, ones, 5, outline_px=0)
    assert not hid.any() and sup[0, 4] == 0
    vis = ones.clone()
    vis[..., 8:, :8] = 0  # the photo hides the corner at (0, 1): vertex 3
    hid, sup = hidden_vertices(rast, tri, vis, 5, outline_px=0)
    assert hid[0].tolist() == [False, False, False, True, False] and sup[0, 3] < 0.5 < sup[0, 1]
    hid, _ = hidden_vertices(rast, tri, vis, 5, outline_px=100)  # everything within the outline band
    assert not hid.any()
    with pytest.raises(ValueError, match="visibility"):
        hidden_vertices(rast, tri, vis[..., :8], 5)


def test_fit_does_not_paint_an_occluder_into_the_face():
    """Fit a rendered face with a red square pasted on it, the square marked hidden: with the fill
    the fitted albedo under the square stays near the face's, without it the fit paints it red."""
    fm = default_face_model("cpu")
    renderer = crop_renderer("cpu")
    lay = fm.layout
    c = lay.zeros(1)
    c[0, lay.slice("gamma").start] = 0.3
    with torch.no_grad():
        out = renderer(fm, c)
    target = out.image.clamp(0, 1) * out.mask + 0.35 * (1 - out.mask)
    occluded = target.clone()
    occluded[:, 0, 100:150, 80:140], occluded[:, 1:, 100:150, 80:140] = 1.0, 0.0
    vis = out.mask.clone()
    vis[..., 100:150, 80:140] = 0.05  # a segmenter is never quite sure; under Adam that is enough to paint
    base = out.mesh.albedo  # the true albedo as the prediction
    pred = Prediction(coeffs=c, albedo=base, visibility=vis)
    red = {}
    for fill in (False, True):
        col = fit_prediction(fm, occluded, pred, None, 30, fill=fill).albedo
        with torch.no_grad():
            img = renderer(fm, c, colors=col).image
        patch = img[:, :, 105:145, 85:135]
        red[fill] = float((patch[:, 0] - patch[:, 1:].mean(1)).mean())
    truth = target[:, :, 105:145, 85:135]
    red_truth = float((truth[:, 0] - truth[:, 1:].mean(1)).mean())
    painted, left = red[False] - red_truth, red[True] - red_truth
    assert painted > 0.2, red  # without the fill the square's colour goes into the face
    assert left < 0.6 * painted, (red, red_truth)  # the fill takes most of it out (the edge keeps some)


def test_evaluate_fill_option_reaches_fitting(tmp_path):
    """``--no-fill`` of python -m pyfaid.evaluate fits as ``fill=False`` does: with the shipped model's
    segmenter the two settings give different colours on occluded synthetic faces."""
    import json

    from pyfaid import evaluate as E
    from pyfaid.checkpoint import pretrained_available

    if not pretrained_available():
        pytest.skip("this checkout ships no pretrained model")
    reports = {}
    for flag in ([], ["--no-fill"]):
        out = tmp_path / ("paint" if flag else "fill")
        assert E.main(["--checkpoint", "pretrained", "--fit", "6", "--data", "synthetic", "--n", "2",
                       "--batch-size", "2", "--occlusion", "synthetic", "--out", str(out)] + flag) == 0
        reports[bool(flag)] = json.loads((out / "report.json").read_text())
    assert reports[False]["methods"]["FAID"]["fill"] is True and reports[True]["methods"]["FAID"]["fill"] is False
    err = {k: r["conditions"]["occluded"]["FAID"]["color_error"]["mean"] for k, r in reports.items()}
    assert err[False] != pytest.approx(err[True], rel=1e-4), err
    # --fill STEP ...: one row per step from one shared fit; the default prior's row is the default's
    from pyfaid.reconstruct.prior import DEFAULT_PRIOR, FILL_STEPS

    default = next(k for k, v in FILL_STEPS.items() if v == DEFAULT_PRIOR)
    out = tmp_path / "steps"
    assert E.main(["--checkpoint", "pretrained", "--fit", "6", "--data", "synthetic", "--n", "2",
                   "--batch-size", "2", "--occlusion", "synthetic", "--out", str(out),
                   "--fill", "harmonic", default]) == 0
    rows = json.loads((out / "report.json").read_text())["conditions"]["occluded"]
    assert set(rows) == {"FAID harmonic", f"FAID {default}"}
    assert rows[f"FAID {default}"]["color_error"]["mean"] == pytest.approx(err[False], abs=1e-6)
    assert rows["FAID harmonic"]["color_error"]["mean"] != pytest.approx(err[False], abs=1e-6)
    assert "| FAID harmonic |" in (out / "report.md").read_text()


def test_fill_refinement_replaces_what_the_refiners_changed_on_hidden_vertices():
    """Fitting starts from the fine colours with the hidden vertices' change over the coarse colours
    filled from the visible ones: a constant change on the visible vertices reaches the hidden ones,
    whatever the refiners put there."""
    from pyfaid.reconstruct.fill import fill_refinement

    fm = default_face_model("cpu")
    renderer = crop_renderer("cpu")
    c = fm.layout.zeros(1)
    c[0, fm.layout.slice("gamma").start] = 0.3
    base = fm.texture(fm.split_coeffs(c)["tex"])
    vis = torch.ones(1, 1, 224, 224)
    vis[..., 90:150, 70:150] = 0  # the photo hides the middle of the face
    colors = (base + 0.1).clamp(0, 1)
    rast = renderer(fm, c, colors=colors).rast
    hidden, _ = hidden_vertices(rast, fm.topology.triangles, vis, fm.num_vertices)
    colors[hidden] = 0.0  # what the refiners made of the hidden vertices: black
    out = fill_refinement(fm, renderer, c, colors, base, vis)
    assert hidden.sum() > 300
    expect = (base + 0.1).clamp(0, 1)
    # the hidden vertices away from the clamp at 1 take base + 0.1 back; the visible ones keep theirs
    torch.testing.assert_close(out[~hidden], colors[~hidden])
    inside = hidden & (base + 0.1 < 1).all(-1)
    assert float((out[inside] - expect[inside]).abs().max()) < 0.02
