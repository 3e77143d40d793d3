"""Tests for pyfaid.data: occlusion synthesis, the synthetic face dataset and its pieces (painted
albedo, context, lights, 300-W landmarks, alignment framing, camera effects) and the disk cache."""

import json
import os

import numpy as np
import pytest
import torch

from pyfaid.data import CachedFaces, write_cache
from pyfaid.occlusion import OCCLUDER_KINDS, occlude, occlude_arrays
from pyfaid.synth import SyntheticFaces
from pyfaid.synth.faces import torch_threads


def _faces(batch=4, size=96):
    """Stand-in aligned faces: a skin-coloured ellipse on a grey background."""
    ys, xs = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    inside = (((xs - size / 2) / (0.3 * size)) ** 2 + ((ys - size / 2) / (0.4 * size)) ** 2) < 1
    img = torch.full((batch, 3, size, size), 0.5)
    skin = torch.tensor([0.8, 0.6, 0.5])[:, None, None]
    img = torch.where(inside, skin, img)
    return img + 0.02 * torch.rand(batch, 3, size, size)


# ------------------------------------------------------------------------------ occlude
def test_occlude_shapes_dtypes_and_binary_mask():
    imgs = _faces(3, 64).double()
    out, mask = occlude(imgs, seed=0)
    assert out.shape == imgs.shape and out.dtype == torch.float64
    assert mask.shape == (3, 1, 64, 64) and mask.dtype == torch.float64
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    assert out.min() >= 0 and out.max() <= 1


def test_occlude_deterministic_and_batch_independent():
    imgs = _faces(4)
    a = occlude(imgs, seed=7)
    b = occlude(imgs, seed=7)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    c = occlude(imgs, seed=8)
    assert not torch.equal(a[1], c[1])
    # Image 2 alone, seeded by its index, equals image 2 of the batch.
    single = occlude(imgs[2:3], seed=7, indices=[2])
    assert torch.equal(single[0][0], a[0][2]) and torch.equal(single[1][0], a[1][2])
    # A torch generator also makes it reproducible.
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(occlude(imgs, generator=g1)[1], occlude(imgs, generator=g2)[1])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_occlude_cuda_images_with_a_cuda_generator():
    """Self-augmentation on a GPU seeds the occluders from a CUDA generator (found on the H200)."""
    imgs = _faces(2).cuda()
    g1, g2 = torch.Generator("cuda").manual_seed(3), torch.Generator("cuda").manual_seed(3)
    a, b = occlude(imgs, generator=g1), occlude(imgs, generator=g2)
    assert a[0].is_cuda and a[1].is_cuda
    assert torch.equal(a[1], b[1])


@pytest.mark.parametrize("kind", OCCLUDER_KINDS)
def test_each_kind_covers_pixels_and_mask_says_where(kind):
    imgs = _faces(4)
    out, mask = occlude(imgs, seed=1, kinds=[kind], max_occluders=1, coverage=(0.0, 0.6))
    diff = (out - imgs).abs().amax(1, keepdim=True)  # [B, 1, H, W]
    for b in range(4):
        m = mask[b] > 0.5
        assert m.sum() > 20, f"{kind}: occluder covers almost nothing"
        # Outside the mask only anti-aliased borders may change (a thin rim); clear glasses also
        # tint what is seen through their lenses, by at most a quarter.
        if kind == "glasses":
            rim = torch.nn.functional.max_pool2d(m[None].float(), 3, 1, 1)[0] > 0  # frames, anti-aliased edges
            assert (diff[b][~rim] <= 0.3).all(), "glasses: lenses must stay see-through"
        else:
            changed_outside = ((diff[b] > 0.02) & ~m).float().sum() / m.float().sum()
            assert changed_outside < 0.35, f"{kind}: many changed pixels outside the mask"
    # Under the mask the picture really changed on most pixels.
    changed_inside = ((diff > 0.02) & (mask > 0.5)).float().sum() / mask.sum()
    assert changed_inside > 0.6, f"{kind}: masked pixels mostly unchanged ({changed_inside:.2f})"


def test_occluders_favour_the_face_centre():
    imgs = _faces(16, 96)
    _, mask = occlude(imgs, seed=2, kinds=["patch", "noise", "sunglasses"])
    m = mask.sum(0)[0]
    centre = m[24:72, 24:72].mean()
    border = torch.cat([m[:12].reshape(-1), m[-12:].reshape(-1)]).mean()
    assert centre > 2 * border


def test_occlude_coverage_limits():
    imgs = _faces(8)
    _, mask = occlude(imgs, seed=3, coverage=(0.0, 0.15), max_occluders=4)
    assert (mask.mean((1, 2, 3)) <= 0.15 + 1e-6).all()
    _, mask = occlude(imgs, seed=3, coverage=(0.1, 0.5), max_occluders=6)
    assert (mask.mean((1, 2, 3)) >= 0.05).float().mean() >= 0.75


def test_occlude_gradient_flows_to_uncovered_pixels():
    imgs = _faces(2, 48).requires_grad_()
    out, mask = occlude(imgs, seed=4)
    out.sum().backward()
    g = imgs.grad.mean(1, keepdim=True)
    assert (g[mask < 0.5] > 0).float().mean() > 0.9
    assert (g[mask > 0.5] < 0.5).float().mean() > 0.9


def test_occlude_bad_input():
    with pytest.raises(ValueError, match="images"):
        occlude(torch.rand(3, 32, 32))
    with pytest.raises(ValueError, match="kinds"):
        occlude(torch.rand(1, 3, 32, 32), seed=0, kinds=["cat"])
    with pytest.raises(ValueError, match="coverage"):
        occlude(torch.rand(1, 3, 32, 32), seed=0, coverage=(0.5, 0.1))
    with pytest.raises(ValueError, match="indices"):
        occlude(torch.rand(2, 3, 32, 32), seed=0, indices=[0])


