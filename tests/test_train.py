"""Training tests on tiny sizes: a 162-vertex sphere face model, 32x32 renders, tiny encoders.

The real identity/attribute encoders are pretrained networks tested in test_encoders.py; here the
encoders only need the same interface (``embed``/``features``), so two tiny frozen conv nets stand in
for them to keep these tests fast. Everything else (renderer, ChebConv, FAID, objective, training
loop, checkpoints, DDP) is the real code.
"""

from __future__ import annotations

import os
import signal
import socket

import pytest
import torch
import torch.nn as nn

from pyfaid.config import Config, from_dict

S = 32  # render size


# ----------------------------------------------------------------------------- tiny components
def tiny_face_model():
    import trimesh

    from pyfaid.facemodel import MorphableModel

    mesh = trimesh.creation.icosphere(subdivisions=2, radius=0.8)
    V = torch.tensor(mesh.vertices, dtype=torch.float32)
    V[:, 2] *= 0.6
    g = torch.Generator().manual_seed(0)
    nv = V.shape[0]
    id_base = 0.02 * torch.randn(3 * nv, 8, generator=g)
    exp_base = 0.01 * torch.randn(3 * nv, 4, generator=g)
    mean_tex = 0.5 + 0.2 * torch.tanh(V)  # smooth colour gradient
    tex_base = 0.05 * torch.randn(3 * nv, 6, generator=g)
    tri = torch.tensor(mesh.faces, dtype=torch.int32)
    lmk = torch.arange(68) % nv
    return MorphableModel(V, id_base, exp_base, mean_tex, tex_base, tri, lmk, torch.ones(nv, dtype=torch.bool))


class TinyIdentity(nn.Module):
    """Frozen random conv net with the identity-encoder interface (embed / features)."""

    def __init__(self, dim=16):
        super().__init__()
        g = torch.Generator().manual_seed(1)
        self.c1 = nn.Conv2d(3, 8, 5, stride=4)
        self.c2 = nn.Conv2d(8, dim, 3, stride=2)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
        self.calls = 0

    def features(self, x):
        self.calls += 1
        a = torch.relu(self.c1(x))
        return [a, self.c2(a)]

    def embed(self, x):
        return self.features(x)[-1].mean((2, 3))


class TinyAttributes(TinyIdentity):
    def __init__(self):
        super().__init__(dim=6)

    def features(self, x):  # attribute encoder: features(images) -> [B, D_fa]
        self.calls += 1
        return self.c2(torch.relu(self.c1(x))).mean((2, 3))


def tiny_cfg(**over) -> Config:
    """A tiny flat-refiner FAID run from scratch (the defaults are the main job's: the shipped model,
    frozen, hierarchical refiners reading the photo, a time budget)."""
    d = {
        "data": {"image_size": S, "val_size": 0, "seed": 0},
        "model": {"backbone": "resnet18", "input_size": 32, "hidden": 4, "cheb_k": 2, "decoder_nodes": 16,
                  "decoder_code": 4, "pos_embed": 2, "hierarchy": False, "photo_input": False,
                  "landmark_head": False, "segmenter": False},
        "loss": {"sa_size": 0, "max_yaw": 0.5, "self_aug": False, "rob": 0.0, "coarse_photo": 1.0,
                 "sup_fine_tex": 0.0},
        "optim": {"lr": 1e-3, "decay_every": 1000, "grad_clip": 0.0},
        "train": {"batch_size": 2, "max_steps": 4, "ckpt_every": 2, "eval_at_end": False, "seed": 0,
                  "init_from": None, "init_parts": ["coarse", "fine", "segmenter"], "freeze": [], "stages": [],
                  "max_minutes": 0},
        "log": {"tensorboard": False, "every": 10, "image_every": 200},
    }
    for k, v in over.items():
        sec, key = k.split("__")
        d.setdefault(sec, {})[key] = v
    return from_dict(d)


