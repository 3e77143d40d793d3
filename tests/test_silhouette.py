"""The soft edge of the rendered outline (fitting's silhouette term) and fitting's contour terms."""

import math

import numpy as np
import pytest
import torch


class _Square:
    """A two-triangle square, enough of a face model for :class:`SoftEdge`."""

    def __init__(self):
        self.triangles = torch.tensor([[0, 1, 2], [0, 2, 3]])


def _square(x0=10.3, x1=20.3, y0=5.0, y1=25.0, size=32):
    verts = torch.tensor([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=torch.float64, requires_grad=True)
    ys, xs = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    inside = (xs >= x0) & (xs <= x1) & (ys >= y0) & (ys <= y1)
    rast = torch.zeros(1, size, size, 4, dtype=torch.float64)
    rast[..., 3] = inside.double()
    return verts, rast


def test_soft_edge_is_a_sigmoid_of_the_distance_to_the_outline_with_its_gradient():
    from pyfaid.reconstruct.silhouette import SoftEdge

    verts, rast = _square()
    edge = SoftEdge(_Square(), sigma=1.0, band=3.0)
    cov, band = edge(verts[None], rast)
    assert cov.shape == band.shape == (1, 1, 32, 32)
    # outside the band: the hard coverage; in it, sigmoid(+-distance / sigma)
    hard = rast[0, ..., 3]
    assert torch.equal(cov[0, 0][band[0, 0] == 0], hard[band[0, 0] == 0])
    sig = lambda d: 1 / (1 + math.exp(-d))  # noqa: E731
    assert float(cov.detach()[0, 0, 15, 21]) == pytest.approx(sig(-0.7), abs=1e-6)  # 0.7 px right of the edge x = 20.3
    assert float(cov.detach()[0, 0, 15, 20]) == pytest.approx(sig(0.3), abs=1e-6)   # 0.3 px inside it
    assert float(cov.detach()[0, 0, 15, 15]) == 1.0 and float(cov.detach()[0, 0, 15, 28]) == 0.0
    # d coverage / d x of the right edge's vertices: sigmoid'(-0.7), shared by its two ends at mid-height
    cov[0, 0, 15, 21].backward()
    g = verts.grad
    s = sig(-0.7)
    assert float(g[1, 0] + g[2, 0]) == pytest.approx(s * (1 - s), rel=1e-5)
    assert float(g[1, 0]) == pytest.approx(float(g[2, 0]), rel=1e-5)
    assert float(g[0].abs().sum() + g[3].abs().sum()) == 0.0  # the left edge is far


def test_silhouette_loss_pulls_the_outline_towards_the_target_region():
    from pyfaid.reconstruct.silhouette import SoftEdge, silhouette_loss

    verts, rast = _square()
    target = torch.zeros(1, 1, 32, 32, dtype=torch.float64)
    target[..., 5:26, 11:24] = 1.0  # the region reaches 3 px further right
    cov, band = SoftEdge(_Square(), sigma=1.0, band=4.0)(verts[None], rast)
    loss = silhouette_loss(cov, band, target)
    loss.backward()
    assert float(verts.grad[1, 0]) < 0 and float(verts.grad[2, 0]) < 0  # descent moves the right edge right
    # the band-only path gives the same value and gradient
    grad, verts.grad = verts.grad.clone(), None
    fast = SoftEdge(_Square(), sigma=1.0, band=4.0).loss(verts[None], rast, target)
    fast.backward()
    assert float(fast) == pytest.approx(float(loss), rel=1e-9) and torch.allclose(verts.grad, grad)
    # the left edge already matches (up to the softness): a far weaker pull
    assert abs(float(verts.grad[0, 0])) < 0.2 * abs(float(verts.grad[1, 0]))


def test_soft_edge_on_a_rendered_face_has_gradients_to_the_pose(tmp_path, monkeypatch):
    from pyfaid import facemodel
    from pyfaid.render import Renderer
    from pyfaid.reconstruct.silhouette import SoftEdge, silhouette_loss

    fm = facemodel.load("default")
    r = Renderer(96)
    c = fm.layout.zeros(1)
    c[:, fm.layout.slice("angle")] = torch.tensor([[0.0, 0.5, 0.0]])
    c.requires_grad_(True)
    out = r(fm, c)
    cov, band = SoftEdge(fm)(r.project_points(out["vertices"]), out["rast"])
    assert 0 < float(band.sum()) < 0.25 * 96 * 96 and ((cov > 0) & (cov < 1)).any()
    # a target a little wider than the render: the loss wants the face nearer (bigger)
    mask = out["mask"].detach()[0, 0].numpy().astype(np.uint8)
    import cv2

    target = torch.from_numpy(cv2.dilate(mask, np.ones((5, 5), np.uint8))).float()[None, None]
    silhouette_loss(cov, band, target).backward()
    g = c.grad[0, fm.layout.slice("trans")]
    assert torch.isfinite(c.grad).all() and float(g[2]) < 0  # +z moves the face towards the camera
