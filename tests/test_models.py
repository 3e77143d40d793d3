"""Model parts beyond the paper's core: the mesh hierarchy and its GCN, the face segmenter, the
landmark head, the pretrain objective, starting from a checkpoint, and the inference export."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from test_train import S, TinyFaces, build_tiny, tiny_cfg


# ----------------------------------------------------------------------------- mesh hierarchy
def _sphere(subdivisions=4):
    import trimesh

    m = trimesh.creation.icosphere(subdivisions=subdivisions)
    return torch.tensor(m.vertices, dtype=torch.float32), torch.tensor(m.faces)


def test_mesh_hierarchy_levels_and_maps(tmp_path, monkeypatch):
    from pyfaid.facemodel.hierarchy import gather_mean, mesh_hierarchy

    monkeypatch.setenv("PYFAID_CACHE", str(tmp_path))
    v, f = _sphere()
    h = mesh_hierarchy(v, f, factors=(4, 4))
    sizes = h.sizes()
    assert sizes[0] == len(v) and len(sizes) == 3
    assert 0.2 < sizes[1] / sizes[0] < 0.3 and 0.2 < sizes[2] / sizes[1] < 0.3
    for i in (1, 2):
        lv, fine = h.levels[i], h.levels[i - 1]
        assert lv.up_idx.shape == (fine.num_vertices, 3) and lv.down_idx.shape[0] == lv.num_vertices
        assert lv.up_idx.max() < lv.num_vertices and lv.down_idx.max() < fine.num_vertices
        np.testing.assert_allclose(lv.up_w.sum(1), 1, atol=1e-5)
        assert lv.triangles.max() < lv.num_vertices
    # the maps carry smooth fields between levels: a linear function survives down + up
    x = torch.as_tensor(h.levels[0].vertices, dtype=torch.float32)[None]  # [1, V, 3]
    down = gather_mean(x, torch.as_tensor(h.levels[1].down_idx), torch.as_tensor(h.levels[1].down_w))
    back = gather_mean(down, torch.as_tensor(h.levels[1].up_idx), torch.as_tensor(h.levels[1].up_w))
    assert (back - x).abs().mean() < 0.05  # unit sphere, ~2.5k vertices
    # cached by content: the second call reads the file, same result
    files = list(tmp_path.glob("mesh_hierarchy-*.npz"))
    assert len(files) == 1
    again = mesh_hierarchy(v, f, factors=(4, 4))
    assert again.sizes() == sizes and np.array_equal(again.levels[2].up_idx, h.levels[2].up_idx)
    with pytest.raises(ValueError, match="factor"):
        mesh_hierarchy(v, f, factors=(1,))


def test_level_map_matches_gather(tmp_path, monkeypatch, device):
    """The sparse up/down maps equal the plain weighted gather, values and gradients."""
    from pyfaid.facemodel.hierarchy import LevelMap, gather_mean, mesh_hierarchy
    from pyfaid.models.gcn import HierarchyMaps

    monkeypatch.setenv("PYFAID_CACHE", str(tmp_path))
    v, f = _sphere(3)
    h = mesh_hierarchy(v, f, factors=(4, 4))
    for i in (1, 2):
        lv, n_fine = h.levels[i], h.levels[i - 1].num_vertices
        for name, n_src in (("up", lv.num_vertices), ("down", n_fine)):
            idx = torch.as_tensor(getattr(lv, f"{name}_idx"), device=device)
            w = torch.as_tensor(getattr(lv, f"{name}_w"), device=device)
            m = LevelMap(idx, w, n_src)
            for dtype, tol in ((torch.float32, 1e-6), (torch.float64, 1e-12)):
                x = torch.randn(3, n_src, 5, device=device, dtype=dtype, requires_grad=True)
                xr = x.detach().clone().requires_grad_()
                y, yr = m(x), gather_mean(xr, idx, w)
                torch.testing.assert_close(y, yr, atol=tol, rtol=tol)
                g = torch.randn_like(y)
                y.backward(g)
                yr.backward(g)
                torch.testing.assert_close(x.grad, xr.grad, atol=tol, rtol=tol)
    lv = h.levels[2]
    m = LevelMap(torch.as_tensor(lv.up_idx), torch.as_tensor(lv.up_w), lv.num_vertices)
    x = torch.randn(2, lv.num_vertices, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(m, (x,))
    with pytest.raises(ValueError, match="LevelMap"):
        m(torch.randn(2, lv.num_vertices + 1, 3))
    with pytest.raises(ValueError, match="LevelMap"):
        LevelMap(torch.zeros(4, 3, dtype=torch.int64), torch.zeros(4, 2), 5)
    # after .double() the maps apply in float64 (their matrices are built per device and dtype)
    maps = HierarchyMaps(h)
    x = torch.randn(1, h.sizes()[1], 4, dtype=torch.float64)
    ref = gather_mean(x, torch.as_tensor(h.levels[1].up_idx), torch.as_tensor(h.levels[1].up_w).double())
    maps.up(x.float(), 1)
    maps = maps.double()
    torch.testing.assert_close(maps.up(x, 1), ref, atol=1e-12, rtol=1e-12)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_level_map_cuda_matches_cpu(tmp_path, monkeypatch):
    from pyfaid.facemodel.hierarchy import LevelMap, mesh_hierarchy

    monkeypatch.setenv("PYFAID_CACHE", str(tmp_path))
    v, f = _sphere(3)
    lv = mesh_hierarchy(v, f, factors=(4,)).levels[1]
    m = LevelMap(torch.as_tensor(lv.up_idx), torch.as_tensor(lv.up_w), lv.num_vertices)
    x = torch.randn(2, lv.num_vertices, 6, requires_grad=True)
    xc = x.detach().cuda().requires_grad_()
    g = torch.randn(2, len(v), 6)
    y, yc = m(x), m(xc)
    torch.testing.assert_close(yc.cpu(), y, atol=1e-5, rtol=1e-5)
    y.backward(g)
    yc.backward(g.cuda())
    torch.testing.assert_close(xc.grad.cpu(), x.grad, atol=1e-5, rtol=1e-5)


def test_mesh_unet_and_decoder_shapes_and_gradients(tmp_path, monkeypatch):
    from pyfaid.facemodel.hierarchy import mesh_hierarchy
    from pyfaid.models.gcn import HierarchyMaps, MeshDecoder, MeshUNet

    monkeypatch.setenv("PYFAID_CACHE", str(tmp_path))
    v, f = _sphere(3)
    maps = HierarchyMaps(mesh_hierarchy(v, f, factors=(4, 4)))
    net = MeshUNet(maps, 3, (4, 8, 16), K=2)
    x = torch.rand(2, len(v), 3, requires_grad=True)
    y = net(x)
    assert y.shape == (2, len(v), 3) and y.abs().max() == 0  # zero-initialised head
    with torch.no_grad():
        net.dec.head.weight.normal_()
    y = net(x)
    y.square().sum().backward()
    assert x.grad.abs().sum() > 0
    # a vertex's output depends on far-away inputs through the coarse levels
    x2 = x.detach().clone()
    x2[:, 0] += 1.0
    far = torch.argmax((v - v[0]).norm(dim=1))
    assert (net(x2)[:, far] - net(x.detach())[:, far]).abs().max() > 0
    dec = MeshDecoder(maps, (4, 8, 16), code_channels=5, K=2, extra0=2)
    with torch.no_grad():
        dec.head.weight.normal_()
    out = dec(torch.rand(2, maps.sizes[-1], 5), extra0=torch.rand(2, len(v), 2))
    assert out.shape == (2, len(v), 3) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="one per level"):
        MeshDecoder(maps, (4, 8), code_channels=5)


# ----------------------------------------------------------------------------- segmenter, landmark head
def test_face_segmenter_shapes_and_learns():
    from pyfaid.models import FaceSegmenter

    torch.manual_seed(0)
    seg = FaceSegmenter(widths=(8, 8, 16, 16), input_size=32)
    img = torch.rand(4, 3, 48, 48)
    target = torch.zeros(4, 1, 48, 48)
    target[..., 12:36, 12:36] = 1
    img[..., 12:36, 12:36] += 0.5
    opt = torch.optim.Adam(seg.parameters(), lr=1e-2)
    first = None
    for _ in range(30):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(seg(img.clamp(0, 1)), target)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert seg(img).shape == (4, 1, 48, 48)
    assert loss.item() < 0.5 * first
    vis = seg.visibility(img.clamp(0, 1))
    assert 0 <= vis.min() and vis.max() <= 1
    with pytest.raises(ValueError, match="FaceSegmenter"):
        seg(torch.rand(3, 48, 48))


def test_landmark_head_and_pretrain_objective():
    from pyfaid.models import PretrainObjective

    cfg = tiny_cfg(model__landmark_head=True, loss__landmark_head=1.0, loss__sup_shape=1.0, loss__sup_pose=1.0,
                   loss__sup_tex=1.0, loss__sup_light=1.0, loss__landmark=10.0)
    torch.manual_seed(0)
    faid = build_tiny(cfg)
    out = faid(TinyFaces(2).images)
    assert out.landmarks_head_px.shape == (2, 68, 2) and out.landmark_confidence.shape == (2, 68)
    # untrained head: every point at the image centre (pixel-centre coordinates), confidence 1
    assert torch.allclose(out.landmarks_head_px, torch.full_like(out.landmarks_head_px, S / 2 - 0.5))
    assert torch.allclose(out.landmark_confidence, torch.ones(2, 68))
    ds = TinyFaces(4)
    fm = faid.face_model
    gt = fm.layout.zeros(4)
    batch = {"image": ds.images, "mask": ds.masks, "landmarks": ds.landmarks, "coeffs": gt,
             "colors": fm.mean_tex.expand(4, -1, -1).clone()}
    obj = PretrainObjective(faid, cfg.loss)
    total, terms, _, _ = obj(batch)
    assert {"sup_shape", "sup_pose", "sup_tex", "sup_light", "landmark", "landmark_head"} <= set(terms)
    # the untrained model predicts the zero vector: zero error against a zero ground truth
    assert terms["sup_shape"] < 1e-4 and terms["sup_pose"] == 0 and terms["sup_tex"] < 1e-6
    total.backward()
    assert faid.coarse.landmarks.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in faid.fine.parameters())
    bad = dict(batch)
    del bad["coeffs"]
    with pytest.raises(ValueError, match="ground-truth"):
        obj(bad)


def test_two_convention_heads_on_a_branch_of_their_own():
    """Both landmark heads on their own last block: the coefficients stay the backbone's, the
    3D-style head trains against ``landmarks_3d`` (hidden points too), the 2D-style one against
    ``landmarks_2d``, and a frozen backbone gets no gradient."""
    from pyfaid.models import PretrainObjective

    cfg = tiny_cfg(model__landmark_head=True, model__landmark_head_3d=True, model__landmark_branch="layer4",
                   loss__landmark_head=1.0, loss__landmark_head_3d=1.0)
    torch.manual_seed(0)
    faid = build_tiny(cfg)
    shared = build_tiny(tiny_cfg(model__landmark_head=True))
    shared.coarse.load_state_dict({k: v for k, v in faid.coarse.state_dict().items()
                                   if not k.startswith(("landmark_block.", "landmarks_3d."))})
    faid.eval(), shared.eval()
    ds = TinyFaces(4)
    out, ref = faid(ds.images), shared(ds.images)
    assert torch.equal(out.coeffs, ref.coeffs)  # the branch does not touch the coefficients
    assert out.landmarks_head_3d_px.shape == (4, 68, 2) and out.landmark_confidence_3d.shape == (4, 68)
    # a branch started from the backbone's last block reads the same features as the shared heads
    faid.coarse.complete_from_backbone(["landmark_block.0.conv1.weight"])
    assert torch.allclose(faid(ds.images).landmarks_head_px, ref.landmarks_head_px, atol=1e-5)
    faid.train()
    faid.freeze(["coarse.backbone", "coarse.fc"])
    assert not faid.coarse.backbone.training and faid.coarse.landmark_block.training
    fm = faid.face_model
    lm3d = ds.landmarks.clone()
    lm2d = ds.landmarks + 1.0
    batch = {"image": ds.images, "mask": ds.masks, "landmarks": lm3d, "landmarks_3d": lm3d, "landmarks_2d": lm2d,
             "coeffs": fm.layout.zeros(4), "colors": fm.mean_tex.expand(4, -1, -1).clone()}
    total, terms, _, _ = PretrainObjective(faid, cfg.loss)(batch)
    assert {"landmark_head", "landmark_head_3d"} <= set(terms) and "sup_shape" not in terms
    total.backward()
    assert faid.coarse.landmarks_3d.weight.grad.abs().sum() > 0 and faid.coarse.landmarks.weight.grad.abs().sum() > 0
    assert faid.coarse.landmark_block[0].conv1.weight.grad is not None
    assert all(p.grad is None for p in faid.coarse.backbone.parameters()) and faid.coarse.fc.weight.grad is None
    with pytest.raises(ValueError, match="submodule"):
        faid.freeze(["coarse.nothing"])
    with pytest.raises(ValueError, match="landmark_branch"):
        build_tiny(tiny_cfg(model__landmark_head=True, model__landmark_branch="layer9"))
    with pytest.raises(ValueError, match="3D-style"):
        no3d = build_tiny(tiny_cfg(model__landmark_head=True))
        PretrainObjective(no3d, cfg.loss)(batch)


def test_init_from_a_one_convention_model_trains_the_new_heads(tmp_path):
    """A model with only the 2D-style head (as shipped before both conventions) starts a run that
    trains the heads on the fixed rest: the 3D-style head starts fresh, the branch from the
    backbone's last block; with the whole coarse model frozen the missing head is an error."""
    from pyfaid.checkpoint import load_checkpoint
    from pyfaid.train import train

    old = tiny_cfg(model__landmark_head=True, train__max_steps=1)
    train(old, out_dir=str(tmp_path / "old"), device="cpu", progress=False, build_model=build_tiny, dataset=TinyFaces())
    assert not any(k.startswith("coarse.landmarks_3d") for k in load_checkpoint(str(tmp_path / "old"))["model"])
    new = tiny_cfg(model__landmark_head=True, model__landmark_head_3d=True, model__landmark_branch="layer4",
                   train__init_from=str(tmp_path / "old"), train__max_steps=1, optim__lr=0.0, loss__landmark_head=1.0,
                   train__stages=[{"name": "heads", "objective": "coarse"}],
                   train__freeze=["coarse.backbone", "coarse.fc", "fine"])
    train(new, out_dir=str(tmp_path / "new"), device="cpu", progress=False, build_model=build_tiny,
          dataset=TinyFaces())
    state = load_checkpoint(str(tmp_path / "new"))["model"]
    before = load_checkpoint(str(tmp_path / "old"))["model"]
    for k in ("coarse.fc.weight", "coarse.backbone.layer4.0.conv1.weight", "coarse.landmarks.weight"):
        assert torch.equal(state[k], before[k]), k
    assert torch.equal(state["coarse.landmark_block.0.conv1.weight"], before["coarse.backbone.layer4.0.conv1.weight"])
    assert state["coarse.landmarks_3d.weight"].abs().sum() == 0  # fresh (zero-initialised), lr 0
    with pytest.raises(ValueError, match="init_from"):
        frozen = tiny_cfg(model__landmark_head=True, model__landmark_head_3d=True, train__max_steps=0,
                          train__init_from=str(tmp_path / "old"), train__freeze=["coarse"])
        train(frozen, out_dir=str(tmp_path / "c"), device="cpu", progress=False, build_model=build_tiny,
              dataset=TinyFaces())


