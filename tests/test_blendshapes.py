"""ARKit blendshapes of the default model: names and sides, the bounded fit, the landmark solve,
``rec.blendshapes``, the glTF morph targets and the JSON export, and the synthetic ground truth."""

import json

import numpy as np
import pytest
import torch
from scipy.optimize import lsq_linear

import pyfaid
from pyfaid import reconstruct as R
from pyfaid.facemodel import MorphableModel
from pyfaid.facemodel.blendshapes import (ARKIT_NAMES, LIVE_LINK_FACE_NAMES, MAKEHUMAN_TO_ARKIT, Blendshapes,
                                          NoBlendshapesError, has_blendshapes)
from pyfaid.reconstruct.expression import INNER, ExpressionSolver, Pinhole, box_qp
from pyfaid.reconstruct.predict import crop_renderer, default_face_model
from pyfaid.reconstruct.result import make_reconstruction


@pytest.fixture(scope="module")
def model():
    return default_face_model("cpu")


@pytest.fixture(scope="module")
def shapes(model):
    return Blendshapes(model)


def _bfm_like():
    """A model with PCA expressions and no blendshape map (as BFM)."""
    n = 40
    g = torch.Generator().manual_seed(0)
    v = torch.randn(n, 3, generator=g)
    return MorphableModel(v, torch.randn(3 * n, 2, generator=g), torch.randn(3 * n, 3, generator=g),
                          torch.rand(n, 3, generator=g), torch.zeros(3 * n, 1), torch.randint(0, n, (20, 3)),
                          torch.arange(68) % n, torch.ones(n, dtype=torch.bool), meta={"name": "bfm_like"})


def test_names_are_arkit_and_live_link_face(model):
    assert len(ARKIT_NAMES) == len(set(ARKIT_NAMES)) == 52
    assert set(MAKEHUMAN_TO_ARKIT) == set(model.labels["exp_target_names"])
    assert set(MAKEHUMAN_TO_ARKIT.values()) == set(ARKIT_NAMES)
    assert len(LIVE_LINK_FACE_NAMES) == 52
    assert {n[0].lower() + n[1:] for n in LIVE_LINK_FACE_NAMES} == set(ARKIT_NAMES)
    assert LIVE_LINK_FACE_NAMES[:2] == ("EyeBlinkLeft", "EyeLookDownLeft")
    assert LIVE_LINK_FACE_NAMES[14:18] == ("JawForward", "JawRight", "JawLeft", "JawOpen")
    assert has_blendshapes(model) and not has_blendshapes(_bfm_like())


@pytest.mark.parametrize("name", ["eyeBlinkLeft", "mouthSmileLeft", "browOuterUpLeft", "cheekSquintLeft"])
def test_left_is_the_face_s_own_left(shapes, model, name):
    """ARKit's Left is the face's own left: model +x, the image right of a frontal photo."""
    d = shapes.deltas([name])[0].norm(dim=1)
    x = model.mean_shape[:, 0]
    assert float((d * x).sum() / d.sum()) > 0.1
    right = shapes.deltas([name.replace("Left", "Right")])[0].norm(dim=1)
    assert float((right * x).sum() / right.sum()) < -0.1


def test_bounded_fit_recovers_weights_and_keeps_bounds(shapes, model):
    g = np.random.default_rng(0)
    w = np.zeros((6, 52))
    for row in w:
        row[g.choice(51, 3, replace=False)] = g.uniform(0.2, 1.0, 3)  # tongueOut (51) moves nothing on the face
    est = shapes.weights(shapes.coeffs(w))
    assert est.shape == (6, 52) and est.min() >= 0 and est.max() <= 1
    assert np.abs(est - w).mean() < 0.01
    # coefficients outside the ARKit box: the bounded fit beats clamping the unbounded solution
    b = shapes.coeffs(w)[0] + 2.0 * torch.randn(model.n_exp, generator=torch.Generator().manual_seed(1))
    fit = shapes.weights(b)
    free = np.clip(np.linalg.lstsq(shapes.to_coeffs.numpy(), b.double().numpy(), rcond=None)[0], 0, 1)
    e = model.exp_base.double()
    err = lambda v: float((e @ (shapes.to_coeffs @ torch.from_numpy(v) - b.double())).norm())  # noqa: E731
    assert 0 <= fit.min() and fit.max() <= 1
    assert err(fit) < err(free)


