"""Tests for pyfaid.render's camera and Renderer (Deep3DFaceRecon conventions)."""

import math

import pytest
import torch

from pyfaid.render import camera as cam
from pyfaid.render import RestShape
from pyfaid.render.renderer import AMBIENT_OFFSET, Renderer

SH_C0 = math.sqrt(math.pi) / 2  # a0 * c0 of Deep3DFaceRecon's SH: the constant band's factor


# ---------------------------------------------------------------------------------- camera
def test_euler_rotation_is_rz_ry_rx_and_orthonormal():
    angles = torch.tensor([[0.3, -0.7, 0.2], [0.0, 0.0, 0.0]], dtype=torch.float64)
    rot = cam.euler_rotation(angles)
    eye = torch.eye(3, dtype=torch.float64)
    assert torch.allclose(rot @ rot.transpose(1, 2), eye.expand(2, 3, 3), atol=1e-12)
    assert torch.allclose(torch.linalg.det(rot), torch.ones(2, dtype=torch.float64))
    assert torch.allclose(rot[1], eye)

    def single(axis, a):
        t = torch.zeros(1, 3, dtype=torch.float64)
        t[0, axis] = a
        return cam.euler_rotation(t)[0]

    assert torch.allclose(rot[0], single(2, 0.2) @ single(1, -0.7) @ single(0, 0.3))


def test_rotation_signs():
    nose = torch.tensor([[[0.0, 0.0, 1.0]]])
    yaw = cam.apply_pose(nose, cam.euler_rotation(torch.tensor([[0.0, 0.4, 0.0]])), torch.zeros(1, 3))
    assert yaw[0, 0, 0] > 0.3  # positive yaw: nose to +x (image right)
    pitch = cam.apply_pose(nose, cam.euler_rotation(torch.tensor([[0.4, 0.0, 0.0]])), torch.zeros(1, 3))
    assert pitch[0, 0, 1] < -0.3  # positive pitch: nose down
    right = torch.tensor([[[1.0, 0.0, 0.0]]])
    roll = cam.apply_pose(right, cam.euler_rotation(torch.tensor([[0.0, 0.0, 0.4]])), torch.zeros(1, 3))
    assert roll[0, 0, 1] > 0.3  # positive roll: counter-clockwise as the camera sees it


def test_clip_space_agrees_with_pixel_projection():
    pts = torch.randn(2, 50, 3, dtype=torch.float64) * 0.5
    pts_cam = cam.to_camera(pts, 10.0)
    for size, focal, center in ((224, 1015.0, 112.0), (128, 500.0, 70.0)):
        clip = cam.clip_space(pts_cam, focal, center, size)
        ndc = clip[..., :2] / clip[..., 3:]
        pix = cam.to_pixels(cam.project(pts_cam, focal, center), size)
        # nvdiffrast: pixel (row i, col j) has its centre at NDC ((2j+1)/W - 1, (2i+1)/H - 1).
        assert torch.allclose(ndc, (2 * pix + 1) / size - 1, atol=1e-10)
    depth = clip[..., 2] / clip[..., 3]
    assert (depth.abs() < 1).all()
    assert torch.allclose(cam.clip_space(torch.tensor([[[0.0, 0.0, 5.0]]]), 1.0, 64.0, 128)[..., 2] / 5.0,
                          torch.tensor(-1.0))


def test_random_angles_limits_and_seed():
    g = torch.Generator().manual_seed(0)
    a = cam.random_angles(1000, g, max_yaw=80, max_pitch=10, max_roll=5)
    assert a.shape == (1000, 3)
    assert a[:, 1].abs().max() <= math.radians(80) and a[:, 1].abs().max() > math.radians(70)
    assert a[:, 0].abs().max() <= math.radians(10) and a[:, 2].abs().max() <= math.radians(5)
    assert torch.equal(a, cam.random_angles(1000, torch.Generator().manual_seed(0), 80, 10, 5))


