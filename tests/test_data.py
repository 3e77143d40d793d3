"""Tests for pyfaid.data: occlusion synthesis and the synthetic face dataset."""

import pytest
import torch

from pyfaid.data import OCCLUDER_KINDS, SyntheticFaces, occlude


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
    ds, _ = batch
    item = ds[3]
    V = face_model.num_vertices
    assert item["image"].shape == (3, 112, 112) and item["image"].dtype == torch.float32
    assert item["clean"].shape == (3, 112, 112)
    assert item["mask"].shape == (1, 112, 112)
    assert item["coeffs"].shape == (face_model.layout.size,)
    assert item["vertices"].shape == (V, 3) and item["colors"].shape == (V, 3)
    assert item["landmarks"].shape == (68, 2)
    for key in ("image", "clean"):
        assert 0 <= item[key].min() and item[key].max() <= 1
    labels = item["labels"]
    assert labels["id"].shape == (face_model.n_id,)
    assert labels["exp"].shape == (face_model.n_exp,)
    assert labels["tex"].shape == (face_model.n_tex,)
    assert labels["skin_tone"].dim() == 0 and 0 < float(labels["skin_tone"]) < 1
    assert torch.equal(labels["id"], item["coeffs"][: face_model.n_id])
    # Phenotype labels of the default model: slider values recovered from the identity.
    names = ds.label_names()
    if "id_to_target" in face_model.labels:
        assert labels["id_targets"].shape == (len(names["id_targets"]),)
        expected = face_model.labels["id_to_target"].float() @ labels["id"]
        assert torch.allclose(labels["id_targets"], expected, atol=1e-5)
        for name in names["id_targets"]:
            if name.startswith("macro/"):
                assert labels["macro_" + name[6:]].dim() == 0


def test_deterministic_and_batch_equals_items(face_model, batch):
    ds, b = batch
    again = SyntheticFaces(seed=5, length=100, face_model=face_model, image_size=112)
    # The same request gives bit-identical results.
    b2 = again.batch([3, 10, 11, 42])
    for key in ("image", "clean", "mask", "coeffs", "vertices", "colors"):
        assert torch.equal(b2[key], b[key]), key
    # An item alone equals the same item in a batch up to float rounding of batched matmuls
    # (which may flip a handful of silhouette pixels).
    item = again[10]
    assert torch.equal(item["coeffs"], b["coeffs"][1])
    assert torch.allclose(item["vertices"], b["vertices"][1], atol=1e-5)
    for key in ("image", "clean", "mask"):
        d = (item[key] - b[key][1]).abs()
        assert float(d.mean()) < 1e-3 and float(d.max()) < 0.1, (key, float(d.mean()), float(d.max()))
    other = SyntheticFaces(seed=6, length=100, face_model=face_model, image_size=112)[10]
    assert not torch.equal(other["coeffs"], item["coeffs"])
    assert not torch.equal(b["coeffs"][1], b["coeffs"][2])


def test_mask_is_face_minus_occluders(batch):
    _, b = batch
    face, occ, mask = b["face_mask"], b["occluder_mask"], b["mask"]
    assert torch.equal(mask, face * (1 - occ))
    assert (face.mean((1, 2, 3)) > 0.05).all(), "every sample shows a face"
    assert occ.sum() > 0
    # Occluders change the picture where they are; elsewhere clean == image (up to AA rims).
    diff = (b["image"] - b["clean"]).abs().amax(1, keepdim=True)
    assert ((diff > 0.02) & (occ > 0.5)).sum() > 0.5 * occ.sum()


def test_occlusion_off_and_clean_image_shared(face_model, batch):
    _, b = batch
    ds = SyntheticFaces(seed=5, length=100, face_model=face_model, image_size=112, occlusion=False)
    nb = ds.batch([3, 10, 11, 42])
    assert torch.equal(nb["image"], nb["clean"])
    assert torch.equal(nb["clean"], b["clean"])
    assert nb["occluder_mask"].sum() == 0
    assert torch.equal(nb["mask"], nb["face_mask"])


def test_face_pixels_differ_from_background(batch):
    _, b = batch
    clean, face = b["clean"], b["face_mask"]
    # The face silhouette is where the renderer put it: landmarks fall inside the image and
    # mostly on face pixels.
    lm = b["landmarks"].round().long().clamp(0, 111)
    on_face = torch.stack([face[i, 0, lm[i, :, 1], lm[i, :, 0]] for i in range(len(lm))])
    assert on_face.float().mean() > 0.7
    assert clean.std() > 0.05


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