def build_tiny(cfg: Config, device="cpu"):
    from pyfaid.models import FAID, CoarseModel, FeatureEncoder, FineModel
    from pyfaid.render import Renderer

    fm = tiny_face_model()
    m = cfg.model
    idn, att = TinyIdentity(), TinyAttributes()
    feat = (16 if m.use_id_features else 0) + (6 if m.use_fa_features else 0)
    fine = FineModel(fm.triangles, fm.mean_shape, feat, hidden=m.hidden, K=m.cheb_k, nodes=m.decoder_nodes,
                     code=m.decoder_code, pos_embed=m.pos_embed) if m.fine else None
    coarse = CoarseModel(fm.layout.size, m.backbone, None, m.input_size, landmark_head=m.landmark_head,
                         landmark_head_3d=m.landmark_head_3d, landmark_branch=m.landmark_branch)
    return FAID(fm, Renderer(S), coarse, fine, FeatureEncoder(idn, att), m.use_id_features,
                m.use_fa_features).to(device)


class TinyFaces(torch.utils.data.Dataset):
    """Renders of the tiny face model with random coefficients over a noisy background."""

    def __init__(self, n=8, seed=0, sigterm_at=None):
        from pyfaid.render import Renderer

        fm = tiny_face_model()
        lay = fm.layout
        r = Renderer(S)
        g = torch.Generator().manual_seed(seed)
        c = lay.zeros(n)
        c[:, lay.slice("id")] = torch.randn(n, 8, generator=g)
        c[:, lay.slice("tex")] = torch.randn(n, 6, generator=g)
        c[:, lay.slice("angle")] = 0.2 * torch.randn(n, 3, generator=g)
        c[:, lay.slice("gamma").start] = 0.3 * torch.randn(n, generator=g)
        c[:, lay.slice("trans").start:lay.slice("trans").start + 2] = 0.1 * torch.randn(n, 2, generator=g)
        with torch.no_grad():
            out = r(fm, c)
        bg = 0.3 * torch.rand(n, 3, S, S, generator=g)
        self.images = out.image * out.mask + bg * (1 - out.mask)
        self.masks = out.mask
        self.landmarks = out.landmarks_px
        self.sigterm_at, self.calls = sigterm_at, 0

    def __len__(self):
        return self.images.shape[0]

    def __getitem__(self, i):
        self.calls += 1
        if self.sigterm_at is not None and self.calls == self.sigterm_at:
            os.kill(os.getpid(), signal.SIGTERM)
        return {"image": self.images[i], "mask": self.masks[i], "landmarks": self.landmarks[i]}


def run(tmp_path, name, cfg=None, **kw):
    from pyfaid.train import train

    cfg = cfg or tiny_cfg()
    return train(cfg, out_dir=str(tmp_path / name), device="cpu", progress=False, build_model=build_tiny,
                 dataset=kw.pop("dataset", None) or TinyFaces(), **kw)


# ----------------------------------------------------------------------------- objective
def _objective(cfg):
    from pyfaid.models import FAIDObjective

    torch.manual_seed(0)
    faid = build_tiny(cfg)
    return FAIDObjective(faid, cfg.loss), faid


def _batch():
    ds = TinyFaces(4)
    return ds.images, ds.masks


def _call(obj, img, mask, seed=0, step=0, **extra):
    return obj({"image": img, "mask": mask, **extra}, torch.Generator().manual_seed(seed), step)


def test_forward_reconstruction_shapes():
    _, faid = _objective(tiny_cfg())
    img, _ = _batch()
    rec = faid(img)
    V = faid.face_model.num_vertices
    assert rec.coeffs.shape == (4, faid.layout.size) and rec.vertices_cam.shape == (4, V, 3)
    assert rec.coarse_colors.shape == rec.fine_colors.shape == (4, V, 3)
    assert rec.image.shape == rec.coarse_image.shape == (4, 3, S, S) and rec.mask.shape == (4, 1, S, S)
    assert rec.landmarks_mesh_px.shape == (4, 68, 2)
    # zero-initialised heads: the untrained model is the mean face and fine == coarse
    assert rec.coeffs.abs().max() == 0
    assert torch.allclose(rec.fine_colors, faid.face_model.mean_tex.expand(4, -1, -1))
    assert rec["coeffs"] is rec.coeffs