# ----------------------------------------------------------------------------- init_from and export
def test_init_from_and_inference_export(tmp_path):
    from pyfaid.checkpoint import export_inference, load_checkpoint, sha256
    from pyfaid.train import train

    cfg = tiny_cfg(train__max_steps=2)
    summary, trained = train(cfg, out_dir=str(tmp_path / "a"), device="cpu", progress=False, build_model=build_tiny,
                             dataset=TinyFaces(), return_model=True)
    ck = load_checkpoint(str(tmp_path / "a"))
    assert ck["train_seconds"] > 0 and "process(es)" in ck["hardware"]
    # a new run starting from it begins with its weights
    cfg2 = tiny_cfg(train__max_steps=0, train__init_from=str(tmp_path / "a"))
    _, started = train(cfg2, out_dir=str(tmp_path / "b"), device="cpu", progress=False, build_model=build_tiny,
                       dataset=TinyFaces(), return_model=True)
    a, b = trained.trainable_state_dict(), started.trainable_state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # the fp16 export loads back into the same model, within fp16 rounding
    path = export_inference(str(tmp_path / "a"), tmp_path / "m.pt", card={"note": "tiny"})
    card = json.loads((tmp_path / "m.json").read_text())
    assert card["parts"] == ["m-1.pt", "m-2.pt"]  # the rest, then the fine stage's part however small
    assert card["sha256"] == {f: sha256(tmp_path / f) for f in ("m.pt", "m-1.pt", "m-2.pt")}
    assert card["dtype"] == "float16" and card["note"] == "tiny"
    assert torch.load(path, weights_only=False)["model"] == {}  # config, step and parts only
    state = {k: v for f in card["parts"] for k, v in torch.load(tmp_path / f, weights_only=True).items()}
    assert state.keys() == a.keys() and all(v.dtype in (torch.float16, torch.int64, torch.long) for v in state.values())
    # the same weights give the same bytes: a part changes only when its tensors do
    (tmp_path / "again").mkdir()
    export_inference(str(tmp_path / "a"), tmp_path / "again" / "m.pt")
    assert sha256(tmp_path / "again" / "m-1.pt") == sha256(tmp_path / "m-1.pt")
    # split into parts of at most max_bytes: every part small, the model whole again on load
    split = export_inference(str(tmp_path / "a"), tmp_path / "s.pt", max_bytes=6_000_000)
    card = json.loads((tmp_path / "s.json").read_text())
    assert len(card["parts"]) >= 2 and set(card["sha256"]) == {"s.pt", *card["parts"]}
    assert all((tmp_path / f).stat().st_size < 6_100_000 for f in card["sha256"])
    # the fine stage has parts of its own (a new fine stage rewrites only those)
    held = [set(torch.load(tmp_path / f, weights_only=True)) for f in card["parts"]]
    assert any(k.startswith("fine.") for k in a)
    assert all(len({k.startswith("fine.") for k in keys}) == 1 for keys in held)
    whole = load_checkpoint(split)["model"]
    assert whole.keys() == a.keys() and all(torch.allclose(whole[k].float(), a[k].float(), atol=1e-2) for k in a)
    (tmp_path / card["parts"][-1]).unlink()
    with pytest.raises(FileNotFoundError, match="part"):
        load_checkpoint(split)
    with pytest.raises(ValueError, match="init_from"):
        bad = tiny_cfg(train__max_steps=0, train__init_from=str(tmp_path / "a"), model__backbone="resnet34")
        train(bad, out_dir=str(tmp_path / "c"), device="cpu", progress=False, build_model=build_tiny,
              dataset=TinyFaces())


def test_hierarchical_fine_model(tmp_path, monkeypatch):
    from pyfaid.facemodel.hierarchy import mesh_hierarchy
    from pyfaid.models import FineModel

    monkeypatch.setenv("PYFAID_CACHE", str(tmp_path))
    v, f = _sphere(3)
    hier = mesh_hierarchy(v, f, factors=(4, 4))
    fine = FineModel(f, v, feat_dim=6, K=2, code=4, pos_embed=2, hierarchy=hier, channels=(4, 8, 16))
    colors = torch.rand(2, len(v), 3)
    feats = torch.randn(2, 6)
    out, res = fine(colors, feats)
    assert torch.equal(out, colors) and res.abs().max() == 0  # zero-initialised heads
    with torch.no_grad():
        fine.faid.dec.head.weight.normal_()
        fine.mesh.unet.dec.head.weight.normal_()
    out, res = fine(colors, feats)
    res.square().sum().backward()
    assert fine.faid.to_code.weight.grad.abs().sum() > 0 and fine.mesh.unet.enc[0].conv.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="channel counts"):
        FineModel(f, v, 6, hierarchy=hier, channels=(4, 8))