def test_occlude_arrays_matches_occlude():
    imgs = _faces(3, 64)
    a_img, a_mask = occlude(imgs, seed=11, indices=[4, 5, 6])
    b_img, b_mask = occlude_arrays(imgs.permute(0, 2, 3, 1).numpy(), seed=11, indices=[4, 5, 6])
    assert np.array_equal(a_mask[:, 0].numpy(), b_mask)
    assert np.allclose(a_img.permute(0, 2, 3, 1).numpy(), b_img, atol=1e-5)
    with pytest.raises(ValueError, match="images"):
        occlude_arrays(np.zeros((2, 8, 9, 3), np.float32), seed=0)


def _frontal_landmarks(size=96):
    """68 landmarks of the default model's frontal mean face at ``size`` pixels."""
    from pyfaid import facemodel
    from pyfaid.render import Renderer

    fm = facemodel.load("default")
    return Renderer(size).project_landmarks(fm, fm.layout.zeros(1))[0]


def test_medical_mask_covers_nose_and_mouth_not_eyes():
    lm = _frontal_landmarks(96)
    imgs = _faces(6, 96)
    _, mask = occlude(imgs, seed=3, kinds=["mask"], max_occluders=1, coverage=(0.0, 0.9),
                      landmarks=lm[None].expand(6, -1, -1))
    px = lm.round().long().clamp(0, 95)
    for b in range(6):
        at = mask[b, 0, px[:, 1], px[:, 0]]
        assert at[29:36].all() and at[48:68].mean() > 0.9, "the mask must cover the nose (from its bridge) and the mouth"
        top = int(mask[b, 0, :, px[30, 0]].nonzero()[0])  # the top edge crosses the nose's bridge
        assert lm[27, 1] < top < lm[30, 1]
        assert at[36:48].mean() < 0.2, "the mask must leave the eyes free"
        assert at[17:27].sum() == 0, "the mask must stay below the brows"
    # it follows the landmarks: shifted landmarks shift the mask
    _, moved = occlude(imgs[:1], seed=3, kinds=["mask"], max_occluders=1, coverage=(0.0, 0.9),
                       landmarks=(lm + torch.tensor([10.0, 0.0]))[None])
    cols = torch.arange(96).float()
    centre = lambda m: float((m[0, 0].sum(0) * cols).sum() / m[0, 0].sum())  # noqa: E731
    assert abs(centre(moved) - centre(mask[:1]) - 10.0) < 2.0


# ------------------------------------------------------------------------- SyntheticFaces
@pytest.fixture(scope="module")
def face_model():
    from pyfaid import facemodel

    return facemodel.load("default")


@pytest.fixture(scope="module")
def batch(face_model):
    ds = SyntheticFaces(seed=5, length=100, face_model=face_model, image_size=112)
    return ds, ds.batch([3, 10, 11, 42])


def test_item_contract(face_model, batch):
    from pyfaid.synth.hair import HAIR_LABELS
    from pyfaid.synth.skin import APPEARANCE_LABELS

    ds, _ = batch
    item = ds[3]
    V = face_model.num_vertices
    assert item["image"].shape == (3, 112, 112) and item["image"].dtype == torch.float32
    assert item["clean"].shape == (3, 112, 112)
    for key in ("mask", "face_mask", "occluder_mask"):
        assert item[key].shape == (1, 112, 112) and item[key].dtype == torch.float32
    assert item["coeffs"].shape == (face_model.layout.size,)
    assert item["vertices"].shape == (V, 3) and item["colors"].shape == (V, 3)
    assert item["landmarks"].shape == (68, 2) and item["landmarks_2d"].shape == (68, 2)
    assert torch.equal(item["landmarks_3d"], item["landmarks"])
    assert item["landmarks_2d"].dtype == torch.float32
    assert item["landmark_visible"].shape == (68,) and item["landmark_visible"].dtype == torch.bool
    for key in ("image", "clean", "colors"):
        assert 0 <= item[key].min() and item[key].max() <= 1
    labels = item["labels"]
    assert labels["id"].shape == (face_model.n_id,)
    assert labels["exp"].shape == (face_model.n_exp,)
    assert labels["tex"].shape == (face_model.n_tex,)
    assert labels["skin_tone"].dim() == 0 and 0 < float(labels["skin_tone"]) < 1
    assert torch.equal(labels["id"], item["coeffs"][: face_model.n_id])
    names = ds.label_names()
    assert names["appearance"] == list(APPEARANCE_LABELS) + list(HAIR_LABELS)
    for name in names["appearance"]:
        assert labels[name].dim() == 0, name
    # Phenotype labels of the default model: slider values recovered from the identity.
    if "id_to_target" in face_model.labels:
        assert labels["id_targets"].shape == (len(names["id_targets"]),)
        expected = face_model.labels["id_to_target"].float() @ labels["id"]
        assert torch.allclose(labels["id_targets"], expected, atol=1e-5)
        for name in names["id_targets"]:
            if name.startswith("macro/"):
                assert labels["macro_" + name[6:]].dim() == 0