def test_coeffs_and_deltas_agree(shapes, model):
    w = np.zeros(52)
    w[ARKIT_NAMES.index("jawOpen")], w[ARKIT_NAMES.index("mouthSmileLeft")] = 0.6, 0.3
    c = shapes.coeffs(w)
    via_model = model.shape(torch.zeros(1, model.n_id), c[None])[0] - model.mean_shape
    via_deltas = (torch.from_numpy(w).float()[:, None, None] * shapes.deltas()).sum(0)
    torch.testing.assert_close(via_model, via_deltas, atol=1e-5, rtol=1e-4)
    assert shapes.as_dict(w)["jawOpen"] == pytest.approx(0.6)
    with pytest.raises(ValueError, match="52"):
        shapes.as_dict(np.zeros(5))
    with pytest.raises(ValueError, match=r"\[B, 51\]"):
        shapes.weights(np.zeros(7))


def test_a_model_without_blendshapes_says_so():
    fm = _bfm_like()
    with pytest.raises(NoBlendshapesError, match="bfm_like.*no ARKit blendshapes.*default model"):
        Blendshapes(fm)
    renderer = crop_renderer("cpu")
    rec = make_reconstruction(fm, renderer, torch.zeros(3, 224, 224), fm.layout.zeros(1)[0], None, None, "x", None, [])
    with pytest.raises(NoBlendshapesError):
        rec.blendshapes
    from pyfaid.reconstruct import export

    assert export.face_json(rec)["blendshapes"] is None


def test_box_qp_matches_scipy_bounded_least_squares():
    g = np.random.default_rng(3)
    for _ in range(5):
        a, b = g.normal(size=(40, 12)), g.normal(size=40) * 3
        lo = np.concatenate([np.full(8, -0.2), np.full(4, -np.inf)])
        hi = np.concatenate([np.full(8, 0.5), np.full(4, np.inf)])
        want = lsq_linear(a, b, bounds=(lo, hi), method="bvls").x
        got = box_qp(a.T @ a, a.T @ b, lo, hi)
        np.testing.assert_allclose(got, want, atol=1e-8)


def test_landmark_solve_recovers_expression_and_pose(model, shapes):
    renderer = crop_renderer("cpu")
    cam = Pinhole.of_renderer(renderer)
    solver = ExpressionSolver(model)
    lay = model.layout
    c = lay.zeros(1)
    c[0, lay.slice("id")] = 0.5 * torch.randn(model.n_id, generator=torch.Generator().manual_seed(2))
    w = np.zeros(52)
    w[ARKIT_NAMES.index("jawOpen")], w[ARKIT_NAMES.index("mouthSmileLeft")] = 0.7, 0.6
    c[0, lay.slice("exp")] = shapes.coeffs(w)
    c[0, lay.slice("angle")] = torch.tensor([0.1, 0.3, -0.05])
    target = renderer.project_landmarks(model, c)[0]
    p = {k: v[0].double() for k, v in model.split_coeffs(c).items()}
    x = np.concatenate([np.zeros(52), p["angle"].numpy() + [0.03, -0.03, 0.02], p["trans"].numpy()])
    rest = solver.neutral_landmarks(p["id"])
    # the Jacobian is the projection's derivative
    uv, jac = solver._jacobian(rest, cam, x)
    np.testing.assert_allclose(uv.reshape(-1, 2), renderer.project_landmarks(model, torch.from_numpy(np.concatenate([
        c[0, :lay.slice("exp").start].numpy(), shapes.coeffs(x[:52]).numpy(), c[0, lay.slice("tex")].numpy(),
        x[52:55], c[0, lay.slice("gamma")].numpy(), x[55:]])).float()[None])[0].numpy()[list(INNER)], atol=1e-3)
    num = np.stack([(solver._jacobian(rest, cam, x + d)[0] - solver._jacobian(rest, cam, x - d)[0]) / 2e-6
                    for d in np.eye(58) * 1e-6], 1)
    np.testing.assert_allclose(jac, num, rtol=1e-4, atol=1e-3)
    sol = solver.solve(rest, cam, target.numpy(), x, steps=6)
    assert sol[ARKIT_NAMES.index("jawOpen")] == pytest.approx(0.7, abs=0.12)
    assert sol[ARKIT_NAMES.index("mouthSmileLeft")] == pytest.approx(0.6, abs=0.2)
    assert np.delete(sol[:52], [ARKIT_NAMES.index("jawOpen"), ARKIT_NAMES.index("mouthSmileLeft")]).mean() < 0.02
    assert np.abs(np.degrees(sol[52:55] - p["angle"].numpy())).max() < 1.5


