"""Attribute encoder: training makes the loss drop, checkpoints round-trip, CelebA input checks."""

import json

import numpy as np
import pytest
import torch

from pyfaid.encoders import AttributeEncoder, AttributeWeightsNotFound, load_attribute_encoder
from pyfaid.encoders.attributes import DEFAULT_WEIGHTS
from pyfaid.train_attributes import CelebAFormatError, fit, main, save_encoder


def _toy_set(n, seed):
    """Images with one coloured rectangle; targets: its colour, centre and size (all learnable)."""
    g = np.random.default_rng(seed)
    x = np.zeros((n, 3, 112, 112), np.uint8)
    y = np.zeros((n, 6), np.float32)
    for i in range(n):
        col = g.integers(30, 255, 3)
        w, h = g.integers(20, 60, 2)
        x0, y0 = g.integers(0, 112 - w), g.integers(0, 112 - h)
        x[i, :, y0:y0 + h, x0:x0 + w] = col[:, None, None]
        y[i] = [*col / 255.0, (x0 + w / 2) / 112, (y0 + h / 2) / 112, w * h / 3600.0]
    return torch.from_numpy(x), torch.from_numpy(y)


def test_attribute_encoder_shapes():
    m = AttributeEncoder(7)
    n_params = sum(p.numel() for p in m.parameters())
    assert 100_000 < n_params < 1_000_000
    f = m.features(torch.rand(2, 3, 224, 224))
    assert f.shape == (2, 128)
    assert m(torch.rand(2, 3, 224, 224)).shape == (2, 7)
    with pytest.raises(ValueError, match="B, 3, H, W"):
        m.features(torch.rand(3, 224, 224))


def test_attribute_training_loss_drops():
    torch.manual_seed(0)
    tx, ty = _toy_set(96, 0)
    vx, vy = _toy_set(32, 1)
    m = AttributeEncoder(6, widths=(8, 16, 24, 32, 48), feature_dim=32)
    hist = fit(m, tx, ty, vx, vy, epochs=6, batch_size=16, lr=5e-3, progress=False)
    first = float(np.mean(hist["train_loss"][:3]))
    last = float(np.mean(hist["train_loss"][-3:]))
    assert last < 0.6 * first, (first, last)
    # predicting the training mean scores ~1.0 on standardised targets
    assert hist["val"][-1]["mse_standardised"] < 0.8, hist["val"][-1]


def test_attribute_training_on_synthetic_faces():
    from pyfaid.train_attributes import synthetic_arrays

    x, y, groups = synthetic_arrays(24, seed=3, batch_size=12, progress=False, occlusion=False)
    assert x.shape == (24, 3, 112, 112) and x.dtype == torch.uint8
    assert [g[0] for g in groups][:1] == ["id"] and y.shape[1] == groups[-1][2]
    m = AttributeEncoder(y.shape[1], widths=(8, 16, 24, 32, 48), feature_dim=32)
    hist = fit(m, x, y, epochs=8, batch_size=8, lr=5e-3, progress=False)
    assert np.mean(hist["train_loss"][-3:]) < np.mean(hist["train_loss"][:3])


def test_checkpoint_roundtrip_and_missing(tmp_path):
    m = AttributeEncoder(5, task="binary", target_names=list("abcde"))
    path = save_encoder(m, tmp_path / "enc.pt", {"data": "toy"})
    assert json.loads(path.with_suffix(".json").read_text()) == {"data": "toy"}
    m2 = load_attribute_encoder(path)
    x = torch.rand(1, 3, 224, 224)
    torch.testing.assert_close(m.eval().features(x), m2.features(x))
    assert not any(p.requires_grad for p in m2.parameters())
    with pytest.raises(AttributeWeightsNotFound, match="train_attributes"):
        load_attribute_encoder(tmp_path / "nothing.pt")


def test_default_weights_shipped():
    """The package ships trained default weights with a card that records a real validation."""
    if not DEFAULT_WEIGHTS.is_file():
        with pytest.raises(AttributeWeightsNotFound, match="python -m pyfaid.train_attributes"):
            load_attribute_encoder()
        pytest.fail(f"default attribute weights missing: {DEFAULT_WEIGHTS}")
    assert DEFAULT_WEIGHTS.stat().st_size < 5 * 2**20
    m = load_attribute_encoder()
    val = m.card["validation"]
    assert np.isfinite(val["mse_standardised"]) and "r2_per_group" in val, val
    assert m.card["steps"] >= 100 and m.card["data"]["num_train"] >= 1000
    assert m.config["num_outputs"] == sum(m.card["data"]["targets"].values())
    f = m.features(torch.rand(2, 3, 224, 224))
    assert f.shape == (2, m.feature_dim)


def _fake_celeba(root, n=8, bad_line=False):
    import cv2

    (root / "img_align_celeba").mkdir(parents=True)
    names = [f"Attr_{i}" for i in range(40)]
    rows = []
    g = np.random.default_rng(0)
    for i in range(n):
        fname = f"{i + 1:06d}.jpg"
        cv2.imwrite(str(root / "img_align_celeba" / fname), g.integers(0, 255, (218, 178, 3), dtype=np.uint8))
        rows.append(fname + " " + " ".join(str(v) for v in g.choice([-1, 1], 40)))
    if bad_line:
        rows[2] = rows[2].rsplit(" ", 1)[0]
    (root / "list_attr_celeba.txt").write_text(f"{n}\n" + " ".join(names) + "\n" + "\n".join(rows) + "\n")


def test_celeba_training_cli(tmp_path):
    _fake_celeba(tmp_path / "celeba")
    out = tmp_path / "celeba_attr.pt"
    rc = main(["--celeba", str(tmp_path / "celeba"), "--out", str(out), "--epochs", "1", "--batch-size", "4",
               "--no-progress"])
    assert rc == 0
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["task"] == "binary" and card["data"]["dataset"] == "CelebA"
    assert 0.0 <= card["validation"]["accuracy"] <= 1.0
    assert load_attribute_encoder(out).config["num_outputs"] == 40


def test_celeba_errors(tmp_path, capsys):
    assert main(["--celeba", str(tmp_path / "nope"), "--out", str(tmp_path / "x.pt")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["--celeba", str(tmp_path / "empty"), "--out", str(tmp_path / "x.pt")]) == 2
    assert "list_attr_celeba.txt" in capsys.readouterr().err
    _fake_celeba(tmp_path / "bad", bad_line=True)
    from pyfaid.train_attributes import celeba_arrays

    with pytest.raises(CelebAFormatError, match=r"list_attr_celeba.txt:5"):
        celeba_arrays(tmp_path / "bad", progress=False)
