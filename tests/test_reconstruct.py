"""pyfaid.reconstruct: the Python API on one photo and many, photo-space results, export
round-trips, test-time fitting, CLI error handling."""


import numpy as np
import pytest
import torch

import pyfaid
from pyfaid.reconstruct.predict import crop_renderer, default_face_model
from pyfaid import reconstruct as R


def _tiny_model():
    import trimesh

    from pyfaid.facemodel import MorphableModel

    mesh = trimesh.creation.icosphere(subdivisions=1)
    v = torch.tensor(mesh.vertices, dtype=torch.float32)
    n = v.shape[0]
    g = torch.Generator().manual_seed(0)
    return MorphableModel(v, torch.zeros(3 * n, 2), torch.zeros(3 * n, 1), torch.rand(n, 3, generator=g),
                          torch.zeros(3 * n, 1), torch.tensor(mesh.faces), torch.arange(68) % n,
                          torch.ones(n, dtype=torch.bool))


def _tiny_reconstruction():
    from pyfaid.render import Renderer

    fm = _tiny_model()
    g = torch.Generator().manual_seed(0)
    albedo = torch.rand(fm.num_vertices, 3, generator=g)
    shaded = torch.rand(fm.num_vertices, 3, generator=g)
    return R.Reconstruction(input=torch.zeros(3, 224, 224), coeffs=fm.layout.zeros(1)[0], vertices=fm.mean_shape,
                            faces=fm.triangles.long(), albedo=albedo, shaded=shaded, face_model=fm,
                            renderer=Renderer(224))


@pytest.mark.parametrize("fmt", ["obj", "ply"])
@pytest.mark.parametrize("colors", ["albedo", "shaded"])
def test_mesh_roundtrip(tmp_path, fmt, colors):
    import trimesh

    rec = _tiny_reconstruction()
    path = tmp_path / f"face.{fmt}"
    getattr(rec, f"save_{fmt}")(path, colors=colors)
    back = trimesh.load(str(path), process=False, force="mesh")
    assert back.vertices.shape == tuple(rec.vertices.shape)
    np.testing.assert_allclose(back.vertices, rec.vertices.numpy(), atol=1e-5)
    np.testing.assert_array_equal(back.faces, rec.faces.numpy())
    want = (getattr(rec, colors).numpy() * 255 + 0.5).astype(np.uint8)
    got = np.asarray(back.visual.vertex_colors)[:, :3]
    np.testing.assert_allclose(got.astype(int), want.astype(int), atol=1)


def test_npz(tmp_path):
    rec = _tiny_reconstruction()
    rec.coeffs[rec.face_model.layout.slice("trans")] = torch.tensor([1.0, 2.0, 3.0])
    rec.save_npz(tmp_path / "c.npz")
    z = np.load(tmp_path / "c.npz")
    assert z["coeffs"].shape == (rec.face_model.layout.size,)
    np.testing.assert_allclose(z["coeff_trans"], [1, 2, 3])
    assert z["vertices_model"].shape == tuple(rec.vertices.shape) == z["vertices_camera"].shape
    np.testing.assert_allclose(z["vertices_camera"], rec.vertices_camera, atol=1e-5)
    assert z["landmarks_photo_px"].shape == z["landmarks_crop_px"].shape == (68, 2)
    np.testing.assert_allclose(z["landmarks_photo_px"], rec.landmarks, atol=1e-4)
    # both conventions: the 3D-style points are the mesh's landmark vertices, with depth
    assert z["landmarks_3d_photo_px"].shape == z["landmarks_3d_crop_px"].shape == (68, 2)
    np.testing.assert_allclose(z["landmarks_3d_photo_px"], rec.landmarks_3d, atol=1e-4)
    np.testing.assert_allclose(z["landmarks_3d_crop_px"], rec.landmarks_crop.numpy(), atol=1e-4)
    np.testing.assert_allclose(z["landmarks_3d_xyz_photo_px"][:, :2], z["landmarks_3d_photo_px"], atol=1e-4)
    assert z["pose_degrees"].shape == (3,) and z["intrinsics_photo_px"].shape == (3, 3)