# ------------------------------------------------------------------------- a tiny test model
def _tiny_model(dtype=torch.float64):
    """A 1 x 1 square facing the camera (4x4 vertex grid) plus a triangle "nose" pointing up."""
    from pyfaid.facemodel import MorphableModel

    n = 4
    ys, xs = torch.meshgrid(torch.linspace(0.5, -0.5, n), torch.linspace(-0.5, 0.5, n), indexing="ij")
    verts = torch.stack([xs.reshape(-1), ys.reshape(-1), torch.zeros(n * n)], 1)
    tris = []
    for r in range(n - 1):
        for c in range(n - 1):
            i = r * n + c
            # counter-clockwise as seen from +z (row r is above row r + 1)
            tris += [[i, i + n, i + 1], [i + 1, i + n, i + n + 1]]
    V = verts.shape[0]
    gen = torch.Generator().manual_seed(0)
    id_base = torch.zeros(3 * V, 2)
    id_base[0::3, 0] = verts[:, 0] * 0.2  # widen
    id_base[1::3, 1] = 0.1  # move up
    exp_base = torch.randn(3 * V, 1, generator=gen) * 0.01
    mean_tex = torch.stack([0.2 + 0.6 * (verts[:, 0] + 0.5), torch.full((V,), 0.5), 0.2 + 0.6 * (verts[:, 1] + 0.5)], 1)
    tex_base = torch.randn(3 * V, 3, generator=gen) * 0.05
    lmk = torch.arange(68) % V
    model = MorphableModel(verts.numpy(), id_base.numpy(), exp_base.numpy(), mean_tex.numpy(), tex_base.numpy(),
                           torch.tensor(tris).numpy(), lmk.numpy(), torch.ones(V, dtype=torch.bool).numpy())
    return model.to(dtype)


def _coeffs(batch=1, dtype=torch.float64):
    return _tiny_model().layout.zeros(batch, dtype=dtype)


def _at(part: str, k: int = 0) -> int:
    """Index of slot ``k`` of a part of the tiny model's coefficient vector."""
    return _tiny_model().layout.slice(part).start + k


def test_square_lands_where_the_pinhole_camera_says(device):
    model = _tiny_model().to(device)
    out = Renderer()(model, _coeffs().to(device))
    mask = out.mask[0, 0].cpu()
    # Half-size 0.5 at depth 10, focal 1015: u in 112 +- 50.75 = [61.25, 162.75]; pixel j has its
    # centre at u = j + 0.5, so columns (and rows) 61 .. 162 are covered (102 of them).
    cols = mask.amax(0).nonzero().flatten()
    rows = mask.amax(1).nonzero().flatten()
    assert abs(int(cols[0]) - 61) <= 1 and abs(int(cols[-1]) - 162) <= 1
    assert abs(int(rows[0]) - 61) <= 1 and abs(int(rows[-1]) - 162) <= 1
    # Landmarks are vertex projections in pixel-centre coordinates: the top-left corner vertex 0
    # is at (61.25 - 0.5, 61.25 - 0.5), the bottom-right vertex 15 at (162.25, 162.25).
    lm = out.landmarks_px[0].cpu()
    assert torch.allclose(lm[0], torch.tensor([60.75, 60.75], dtype=lm.dtype), atol=1e-6)
    assert torch.allclose(lm[15], torch.tensor([162.25, 162.25], dtype=lm.dtype), atol=1e-6)
    assert out.image.shape == (1, 3, 224, 224) and out.mask.shape == (1, 1, 224, 224)
    assert out.vertices_cam.shape == (1, 16, 3)
    assert torch.allclose(out.vertices_cam[0, :, 2].cpu(), torch.full((16,), 10.0, dtype=torch.float64))


