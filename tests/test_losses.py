"""Tests of pyfaid.losses against direct formulas of the paper (Eqs. 6-9) and pyfaid.config."""

import math

import pytest
import torch

from pyfaid import losses as L
from pyfaid.config import ConfigError, apply_overrides, from_dict, load_config


def test_photometric_matches_eq6():
    g = torch.Generator().manual_seed(1)
    img, ren = torch.rand(2, 3, 5, 6, generator=g), torch.rand(2, 3, 5, 6, generator=g)
    mask = (torch.rand(2, 1, 5, 6, generator=g) > 0.4).float()
    ref = []
    for b in range(2):
        norm = ((img[b] - ren[b]) ** 2).sum(0).sqrt()
        ref.append((mask[b, 0] * norm).sum() / mask[b, 0].sum())
    got = L.photometric_loss(img, ren, mask, eps=0.0)
    assert torch.allclose(got, torch.stack(ref).mean(), atol=1e-6)


def test_photometric_masked_pixels_ignored_and_empty_mask_defined():
    img = torch.rand(1, 3, 4, 4)
    ren = img.clone()
    ren[..., :2] = 5.0  # huge error only outside the mask
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., 2:] = 1
    assert L.photometric_loss(img, ren, mask) < 1e-2
    z = L.photometric_loss(img, ren, torch.zeros(1, 1, 4, 4))
    assert z.item() == 0.0
    ren.requires_grad_(True)
    L.photometric_loss(img, ren, mask).backward()
    assert torch.isfinite(ren.grad).all() and ren.grad[..., :2].abs().sum() == 0


def test_photometric_shape_errors():
    with pytest.raises(ValueError, match="differ in shape"):
        L.photometric_loss(torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 5), torch.ones(1, 1, 4, 4))


def test_identity_loss_eq7():
    a = torch.randn(3, 16)
    assert L.identity_loss(a, a).abs().max() < 1e-6
    assert torch.allclose(L.identity_loss(a, -a), torch.tensor(2.0), atol=1e-6)
    b = torch.randn(3, 16)
    ref = (1 - (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))).mean()
    assert torch.allclose(L.identity_loss(a, b), ref, atol=1e-6)
    # intermediate features averaged in
    fa, fb = [torch.randn(3, 4, 2, 2)], [torch.randn(3, 4, 2, 2)]
    got = L.identity_loss(a, b, fa, fb)
    assert torch.allclose(got, (ref + L.cosine_distance(fa[0], fb[0])) / 2, atol=1e-6)


def test_attribute_loss_eq8():
    a, b = torch.randn(4, 10), torch.randn(4, 10)
    assert torch.allclose(L.attribute_loss(a, b), (a - b).norm(dim=1).mean(), atol=1e-5)


def test_regularisers():
    split = {"id": torch.ones(2, 80), "exp": torch.ones(2, 64), "tex": torch.ones(2, 80)}
    assert math.isclose(L.coefficient_regularizer(split).item(), 80 + 0.8 * 64 + 1.7e-2 * 80, rel_tol=1e-5)
    gray = torch.randn(2, 9).repeat(1, 3)
    assert L.gamma_regularizer(gray).item() < 1e-10
    assert L.gamma_regularizer(torch.randn(2, 27)).item() > 0


def test_total_loss_skips_zero_weights():
    terms = {"a": torch.tensor(1.0), "b": torch.tensor(float("nan"))}
    assert L.total_loss(terms, {"a": 2.0, "b": 0.0}).item() == 2.0
    with pytest.raises(ValueError):
        L.total_loss(terms, {})


def test_masked_psnr():
    t = torch.zeros(1, 3, 4, 4)
    p = torch.full_like(t, 0.1)
    m = torch.ones(1, 1, 4, 4)
    assert math.isclose(L.masked_psnr(p, t, m).item(), 20.0, rel_tol=1e-4)
    assert torch.isnan(L.masked_psnr(p, t, torch.zeros_like(m))).all()


def test_config_unknown_key_and_overrides(tmp_path):
    with pytest.raises(ConfigError, match="unknown config key 'loss.phot'.*loss.photo"):
        from_dict({"loss": {"phot": 1.0}})
    with pytest.raises(ConfigError, match="unknown config section 'modle'.*model"):
        from_dict({"modle": {}})
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  batch_size: 3\noptim:\n  lr: 0.5\n")
    cfg = load_config(str(p), ["loss.att=0", "model.backbone=resnet50"])
    assert cfg.train.batch_size == 3 and cfg.optim.lr == 0.5 and cfg.loss.att == 0.0
    assert cfg.model.backbone == "resnet50"
    with pytest.raises(ConfigError, match="expected an integer"):
        apply_overrides(cfg, ["train.batch_size=abc"])
    with pytest.raises(ConfigError, match="not found"):
        load_config("no_such_config_xyz")


def test_bundled_configs_load_and_ablations_differ():
    cfgs = {n: load_config(n) for n in ("default", "celeba_bfm", "ablation_photo_id", "ablation_no_rob",
                                         "ablation_no_sa", "ablation_no_fa")}
    assert cfgs["celeba_bfm"].model.backbone == "resnet50" and cfgs["celeba_bfm"].train.batch_size == 16
    assert cfgs["celeba_bfm"].optim.lr == 1e-4 and cfgs["celeba_bfm"].optim.lr_decay == 0.9
    assert cfgs["ablation_photo_id"].loss.att == 0 and cfgs["ablation_photo_id"].loss.rob == 0
    assert cfgs["ablation_no_rob"].loss.att > 0 and cfgs["ablation_no_rob"].loss.rob == 0
    assert not cfgs["ablation_no_sa"].loss.self_aug
    assert not cfgs["ablation_no_fa"].model.use_fa_features