def test_no_checkpoint_no_fit(tmp_path, capsys):
    with pytest.raises(R.NoCheckpointError, match="pyfaid.train") as exc:
        R.reconstruct(str(tmp_path / "x.png"), checkpoint=None, fit_steps=0)
    assert "--fit" in str(exc.value)
    code = R.main([str(tmp_path / "x.png"), "--out", str(tmp_path / "out"), "--checkpoint", "none", "--fit", "0"])
    assert code == 2
    err = capsys.readouterr().err
    assert "python -m pyfaid.train" in err and "--fit" in err


def test_unreadable_image(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    with pytest.raises(R.ImageReadError, match="bad.png"):
        R.load_image(bad)
    with pytest.raises(R.ImageReadError, match="no such file"):
        R.load_image(tmp_path / "missing.png")


# -------------------------------------------------------------------------- needs the full stack

def _stack():
    """Build the default face model once (cached); fails loudly if any part of the stack is broken."""
    default_face_model("cpu")


def _synthetic_target(fm, renderer):
    """A rendered face with known pose, shape, texture and light, plus its 5 landmarks."""
    from pyfaid.reconstruct.fitting import landmarks5_of

    g = torch.Generator().manual_seed(5)
    lay = fm.layout
    c = lay.zeros(1)
    c[0, lay.slice("id")] = 0.8 * torch.randn(fm.n_id, generator=g)
    c[0, lay.slice("tex")] = 0.8 * torch.randn(fm.n_tex, generator=g)
    c[0, lay.slice("angle")] = torch.tensor([0.08, -0.15, 0.04])
    gam = lay.slice("gamma").start
    c[0, gam] = 0.3
    c[0, gam + 1:gam + 3] = torch.tensor([0.1, -0.1])
    c[0, lay.slice("trans")] = torch.tensor([0.05, -0.04, 0.2])
    with torch.no_grad():
        out = renderer(fm, c)
    bg = torch.full((1, 3, 224, 224), 0.35)
    img = out.mask * out.image.clamp(0, 1) + (1 - out.mask) * bg
    return img, landmarks5_of(out.landmarks_px)


def test_fit_improves_masked_psnr():
    _stack()
    from pyfaid import metrics
    from pyfaid.reconstruct.fitting import landmarks5_of

    fm = default_face_model("cpu")
    renderer = crop_renderer("cpu")
    target, lm5 = _synthetic_target(fm, renderer)

    def score(c, col):
        with torch.no_grad():
            out = renderer(fm, c, colors=col)
        return metrics.psnr(out.image.clamp(0, 1), target, out.mask).item()

    c0 = fm.layout.zeros(1)
    before = score(c0, None)
    c, col, hist = R.fit(fm, renderer, target, c0, None, lm5, steps=40)
    after = score(c, col)
    assert len(hist) == 40 and all(np.isfinite(h["loss"]) for h in hist)
    # landmarks: from the mean face's to within ~3 px of the target's
    lm0 = landmarks5_of(renderer.project_landmarks(fm, c0))
    start = (((lm0 - lm5) / 224) ** 2).sum(-1).mean().item()
    assert hist[-1]["landmark"] < min(start / 4, (3 / 224) ** 2), (start, hist[-1]["landmark"])
    assert after > before + 3.0, (before, after)


def _write_png(path, rgb):
    import cv2

    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def test_cli_bad_inputs_do_not_stop_the_others(tmp_path, capsys):
    _stack()
    from skimage import data

    src = tmp_path / "in"
    src.mkdir()
    _write_png(src / "a_face.png", data.astronaut())
    _write_png(src / "b_noface.png", np.full((200, 200, 3), 128, np.uint8))
    (src / "c_broken.jpg").write_bytes(b"\x00garbage")
    out = tmp_path / "out"
    code = R.main([str(src), "--out", str(out), "--fit", "3", "--no-id-loss"])
    captured = capsys.readouterr()
    assert code == 1
    for name in ("a_face.obj", "a_face.ply", "a_face.npz", "a_face.png", "a_face_overlay.jpg"):
        assert (out / name).is_file(), name
    assert not (out / "b_noface.obj").exists()
    assert "b_noface.png" in captured.err and "no face" in captured.err
    assert "c_broken.jpg" in captured.err and "not a readable image" in captured.err
    assert "in 1/3 images" in captured.out
    import cv2

    strip = cv2.imread(str(out / "a_face.png"))
    assert strip.shape == (224, 6 * 224, 3)
    # python API: a face-less image raises a clear error naming it
    with pytest.raises(R.FaceNotFoundError, match="b_noface.png"):
        R.reconstruct(str(src / "b_noface.png"), fit_steps=1)


def test_reconstruction_render_and_pose():
    _stack()
    from skimage import data

    rec = R.reconstruct(data.astronaut(), fit_steps=2, id_loss=False)
    assert rec.input.shape == (3, 224, 224) and 0 <= rec.input.min() and rec.input.max() <= 1
    V = rec.face_model.num_vertices
    assert rec.vertices.shape == (V, 3) and rec.albedo.shape == (V, 3) and rec.shaded.shape == (V, 3)
    out = rec.render()
    assert out.image.shape == (1, 3, 224, 224) and out.mask.sum() > 1000
    side = rec.render(pose=(0.0, 0.7, 0.0))
    assert not torch.allclose(side.mask, out.mask)


# ------------------------------------------------------------------ the Python API on real photos
def _astronaut():
    from skimage import data

    return data.astronaut()


def test_module_is_callable_and_lists_keep_going(tmp_path):
    """A list with a corrupt file, a photo without a face and two good photos: two reconstructions and
    two errors naming their inputs, in order."""
    _stack()
    good = tmp_path / "good.png"
    _write_png(good, _astronaut())
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\x00garbage")
    blank = np.full((200, 200, 3), 128, np.uint8)
    out = pyfaid.reconstruct([str(good), str(broken), blank, _astronaut()], fit_steps=1, id_loss=False)
    assert [type(r).__name__ for r in out] == ["Reconstruction", "ReconstructionError", "ReconstructionError",
                                               "Reconstruction"]
    assert "broken.jpg" in str(out[1]) and "not a readable image" in out[1].message
    assert isinstance(out[1].error, R.ImageReadError) and not out[1]
    assert "array[2]" in str(out[2]) and isinstance(out[2].error, R.FaceNotFoundError)
    assert out[0].source == str(good) and out[3].source == "array[3]"
    # the same photo, as a file and as an array: the same face
    np.testing.assert_allclose(out[0].landmarks, out[3].landmarks, atol=1e-3)
    with pytest.raises(R.ImageReadError, match="broken.jpg"):
        pyfaid.reconstruct([str(good), str(broken)], fit_steps=1, id_loss=False, errors="raise")
    with pytest.raises(ValueError, match="errors must be"):
        pyfaid.reconstruct([str(good)], fit_steps=1, errors="ignore")


def test_bad_inputs_get_clear_errors(tmp_path):
    _stack()
    with pytest.raises(R.ImageReadError, match="is a folder"):
        pyfaid.reconstruct(str(tmp_path), fit_steps=1)
    with pytest.raises(R.ImageReadError, match="16x16"):
        pyfaid.reconstruct(np.zeros((16, 16, 3), np.uint8), fit_steps=1)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy cast warning before the error
        with pytest.raises(R.ImageReadError, match="no finite pixel"):
            pyfaid.reconstruct(np.full((64, 64, 3), np.nan, np.float32), fit_steps=1)
    with pytest.raises(R.ImageReadError, match=r"\[3, H, W\]"):
        pyfaid.reconstruct(torch.zeros(2, 3, 64, 64), fit_steps=1)
    with pytest.raises(ValueError, match="faces must be"):
        pyfaid.reconstruct(_astronaut(), fit_steps=1, faces="biggest")


def test_photo_space_results_follow_the_photo():
    """Landmarks in photo pixels, the camera and the pose stay consistent when the photo is scaled
    and rotated: the landmarks follow the transform, the roll follows the rotation."""
    import cv2

    _stack()
    img = _astronaut()
    rec = pyfaid.reconstruct(img, fit_steps=40, id_loss=False)
    h, w = img.shape[:2]
    assert rec.photo_size == (h, w) and rec.transform.shape == (2, 3)
    lm = rec.landmarks
    assert lm.shape == (68, 2)
    # the landmarks lie on the detected face: inside the detector's region around MTCNN's points
    p5 = rec.to_photo(rec.landmarks5)
    assert np.linalg.norm(lm[36:42].mean(0) - p5[0]) < 12 and np.linalg.norm(lm[30] - p5[2]) < 12
    # the pinhole model of the photo reproduces the landmarks from the camera-space mesh
    x = rec.vertices_camera[rec.face_model.landmark_idx.numpy()]
    proj = (rec.intrinsics @ x.T).T
    np.testing.assert_allclose(proj[:, :2] / proj[:, 2:], rec.model_landmarks, atol=0.05)
    # rotate the photo by 20 degrees about its centre and scale it by 1.5
    m = cv2.getRotationMatrix2D((w / 2, h / 2), 20, 1.5)
    big = cv2.warpAffine(img, m, (int(w * 1.5), int(h * 1.5)))
    rec2 = pyfaid.reconstruct(big, fit_steps=40, id_loss=False)
    moved = lm @ m[:, :2].T + m[:, 2]
    err = np.linalg.norm(rec2.landmarks - moved, axis=1).mean()
    assert err < 3.0 * 1.5, err  # a few pixels (detection and fitting differ a little)
    # OpenCV's positive angle turns the image counter-clockwise: the head's roll grows by ~20 degrees
    assert abs((rec2.pose["roll"] - rec.pose["roll"]) - 20) < 4, (rec.pose, rec2.pose)
    assert abs(rec2.pose["yaw"] - rec.pose["yaw"]) < 6
    over = rec2.overlay(big)
    assert over.shape == big.shape and over.dtype == np.uint8 and (over != big).any()


def test_faces_all_on_a_two_face_composite():
    """faces="all" returns every face, each with photo-space landmarks on its own face."""
    import cv2

    _stack()
    face = _astronaut()[:260, 90:350]  # the head
    canvas = np.full((320, 700, 3), 200, np.uint8)
    canvas[30:290, 20:280] = face
    small = cv2.resize(face, (200, 200))
    canvas[60:260, 420:620] = small
    recs = pyfaid.reconstruct(canvas, fit_steps=10, id_loss=False, faces="all")
    assert isinstance(recs, list) and len(recs) == 2
    centres = sorted(float(r.landmarks.mean(0)[0]) for r in recs)
    assert 20 < centres[0] < 280 and 420 < centres[1] < 620, centres
    for r in recs:
        x0, y0 = r.landmarks.min(0)
        x1, y1 = r.landmarks.max(0)
        assert (x1 - x0) > 60 and (y1 - y0) > 60  # face-sized, not collapsed
    # largest first
    spread = [float(np.ptp(r.landmarks[:, 0])) for r in recs]
    assert spread[0] > spread[1] and recs[0].detection_score > 0.9
    one = pyfaid.reconstruct(canvas, fit_steps=10, id_loss=False)
    assert abs(float(one.landmarks.mean(0)[0]) - centres[0]) < 15  # "largest" is the bigger face
