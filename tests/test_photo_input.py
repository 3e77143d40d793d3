"""The photo on the mesh (pyfaid.render.unproject) and the fine model that reads it (photo_input):
the unlit per-vertex photo colours of a render recover its albedo, the visibility gates them, the
untrained fine model blends half-way to the photo where it is seen and not at all where it is
hidden, and frozen parts stay fixed in training."""

import numpy as np
import pytest
import torch

from pyfaid.reconstruct.predict import crop_renderer, default_face_model
from pyfaid.render import photo_albedo, sh_shading, vertex_average


def _loop_vertex_average(rast, tri, values, V, min_pixels=0.5):
    """Per-image reference of vertex_average."""
    B, K = rast.shape[0], values.shape[1]
    avg, seen = torch.zeros(B, V, K), torch.zeros(B, V, dtype=torch.bool)
    for b in range(B):
        tid = rast[b, ..., 3].reshape(-1).round().long()
        on = tid > 0
        uv = rast[b, ..., :2].reshape(-1, 2)[on]
        w = torch.cat([uv, 1 - uv.sum(-1, keepdim=True)], -1)
        val = values[b].reshape(K, -1).T[on]
        tot, acc = torch.zeros(V), torch.zeros(V, K)
        for c in range(3):
            idx = tri[tid[on] - 1, c].long()
            tot.index_add_(0, idx, w[:, c])
            acc.index_add_(0, idx, w[:, c:c + 1] * val)
        seen[b] = tot >= min_pixels
        avg[b] = torch.where(seen[b, :, None], acc / tot.clamp_min(1e-6)[:, None], 0.0)
    return avg, seen


def _render_face(pitch_yaw=(0.0, 0.3)):
    fm = default_face_model("cpu")
    renderer = crop_renderer("cpu")
    lay = fm.layout
    c = lay.zeros(2)
    c[:, lay.slice("gamma").start] = 0.3
    c[:, lay.slice("gamma").start + 1] = 0.2  # light from one side: the shading varies over the face
    c[1, lay.slice("angle").start:lay.slice("angle").start + 2] = torch.tensor(pitch_yaw)
    g = torch.Generator().manual_seed(0)
    albedo = (fm.texture(lay.split(c)["tex"]) + 0.05 * torch.randn(2, fm.num_vertices, 3, generator=g)).clamp(0, 1)
    with torch.no_grad():
        out = renderer(fm, c, colors=albedo)
    gamma = renderer.lit_gamma(lay.split(c)["gamma"])
    light = sh_shading(out.mesh.normals_world, torch.ones_like(out.mesh.normals_world), gamma)
    return fm, out, albedo, light


def test_vertex_average_matches_per_image_reference():
    fm, out, _, _ = _render_face()
    vals = torch.rand(2, 2, *out.rast.shape[1:3])
    avg, seen = vertex_average(out.rast, fm.triangles, vals, fm.num_vertices)
    ref_avg, ref_seen = _loop_vertex_average(out.rast, fm.triangles, vals, fm.num_vertices)
    assert torch.equal(seen, ref_seen) and seen.sum() > 1000
    torch.testing.assert_close(avg, ref_avg, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="values"):
        vertex_average(out.rast, fm.triangles, vals[:1], fm.num_vertices)


