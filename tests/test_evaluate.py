"""pyfaid.evaluate: 3D error helpers and the end-to-end report on a tiny synthetic set."""

import json

import pytest
import torch

from pyfaid import evaluate as E


def _rotation(seed):
    g = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    if torch.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def test_procrustes_recovers_similarity():
    g = torch.randn(2, 60, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    R = _rotation(1)
    p = 1.7 * g @ R.T + torch.tensor([0.3, -2.0, 1.0], dtype=torch.float64)
    assert torch.allclose(E.procrustes_error(p, g), torch.zeros(2, dtype=torch.float64), atol=1e-9)
    # rigid alignment cannot undo the scale
    assert (E.procrustes_error(p, g, scale=False) > 0.1).all()
    # a mirror image is not a rotation: it keeps a residual
    m = g.clone()
    m[..., 0] = -m[..., 0]
    assert (E.procrustes_error(m, g) > 0.1).all()
    # one vertex moved by d: the alignment minimises squared distances, so the mean distance is
    # positive and below the unaligned RMS distance d / sqrt(N)
    q = g.clone()
    q[:, 0, 0] += 0.6
    err = E.procrustes_error(q, g)
    assert ((err > 0.005) & (err < 0.6 / 60 ** 0.5)).all()


def test_parse_data(tmp_path):
    from pyfaid.data.registry import parse_spec

    assert parse_spec("synthetic") == ("synthetic", None)
    assert parse_spec(f"folder:{tmp_path}") == ("folder", str(tmp_path))
    assert parse_spec(f"300w:{tmp_path}") == ("300w", str(tmp_path))
    with pytest.raises(ValueError, match="needs a folder"):
        parse_spec("celeba")
    with pytest.raises(ValueError, match="not a folder"):
        parse_spec(f"aflw2000:{tmp_path / 'nope'}")
    with pytest.raises(ValueError, match="expected synthetic"):
        parse_spec("imagenet:/x")


def test_markdown_layout():
    st = {"psnr": {"mean": 23.27, "std": 2.38, "n": 3}, "ssim": {"mean": 0.846, "std": 0.034, "n": 3},
          "id_dlib": {"mean": 0.9, "std": 0.01, "n": 3}}
    rep = {"data": "celeba:/x", "dataset": "CelebA", "n": 3, "identity_encoders": ["dlib"],
           "conditions": {"clean": {"FAID": st, "w/o SA": st}, "occluded": {"FAID": st, "w/o SA": st}}}
    md = E.markdown_report(rep, ablation=True)
    assert "| Dataset | Method | PSNR mean | PSNR std | SSIM mean | SSIM std | ID dlib mean | ID dlib std |" in md
    assert "| CelebA (occluded) | FAID | 23.27 | 2.38 | 0.846 | 0.034 | 0.900 | 0.010 |" in md
    assert "| Variant | PSNR | SSIM | ID dlib |" in md
    assert "| w/o SA | 23.27 | 0.846 | 0.900 |" in md


def _checkpoint(tmp_path, name="ckpt.pt", overrides=()):
    """An untrained FAID model saved in the training checkpoint format."""
    from pyfaid.config import load_config
    from pyfaid.models import build_faid

    # no attribute encoder: keeps the test small
    cfg = load_config("default", ["data.image_size=64", "model.input_size=64", "model.decoder_nodes=32",
                                  "model.use_fa_features=false", "loss.att=0", "loss.rob=0", *overrides])
    faid = build_faid(cfg)
    path = tmp_path / name
    torch.save({"model": faid.trainable_state_dict(), "step": 0, "config": cfg.to_dict()}, path)
    return str(path)


def test_evaluate_synthetic_end_to_end(tmp_path, capsys):
    ck = _checkpoint(tmp_path)
    ck2 = _checkpoint(tmp_path, "coarse.pt", ["model.fine=false"])
    out = tmp_path / "eval"
    code = E.main(["--checkpoint", ck, "--data", "synthetic", "--n", "2", "--batch-size", "2",
                   "--out", str(out), "--ablations", f"coarse only={ck2}"])
    assert code == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["n"] == 2 and rep["reference"] == "clean image"
    assert set(rep["conditions"]) == {"clean", "occluded"}
    for cond in rep["conditions"].values():
        assert set(cond) == {"FAID", "coarse only"}
        for st in cond.values():
            for key in ("psnr", "ssim", "psnr_image", "ssim_image", "color_error", "shape_error", "shape_error_mm"):
                assert set(st[key]) == {"mean", "std", "n"}, key
                assert st[key]["n"] == 2
            assert st["shape_error_mm"]["mean"] == pytest.approx(100 * st["shape_error"]["mean"], rel=1e-6)
            assert 0 < st["ssim"]["mean"] <= 1 and st["psnr"]["mean"] > 0
            for e in rep["identity_encoders"]:
                assert -1 <= st[f"id_{e}"]["mean"] <= 1
    # the occluded and the visible face pixels apart: nothing is occluded in the clean images
    occ, clean = rep["conditions"]["occluded"]["FAID"], rep["conditions"]["clean"]["FAID"]
    assert clean["psnr_occluded"]["n"] == 0 and clean["psnr_visible"]["mean"] == pytest.approx(clean["psnr"]["mean"])
    assert occ["psnr_visible"]["n"] == 2 and 0 < occ["occluded_share"]["mean"] < 1
    md = (out / "report.md").read_text()
    assert "| Synthetic (occluded) | FAID |" in md and "Table 2 layout" in md and "3D errors" in md
    assert "## Per region" in md and "| occluded share |" in md
    assert (out / "report.png").stat().st_size > 1000


def test_evaluate_errors(tmp_path, capsys):
    assert E.main(["--checkpoint", str(tmp_path / "none.pt"), "--out", str(tmp_path / "o"), "--n", "1"]) == 2
    assert "no such file" in capsys.readouterr().err
    # the mean face is a method only with fitting
    assert E.main(["--checkpoint", "none", "--out", str(tmp_path / "o"), "--n", "1"]) == 2
    assert "fitting" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        E.main(["--out", str(tmp_path / "o")])


def test_checkpoint_run_folder(tmp_path):
    """--checkpoint also takes a training run folder: its latest ckpt_*.pt is loaded."""
    from pyfaid.reconstruct import load_model

    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(FileNotFoundError, match="holds no ckpt_"):
        load_model(run)
    _checkpoint(run, "ckpt_00000001.pt")
    newest = _checkpoint(run, "ckpt_00000002.pt", ["model.fine=false"])
    model, face_model = load_model(run)
    assert model.fine is None, f"expected the newest checkpoint ({newest}), a coarse-only model"


# ----------------------------------------------------------------------------- landmark protocol
def test_pts_round_trip_and_errors(tmp_path):
    import numpy as np

    from pyfaid.data.landmarks import AnnotationError, annotated_photos, read_pts, write_pts

    pts = np.random.default_rng(0).uniform(0, 100, (68, 2))
    write_pts(str(tmp_path / "a.pts"), pts)
    np.testing.assert_allclose(read_pts(str(tmp_path / "a.pts")), pts, atol=1e-3)
    # the file's origin is the top-left pixel's corner: the first pixel's centre reads (0.5, 0.5)
    (tmp_path / "b.pts").write_text("version: 1\nn_points: 1\n{\n0.5 0.5\n}\n")
    np.testing.assert_allclose(read_pts(str(tmp_path / "b.pts")), [[0.0, 0.0]])
    (tmp_path / "c.pts").write_text("version: 1\nn_points: 3\n{\n1 2\n}\n")
    with pytest.raises(AnnotationError, match="c.pts.*n_points says 3"):
        read_pts(str(tmp_path / "c.pts"))
    (tmp_path / "d.pts").write_text("garbage")
    with pytest.raises(AnnotationError, match="d.pts"):
        read_pts(str(tmp_path / "d.pts"))
    with pytest.raises(ValueError, match="no image"):
        annotated_photos(str(tmp_path))


def test_nme_normalisations():
    import numpy as np

    from pyfaid.data.landmarks import AnnotatedPhoto
    from pyfaid.evaluate.landmarks import nme

    gt = np.zeros((68, 2))
    gt[:, 0] = np.linspace(0, 80, 68)
    gt[:, 1] = np.linspace(0, 20, 68) ** 1.5
    photo = AnnotatedPhoto("x.jpg", gt)
    w, h = gt.max(0) - gt.min(0)
    pred = gt + [3.0, 4.0]  # every point 5 px off
    got = nme(pred, photo)
    assert got["nme68_box"] == pytest.approx(100 * 5 / np.sqrt(w * h))
    assert got["nme51_box"] == pytest.approx(100 * 5 / np.sqrt(w * h))
    assert got["nme68_io"] == pytest.approx(100 * 5 / np.linalg.norm(gt[36] - gt[45]))
    pred = gt.copy()
    pred[:17] += 10.0  # only the jaw is off: the inner 51 are exact
    got = nme(pred, photo)
    assert got["nme51_box"] == 0 and got["nme68_box"] == pytest.approx(100 * 17 * np.sqrt(200) / 68 / np.sqrt(w * h))


def test_nme_groups_outward_offset_and_depth():
    import numpy as np

    from pyfaid.data.landmarks import AnnotatedPhoto
    from pyfaid.evaluate.landmarks import nme

    t = np.linspace(-1.2, 1.2, 17)
    jaw = np.stack([60 * np.sin(t), 60 * np.cos(t)], 1) + [100, 100]  # a U around (100, 100)
    inner = np.stack([np.linspace(70, 130, 51), np.linspace(60, 140, 51)], 1)
    gt = np.concatenate([jaw, inner])
    photo = AnnotatedPhoto("x.jpg", gt, depth=np.linspace(0, 30, 68))
    box = photo.box_size
    pred = gt.copy()
    pred[:17] = (jaw - [100, 100]) * (57 / 60) + [100, 100]  # the jaw 3 px inside the outline
    got = nme(pred, photo)
    assert got["jaw_out_box"] == pytest.approx(-100 * 3 / box, rel=0.05)
    assert got["nme_jaw_box"] == pytest.approx(100 * 3 / box, rel=1e-6) and got["nme_mouth_box"] == 0
    assert "nme68_xyz_box" not in got  # no predicted depth
    got = nme(gt, photo, pred_depth=photo.depth + 7.0)  # a depth offset is not an error
    assert got["nme68_xyz_box"] == pytest.approx(0, abs=1e-9)
    got = nme(gt, photo, pred_depth=photo.depth[::-1])
    assert got["nme68_xyz_box"] > 1


def test_aflw2000_protocol_on_synthetic_faces_in_that_format(tmp_path):
    """Synthetic faces written as AFLW2000-3D (``python -m pyfaid.data export``) are scored with the
    3D-style points, depth included, by yaw group; annotations made from the reconstruction itself
    score ~0 in x, y and depth."""
    import cv2
    import numpy as np

    import pyfaid
    from pyfaid.data.__main__ import main as data_main
    from pyfaid.data.landmarks import annotated_photos, write_aflw2000

    folder = tmp_path / "syn"
    assert data_main(["export", "--format", "aflw2000", "--out", str(folder), "--n", "3", "--size", "256"]) == 0
    photos = annotated_photos(str(folder), "aflw2000")
    assert len(photos) == 3 and all(p.depth is not None and p.pose is not None for p in photos)
    # the same picture, annotated with what pyfaid itself returns
    rec = pyfaid.reconstruct(photos[0].path, fit_steps=0)
    img = cv2.cvtColor(cv2.imread(photos[0].path), cv2.COLOR_BGR2RGB)
    (tmp_path / "self").mkdir()
    write_aflw2000(str(tmp_path / "self" / "a"), img, rec.landmarks_3d_xyz, np.zeros(3))
    out = tmp_path / "eval"
    assert E.main(["--checkpoint", "pretrained", "--data", f"aflw2000:{tmp_path / 'self'}", "--out", str(out)]) == 0
    row = json.loads((out / "report.json").read_text())["methods"]["FAID"]["photos"][0]
    assert row["found"] and row["nme68_box"] < 0.5 and row["nme68_xyz_box"] < 0.5
    assert E.main(["--checkpoint", "pretrained", "--data", f"aflw2000:{folder}", "--out", str(out)]) == 0
    rep = json.loads((out / "report.json").read_text())
    s = rep["methods"]["FAID"]["summary"]
    assert s["found"] >= 2 and 0 < s["nme68_box"] < 15 and s["nme68_xyz_box"] >= s["nme68_box"]
    assert set(s["by_yaw"]) == {"0-30", "30-60", "60-90"}
    assert "3D (x, y, depth) 68" in (out / "report.md").read_text()


def test_landmark_protocol_end_to_end(tmp_path):
    """Annotations made from pyfaid's own reconstruction score ~0; moved ones score the move; an
    annotation where there is no face is a miss."""
    import cv2
    import numpy as np
    from skimage import data

    import pyfaid
    from pyfaid.data.landmarks import write_pts

    img = data.astronaut()
    rec = pyfaid.reconstruct(img, checkpoint=None, fit_steps=5)  # as the protocol runs it (identity loss on)
    for name in ("a_same", "b_moved", "c_nowhere"):
        cv2.imwrite(str(tmp_path / f"{name}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    write_pts(str(tmp_path / "a_same.pts"), rec.landmarks)
    write_pts(str(tmp_path / "b_moved.pts"), rec.landmarks + [6.0, 8.0])
    write_pts(str(tmp_path / "c_nowhere.pts"), rec.landmarks * 0.2 + 400)  # a small face at the bottom right
    out = tmp_path / "eval"
    assert E.main(["--checkpoint", "none", "--fit", "5", "--data", f"300w:{tmp_path}", "--out", str(out)]) == 0
    rep = json.loads((out / "report.json").read_text())
    m = rep["methods"]["FAID"]
    rows = {r["path"].rsplit("/", 1)[-1]: r for r in m["photos"]}
    assert rows["a_same.png"]["nme68_box"] < 0.5
    assert rows["a_same.png"]["mesh_nme68_box"] == pytest.approx(rows["a_same.png"]["nme68_box"])  # no landmark head
    box = np.sqrt(np.prod(rec.landmarks.max(0) - rec.landmarks.min(0)))
    assert rows["b_moved.png"]["nme68_box"] == pytest.approx(100 * 10 / box, abs=0.5)
    assert not rows["c_nowhere.png"]["found"] and m["summary"]["misses"] == 1
    assert m["summary"]["found"] == 2 and m["summary"]["seconds_per_photo"] > 0
    md = (out / "report.md").read_text()
    assert "| FAID | 5 |" in md and "1/3" in md
    assert (out / "ced.png").stat().st_size > 1000 and (out / "landmarks_worst.png").stat().st_size > 1000


def test_evaluate_clean_condition_only_writes_the_figure(tmp_path):
    """``--occlusion none`` alone (no occluded condition): the report and its figure are written,
    the figure without an occluded column."""
    ck = _checkpoint(tmp_path)
    out = tmp_path / "eval"
    assert E.main(["--checkpoint", ck, "--data", "synthetic", "--n", "2", "--batch-size", "2",
                   "--occlusion", "none", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert list(report["conditions"]) == ["clean"]
    assert (out / "report.png").stat().st_size > 0


def test_coarse_stage_row_and_held_out_seed(tmp_path, capsys):
    """``--coarse`` scores the checkpoint's coarse stage as its own row (the fine model skipped, so
    its colours are the coarse regressor's); synthetic data defaults to the held-out seed."""
    from pyfaid.config import DataConfig
    from pyfaid.evaluate.protocol import Method, load_methods

    ck = _checkpoint(tmp_path)
    models = load_methods([Method("full", ck), Method("c", ck, coarse=True)], "cpu")
    assert models["full"][0].fine is not None and models["c"][0].fine is None
    out = tmp_path / "eval"
    assert E.main(["--checkpoint", ck, "--coarse", "--data", "synthetic", "--n", "2", "--batch-size", "2",
                   "--occlusion", "none", "--out", str(out)]) == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["seed"] == DataConfig().val_seed != DataConfig().seed
    assert set(rep["conditions"]["clean"]) == {"FAID", "FAID coarse"}
    with pytest.raises(SystemExit):  # the mean face has no coarse stage
        E.main(["--checkpoint", "none", "--fit", "1", "--coarse", "--out", str(tmp_path / "o")])
    assert "--coarse needs" in capsys.readouterr().err