def test_self_augmentation_terms_finite_and_differentiable():
    obj, faid = _objective(tiny_cfg(loss__self_aug=True, loss__rob=0.001))
    img, mask = _batch()
    # move away from the zero init so every path carries gradient
    with torch.no_grad():
        faid.coarse.fc.bias.normal_(0, 0.05)
        faid.fine.mesh.gcn.head.weight.normal_(0, 0.05)
        faid.fine.faid.gcn.head.weight.normal_(0, 0.05)
    total, terms, recon, extras = _call(obj, img, mask, 3)
    for key in ("sa_rot_aug_photo", "sa_rot_in_photo", "sa_occ_aug_photo", "sa_occ_in_photo",
                "sa_rot_aug_id", "sa_rot_in_att", "sa_occ_aug_att", "sa_occ_in_id", "rob"):
        assert key in terms, key
    assert all(torch.isfinite(v) for v in terms.values())
    assert extras["sa_rot"].shape == (4, 3, S, S) and extras["sa_occ"].shape == (4, 3, S, S)
    # I_rot is a different view than the reconstruction of I
    assert (extras["sa_rot"] - recon.image.detach()).abs().mean() > 1e-3
    total.backward()
    grads = [p.grad for p in faid.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert faid.fine.faid.to_code.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("switch,removed,kept", [
    ({"loss__att": 0.0}, ["att", "sa_rot_aug_att", "sa_occ_in_att"], ["id", "rob", "sa_rot_aug_id"]),
    ({"loss__rob": 0.0}, ["rob"], ["att", "id"]),
    ({"loss__att": 0.0, "loss__rob": 0.0}, ["att", "rob"], ["id", "photo"]),
    ({"loss__self_aug": False}, ["sa_rot_aug_photo", "sa_occ_in_photo", "sa_rot_in_id"], ["att", "rob"]),
])
def test_ablation_switches_remove_terms(switch, removed, kept):
    full = {"loss__self_aug": True, "loss__rob": 0.001}
    full_obj, _ = _objective(tiny_cfg(**full))
    obj, faid = _objective(tiny_cfg(**{**full, **switch}))
    img, mask = _batch()
    _, full_terms, _, _ = _call(full_obj, img, mask)
    forwards = []
    faid.register_forward_hook(lambda *a: forwards.append(1))
    _, terms, _, _ = _call(obj, img, mask)
    for k in removed:
        assert k in full_terms and k not in terms, k
    for k in kept:
        assert k in terms, k
    if "loss__self_aug" in switch:
        # no self-augmentation: the model ran once (on the input), never on I_rot / I_occ
        assert len(forwards) == 1 and not any(k.startswith("sa_") for k in terms)
    else:
        # the switched-off terms also weigh 0 (they cannot come back through the total)
        w = obj.weights()
        assert all(w[k] == 0 for k in removed), {k: w.get(k) for k in removed}


def test_ablation_photo_id_never_calls_attribute_encoder_for_losses():
    cfg = tiny_cfg(loss__att=0.0, loss__rob=0.0, model__use_fa_features=False)
    obj, faid = _objective(cfg)
    img, mask = _batch()
    faid.features.attributes.calls = 0
    _call(obj, img, mask)
    assert faid.features.attributes.calls == 0


def test_no_fa_features_switch_changes_decoder_input():
    _, full = _objective(tiny_cfg())
    _, nofa = _objective(tiny_cfg(model__use_fa_features=False))
    assert full.fine.faid.to_code.in_features == 22 and nofa.fine.faid.to_code.in_features == 16
    img, _ = _batch()
    enc = full.encode(img)
    assert full.decoder_features(enc).shape[1] == 22 and nofa.decoder_features(enc).shape[1] == 16


# ----------------------------------------------------------------------------- training loop
def test_training_decreases_loss(tmp_path):
    from pyfaid.models import FAIDObjective

    # one fixed batch of 4, so every step sees the same images the loss is measured on
    cfg = tiny_cfg(train__max_steps=10, train__batch_size=4, optim__lr=3e-4, optim__grad_clip=1.0)
    ds = TinyFaces(4)
    img, mask = ds.images, ds.masks
    torch.manual_seed(0)
    before = FAIDObjective(build_tiny(cfg), cfg.loss)  # train mode: BatchNorm uses batch statistics
    with torch.no_grad():
        l0 = _call(before, img, mask)[1]["photo"].item()
    summary, faid = run(tmp_path, "dec", cfg, dataset=ds, return_model=True)
    assert summary["step"] == 10
    with torch.no_grad():
        l1 = _call(FAIDObjective(faid.train(), cfg.loss), img, mask)[1]["photo"].item()
    assert l1 < 0.98 * l0, (l0, l1)


def _params(model):
    return {k: v.clone() for k, v in model.trainable_state_dict().items()}


def test_resume_matches_uninterrupted_run(tmp_path):
    from pyfaid.checkpoint import list_checkpoints

    sa = {"loss__self_aug": True, "loss__rob": 0.001}  # random views/occluders must resume exactly too
    _, full = run(tmp_path, "full", tiny_cfg(train__max_steps=4, **sa), return_model=True)
    run(tmp_path, "part", tiny_cfg(train__max_steps=2, **sa))
    ck = list_checkpoints(str(tmp_path / "part"))
    assert [os.path.basename(p) for p in ck] == ["ckpt_00000002.pt"]
    state = torch.load(ck[-1], weights_only=False)
    for key in ("model", "optimizer", "scheduler", "step", "rng", "config", "samples"):
        assert key in state
    summary, resumed = run(tmp_path, "part", tiny_cfg(train__max_steps=4), resume=True, return_model=True)
    assert summary["step"] == 4
    a, b = _params(full), _params(resumed)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6, rtol=1e-5), k
    # max-steps counts resumed steps: asking for 4 again does nothing
    again = run(tmp_path, "part", tiny_cfg(train__max_steps=4), resume=True)
    assert again["step"] == 4


