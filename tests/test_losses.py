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


def test_perceptual_losses_compare_what_both_dicts_hold():
    a = {"id": torch.randn(3, 8), "att": torch.randn(3, 5)}
    b = {"id": torch.randn(3, 8), "att": torch.randn(3, 5)}
    out = L.perceptual_losses(a, b)
    assert torch.equal(out["id"], L.identity_loss(a["id"], b["id"]))
    assert torch.equal(out["att"], L.attribute_loss(a["att"], b["att"]))
    assert set(L.perceptual_losses({"id": a["id"]}, b)) == {"id"}


def test_edge_smoothness_and_landmark_nll():
    field = torch.tensor([[[0.0], [1.0], [3.0]]])
    edges = torch.tensor([[0, 1], [1, 2]])
    assert math.isclose(L.edge_smoothness(field, edges).item(), (1 + 4) / 2)
    from pyfaid.render import MeshTopology

    tri = torch.tensor([[0, 1, 2], [1, 3, 2], [2, 3, 4]])
    top = MeshTopology(tri, 5)
    e, lap = top.edges(), top.laplacian()
    x = torch.rand(2, 5, 3, dtype=torch.float64, requires_grad=True)
    assert torch.allclose(L.edge_smoothness(x, e, lap), L.edge_smoothness(x, e))  # Laplacian path = gathers
    g1, g2 = (torch.autograd.grad(L.edge_smoothness(x, e, *a), x)[0] for a in ((lap,), ()))
    assert torch.allclose(g1, g2)
    assert torch.autograd.gradcheck(lambda t: L.edge_smoothness(t, e, lap), (x,))
    with pytest.raises(ValueError, match="laplacian"):
        L.edge_smoothness(x[:, :4], e, lap)
    pred, target = torch.zeros(2, 4, 2), torch.zeros(2, 4, 2)
    target[..., 0] = 0.3  # every point 0.3 off
    # the NLL d / b + 2 log b is smallest at b = d / 2
    best = L.landmark_nll(pred, torch.full((2, 4), math.log(0.15)), target)
    for b in (0.05, 0.3, 1.0):
        assert L.landmark_nll(pred, torch.full((2, 4), math.log(b)), target) > best
    assert math.isclose(best.item(), 2 + 2 * math.log(0.15), rel_tol=1e-5)
    w = torch.tensor([[1.0, 0, 0, 0], [0, 0, 0, 0]])
    target[0, 1:] = 5.0  # far off, but weight 0
    assert math.isclose(L.landmark_nll(pred, torch.full((2, 4), math.log(0.15)), target, w).item(), best.item(),
                        rel_tol=1e-5)
    with pytest.raises(ValueError, match="landmark_nll"):
        L.landmark_nll(pred, torch.zeros(2, 3), target)


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
    # one entry of a mapping-valued key, the others kept
    cfg = apply_overrides(load_config("pretrain"), ["data.synthetic.views=4"])
    assert cfg.data.synthetic["views"] == 4 and cfg.data.synthetic["occlusion_prob"] == 0.6
    with pytest.raises(ConfigError, match="is not a mapping"):
        apply_overrides(cfg, ["train.batch_size.x=1"])
    with pytest.raises(ConfigError, match="expected section.key=value"):
        apply_overrides(cfg, ["a.b.c.d=1"])