def test_labels_in_range(face_model):
    from pyfaid.synth.hair import HAIR_LABELS
    from pyfaid.synth.skin import APPEARANCE_LABELS

    ds = SyntheticFaces(seed=2, length=64, face_model=face_model, image_size=48)
    labels = ds.batch(range(24))["labels"]
    for name in APPEARANCE_LABELS + HAIR_LABELS:
        v = labels[name]
        assert torch.isfinite(v).all(), name
        if name == "moles":  # a count
            assert (v >= 0).all() and torch.equal(v, v.round())
        else:
            assert (v >= 0).all() and (v <= 1).all(), (name, v)
    # the generator varies them: every label takes at least two values over 24 faces, except rare ones
    rare = {"scar", "tan_lines", "bald"}
    for name in APPEARANCE_LABELS + HAIR_LABELS:
        if name not in rare:
            assert len(torch.unique(labels[name])) > 1, name
    for name in ("scar", "tan_lines", "bald"):
        assert set(labels[name].tolist()) <= {0.0, 1.0}


def test_deterministic_and_batch_equals_items(face_model, batch):
    ds, b = batch
    again = SyntheticFaces(seed=5, length=100, face_model=face_model, image_size=112)
    # The same request gives bit-identical results.
    b2 = again.batch([3, 10, 11, 42])
    for key in ("image", "clean", "mask", "coeffs", "vertices", "colors", "landmarks_2d", "landmark_visible"):
        assert torch.equal(b2[key], b[key]), key
    for key in b["labels"]:
        assert torch.equal(b2["labels"][key], b["labels"][key]), key
    # An item alone equals the same item in a batch up to float rounding of batched matmuls (a few
    # silhouette pixels; pictures are quantised to 8 bits and JPEG'd, which may amplify a rounding
    # difference into a few levels in one 8x8 block).
    item = again[10]
    assert torch.equal(item["coeffs"], b["coeffs"][1])
    assert torch.allclose(item["vertices"], b["vertices"][1], atol=1e-5)
    assert torch.allclose(item["colors"], b["colors"][1], atol=1e-5)
    for key in ("image", "clean", "mask"):
        d = (item[key] - b[key][1]).abs()
        assert float(d.mean()) < 1e-3 and float(d.max()) < 0.1, (key, float(d.mean()), float(d.max()))
    assert torch.allclose(item["landmarks_2d"], b["landmarks_2d"][1], atol=1e-3)
    other = SyntheticFaces(seed=6, length=100, face_model=face_model, image_size=112)[10]
    assert not torch.equal(other["coeffs"], item["coeffs"])
    assert not torch.equal(b["coeffs"][1], b["coeffs"][2])
    assert not torch.equal(b["colors"][1], b["colors"][2])


def test_mask_is_face_minus_occluders(batch):
    _, b = batch
    face, occ, mask = b["face_mask"], b["occluder_mask"], b["mask"]
    assert torch.equal(mask, face * (1 - occ))
    assert set(torch.unique(torch.cat([face, occ])).tolist()) <= {0.0, 1.0}
    assert (face.mean((1, 2, 3)) > 0.05).all(), "every sample shows a face"
    assert occ.sum() > 0
    # Occluders change the picture where they are (camera effects are the same on both pictures).
    diff = (b["image"] - b["clean"]).abs().amax(1, keepdim=True)
    assert ((diff > 0.02) & (occ > 0.5)).sum() > 0.5 * occ.sum()
    # Away from occluders the pictures agree but for JPEG blocks and blur reaching across edges.
    far = torch.nn.functional.max_pool2d(occ, 9, 1, 4) == 0
    assert float(diff[far].mean()) < 0.01


def test_face_mask_is_the_rendered_face(face_model, batch):
    from pyfaid.render import Renderer

    _, b = batch
    out = Renderer(112)(face_model, b["coeffs"], colors=b["colors"])
    assert torch.equal(out.mask, b["face_mask"])
    assert torch.allclose(out.landmarks_px, b["landmarks"], atol=1e-3)
    assert torch.allclose(out.vertices_cam, b["vertices"], atol=1e-4)


def test_exact_ground_truth_rerender(face_model):
    """With the photo-only effects off, the clean picture's face pixels ARE the coefficients
    rendered with the item's albedo (``colors``)."""
    from pyfaid.render import Renderer

    ds = SyntheticFaces(seed=8, length=10, face_model=face_model, image_size=96, occlusion=False,
                        lighting_extras=False, camera_effects=0.0)
    b = ds.batch(range(6))
    with torch_threads(ds.threads):  # as the generator rendered it (BLAS rounds per thread count)
        out = Renderer(96)(face_model, b["coeffs"], colors=b["colors"])
    inner = -torch.nn.functional.max_pool2d(-b["face_mask"], 3, 1, 1)  # one pixel in from the silhouette
    inner = inner.expand(-1, 3, -1, -1) > 0
    err = (out.image - b["clean"]).abs()[inner]
    assert float(err.max()) <= 0.5 / 255 + 1e-6, float(err.max())  # 8-bit quantisation only
    assert torch.equal(b["image"], b["clean"])
    # with the default extras, the face pixels depart from the SH render (shadows, highlights, camera)
    full = SyntheticFaces(seed=8, length=10, face_model=face_model, image_size=96, occlusion=False).batch(range(6))
    assert torch.equal(full["coeffs"], b["coeffs"]) and torch.equal(full["colors"], b["colors"])
    assert float((out.image - full["clean"]).abs()[inner].mean()) > 1.0 / 255