def test_resume_without_config_keeps_the_runs_settings():
    """``python -m pyfaid.train --out X --resume`` (no --config) continues the run as it was set up
    (how long, how often it saves and validates); only what the command gives changes."""
    import argparse

    from pyfaid.config import RUN_SETTINGS, load_config, resumed_config
    from pyfaid.train import _kept_on_resume

    saved = tiny_cfg(train__max_steps=625, train__val_every=125, train__max_minutes=0.0)
    given = load_config("default")  # what the command line resolves without --config
    args = argparse.Namespace(resume=True, config=None, set=["train.val_every=5"], max_steps=None, threads=1,
                              device=None)
    kept = _kept_on_resume(args)
    assert "train.val_every" not in kept and "train.threads" not in kept and "train.out" not in kept
    cfg = resumed_config(saved, given, kept)
    assert cfg.train.max_steps == 625 and cfg.train.max_minutes == 0.0 and cfg.train.ckpt_every == saved.train.ckpt_every
    assert cfg.train.val_every == given.train.val_every and cfg.train.out == given.train.out
    assert cfg.model == saved.model and cfg.loss == saved.loss  # what is computed: always the run's own
    # with --config, every run setting is the command's (as before)
    assert _kept_on_resume(argparse.Namespace(**{**vars(args), "config": "default"})) == ()
    cfg = resumed_config(saved, given, ())
    assert cfg.train.max_steps == given.train.max_steps and cfg.model == saved.model
    assert resumed_config(saved, given, "all").train == saved.train and len(RUN_SETTINGS) == 10