def test_reconstruct_blendshapes_json_and_glb(tmp_path):
    import pygltflib
    import trimesh
    from skimage import data

    rec = R.reconstruct(data.astronaut(), fit_steps=0)
    bs = rec.blendshapes
    assert list(bs) == list(ARKIT_NAMES) and all(0.0 <= v <= 1.0 for v in bs.values())
    rec.save(tmp_path / "face.json")
    doc = json.loads((tmp_path / "face.json").read_text())
    assert doc["blendshapes"] == pytest.approx(bs) and len(doc["landmarks_photo_px"]) == 68
    assert set(doc["pose_degrees"]) == {"yaw", "pitch", "roll"}
    rec.save(tmp_path / "face.glb", texture="albedo", texture_size=128)
    scene = trimesh.load(str(tmp_path / "face.glb"))
    (mesh,) = scene.geometry.values()
    assert mesh.metadata["targetNames"] == list(ARKIT_NAMES)
    g = pygltflib.GLTF2().load(str(tmp_path / "face.glb"))
    prim = g.meshes[0].primitives[0]
    assert len(prim.targets) == 52 and g.meshes[0].weights == pytest.approx(list(bs.values()))
    # one target read back: the sparse offsets are the blendshape's, in metres, on the split vertices
    blob = g.binary_blob()
    target = prim.targets[ARKIT_NAMES.index("jawOpen")]
    acc = g.accessors[target["POSITION"] if isinstance(target, dict) else target.POSITION]
    n, sparse = acc.count, acc.sparse
    get = (lambda o, k: o[k]) if isinstance(sparse, dict) else getattr  # noqa: E731
    ind, vals = get(sparse, "indices"), get(sparse, "values")
    view_i, view_v = g.bufferViews[get(ind, "bufferView")], g.bufferViews[get(vals, "bufferView")]
    count = get(sparse, "count")
    idx = np.frombuffer(blob, np.uint16 if get(ind, "componentType") == 5123 else np.uint32, count, view_i.byteOffset)
    val = np.frombuffer(blob, np.float32, count * 3, view_v.byteOffset).reshape(-1, 3)
    dense = np.zeros((n, 3), np.float32)
    dense[idx] = val
    from pyfaid.facemodel.uv import split_seams

    vertex_of, _, _ = split_seams(rec.faces.numpy(), rec.face_model.uv_faces.numpy(), rec.face_model.num_vertices)
    want = Blendshapes(rec.face_model).deltas(["jawOpen"])[0].numpy()[vertex_of] * 0.1
    np.testing.assert_allclose(dense, want, atol=2e-6)
    # the base mesh is the face without expression
    neutral = rec.face_model.shape(rec.parts()["id"][None], torch.zeros(1, rec.face_model.n_exp))[0]
    np.testing.assert_allclose(np.asarray(mesh.vertices), neutral.numpy()[vertex_of] * 0.1, atol=1e-5)


def test_fit_space_blendshapes(tmp_path):
    from skimage import data

    rec = pyfaid.reconstruct(data.astronaut(), fit_steps=0, fit_space="blendshapes")
    w = np.array(list(rec.blendshapes.values()))
    assert w.min() >= 0 and w.max() <= 1
    # the expression is in the ARKit span: its bounded fit reproduces it, vertex for vertex (within 0.1 mm)
    shapes = Blendshapes(rec.face_model)
    diff = rec.face_model.exp_base @ (shapes.coeffs(w) - rec.parts()["exp"].float())
    assert float(diff.reshape(-1, 3).norm(dim=1).max()) < 0.001
    with pytest.raises(ValueError, match="fit_space must be one of"):
        pyfaid.reconstruct(data.astronaut(), fit_space="pca")
    with pytest.raises(ValueError, match="68 landmarks"):
        pyfaid.reconstruct(data.astronaut(), checkpoint=None, fit_steps=1, fit_space="blendshapes")


def test_synthetic_faces_know_their_weights(model):
    from pyfaid.synth import SyntheticFaces

    ds = SyntheticFaces(seed=3, length=20, face_model=model)
    shapes = Blendshapes(model)
    lay = model.layout
    active = 0
    for i in range(20):
        truth = ds.sample_blendshapes(i)
        assert set(truth) == set(ARKIT_NAMES) and all(0 <= v <= 1 for v in truth.values())
        w = np.array([truth[n] for n in ARKIT_NAMES])
        np.testing.assert_allclose(shapes.coeffs(w).numpy(), ds.sample_coeffs(i)[lay.slice("exp")], atol=1e-5)
        active += int((w > 0).sum())
    assert active > 20
    assert SyntheticFaces(seed=3, length=2, face_model=_bfm_like()).sample_blendshapes(0) is None
