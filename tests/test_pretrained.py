"""The shipped pretrained model (``pyfaid/assets/pretrained/faid.pt`` and its card ``faid.json``).

These tests run whenever the package ships the model: its files match the card's hashes, every file
stays within the size limit, it loads into the model its config describes, and it reconstructs
held-out synthetic faces within the landmark error its card states.
"""

import json
import os

import pytest
import torch

from pyfaid.checkpoint import MAX_FILE_BYTES, PRETRAINED, load_model, pretrained_available, sha256

pytestmark = pytest.mark.skipif(not pretrained_available(), reason="this checkout ships no pretrained model")

CARD = os.path.splitext(PRETRAINED)[0] + ".json"


@pytest.fixture(scope="module")
def card():
    with open(CARD) as f:
        return json.load(f)


def test_card_hashes_and_sizes(card):
    folder = os.path.dirname(PRETRAINED)
    assert set(card["sha256"]) == {card["file"], *card["parts"]}
    for name, digest in card["sha256"].items():
        path = os.path.join(folder, name)
        assert os.path.getsize(path) <= MAX_FILE_BYTES, name
        assert sha256(path) == digest, f"{name} does not match its card"
    assert card["dtype"] == "float16"
    for key in ("data", "command", "limits", "metrics"):
        assert card.get(key), f"the card must state {key!r}"


def test_loads_fp16_weights(card):
    raw = torch.load(PRETRAINED, map_location="cpu", weights_only=False)
    assert all(v.dtype != torch.float32 for v in raw["model"].values() if torch.is_tensor(v))
    model = load_model("pretrained")
    assert model.coarse.landmarks is not None
    assert (model.fine is None) == (not card["config"]["model"]["fine"])
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in model.parameters())


def test_synthetic_landmarks_within_the_card_bound(card):
    """The landmark head on held-out synthetic faces (the training distribution, disjoint seed)."""
    from pyfaid.config import from_dict, replace
    from pyfaid.evaluate.synthetic import held_out_landmarks

    torch.manual_seed(0)
    model = load_model("pretrained")
    cfg = from_dict(card["config"])
    res = held_out_landmarks(model, cfg, n=24, batch_size=12)
    bound = card["metrics"]["test_bound_head68"]
    assert res["head68"] <= bound, f"landmark head NME {res['head68']:.2f}% above the card's bound {bound}%"
    assert res["pose_deg"] <= card["metrics"]["test_bound_pose_deg"]
    # a run that trains on several views per face is scored on the same distinct held-out faces
    views = replace(cfg, data={"synthetic": {**cfg.data.synthetic, "views": 4}})
    assert held_out_landmarks(model, views, n=12, batch_size=12) == held_out_landmarks(model, cfg, n=12, batch_size=12)


def test_reconstruct_returns_head_points_then_fitted_mesh_points():
    """Without fitting ``rec.landmarks`` are the landmark head's (2D-style); after fitting, the fitted
    mesh's 2D-style points (its landmark vertices with the jaw on its outline); ``landmarks_3d`` are
    the 3D-style head's points without fitting (the mesh's landmark vertices when the model has no
    such head) and the fitted mesh's landmark vertices after fitting."""
    import numpy as np
    from skimage import data

    import pyfaid

    photo = data.astronaut()
    net = pyfaid.reconstruct(photo, fit_steps=0)
    assert net.detected_landmarks is not None and net.visibility is not None
    np.testing.assert_allclose(net.landmarks, net.to_photo(net.detected_landmarks), atol=1e-4)
    if net.detected_landmarks_3d is None:  # a model with the 2D-style head only
        np.testing.assert_allclose(net.landmarks_3d, net.model_landmarks, atol=1e-4)
    else:
        np.testing.assert_allclose(net.landmarks_3d, net.to_photo(net.detected_landmarks_3d), atol=1e-4)
    fitted = pyfaid.reconstruct(photo, fit_steps=2)
    np.testing.assert_allclose(fitted.landmarks, fitted.to_photo(fitted.landmarks_2d_crop), atol=1e-4)
    np.testing.assert_allclose(fitted.landmarks[17:], fitted.model_landmarks[17:], atol=1e-4)
    np.testing.assert_allclose(fitted.landmarks_3d, fitted.model_landmarks, atol=1e-4)
    assert fitted.landmarks_3d_xyz.shape == (68, 3) and abs(fitted.landmarks_3d_xyz[:, 2].mean()) < 1e-6
    # the nose tip is nearer the camera than the jaw's ends
    assert fitted.landmarks_3d_xyz[30, 2] > fitted.landmarks_3d_xyz[[0, 16], 2].max()
    # the astronaut's face: the head's points and the fitted mesh's agree to a few pixels
    assert np.linalg.norm(net.landmarks - fitted.landmarks, axis=1).mean() < 8


def test_fine_stage_beats_the_coarse_render_by_the_card_bound(card):
    """The shipped fine stage on held-out occluded synthetic faces (clean image as the reference):
    its render is above the coarse render by at least the card's bound, on the visible face pixels
    and over the whole face (occluded pixels included)."""
    from pyfaid.config import from_dict
    from pyfaid.evaluate import held_out_psnr

    if not card["config"]["model"]["fine"]:
        pytest.skip("the shipped model has no fine stage")
    torch.manual_seed(0)
    model = load_model("pretrained")
    res = held_out_psnr(model, from_dict(card["config"]), n=8, batch_size=4)
    bound = card["metrics"]["test_bound_fine_gain_db"]
    gain = res["fine_visible"] - res["coarse_visible"]
    assert gain >= bound, f"fine only {gain:.2f} dB above coarse (card bound {bound} dB): {res}"
    assert res["fine_face"] > res["coarse_face"], res