def test_image_is_upright_and_translation_moves_it():
    model = _tiny_model()
    r = Renderer()
    c = _coeffs()
    c[0, _at("trans", 1)] = 0.3  # +y translation: up in the picture
    c[0, _at("trans", 0)] = -0.2  # -x translation: left in the picture
    mask = r(model, c).mask[0, 0]
    rows = mask.amax(1).nonzero().flatten()
    cols = mask.amax(0).nonzero().flatten()
    assert rows[0] < 61 - 25 and cols[0] < 61 - 15
    # The albedo's blue channel is strongest at the top vertex row: it must be on the top image rows.
    img = r(model, _coeffs()).image[0]
    top, bottom = img[2, 70, 112], img[2, 150, 112]
    assert top > bottom + 0.1


def test_constant_light_shading_values():
    model = _tiny_model()
    V = model.num_vertices
    colors = torch.full((V, 3), 0.5, dtype=torch.float64)
    out = Renderer()(model, _coeffs(), colors=colors)
    centre = out.image[0, :, 112, 112]
    expected = 0.5 * AMBIENT_OFFSET * SH_C0
    assert torch.allclose(centre, torch.full((3,), expected, dtype=torch.float64), atol=1e-6)
    assert torch.allclose(out.mesh.albedo[0], colors)
    # A frontal light (band-1 z coefficient, slot 2 of each channel) brightens a camera-facing face.
    c = _coeffs()
    c[0, _at("gamma", 2)] = c[0, _at("gamma", 11)] = c[0, _at("gamma", 20)] = 0.2
    lit = Renderer()(model, c, colors=colors).image[0, :, 112, 112]
    assert (lit > centre + 0.05).all()
    # Outside the face the image is black and the mask is 0.
    assert out.image[0, :, 5, 5].abs().sum() == 0 and out.mask[0, 0, 5, 5] == 0


def test_gradients_flow_to_coeffs_and_colors():
    model = _tiny_model()
    V = model.num_vertices
    coeffs = _coeffs(2)
    coeffs[1, _at("angle", 1)] = 0.3
    coeffs.requires_grad_()
    colors = (torch.rand(2, V, 3, dtype=torch.float64) * 0.5 + 0.2).requires_grad_()
    r = Renderer(64)
    weight = torch.rand(2, 3, 64, 64, dtype=torch.float64)
    out = r(model, coeffs, colors=colors)
    (out.image * weight).sum().backward()
    assert colors.grad.abs().sum() > 0
    lay = model.layout
    assert coeffs.grad[:, lay.slice("gamma")].abs().sum() > 0  # lighting
    assert coeffs.grad[:, lay.slice("id")].abs().sum() > 0  # identity (through vertex positions)

    # Finite differences for the lighting and the texture coefficients (rasterization unchanged).
    coeffs2 = coeffs.detach().clone().requires_grad_()
    loss = (r(model, coeffs2).image * weight).sum()
    (grad,) = torch.autograd.grad(loss, coeffs2)
    for k in (_at("tex", 0), _at("tex", 2), _at("gamma", 0), _at("gamma", 9), _at("gamma", 2)):
        e = torch.zeros_like(coeffs2)
        e[:, k] = 1e-6
        plus = (r(model, coeffs2.detach() + e).image * weight).sum()
        minus = (r(model, coeffs2.detach() - e).image * weight).sum()
        fd = (plus - minus) / 2e-6
        assert torch.allclose(grad[:, k].sum(), fd, rtol=1e-4, atol=1e-6), k


def test_render_views_replaces_angles():
    model = _tiny_model()
    r = Renderer()
    c = _coeffs(2)
    angles = torch.tensor([[0.0, 0.5, 0.0], [0.0, -0.5, 0.0]], dtype=torch.float64)
    a = r.render_views(model, c, angles)
    c2 = c.clone()
    c2[:, model.layout.slice("angle")] = angles
    b = r(model, c2)
    assert torch.equal(a.image, b.image)
    # Yawing a square makes it narrower.
    assert a.mask.sum() < r(model, c).mask.sum() * 2 * 0.95
    views, ang = r.random_views(model, c, generator=torch.Generator().manual_seed(0))
    assert ang.shape == (2, 3) and views.image.shape == (2, 3, 224, 224)