def test_albedo_goes_beyond_the_basis(face_model):
    ds = SyntheticFaces(seed=3, length=10, face_model=face_model, image_size=48, occlusion=False)
    b = ds.batch(range(4))
    parts = face_model.split_coeffs(b["coeffs"])
    basis = face_model.texture(parts["tex"]).clamp(0, 1)
    # the painted albedo is not in the span of the basis: its least-squares projection misses a lot
    T = face_model.tex_base.double()
    resid = (b["colors"].double() - face_model.mean_tex.double()).reshape(4, -1).T  # [3V, 4]
    coef = torch.linalg.lstsq(T, resid).solution
    miss = (resid - T @ coef).norm(dim=0) / resid.norm(dim=0)
    # (the Monk skin tone scales the skin by a colour set from the basis' first coefficient, a
    # shift the projection partly captures: for two of these four faces 28 % and 30 % stays out)
    assert (miss > 0.25).all(), miss
    # ... and it carries detail at the scale of a vertex: neighbour differences grow
    tri = face_model.triangles.long()
    def rough(a):
        return (a[:, tri[:, 0]] - a[:, tri[:, 1]]).abs().mean()
    assert rough(b["colors"]) > 1.5 * rough(basis)
    plain = SyntheticFaces(seed=3, length=10, face_model=face_model, image_size=48, occlusion=False,
                           texture_detail=False).batch(range(4))
    assert torch.allclose(plain["colors"], basis, atol=1e-6)
    assert float(plain["labels"]["eyebrow_thickness"].abs().sum()) == 0


def test_occlusion_off_and_clean_image_shared(face_model, batch):
    _, b = batch
    ds = SyntheticFaces(seed=5, length=100, face_model=face_model, image_size=112, occlusion=False)
    nb = ds.batch([3, 10, 11, 42])
    assert torch.equal(nb["image"], nb["clean"])
    assert torch.equal(nb["clean"], b["clean"])
    assert nb["occluder_mask"].sum() == 0
    assert torch.equal(nb["mask"], nb["face_mask"])


def test_occlusion_prob_leaves_some_items_bare(face_model):
    ds = SyntheticFaces(seed=4, length=40, face_model=face_model, image_size=48, occlusion_prob=0.0)
    b = ds.batch(range(8))
    # no pasted occluders; only hair may cover the face (inside the face mask)
    assert torch.equal(b["occluder_mask"] * (1 - b["face_mask"]), torch.zeros_like(b["face_mask"]))


def test_face_pixels_differ_from_background(batch):
    _, b = batch
    clean, face = b["clean"], b["face_mask"]
    # The face silhouette is where the renderer put it: landmarks fall inside the image and
    # mostly on face pixels.
    lm = b["landmarks"].round().long().clamp(0, 111)
    on_face = torch.stack([face[i, 0, lm[i, :, 1], lm[i, :, 0]] for i in range(len(lm))])
    assert on_face.float().mean() > 0.7
    assert clean.std() > 0.05


def test_context_surrounds_the_face(face_model):
    """Head, neck and hair fill much of what is not face: few pixels are plain background."""
    ds = SyntheticFaces(seed=1, length=20, face_model=face_model, image_size=64, occlusion=False,
                        camera_effects=0.0, background_kinds=["studio"])
    plain = SyntheticFaces(seed=1, length=20, face_model=face_model, image_size=64, occlusion=False,
                           camera_effects=0.0, background_kinds=["studio"], context=False)
    a, b = ds.batch(range(6)), plain.batch(range(6))
    assert torch.equal(a["face_mask"], b["face_mask"])
    off_face = (a["face_mask"] == 0).expand(-1, 3, -1, -1)
    changed = ((a["clean"] - b["clean"]).abs() > 0.02) & off_face
    assert changed.float().sum() / off_face.float().sum() > 0.25


def test_dataloader_batched_fetch(face_model):
    ds = SyntheticFaces(seed=1, length=6, face_model=face_model, image_size=64)
    loader = torch.utils.data.DataLoader(ds, batch_size=3, shuffle=False)
    first = next(iter(loader))
    assert first["image"].shape == (3, 3, 64, 64)
    assert first["labels"]["skin_tone"].shape == (3,)
    assert torch.equal(first["image"], ds.batch([0, 1, 2])["image"])


def test_bad_index(face_model):
    ds = SyntheticFaces(seed=0, length=3, face_model=face_model, image_size=32)
    with pytest.raises(IndexError):
        ds[3]
    assert torch.equal(ds[-1]["coeffs"], ds[2]["coeffs"])
    with pytest.raises(ValueError, match="empty"):
        ds.batch([])


@pytest.mark.parametrize("kw, match", [
    ({"framing": "center"}, "framing"), ({"face_scale": 0.0}, "face_scale"), ({"camera_effects": 3.0}, "camera_effects"),
    ({"background_kinds": ["moon"]}, "background_kinds"), ({"occlusion_prob": 1.5}, "occlusion_prob"),
    ({"harsh_light_prob": -0.1}, "harsh_light_prob"), ({"length": -1}, "length"), ({"image_size": 8}, "image_size"),
])
def test_bad_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        SyntheticFaces(**kw)


# ------------------------------------------------------------------------- landmark conventions
def _posed(face_model, poses, size=112):
    from pyfaid.render import Renderer
    from pyfaid.render.camera import euler_rotation

    lay = face_model.layout
    c = lay.zeros(len(poses))
    c[:, lay.slice("angle")] = torch.tensor(np.radians(poses)).float()
    r = Renderer(size)
    parts = face_model.split_coeffs(c)
    shapes = face_model.shape(parts["id"], parts["exp"])
    return r, r(face_model, c), euler_rotation(c[:, lay.slice("angle")]), parts["trans"], shapes


@pytest.fixture(scope="module")
def face_marching(face_model):
    from pyfaid.synth.contour import LandmarkMarching

    return LandmarkMarching(face_model, None)  # the face mesh alone: its render's edge is the outline


