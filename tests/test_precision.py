"""Mixed precision (pyfaid.precision): the policy, the network hooks, the kernels under autocast,
and a bf16 training step against an fp32 one on the same batch."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from conftest import requires_cuda
from pyfaid import precision
from pyfaid._ext import ops

BF16 = precision.Precision("bf16", "cpu", "test")
FP32 = precision.Precision("fp32", "cpu", "test")


# ----------------------------------------------------------------------------- the policy
def test_resolve_names_and_auto(monkeypatch):
    assert precision.resolve("fp32", "cpu").name == "fp32"
    assert precision.resolve("bf16", "cpu").name == "bf16" and precision.resolve("bf16", "cpu").mixed
    monkeypatch.setattr(precision, "_cpu_flags", lambda: frozenset({"avx2", "avx512_bf16"}))
    auto = precision.resolve("auto", "cpu")
    assert auto.name == "bf16" and "avx512_bf16" in auto.reason and "auto" in auto.describe()
    monkeypatch.setattr(precision, "_cpu_flags", lambda: frozenset({"avx2", "avx512f"}))
    auto = precision.resolve("auto", "cpu")
    assert auto.name == "fp32" and "lacks" in auto.reason
    with pytest.raises(ValueError, match="train.precision must be one of auto, fp32, bf16, got 'fp16'"):
        precision.resolve("fp16", "cpu", "train.precision")


def test_saved_config_of_old_checkpoints_is_fp32():
    old = {"train": {"batch_size": 4}, "data": {}}
    assert precision.saved_config(old)["train"] == {"batch_size": 4, "precision": "fp32"}
    new = {"train": {"precision": "bf16"}}
    assert precision.saved_config(new) is new


# ----------------------------------------------------------------------------- the network hooks
class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.seen = []

    def forward(self, x, fail=False):
        self.seen.append((x.dtype, x.is_contiguous(memory_format=torch.channels_last),
                          torch.is_autocast_enabled("cpu")))
        if fail:
            raise RuntimeError("boom")
        y = self.conv(x)
        self.seen.append((y.dtype, None, None))
        return {"out": y, "list": [y * 2]}


def test_network_runs_in_the_active_precision():
    net = precision.network(_Net())
    x = torch.rand(2, 3, 8, 8)
    ref = net(x)
    assert net.seen == [(torch.float32, False, False), (torch.float32, None, None)]
    net.seen.clear()
    with precision.use(BF16):
        got = net(x)
        assert not torch.is_autocast_enabled("cpu")  # only inside the network
    assert net.seen == [(torch.float32, True, True), (torch.bfloat16, None, None)]
    assert got["out"].dtype == torch.float32 and got["list"][0].dtype == torch.float32  # fp32 handed back
    assert (got["out"] - ref["out"]).abs().max() < 0.02 and (got["out"] - ref["out"]).abs().max() > 0
    net.seen.clear()
    with precision.use(FP32):  # fp32: exactly as declared
        assert torch.equal(net(x)["out"], ref["out"])
    with precision.use(BF16):
        with pytest.raises(RuntimeError, match="boom"):
            net(x, fail=True)
        assert not torch.is_autocast_enabled("cpu")  # the failed call left autocast off
        assert torch.is_tensor(net(x)["out"])


def test_network_gradients_are_float32():
    net = precision.network(_Net())
    x = torch.rand(2, 3, 8, 8, requires_grad=True)
    with precision.use(BF16):
        net(x)["out"].square().mean().backward()
    assert x.grad.dtype == torch.float32 and net.conv.weight.grad.dtype == torch.float32
    assert net.conv.weight.dtype == torch.float32  # parameters untouched
    assert torch.isfinite(x.grad).all()


# ----------------------------------------------------------------------------- kernels under autocast
def _mesh():
    import trimesh

    m = trimesh.creation.icosphere(subdivisions=2, radius=0.8)
    verts = torch.tensor(m.vertices, dtype=torch.float32)
    return verts, torch.tensor(m.faces, dtype=torch.int32)


def _clip(verts):
    z = verts[:, 2] - 3.0
    return torch.stack([2 * verts[:, 0], 2 * verts[:, 1], 1.02 * -z - 0.2, -z], -1)[None]


def _as_autocast_sees(t):
    """The bf16 value a network would hand over, and the fp32 the kernel computes with."""
    low = t.to(torch.bfloat16)
    return low, low.float()


def test_render_ops_cast_bf16_inputs_to_float32():
    import pyfaid.render as pr

    verts, tri = _mesh()
    topo = pr.MeshTopology(tri, len(verts))
    pos_bf, pos32 = _as_autocast_sees(_clip(verts))
    attr_bf, attr32 = _as_autocast_sees(torch.rand(1, len(verts), 3))
    v_bf, v32 = _as_autocast_sees(verts[None])
    gamma_bf, gamma32 = _as_autocast_sees(0.3 * torch.rand(1, 27))
    ref_rast = pr.rasterize(pos32, topo, 16)
    ref_img = pr.interpolate(attr32, ref_rast, topo)
    ref_n = pr.vertex_normals(v32, topo)
    ref_sh = pr.sh_shading(ref_n, attr32, gamma32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        rast = pr.rasterize(pos_bf, topo, 16)
        img = pr.interpolate(attr_bf, rast, topo)
        n = pr.vertex_normals(v_bf, topo)
        sh = pr.sh_shading(n.to(torch.bfloat16).float(), attr_bf, gamma_bf)  # mixed dtypes
        direct = ops.rasterize(pos_bf, tri, 16, 16)  # the op itself, without the Python wrapper
    for got, ref in ((rast, ref_rast), (img, ref_img), (n, ref_n), (direct, ref_rast)):
        assert got.dtype == torch.float32 and torch.equal(got, ref)
    assert sh.dtype == torch.float32 and torch.equal(sh, pr.sh_shading(ref_n.bfloat16().float(), attr32, gamma32))
    with pytest.raises(TypeError, match="float32 or float64"):  # outside autocast: the dtype checks stand
        pr.vertex_normals(v_bf, topo)


def test_render_op_gradients_reach_bf16_inputs():
    import pyfaid.render as pr

    verts, tri = _mesh()
    topo = pr.MeshTopology(tri, len(verts))
    attr = torch.rand(1, len(verts), 3).to(torch.bfloat16).requires_grad_(True)
    ref_attr = attr.detach().float().requires_grad_(True)
    rast = pr.rasterize(_clip(verts), topo, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = pr.interpolate(attr, rast, topo)
    out.sum().backward()
    pr.interpolate(ref_attr, rast, topo).sum().backward()
    assert attr.grad.dtype == torch.bfloat16
    assert torch.equal(attr.grad, ref_attr.grad.to(torch.bfloat16))


def test_cheb_ops_cast_bf16_inputs_to_float32():
    from pyfaid.graph import ChebConv, Laplacian, laplacian_mm

    verts, tri = _mesh()
    lap = Laplacian.of_mesh(tri, len(verts))
    conv = ChebConv(4, 5, 3)
    x_bf, x32 = _as_autocast_sees(torch.randn(2, len(verts), 4))
    ref = conv(x32, lap)
    ref_mm = laplacian_mm(lap, x32)
    x_bf.requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = conv(x_bf, lap)
        got_mm = laplacian_mm(lap, x_bf)
        crow, col, val = lap.parts(torch.device("cpu"), torch.float32)
        direct = ops.cheb_conv(x_bf, crow, col, val.bfloat16(), conv.weight.bfloat16(), None)
    assert got.dtype == torch.float32 and torch.equal(got, ref)
    assert got_mm.dtype == torch.float32 and torch.equal(got_mm, ref_mm)
    ref_direct = ops.cheb_conv(x32, crow, col, val.bfloat16().float(), conv.weight.bfloat16().float(), None)
    assert direct.dtype == torch.float32 and torch.equal(direct, ref_direct)
    got.sum().backward()
    assert x_bf.grad.dtype == torch.bfloat16 and torch.isfinite(x_bf.grad.float()).all()


def test_texture_and_antialias_ops_cast_bf16_inputs_to_float32():
    """The nvdiffrast-style ops (rast_db, attribute derivatives, texture, antialias) called straight
    on bf16 inputs under autocast compute what their float32 calls on the same values give."""
    import pyfaid.render as pr

    verts, tri = _mesh()
    topo = pr.MeshTopology(tri, len(verts))
    pos_bf, pos32 = _as_autocast_sees(_clip(verts))
    attr_bf, attr32 = _as_autocast_sees(torch.rand(1, len(verts), 2))
    tex_bf, tex32 = _as_autocast_sees(torch.rand(1, 8, 8, 3))
    col_bf, col32 = _as_autocast_sees(torch.rand(1, 16, 16, 3))
    rast = ops.rasterize(pos32, tri, 16, 16)
    db = ops.rasterize_db(pos32, tri, rast)
    uv_bf, uv32 = _as_autocast_sees(ops.interpolate(attr32, rast, tri))
    da_bf, da32 = _as_autocast_sees(ops.interpolate_da(attr32, rast, tri, db, [0, 1]))
    mip32 = ops.texture_mip(tex32, -1)
    ref = (ops.rasterize_db(pos32, tri, rast), ops.interpolate_da(attr32, rast, tri, db, [0, 1]),
           ops.texture(tex32, mip32, uv32, da32, None, "linear-mipmap-linear", "wrap"),
           ops.antialias(col32, rast, pos32, tri,
                         topo.triangle_neighbors())[0])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mip = ops.texture_mip(tex_bf, -1)
        got = (ops.rasterize_db(pos_bf, tri, rast), ops.interpolate_da(attr_bf, rast, tri, db, [0, 1]),
               ops.texture(tex_bf, mip, uv_bf, da_bf, None, "linear-mipmap-linear", "wrap"),
               ops.antialias(col_bf, rast, pos_bf, tri,
                             topo.triangle_neighbors())[0])
    assert all(m.dtype == torch.float32 for m in mip)
    for g, r in zip(got, ref):
        assert g.dtype == torch.float32 and torch.equal(g, r)


def test_ops_keep_float64_under_autocast():
    """autocast leaves float64 alone (as ATen's fp32 ops do): gradcheck-style calls are unaffected."""
    import pyfaid.render as pr

    verts, tri = _mesh()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        n = pr.vertex_normals(verts.double()[None], tri)
    assert n.dtype == torch.float64


def test_opcheck_under_autocast():
    verts, tri = _mesh()
    pos = _clip(verts).to(torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        torch.library.opcheck(ops.vertex_normals.default, (verts.to(torch.bfloat16)[None], tri),
                              test_utils=("test_schema", "test_faketensor"))
        torch.library.opcheck(ops.rasterize.default, (pos, tri, 8, 8), test_utils=("test_schema", "test_faketensor"))


@requires_cuda
def test_cuda_ops_cast_bf16_inputs_to_float32():
    import pyfaid.render as pr

    verts, tri = _mesh()
    pos = _clip(verts).cuda()
    ref = pr.rasterize(pos.bfloat16().float(), tri.cuda(), 16)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        got = pr.rasterize(pos.bfloat16(), tri.cuda(), 16)
    assert got.dtype == torch.float32 and torch.equal(got, ref)


# ----------------------------------------------------------------------------- models and training
def _tiny_faid():
    from test_train import build_tiny, tiny_cfg

    cfg = tiny_cfg(model__landmark_head=True)
    torch.manual_seed(0)
    faid = build_tiny(cfg)
    with torch.no_grad():  # the heads start at zero: give them weights so the backbone shows
        for head in (faid.coarse.fc, faid.coarse.landmarks):
            head.weight.normal_(0.0, 0.05)
    return faid, cfg


def test_faid_forward_bf16_close_to_fp32():
    from test_train import TinyFaces

    faid, _ = _tiny_faid()
    faid.eval()
    img = TinyFaces(4).images
    with torch.no_grad():
        ref = faid(img)
        with precision.use(BF16):
            got = faid(img)
    for name in ("coeffs", "landmarks_head_px", "fine_colors"):
        a, b = getattr(got, name), getattr(ref, name)
        assert a.dtype == torch.float32, name
        assert (a - b).abs().max() <= 0.02 * b.abs().max() + 1e-3, name
    assert got.image.dtype == torch.float32 and (got.image - ref.image).abs().mean() < 0.01  # silhouettes may move a pixel
    assert not torch.equal(got.coeffs, ref.coeffs)  # the backbone did run in bf16


@pytest.mark.parametrize("objective", ["faid", "pretrain"])
def test_training_step_bf16_close_to_fp32(objective):
    """Same batch, same weights: the loss and the gradients of the trained heads (the fine model in
    the FAID stage, the coarse model's heads in pretraining) agree. (A random ResNet-18 at 32 px with
    BatchNorm over 4 images is too chaotic a backbone to compare; on the real pretraining batch the
    backbone's gradient has cosine 0.988 to fp32's, its heads 1.000, the segmenter's 0.997.)"""
    from pyfaid.models import StagedObjective
    from test_train import TinyFaces

    faid, cfg = _tiny_faid()
    ds = TinyFaces(4)
    batch = {"image": ds.images, "mask": ds.masks, "landmarks": ds.landmarks}
    parts = [faid.fine]
    if objective == "pretrain":
        from dataclasses import replace

        lay = faid.face_model.layout
        batch.update(coeffs=lay.zeros(4), colors=faid.face_model.texture(lay.zeros(4)[:, lay.slice("tex")]).detach())
        cfg = replace(cfg, loss=replace(cfg.loss, sup_shape=1.0, sup_pose=1.0, sup_tex=1.0, landmark_head=1.0))
        parts = [faid.coarse.fc, faid.coarse.landmarks]
    obj = StagedObjective(faid, cfg.loss, [objective])
    state = {k: v.clone() for k, v in faid.state_dict().items()}
    results = {}
    for prec in (FP32, BF16):
        faid.load_state_dict(state)
        faid.zero_grad(set_to_none=True)
        with precision.use(prec):
            total, terms, _, _ = obj(batch, torch.Generator().manual_seed(0), objective, 0)
        total.backward()
        grad = torch.cat([p.grad.flatten() for m in parts for p in m.parameters() if p.grad is not None])
        results[prec.name] = (float(total.detach()), grad)
        assert torch.isfinite(total) and torch.isfinite(grad).all() and grad.abs().max() > 0
    (l32, g32), (l16, g16) = results["fp32"], results["bf16"]
    assert abs(l16 - l32) <= 0.02 * abs(l32) + 1e-4
    cos = torch.nn.functional.cosine_similarity(g16, g32, dim=0)
    assert cos > 0.98, float(cos)


@pytest.mark.parametrize("prec", ["fp32", "bf16"])
def test_trainer_runs_in_each_precision(tmp_path, capsys, prec):
    from test_train import run, tiny_cfg

    summary = run(tmp_path, prec, cfg=tiny_cfg(train__precision=prec, train__max_steps=2))
    assert summary["precision"] == prec and summary["step"] == 2
    assert all(v == v for v in summary["losses"].values())  # finite (no NaN)
    assert f"precision {prec} on cpu" in capsys.readouterr().err


def test_trainer_rejects_an_unknown_precision(tmp_path):
    from test_train import run, tiny_cfg

    with pytest.raises(ValueError, match="train.precision must be one of"):
        run(tmp_path, "bad", cfg=tiny_cfg(train__precision="half"))