def test_config_base_inheritance_stages_and_frozen(tmp_path):
    import dataclasses

    (tmp_path / "parent.yaml").write_text("model: {backbone: resnet50, hidden: 32}\ntrain: {batch_size: 8}\n")
    (tmp_path / "child.yaml").write_text("base: parent.yaml\nmodel: {hidden: 4}\n")
    cfg = load_config(str(tmp_path / "child.yaml"))
    assert cfg.model.backbone == "resnet50" and cfg.model.hidden == 4 and cfg.train.batch_size == 8
    (tmp_path / "loop.yaml").write_text("base: loop.yaml\n")
    with pytest.raises(ConfigError, match="loops"):
        load_config(str(tmp_path / "loop.yaml"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.train.batch_size = 3
    staged = from_dict({"train": {"stages": [{"name": "a", "objective": "coarse", "steps": 5, "batch_size": 2},
                                             {"name": "b", "objective": "faid"}]}})
    assert [s.name for s in staged.train.stages] == ["a", "b"] and staged.train.stages[0].steps == 5
    assert from_dict(staged.to_dict()) == staged  # round trip through the checkpoint's dict form
    with pytest.raises(ConfigError, match="unknown stage key 'step'"):
        from_dict({"train": {"stages": [{"step": 3}]}})
    with pytest.raises(ConfigError, match="only the last stage"):
        from_dict({"train": {"stages": [{"name": "a"}, {"name": "b"}]}})


def test_dataclass_defaults_are_the_main_job():
    """One source of defaults: the dataclasses' defaults are configs/default.yaml's values."""
    from pyfaid.config import Config

    assert load_config("default") == Config()


@pytest.mark.parametrize("name", ["default", "pretrain", "landmarks", "celeba_bfm", "ablation_photo_id", "ablation_no_rob",
                                  "ablation_no_sa", "ablation_no_fa"])
def test_bundled_configs_round_trip(name, tmp_path):
    """Every shipped config survives its dict form and a YAML file written from it."""
    import yaml

    cfg = load_config(name)
    assert from_dict(cfg.to_dict()) == cfg
    path = tmp_path / "again.yaml"
    path.write_text(yaml.safe_dump(json_safe(cfg.to_dict())))
    assert load_config(str(path)) == cfg


def json_safe(d):
    """Tuples as lists (what YAML writes)."""
    if isinstance(d, dict):
        return {k: json_safe(v) for k, v in d.items()}
    if isinstance(d, (list, tuple)):
        return [json_safe(v) for v in d]
    return d


def test_bundled_configs_load_and_ablations_differ():
    cfgs = {n: load_config(n) for n in ("default", "celeba_bfm", "ablation_photo_id", "ablation_no_rob",
                                         "ablation_no_sa", "ablation_no_fa")}
    assert cfgs["celeba_bfm"].model.backbone == "resnet50" and cfgs["celeba_bfm"].train.batch_size == 16
    assert cfgs["celeba_bfm"].optim.lr == 1e-4 and cfgs["celeba_bfm"].optim.lr_decay == 0.9
    assert cfgs["ablation_photo_id"].loss.att == 0 and cfgs["ablation_photo_id"].loss.rob == 0
    assert cfgs["ablation_no_rob"].loss.att > 0 and cfgs["ablation_no_rob"].loss.rob == 0
    assert not cfgs["ablation_no_sa"].loss.self_aug
    assert not cfgs["ablation_no_fa"].model.use_fa_features
    # each ablation is the paper's setting but for what it switches off (and where it writes)
    full = cfgs["celeba_bfm"].to_dict()
    changed = {"ablation_photo_id": {("loss", "att"), ("loss", "rob")}, "ablation_no_rob": {("loss", "rob")},
               "ablation_no_sa": {("loss", "self_aug")}, "ablation_no_fa": {("model", "use_fa_features")}}
    for name, keys in changed.items():
        d = cfgs[name].to_dict()
        diff = {(sec, k) for sec in full for k in full[sec] if full[sec][k] != d[sec][k]}
        assert diff == keys | {("train", "out")}, (name, diff)
    # the default run: the FAID stage from the shipped pretrained parts, kept fixed, until the time budget
    d = cfgs["default"]
    assert [(s.objective, s.steps) for s in d.train.stages] == [("faid", 0)]
    assert d.train.init_from == "pretrained" and set(d.train.freeze) == {"coarse", "segmenter"}
    assert d.model.photo_input and d.model.segmenter and d.model.hierarchy
    # the pretrain config inherits the default's model but starts from nothing and freezes nothing
    p = load_config("pretrain")
    assert p.train.init_from is None and p.train.freeze == () and p.model.input_size == d.model.input_size