def test_coarse_stage_trains_only_the_coarse_model():
    from pyfaid.models import CoarseObjective

    cfg = tiny_cfg(loss__landmark=100.0)
    _, faid = _objective(cfg)
    obj = CoarseObjective(faid, cfg.loss)
    ds = TinyFaces(4)
    enc = faid.features
    enc.identity.calls = enc.attributes.calls = 0
    total, terms, recon, _ = _call(obj, ds.images, ds.masks, landmarks=ds.landmarks)
    assert {"coarse_photo", "landmark", "reg", "gamma"} <= set(terms)
    assert not any(k.startswith(("sa_", "id", "att", "rob")) for k in terms)
    assert all(torch.isfinite(v) for v in terms.values())
    assert enc.identity.calls == 0 and enc.attributes.calls == 0  # no encoder runs
    total.backward()
    assert all(p.grad is None for p in faid.fine.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in faid.coarse.parameters())
    # the landmark term compares projected model landmarks with the data's
    from pyfaid.losses import landmark_loss

    assert torch.allclose(terms["landmark"], landmark_loss(recon.landmarks_mesh_px, ds.landmarks, S))
    assert landmark_loss(ds.landmarks, ds.landmarks, S) == 0
    with pytest.raises(ValueError, match="landmark_loss"):
        landmark_loss(ds.landmarks[:, :5], ds.landmarks, S)
    with pytest.raises(ValueError, match="loss.landmark"):  # data without landmarks: say so
        _call(obj, ds.images, ds.masks)


STAGES = [{"name": "coarse", "objective": "coarse", "steps": 2, "batch_size": 4, "lr": 2e-3},
          {"name": "faid", "objective": "faid"}]


def test_coarse_stage_then_faid_stage_resumes_exactly(tmp_path):
    from pyfaid.checkpoint import list_checkpoints

    over = dict(train__stages=STAGES, loss__landmark=50.0, loss__self_aug=True, train__max_steps=4)
    summary, full = run(tmp_path, "full", tiny_cfg(**over), return_model=True)
    assert summary["step"] == 4 and "sa_rot_aug_photo" in summary["losses"]
    run(tmp_path, "part", tiny_cfg(**{**over, "train__max_steps": 2}))
    state = torch.load(list_checkpoints(str(tmp_path / "part"))[-1], weights_only=False)
    assert state["step"] == 2 and state["samples"] == 8  # two coarse steps of 4 images
    assert state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(2e-3)
    _, resumed = run(tmp_path, "part", tiny_cfg(**over), resume=True, return_model=True)
    a, b = _params(full), _params(resumed)
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6, rtol=1e-5), k
    state = torch.load(list_checkpoints(str(tmp_path / "part"))[-1], weights_only=False)
    assert state["samples"] == 8 + 2 * 2 and state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(1e-3)