def test_landmarks_2d_frontal_near_3d_and_turned_on_the_silhouette(face_model, face_marching):
    r, out, rot, trans, shapes = _posed(face_model, [(0, 0, 0), (0, 55, 0), (0, -55, 0)])
    lm2d, vis, vis3d = face_marching.compute(out.landmarks_px, out.vertices_cam, rot, trans, out.rast, r)
    lm3d = out.landmarks_px
    # frontal: the jaw's outline is within a few pixels of the landmark vertices (never inside
    # them: the outline is the outermost point of the surface), the chin stays on the chin (not on
    # the throat below it), and every other point is the 3D-style one
    d = lm2d[0, :17] - lm3d[0, :17]
    centre = lm3d[0, [27, 30, 33, 51, 57]].mean(0)
    out_dir = (lm3d[0, :17] - centre) / (lm3d[0, :17] - centre).norm(dim=-1, keepdim=True)
    assert (d.norm(dim=-1) < 3.0).all(), d
    assert ((d * out_dir).sum(-1) > -0.5).all(), d
    assert torch.equal(lm2d[:, 27:], lm3d[:, 27:].float()) and torch.equal(lm2d[:, 19:25], lm3d[:, 19:25].float())
    assert vis[0].all() and vis3d[0, 1:16].all() and vis3d[0, 17:].all()
    face = out.mask[:, 0]
    for b, far in ((1, range(9, 17)), (2, range(0, 8))):  # yaw > 0 turns the model's +x side away
        moved = (lm2d[b] - lm3d[b]).norm(dim=1)
        assert (moved[list(far)] > 1.0).sum() >= 5, moved
        assert vis[b, :17].all() and not vis3d[b, list(far)].all()  # hidden 3D-style points are flagged
        # points moved to the far side's outline: face pixels inward, background a few pixels outward
        sign = 1.0 if b == 1 else -1.0
        for j in far:
            if moved[j] > 1.0 and 2 <= j <= 14:
                x, y = lm2d[b, j].round().long().tolist()
                assert face[b, y, min(max(x - int(sign) * 1, 0), 111)] > 0, (b, j)
                assert face[b, y, min(max(x + int(sign) * 4, 0), 111)] == 0, (b, j)


def test_marching_is_differentiable_in_the_chosen_point(face_model, face_marching):
    r, out, rot, trans, shapes = _posed(face_model, [(0, 40, 0)])
    verts = out.vertices_cam.detach().double().requires_grad_(True)
    pts, chosen = face_marching.silhouette(verts, rot.double(), trans.double(), r)
    assert pts.shape == (1, len(face_marching.line_of), 2) and chosen.shape == (1, len(face_marching.line_of))
    pts[..., 0].sum().backward()
    assert torch.isfinite(verts.grad).all() and verts.grad.abs().sum() > 0
    # the chosen points are points of the mesh: moving the mesh right moves them right, not up
    g = verts.grad[0].sum(0)
    assert float(g[0]) > 0 and abs(float(g[1])) < 1e-6 * float(g[0])
    # the same points for a moved mesh follow it exactly
    moved = face_marching.points_at(out.vertices_cam + torch.tensor([0.05, 0.0, 0.0]), rot, trans, r, chosen)
    assert (moved[..., 0] > pts.detach()[..., 0].float()).all()


def test_marching_over_the_head_reaches_beyond_the_face_mesh(face_model):
    from pyfaid.synth.contour import marching_for
    from pyfaid.synth.scene import SceneRenderer
    from pyfaid.render import Renderer, camera as cam_mod

    m = marching_for(face_model)
    if m.context is None:
        pytest.skip("no head context for this face model")
    ctx_points = (m.edge_a >= m.num_face) & m.valid
    assert ctx_points.any()  # some lines continue on the head around the face
    assert not ctx_points[[m.line_of[j] for j in (6, 7, 8, 9, 10)]].any()  # not under the chin
    # the head's points follow a face exactly as the rendered context does
    r, out, rot, trans, shapes = _posed(face_model, [(5, 30, 0)])
    shapes = shapes + 0.02 * torch.randn_like(shapes)
    verts = cam_mod.to_camera(cam_mod.apply_pose(shapes, rot, trans), r.camera_distance)
    ours = m._context_points(verts, rot, trans, r.camera_distance)
    world = SceneRenderer(face_model, Renderer(112)).ctx.pose(m.context.follow(shapes, face_model.mean_shape), rot, trans,
                                                             rot)
    ref = cam_mod.to_camera(world, r.camera_distance)[:, m.ctx_rows]
    assert torch.allclose(ours, ref, atol=1e-5)


def test_marching_poses_only_the_vertices_its_lines_use(face_model):
    """posed_points gathers the lines' face vertices (and the context's) only: the same points, and
    the same gradients to the mesh, as gathering from the whole mesh with the context appended."""
    from pyfaid.synth.contour import marching_for

    m = marching_for(face_model)
    r, out, rot, trans, shapes = _posed(face_model, [(5, 30, 0)])
    verts = out.vertices_cam.detach().requires_grad_(True)
    ours = m.posed_points(verts, rot, trans, r.camera_distance)
    full = verts if not len(m.ctx_rows) else torch.cat([verts, m._context_points(verts, rot, trans, r.camera_distance)], 1)
    w = m.weight.float().reshape(1, -1, 1)
    ref = full[:, m.edge_a.reshape(-1)] * (1 - w) + full[:, m.edge_b.reshape(-1)] * w
    assert torch.equal(ours, ref)
    g = torch.randn_like(ours)
    (grad_ours,) = torch.autograd.grad(ours, verts, g)
    (grad_ref,) = torch.autograd.grad(ref, verts, g)
    assert torch.equal(grad_ours, grad_ref)