def test_bad_input():
    model = _tiny_model()
    r = Renderer()
    with pytest.raises(ValueError, match="coeffs"):
        r(model, torch.zeros(1, model.layout.size - 1, dtype=torch.float64))
    with pytest.raises(ValueError, match="colors"):
        r(model, _coeffs(), colors=torch.zeros(5, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="angles"):
        r.render_views(model, _coeffs(), torch.zeros(2, 3, dtype=torch.float64))


# --------------------------------------------------------------------- the default face model
@pytest.fixture(scope="module")
def default_model():
    from pyfaid import facemodel

    return facemodel.load("default")


@pytest.fixture(scope="module")
def frontal(default_model):
    return Renderer()(default_model, default_model.layout.zeros(1))


def test_mean_face_is_a_centred_face_sized_blob(frontal):
    mask = frontal.mask[0, 0]
    coverage = float(mask.mean())
    assert 0.15 < coverage < 0.8, coverage
    ys, xs = torch.nonzero(mask, as_tuple=True)
    assert abs(float(xs.float().mean()) - 111.5) < 12
    assert abs(float(ys.float().mean()) - 111.5) < 25
    img = frontal.image[0]
    assert float(img[:, mask > 0].mean()) > 0.15  # lit, not black


def test_mean_face_is_upright(frontal):
    lm = frontal.landmarks_px[0]
    # iBUG-68: 8 chin, 30 nose tip, 27 nose bridge top, 36/45 outer eye corners, 48/54 mouth corners.
    assert lm[8, 1] > lm[30, 1] > lm[27, 1]  # chin below the nose below the brow (y down)
    assert lm[36, 0] < lm[45, 0]  # subject's right eye on the image left
    assert lm[48, 1] > lm[36, 1]
    assert (lm > 0).all() and (lm < 224).all()


def test_mean_face_turns_with_yaw(default_model, frontal):
    r = Renderer()
    angles = torch.tensor([[0.0, 0.6, 0.0], [0.0, -0.6, 0.0]])
    views = r.render_views(default_model, default_model.layout.zeros(2), angles)
    nose0 = frontal.landmarks_px[0, 30, 0]
    assert views.landmarks_px[0, 30, 0] > nose0 + 10  # positive yaw: nose to the image right
    assert views.landmarks_px[1, 30, 0] < nose0 - 10
    # The nose moves further than the face outline's centre (it turns, not just shifts).
    for b, sgn in ((0, 1), (1, -1)):
        xs = torch.nonzero(views.mask[b, 0], as_tuple=True)[1].float()
        shift_centroid = xs.mean() - torch.nonzero(frontal.mask[0, 0], as_tuple=True)[1].float().mean()
        shift_nose = views.landmarks_px[b, 30, 0] - nose0
        assert sgn * shift_nose > sgn * shift_centroid


def test_default_model_gradients(default_model):
    r = Renderer(96)
    coeffs = default_model.layout.zeros(1).requires_grad_(True)
    out = r(default_model, coeffs)
    out.image.mean().backward()
    g = coeffs.grad[0]
    lay = default_model.layout
    assert g[lay.slice("gamma")].abs().sum() > 0 and g[lay.slice("tex")].abs().sum() > 0 and \
        g[lay.slice("id")].abs().sum() > 0
    assert torch.isfinite(g).all()


def test_fixed_shape_normals_rotate_with_the_pose():
    """A shape without gradient moved by a pose with one: the mesh's rest normals are rotated
    (no normal-kernel backward), cached in a RestShape or not; image and pose gradient match the
    kernel path on the posed mesh."""
    model = _tiny_model()
    base = _coeffs(2)
    base[:, _at("angle", 1)] = torch.tensor([0.3, -0.2], dtype=torch.float64)
    base[:, _at("angle", 0)] = 0.1
    base[:, _at("gamma", 1)] = 0.3  # light that depends on the normal
    colors = torch.rand(2, model.num_vertices, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    r = Renderer(64)
    weight = torch.rand(2, 3, 64, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    rest = model.rest_shape(base)
    fast = []
    for cached in (None, rest):
        angles = base[:, model.layout.slice("angle")].clone().requires_grad_()
        out = r(model, base, colors=colors, angles=angles, rest=cached)  # pose with gradient: rotated rest normals
        (g_fast,) = torch.autograd.grad((out.image * weight).sum(), angles)
        assert "vertex_normals" not in out.mesh.normals_world.grad_fn.name()
        fast.append((out, g_fast))
    assert torch.equal(fast[0][0].image, fast[1][0].image) and torch.equal(fast[0][1], fast[1][1])

    # the same vertices marked as needing a gradient: the kernel path on the posed mesh
    angles2 = base[:, model.layout.slice("angle")].clone().requires_grad_()
    marked = RestShape(rest.vertices.clone().requires_grad_(), rest.normals)
    ref = r(model, base, colors=colors, angles=angles2, rest=marked)
    (g_ref,) = torch.autograd.grad((ref.image * weight).sum(), angles2)
    assert "vertex_normals" in ref.mesh.normals_world.grad_fn.name()
    out, g_fast = fast[1]
    assert torch.allclose(out.mesh.normals_world, ref.mesh.normals_world, atol=1e-10)
    assert torch.allclose(out.image, ref.image, atol=1e-10)
    assert g_ref.abs().sum() > 0 and torch.allclose(g_fast, g_ref, rtol=1e-6, atol=1e-9)


def test_second_shading_equals_a_second_render():
    """Renderer.shade of a first render's fragments with a second albedo (no second rasterization)
    gives the image and the gradients of rendering again with that albedo."""
    model = _tiny_model()
    g = torch.Generator().manual_seed(3)
    coeffs = _coeffs(2)
    coeffs[:, _at("angle", 1)] = torch.tensor([0.25, -0.4], dtype=torch.float64)
    coeffs[:, _at("gamma", 3)] = 0.2
    coeffs.requires_grad_()
    c1, c2 = (torch.rand(2, model.num_vertices, 3, dtype=torch.float64, generator=g) for _ in range(2))
    c2.requires_grad_()
    r = Renderer(64)
    w = torch.rand(2, 3, 64, 64, dtype=torch.float64, generator=g)
    mesh = model.mesh(coeffs, c1)
    fragments = r.rasterize(mesh)
    first = r.shade(fragments, mesh)
    again = r.shade(fragments, mesh, c2)
    ref = r(model, coeffs, colors=c2)
    assert torch.allclose(first.image, r(model, coeffs, colors=c1).image, atol=1e-12)
    for k in ("image", "mask", "shaded", "landmarks_px"):
        assert torch.allclose(getattr(again, k), getattr(ref, k), atol=1e-12), k
    ga = torch.autograd.grad((again.image * w).sum(), (coeffs, c2))
    gr = torch.autograd.grad((ref.image * w).sum(), (coeffs, c2))
    assert gr[0].abs().sum() > 0 and gr[1].abs().sum() > 0
    assert all(torch.allclose(a, b, atol=1e-10) for a, b in zip(ga, gr))
    with pytest.raises(ValueError, match="albedo"):
        r.shade(fragments, mesh, c2[:, :3])


def test_render_keeps_the_former_dict_keys():
    """Code written against the renderer's former dict output still reads every key."""
    model = _tiny_model()
    out = Renderer(32)(model, _coeffs(1))
    for key, value in (("image", out.image), ("mask", out.mask), ("landmarks", out.landmarks_px),
                       ("vertices", out.vertices_cam), ("colors", out.mesh.albedo), ("shaded", out.shaded),
                       ("normals", out.mesh.normals_world), ("rast", out.rast)):
        assert torch.equal(out[key], value), key
    with pytest.raises(KeyError):
        out["nope"]
