"""Several training items per rendered synthetic face (``SyntheticFaces(views=K)``) and the sampler
that keeps a face's items in one batch."""

from __future__ import annotations

import itertools

import pytest
import torch

from pyfaid.data import SyntheticFaces
from pyfaid.data.sampler import ResumableSampler
from pyfaid.synth.views import FACE_KEYS

KW = dict(seed=5, length=400, image_size=48)


def _face_keys_equal(a: dict, i: int, b: dict, j: int) -> list:
    """Face-level keys on which item ``i`` of ``a`` and item ``j`` of ``b`` differ."""
    bad = [k for k in FACE_KEYS if k != "labels" and not torch.equal(a[k][i], b[k][j])]
    return bad + [f"labels.{k}" for k in a["labels"] if not torch.equal(a["labels"][k][i], b["labels"][k][j])]


def test_views_show_their_face_with_exact_labels():
    views = SyntheticFaces(views=3, **KW).batch([0, 1, 2, 7])  # face 0 three times, face 2 once
    single = SyntheticFaces(**KW).batch([0, 2])
    for i, j in ((0, 0), (1, 0), (2, 0), (3, 1)):
        assert not _face_keys_equal(views, i, single, j), (i, j)
    assert views["index"].tolist() == [0, 1, 2, 7]
    for k in ("face_mask",):  # the face's render, shared
        assert torch.equal(views[k][0], single[k][0]) and torch.equal(views[k][3], single[k][1])
    # each item has its own occluders and camera, and its masks follow its own occluders
    assert (views["image"][0] - views["image"][1]).abs().mean() > 0.01
    assert (views["clean"][0] - views["clean"][1]).abs().mean() > 0  # another camera
    assert torch.equal(views["mask"], views["face_mask"] * (1 - views["occluder_mask"]))


def test_views_without_camera_share_the_clean_picture():
    kw = dict(KW, camera_effects=0.0)
    views = SyntheticFaces(views=2, **kw).batch([2, 3])
    single = SyntheticFaces(**kw).batch([1])
    assert torch.equal(views["clean"][0], single["clean"][0]) and torch.equal(views["clean"][1], single["clean"][0])
    no_occ = SyntheticFaces(views=2, occlusion=False, **kw).batch([2, 3])
    assert torch.equal(no_occ["image"], no_occ["clean"]) and not no_occ["occluder_mask"].any()


def test_view_items_depend_only_on_seed_and_index():
    ds = SyntheticFaces(views=2, **KW)
    a = ds.batch([4, 5, 9])
    b = ds.batch([9, 5, 4])
    for k in ("image", "clean", "mask", "occluder_mask", "coeffs", "landmarks_2d"):
        assert torch.equal(a[k], b[k].flip(0)), k
    alone = ds.batch([5])
    assert torch.equal(alone["image"][0], a["image"][1]) and torch.equal(alone["coeffs"][0], a["coeffs"][1])


def test_views_must_be_positive():
    with pytest.raises(ValueError, match="`views` must be >= 1"):
        SyntheticFaces(views=0)


def test_sampler_groups_keep_a_faces_items_in_one_batch():
    s = ResumableSampler(30, 6, seed=3, group=3)
    batches = list(itertools.islice(iter(s), 5))  # one epoch
    assert sorted(i for b in batches for i in b) == list(range(30))
    for b in batches:
        faces = [i // 3 for i in b]
        assert faces[0::3] == faces[1::3] == faces[2::3]  # three views of each face, together
    plain = list(itertools.islice(iter(ResumableSampler(30, 6, seed=3)), 5))
    assert plain == list(itertools.islice(iter(ResumableSampler(30, 6, seed=3, group=1)), 5))
    assert plain != batches
    resumed = list(itertools.islice(iter(ResumableSampler(30, 6, seed=3, group=3, start=12)), 3))
    assert resumed == batches[2:5]
    with pytest.raises(ValueError, match="group"):
        ResumableSampler(30, 6, group=0)


def test_sampler_groups_with_a_short_last_block():
    s = ResumableSampler(10, 5, seed=0, group=4)  # blocks [0-3] [4-7] [8, 9]
    epoch = [i for b in itertools.islice(iter(s), 2) for i in b]
    assert sorted(epoch) == list(range(10))
    pos = {i: k for k, i in enumerate(epoch)}
    for start in (0, 4):
        assert [pos[start + d] - pos[start] for d in range(4)] == [0, 1, 2, 3]