def test_photo_albedo_recovers_the_albedo_and_follows_visibility():
    fm, out, albedo, light = _render_face()
    fallback = torch.full_like(albedo, 0.5)
    photo, support = photo_albedo(out.rast, fm.triangles, out.image, light, fallback)
    # vertices well inside the render: their footprint's photo colour over the light is the albedo
    _, seen = vertex_average(out.rast, fm.triangles, out.mask, fm.num_vertices, min_pixels=3.0)
    err = (photo - albedo).abs().mean(-1)[seen]
    assert seen.sum() > 2000 and float(err.median()) < 0.03, float(err.median())
    assert torch.all(support[seen] > 0.99)
    unseen = support == 0
    assert unseen.any() and torch.equal(photo[unseen], fallback[unseen])  # not rendered: the fallback
    # the visibility hides the left half of the image: its vertices lose their support and take the fallback
    vis = torch.ones_like(out.mask)
    vis[..., : vis.shape[-1] // 2] = 0
    photo_h, support_h = photo_albedo(out.rast, fm.triangles, out.image, light, fallback, vis)
    x = out.vertices_cam[..., 0]  # camera x; image x grows with it
    left = seen & (support_h == 0)
    assert left.sum() > 500 and torch.equal(photo_h[left], fallback[left])
    assert float(x[left].mean()) < float(x[seen & (support_h > 0.99)].mean())
    with pytest.raises(ValueError, match="visibility"):
        photo_albedo(out.rast, fm.triangles, out.image, light, fallback, vis[..., :8])
    with pytest.raises(ValueError, match="image"):
        photo_albedo(out.rast, fm.triangles, out.image[:, :2], light, fallback)


def _sphere_fine(tmp_path, monkeypatch, **kw):
    import trimesh

    from pyfaid.facemodel.hierarchy import mesh_hierarchy
    from pyfaid.models import FineModel

    monkeypatch.setenv("PYFAID_CACHE", str(tmp_path))
    m = trimesh.creation.icosphere(subdivisions=3)
    v, f = torch.tensor(m.vertices, dtype=torch.float32), torch.tensor(m.faces)
    hier = mesh_hierarchy(v, f, factors=(4, 4))
    return FineModel(f, v, feat_dim=6, K=2, code=4, pos_embed=2, hierarchy=hier, channels=(4, 8, 16), **kw), v, f


def test_fine_model_blends_the_photo_where_it_is_seen(tmp_path, monkeypatch):
    from pyfaid.models import FineModel

    fine, v, f = _sphere_fine(tmp_path, monkeypatch, photo_input=True)
    g = torch.Generator().manual_seed(0)
    coarse, photo = torch.rand(2, len(v), 3, generator=g), torch.rand(2, len(v), 3, generator=g)
    support = (torch.rand(2, len(v), generator=g) > 0.5).float()
    feats = torch.randn(2, 6)
    out, res = fine(coarse, feats, (photo, support))
    # zero-initialised heads: half-way to the photo where it is seen, the coarse colour where it is not
    torch.testing.assert_close(out, coarse + 0.5 * support[..., None] * (photo - coarse))
    torch.testing.assert_close(res, out - coarse)
    hidden = support == 0
    out2, _ = fine(coarse, feats, (torch.rand(2, len(v), 3, generator=g), support))
    assert torch.equal(out2[hidden], out[hidden]) and not torch.equal(out2[~hidden], out[~hidden])
    with torch.no_grad():
        fine.mesh.unet.dec.head.weight.normal_()
    out, _ = fine(coarse, feats, (photo, support))
    out.square().sum().backward()
    assert fine.mesh.unet.enc[0].conv.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="photo"):
        fine(coarse, feats)
    with pytest.raises(ValueError, match="photo_input"):
        FineModel(f, v, 6, photo_input=True)  # flat refiners cannot read the photo


def test_faid_with_photo_input_trains_only_what_is_not_frozen(tmp_path, monkeypatch):
    """A tiny FAID whose fine model reads the photo: the FAID objective runs and back-propagates,
    and training with train.freeze=[coarse] leaves the coarse model (and its BatchNorm statistics)
    exactly as it was while the fine model learns."""
    from test_train import S, TinyAttributes, TinyFaces, TinyIdentity, tiny_cfg, tiny_face_model

    from pyfaid.facemodel.hierarchy import mesh_hierarchy
    from pyfaid.models import FAID, CoarseModel, FeatureEncoder, FineModel
    from pyfaid.render import Renderer
    from pyfaid.train import train

    monkeypatch.setenv("PYFAID_CACHE", str(tmp_path))

    def build(cfg, device="cpu"):
        torch.manual_seed(0)
        fm = tiny_face_model()
        hier = mesh_hierarchy(fm.mean_shape, fm.triangles, factors=(4,))
        fine = FineModel(fm.triangles, fm.mean_shape, 22, K=2, code=4, pos_embed=2, hierarchy=hier,
                         channels=(4, 8), photo_input=True)
        coarse = CoarseModel(fm.layout.size, "resnet18", None, 32)
        return FAID(fm, Renderer(S), coarse, fine, FeatureEncoder(TinyIdentity(), TinyAttributes()))

    cfg = tiny_cfg(train__freeze=("coarse",), train__max_steps=3)
    faid = build(cfg)
    before = {k: v.clone() for k, v in faid.trainable_state_dict().items()}
    out_dir = tmp_path / "run"
    faid_trained = {}

    def keep(cfg, device="cpu"):
        faid_trained["m"] = build(cfg, device)
        return faid_trained["m"]

    train(cfg, out_dir=str(out_dir), device="cpu", progress=False, build_model=keep, dataset=TinyFaces())
    m = faid_trained["m"]
    assert not m.coarse.training and all(not p.requires_grad for p in m.coarse.parameters())
    after = m.trainable_state_dict()
    coarse_same = all(torch.equal(before[k], after[k]) for k in before if k.startswith("coarse."))
    fine_moved = any(not torch.equal(before[k], after[k]) for k in before if k.startswith("fine."))
    assert coarse_same and fine_moved
    out = m(TinyFaces(2).images)
    assert torch.isfinite(out.fine_colors).all() and out.coarse_image is not None
    with pytest.raises(ValueError, match="unknown part"):
        m.freeze(["encoder"])
    np.testing.assert_equal(m.frozen, ("coarse",))