def test_landmark_conventions_in_items(batch):
    _, b = batch
    assert torch.equal(b["landmarks_3d"], b["landmarks"])
    assert b["landmark_3d_visible"].dtype == torch.bool and b["landmark_3d_visible"].shape == (4, 68)
    same = [j for j in range(68) if j >= 17 and j not in (17, 18, 25, 26)]
    assert torch.equal(b["landmarks_2d"][:, same], b["landmarks"][:, same].float())
    moved = (b["landmarks_2d"] - b["landmarks"]).norm(dim=-1)
    yaw = b["labels"]["angles"][:, 1].abs()
    # the most turned face's jaw moves further than the least turned one's
    assert moved[yaw.argmax(), :17].mean() > moved[yaw.argmin(), :17].mean()


def test_fixed_yaw_option(face_model):
    ds = SyntheticFaces(seed=3, length=4, face_model=face_model, image_size=48, yaw=60.0)
    yaw = np.degrees(ds.batch([0, 1])["labels"]["angles"][:, 1].numpy())
    assert np.allclose(np.abs(yaw), 60.0, atol=1e-4) and yaw[0] * yaw[1] < 0


# ------------------------------------------------------------------------- pieces
def test_alignment_framing_puts_the_five_points_on_the_template(face_model):
    from pyfaid.synth.alignment import TEMPLATE_224, AlignmentJitter, five_points, umeyama

    ds = SyntheticFaces(seed=0, length=50, face_model=face_model, framing="exact")
    c = torch.from_numpy(np.stack([ds.sample_coeffs(i) for i in range(10)]))
    p5 = five_points(ds.renderer.project_landmarks(face_model, c).numpy().astype(np.float64))
    for k in range(10):
        m = umeyama(p5[k], TEMPLATE_224)  # what align_crop would do with perfect points
        assert np.allclose(m[:, :2], np.eye(2), atol=5e-3) and np.abs(m[:, 2]).max() < 0.6, m
    # the MTCNN framing departs from that by the sampled residual, mirrored for turned faces
    table = np.array([[10.0, 0.0, 0.02, 0.05, 3.0, -2.0]] * 20)
    jit = AlignmentJitter(table, centred=False)
    rng = np.random.default_rng(0)
    assert np.allclose(jit.sample(rng, 10.0), [0.02, 0.05, 3.0, -2.0])
    assert np.allclose(jit.sample(rng, -10.0), [-0.02, 0.05, -3.0, -2.0])
    assert np.allclose(AlignmentJitter(table).sample(rng, 10.0), 0.0)  # centred: only scatter remains
    assert np.allclose(AlignmentJitter(np.zeros((0, 6))).sample(rng, 30.0), 0.0)


def test_alignment_table_file_roundtrip(tmp_path):
    from pyfaid.synth.alignment import RESIDUALS_PATH, AlignmentJitter, read_table, write_table

    table = np.random.default_rng(0).normal(size=(5, 6))
    path = str(tmp_path / "table.json")
    write_table(table, {"faces": 5}, path)
    got, meta = read_table(path)
    assert meta == {"faces": 5} and got.dtype == np.float64
    assert np.array_equal(got, [[float(f"{v:.4g}") for v in r] for r in table])
    shipped, _ = read_table(RESIDUALS_PATH)  # the table shipped with the package
    assert shipped.shape[1] == 6 and len(AlignmentJitter()) == len(shipped) > 0


def test_photo_effects_strength_zero_is_identity_and_deterministic():
    from pyfaid.synth.photo import apply_effects, sample_effects

    img = np.random.default_rng(0).uniform(0, 1, (32, 32, 3)).astype(np.float32)
    fx = sample_effects(np.random.default_rng(1), 32, strength=0.0)
    assert np.abs(apply_effects(img, fx) / 255.0 - img).max() <= 0.5 / 255 + 1e-6
    a = apply_effects(img, sample_effects(np.random.default_rng(2), 32))
    b = apply_effects(img, sample_effects(np.random.default_rng(2), 32))
    assert a.dtype == np.uint8 and np.array_equal(a, b)
    with pytest.raises(ValueError, match="settings are for"):
        apply_effects(img[:16], fx)


def test_context_follows_the_face(face_model):
    from pyfaid.synth.context import load_context
    from pyfaid.render.camera import euler_rotation

    ctx = load_context(face_model)
    mean = face_model.mean_shape
    same = ctx.follow(mean[None], mean)
    assert torch.allclose(same[0], torch.from_numpy(ctx.vertices), atol=1e-5)
    # a wider face (x scaled) widens the head; the seam vertices follow the face's boundary
    wide = mean * torch.tensor([1.1, 1.0, 1.0])
    moved = ctx.follow(wide[None], mean)[0]
    near = ctx.seam > 0.9
    expected = torch.from_numpy(ctx.vertices[near]) * torch.tensor([1.1, 1.0, 1.0])
    assert (moved[torch.from_numpy(near)] - expected).abs().max() < 0.02
    # posing: identity rotations change nothing; the head part turns with the face
    eye = torch.eye(3)[None]
    v = torch.from_numpy(ctx.vertices)[None]
    assert torch.allclose(ctx.pose(v, eye, torch.zeros(1, 3), eye), v, atol=1e-6)
    rot = euler_rotation(torch.tensor([[0.0, 0.5, 0.0]]))
    posed = ctx.pose(v, rot, torch.zeros(1, 3), eye)[0]
    head = torch.from_numpy(ctx.head_weight == 1.0)
    assert torch.allclose(posed[head], (v[0] @ rot[0].T)[head], atol=1e-5)


