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
    md = (out / "report.md").read_text()
    assert "| Synthetic (occluded) | FAID |" in md and "Table 2 layout" in md and "3D errors" in md
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