def test_sigterm_saves_checkpoint(tmp_path):
    from pyfaid.checkpoint import list_checkpoints

    cfg = tiny_cfg(train__max_steps=50, train__ckpt_every=0)
    summary = run(tmp_path, "sig", cfg, dataset=TinyFaces(8, sigterm_at=3))
    assert summary["interrupted"] and 1 <= summary["step"] < 50
    ck = list_checkpoints(str(tmp_path / "sig"))
    assert ck and torch.load(ck[-1], weights_only=False)["step"] == summary["step"]


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    from pyfaid import checkpoint as T

    path = str(tmp_path / "ckpt_00000001.pt")
    T.save_atomic({"step": 1}, path)

    def broken_save(obj, f, *a, **k):
        f.write(b"partial")  # save_atomic hands torch.save an open file
        raise OSError("disk full")

    monkeypatch.setattr(T.torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        T.save_atomic({"step": 2}, path)
    with pytest.raises(OSError):
        T.save_atomic({"step": 2}, str(tmp_path / "ckpt_00000002.pt"))
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["ckpt_00000001.pt"]
    assert torch.load(path, weights_only=False)["step"] == 1


def test_sampler_order_independent_of_world_size():
    from pyfaid.data.sampler import ResumableSampler

    one = iter(ResumableSampler(10, 4, 0, 1, seed=3))
    two = [iter(ResumableSampler(10, 2, r, 2, seed=3)) for r in range(2)]
    for _ in range(6):
        assert next(one) == next(two[0]) + next(two[1])
    resumed = iter(ResumableSampler(10, 4, 0, 1, seed=3, start=8))
    ref = iter(ResumableSampler(10, 4, 0, 1, seed=3))
    next(ref), next(ref)
    assert next(resumed) == next(ref)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world, port, out, result_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from pyfaid.train import train

    summary, faid = train(tiny_cfg(train__max_steps=2), out_dir=out, device="cpu",
                          progress=False, build_model=build_tiny, dataset=TinyFaces(8), return_model=True)
    # parameters (BatchNorm running statistics are per replica; checkpoints keep rank 0's)
    params = {n: p.detach().clone() for n, p in faid.named_parameters() if p.requires_grad}
    torch.save(params, os.path.join(result_dir, f"rank{rank}.pt"))
    import torch.distributed as dist

    dist.destroy_process_group()


def test_ddp_two_cpu_processes_identical_parameters(tmp_path):
    import torch.multiprocessing as mp

    out = str(tmp_path / "ddp")
    mp.spawn(_ddp_worker, args=(2, _free_port(), out, str(tmp_path)), nprocs=2, join=True)
    a = torch.load(tmp_path / "rank0.pt")
    b = torch.load(tmp_path / "rank1.pt")
    torch.manual_seed(0)
    init = dict(build_tiny(tiny_cfg()).named_parameters())
    changed = 0
    for k in a:
        assert torch.equal(a[k], b[k]), k
        changed += int(not torch.equal(a[k], init[k]))
    assert changed > 0
    from pyfaid.checkpoint import list_checkpoints

    ck = torch.load(list_checkpoints(out)[-1], weights_only=False)
    assert ck["step"] == 2 and ck["world_size"] == 2 and ck["samples"] == 2 * 2 * 2


# ----------------------------------------------------------------------------- errors
def test_cli_unknown_config_key(capsys):
    from pyfaid.train import main

    assert main(["--set", "loss.phot=1", "--max-steps", "0"]) == 2
    err = capsys.readouterr().err
    assert "unknown config key 'loss.phot'" in err and "loss.photo" in err


def test_missing_face_model_file(tmp_path):
    from pyfaid.models import build_faid

    cfg = tiny_cfg(model__face_model=str(tmp_path / "BFM_model_front.mat"))
    with pytest.raises(FileNotFoundError, match="BFM_model_front.mat"):
        build_faid(cfg)


def test_dataset_errors_and_broken_images(tmp_path):
    import cv2
    import numpy as np

    from pyfaid.data.datasets import CelebA, ImageFolderFaces, collate_skip

    with pytest.raises(FileNotFoundError, match="not found"):
        ImageFolderFaces(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        ImageFolderFaces(str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="img_align_celeba"):
        CelebA(str(tmp_path / "empty"))
    d = tmp_path / "imgs"
    d.mkdir()
    cv2.imwrite(str(d / "a.png"), (np.random.rand(40, 40, 3) * 255).astype(np.uint8))
    (d / "b.jpg").write_bytes(b"not an image")
    ds = ImageFolderFaces(str(d), image_size=S, align=False)
    batch = collate_skip([ds[0], ds[1]])
    assert batch["skipped"] == 1 and batch["image"].shape == (1, 3, S, S)
    assert ds.skipped == 1 and "b.jpg" in ds.skipped_files[0][0]


def test_self_augmentation_every_k_steps():
    obj, faid = _objective(tiny_cfg(loss__self_aug=True, loss__sa_every=2))
    img, mask = _batch()
    on = _call(obj, img, mask, step=4)[1]
    off = _call(obj, img, mask, step=5)[1]
    assert any(k.startswith("sa_") for k in on) and not any(k.startswith("sa_") for k in off)
    assert "photo" in off and "id" in off


def test_loader_workers_survive_a_group_stop_signal():
    """A SIGTERM sent to every process of the run (``pkill -f``) must not kill the loader's workers:
    the main process handles it (finishes the step, saves); a dead worker would crash it unsaved."""
    import os
    import signal
    import time

    from pyfaid.trainer import ignore_stop_signals

    loader = torch.utils.data.DataLoader(list(range(64)), batch_size=4, num_workers=1,
                                         worker_init_fn=ignore_stop_signals)
    it = iter(loader)
    assert next(it).tolist() == [0, 1, 2, 3]
    os.kill(it._workers[0].pid, signal.SIGTERM)
    time.sleep(0.5)
    assert it._workers[0].is_alive()
    assert sum(len(b) for b in it) == 60


def test_grouped_encoding_batches_without_changing_features():
    """The FAID objective's perceptual renders go through the encoders in one batched pass per flag
    pair; every request gets exactly the features a pass of its own would give, in request order."""
    from pyfaid.models.objectives import encode_grouped

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)).eval()

    class _Faid:
        calls = []

        def encode(self, images, want_id=True, want_att=True):
            self.calls.append((len(images), want_id, want_att))
            h = net(images)
            out = {}
            if want_id:
                out["id"], out["id_inter"] = h.mean((2, 3)), [h, h[:, :2]]
            if want_att:
                out["att"] = h.amax((2, 3))
            return out

    faid, g = _Faid(), torch.Generator().manual_seed(0)
    reqs = [(torch.rand(4, 3, 8, 8, generator=g), True, True), (torch.rand(2, 3, 8, 8, generator=g), True, True),
            (torch.rand(2, 3, 8, 8, generator=g), True, False), (torch.rand(3, 3, 8, 8, generator=g), True, True)]
    with torch.no_grad():
        got = encode_grouped(faid, reqs)
        assert sorted(faid.calls) == [(2, True, False), (9, True, True)]  # two passes for four requests
        for (x, wi, wa), feats in zip(reqs, got):
            ref = faid.encode(x, wi, wa)
            assert feats.keys() == ref.keys()
            for name, v in ref.items():
                vs = v if isinstance(v, list) else [v]
                ws = feats[name] if isinstance(v, list) else [feats[name]]
                assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(vs, ws)), name


def test_supervised_fine_albedo_term():
    """loss.sup_fine_tex: the fine albedo's L1 error against the data's per-vertex colours over the
    face region, with a gradient into the fine model; data without colours is a clear error."""
    obj, faid = _objective(tiny_cfg(loss__sup_fine_tex=1.0))
    img, mask = _batch()
    V = faid.face_model.num_vertices
    gt = torch.rand(4, V, 3, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        faid.fine.mesh.gcn.head.weight.normal_(0, 0.05)
    total, terms, recon, _ = _call(obj, img, mask, colors=gt)
    region = faid.face_model.face_mask
    ref = (recon.fine_colors[:, region] - gt[:, region]).abs().mean()
    assert torch.allclose(terms["sup_fine_tex"], ref) and obj.weights()["sup_fine_tex"] == 1.0
    total.backward()
    assert faid.fine.mesh.gcn.head.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="sup_fine_tex"):
        _call(obj, img, mask)
    assert "sup_fine_tex" not in _call(_objective(tiny_cfg())[0], img, mask)[1]  # off by default