def test_skin_painter_is_reproducible(face_model):
    from pyfaid.synth.skin import APPEARANCE_LABELS, HAIR_COLOURS, SkinPainter

    sp = SkinPainter(face_model)
    base = face_model.mean_tex.numpy()
    a, la = sp.paint(base, np.random.default_rng(3), HAIR_COLOURS[1], male=1.0, age=0.8)
    b, lb = sp.paint(base, np.random.default_rng(3), HAIR_COLOURS[1], male=1.0, age=0.8)
    c, _ = sp.paint(base, np.random.default_rng(4), HAIR_COLOURS[1], male=1.0, age=0.8)
    assert np.array_equal(a, b) and la == lb and not np.array_equal(a, c)
    assert set(la) == set(APPEARANCE_LABELS)
    assert a.shape == base.shape and a.dtype == np.float32 and a.min() >= 0 and a.max() <= 1


def test_skin_tones_follow_the_monk_scale(face_model):
    from pyfaid.synth.skin import _LUMA, HAIR_COLOURS, MONK_SKIN_TONES, SkinPainter, monk_colour

    assert np.allclose(monk_colour(0), MONK_SKIN_TONES[0]) and np.allclose(monk_colour(9), MONK_SKIN_TONES[9])
    assert np.allclose(monk_colour(4.5), (MONK_SKIN_TONES[4] + MONK_SKIN_TONES[5]) / 2)
    sp = SkinPainter(face_model)
    base = face_model.mean_tex.numpy()
    for position in (0.0, 4.0, 9.0):
        a = sp._skin_tone(np.clip(base, 0, 1), np.random.default_rng(1), position)
        ratio = a[sp._ref_idx].mean(0) / monk_colour(position)
        assert np.all((ratio > 0.7 * 0.9) & (ratio < 0.92 * 1.1)), (position, ratio)
    light, _ = sp.paint(base, np.random.default_rng(2), HAIR_COLOURS[1], tone=1.0)
    dark, _ = sp.paint(base, np.random.default_rng(2), HAIR_COLOURS[1], tone=8.0)
    assert (light[sp._ref_idx] @ _LUMA).mean() > 2 * (dark[sp._ref_idx] @ _LUMA).mean()


def test_mouth_inside_has_teeth_above_and_the_tongue_below(face_model):
    from pyfaid.synth.skin import _LUMA, HAIR_COLOURS, SkinPainter

    sp = SkinPainter(face_model)
    a, _ = sp.paint(face_model.mean_tex.numpy(), np.random.default_rng(5), HAIR_COLOURS[1], tone=6.0)
    inside = sp.mouth * (1 - sp.lips) > 0.9
    upper_front = inside & (sp.mouth_open_t < 0.1) & (sp.mouth_depth > 0.012) & (sp.mouth_depth < 0.04)
    tongue = inside & (sp.mouth_open_t > 0.7) & (sp.mouth_depth > 0.04)
    assert upper_front.sum() > 20 and tongue.sum() > 20
    teeth, ton = a[upper_front], a[tongue]
    assert (teeth @ _LUMA).mean() > 1.5 * (ton @ _LUMA).mean()  # bright teeth, a darker tongue
    assert (ton[:, 0] > ton[:, 1] * 1.3).mean() > 0.8  # the tongue is red
    # the upper inner lip's landmarks stay with the upper lip when the jaw opens, the lower ones go
    names = face_model.labels["exp_target_names"]
    w = torch.zeros(len(names), dtype=torch.float64)
    w[names.index("jawOpen")] = 1.0
    exp = (face_model.labels["exp_from_target"].double() @ w).float()[None]
    moved = face_model.shape(torch.zeros(1, face_model.n_id), exp)[0] - face_model.mean_shape
    dy = moved[face_model.landmark_idx, 1]
    assert (dy[61:64] > -0.03).all() and (dy[65:68] < -0.2).all()


def test_expressions_and_eyes_the_generator_makes(face_model):
    from pyfaid.synth.sampling import EXPRESSIONS

    ds = SyntheticFaces(seed=4, length=200, face_model=face_model, image_size=48)
    names = face_model.labels["exp_target_names"]
    to_target = face_model.labels["exp_to_target"].double().numpy()
    w = np.stack([to_target @ ds.sample_coeffs(i)[face_model.layout.slice("exp")].astype(np.float64)
                  for i in range(120)])
    jaw, smile = w[:, names.index("jawOpen")], w[:, [names.index("mouthSmileLeft"), names.index("mouthSmileRight")]].mean(1)
    assert (jaw > 0.3).mean() > 0.1 and (smile > 0.4).mean() > 0.2  # open mouths and smiles are common
    assert ((jaw > 0.05) & (smile > 0.4)).mean() > 0.05  # toothy smiles and laughs
    eyes = [names.index("eyeWideLeft"), names.index("eyeWideRight")]
    assert (np.abs(np.delete(w, eyes, axis=1)).max(1) < 0.05).mean() > 0.1  # and some neutral faces
    assert {"smile", "toothy_smile", "laugh", "shout", "talk", "frown"} == set(EXPRESSIONS)
    # the eyes: larger and more open than the identity basis alone draws them, per (seed, index)
    off = np.stack([ds._eye_proportions(np.random.default_rng(i)) for i in range(20)])
    assert np.abs(off).sum(1).min() > 0 and np.array_equal(off[3], ds._eye_proportions(np.random.default_rng(3)))


# ------------------------------------------------------------------------- cache
def test_cache_round_trip_resume_and_errors(face_model, tmp_path):
    from pyfaid.data.registry import build_dataset, parse_spec

    root = str(tmp_path / "cache")
    meta = write_cache(root, 10, image_size=48, seed=7, shard_size=4, batch_size=4, progress=False,
                       face_model=face_model, colors=True)
    assert meta["n"] == 10 and sorted(os.listdir(root)) == ["meta.json", "shard_00000", "shard_00001", "shard_00002"]
    ds = SyntheticFaces(seed=7, length=10, image_size=48, face_model=face_model)
    cache = CachedFaces(root, with_vertices=True, face_model=face_model)
    assert len(cache) == 10 and cache.image_size == 48
    # a shard as it was rendered (the same batch): the stored pictures are the generated ones
    got, ref = cache.batch([0, 1, 2, 3]), ds.batch([0, 1, 2, 3])
    for key in ("image", "clean", "face_mask", "occluder_mask", "mask", "coeffs", "landmarks", "landmarks_2d",
                "landmarks_3d", "landmark_visible", "landmark_3d_visible", "index"):
        assert torch.equal(got[key], ref[key].to(got[key].dtype)), key
    assert torch.allclose(got["vertices"], ref["vertices"], atol=1e-4)
    assert (got["colors"] - ref["colors"]).abs().max() <= 0.5 / 255 + 1e-6
    for name, v in ref["labels"].items():
        assert torch.equal(got["labels"][name], v.float()), name
    # across shards and out of order: the same items (up to batch-composition rounding)
    got, ref = cache.batch([9, 4, 0]), ds.batch([9, 4, 0])
    assert torch.equal(got["index"], torch.tensor([9, 4, 0])) and torch.equal(got["coeffs"], ref["coeffs"])
    for key in ("image", "clean", "mask"):
        assert float((got[key] - ref[key]).abs().mean()) < 2e-3, key
    assert float((got["landmark_visible"] != ref["landmark_visible"]).float().mean()) < 0.02
    item = cache[5]
    assert set(item) >= {"image", "clean", "mask", "face_mask", "occluder_mask", "coeffs", "vertices", "colors",
                         "landmarks", "landmarks_2d", "landmarks_3d", "landmark_visible", "landmark_3d_visible",
                         "index", "labels"}
    # resume: a lost shard is rendered again, the finished ones are left alone
    mtime = os.path.getmtime(os.path.join(root, "shard_00000", "image.npy"))
    import shutil

    shutil.rmtree(os.path.join(root, "shard_00001"))
    with pytest.raises(ValueError, match="unfinished"):
        CachedFaces(root)
    assert len(CachedFaces(root, allow_partial=True)) == 6
    write_cache(root, 10, image_size=48, seed=7, shard_size=4, batch_size=4, progress=False,
                face_model=face_model, colors=True)
    assert os.path.getmtime(os.path.join(root, "shard_00000", "image.npy")) == mtime
    assert torch.equal(CachedFaces(root).batch([5])["image"], cache.batch([5])["image"])
    # other settings in the same folder are refused; nothing already there is touched
    with pytest.raises(ValueError, match="other settings"):
        write_cache(root, 10, image_size=48, seed=8, shard_size=4, progress=False, face_model=face_model)
    with open(os.path.join(root, "meta.json")) as fh:
        assert json.load(fh)["dataset"]["seed"] == 7
    # the registry serves it
    kind, folder = parse_spec(f"cached:{root}")
    assert isinstance(build_dataset(kind, folder, image_size=48, face_model=face_model), CachedFaces)
    with pytest.raises(ValueError, match="--size"):
        build_dataset(kind, folder, image_size=64, face_model=face_model)
    with pytest.raises(ValueError, match="needs a folder"):
        parse_spec("cached")
    with pytest.raises(FileNotFoundError, match="not a cache folder"):
        CachedFaces(str(tmp_path))
    with pytest.raises(ValueError, match="--n"):
        write_cache(str(tmp_path / "x"), 0, progress=False)
    with pytest.raises(IndexError):
        cache[10]


def test_cache_command_line(tmp_path):
    from pyfaid.data.__main__ import main

    root = str(tmp_path / "c")
    assert main(["cache", "--out", root, "--n", "3", "--size", "32", "--shard", "2", "--batch", "2"]) == 0
    assert len(CachedFaces(root)) == 3
    assert main(["cache", "--out", root, "--n", "3", "--size", "48"]) == 2  # other settings: refused


def test_loader_workers_start_after_the_parent_used_opencv_threads():
    """Training with ``data.num_workers > 0``: the workers start and generate even when the training
    process had used OpenCV's thread pool before forking them (resizing the pool inside a forked
    worker waits forever for threads the fork did not copy; the trainer sets it before the fork)."""
    import cv2

    from pyfaid.data.sampler import init_worker, prepare_workers

    big = np.random.default_rng(0).random((1500, 1500, 3), dtype=np.float32)
    threads = cv2.getNumThreads()
    try:
        cv2.setNumThreads(2)
        for _ in range(2):
            cv2.GaussianBlur(big, (31, 31), 5)  # the parent's pool has run

        class Blurs(torch.utils.data.Dataset):
            def __len__(self):
                return 2

            def __getitem__(self, i):
                return float(cv2.GaussianBlur(big[:300, :300], (15, 15), 3).sum()), cv2.getNumThreads()

        prepare_workers()
        loader = torch.utils.data.DataLoader(Blurs(), num_workers=1, worker_init_fn=init_worker, timeout=60,
                                             multiprocessing_context="fork")
        got = list(loader)
        assert len(got) == 2 and all(int(n) == 1 for _, n in got)  # one OpenCV thread in the worker
    finally:
        cv2.setNumThreads(threads)
