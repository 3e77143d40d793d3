"""MTCNN face alignment onto the 224 template."""

import warnings

import numpy as np
import pytest
import torch

from pyfaid.encoders import TEMPLATE_224, FaceNotFoundError, align_face, align_faces
from pyfaid.encoders.align import _MaxPool2Ceil, _mtcnn

skimage_data = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def astronaut():
    return skimage_data.astronaut()


@pytest.fixture(scope="module")
def batch_result(astronaut):
    noise = np.random.default_rng(0).integers(0, 256, (200, 240, 3), dtype=np.uint8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = align_faces([astronaut, noise, np.ascontiguousarray(astronaut[:, ::-1])])
    return res, caught


def test_align_astronaut_eyes_on_template(batch_result):
    res, _ = batch_result
    crops, transforms, landmarks = res  # unpacks as a 3-tuple
    assert crops.shape == (3, 3, 224, 224) and crops.dtype == torch.float32
    assert 0 <= float(crops.min()) and float(crops.max()) <= 1
    for i in (0, 2):
        assert transforms[i].shape == (2, 3) and landmarks[i].shape == (5, 2)
        crop = (crops[i].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        boxes, probs, points = _mtcnn("cpu").detect(crop, landmarks=True)
        assert boxes is not None
        eyes = np.asarray(points[0], np.float64)[:2]
        err = np.linalg.norm(eyes - TEMPLATE_224[:2], axis=1)
        assert err.max() < 5.0, err
        # the transform maps the detected landmarks near the template
        mapped = landmarks[i] @ transforms[i][:, :2].T + transforms[i][:, 2]
        assert np.abs(mapped[:2] - TEMPLATE_224[:2]).max() < 5.0


def test_align_no_face_marks_only_that_image(batch_result):
    res, caught = batch_result
    assert res.errors[1] is not None and "image 1" in res.errors[1]
    assert res.transforms[1] is None and res.landmarks5[1] is None
    assert res.valid.tolist() == [True, False, True]
    assert float(res.crops[1].abs().sum()) == 0.0
    assert any("image 1" in str(w.message) for w in caught)


def test_align_tensor_input_and_single(astronaut):
    t = torch.from_numpy(astronaut).permute(2, 0, 1)[None].float() / 255.0
    res = align_faces(t, with_dlib_chips=True)
    assert res.valid.all() and res.dlib_chips.shape == (1, 3, 150, 150)
    crop, m, lm = align_face(astronaut)
    assert crop.shape == (3, 224, 224) and m.shape == (2, 3)
    blank = np.full((120, 160, 3), 128, np.uint8)
    with pytest.raises(FaceNotFoundError, match="blank.png"):
        align_face(blank, name="blank.png")
    with pytest.raises(ValueError, match="HxWx3"):
        align_faces([np.zeros((10, 10), np.uint8)])


def test_template_frames_faces_like_the_training_data():
    """The 5 template points sit where the default model's frontal render (zero pose and
    translation: the centre of the synthetic training data) puts its eye centres, nose tip and
    mouth corners, so aligned photos look like the faces the model trains on."""
    from pyfaid import facemodel
    from pyfaid.render import Renderer

    fm = facemodel.load("default")
    out = Renderer(224)(fm, fm.layout.zeros(1))
    lm = out.landmarks_px[0].double().numpy()
    five = np.stack([lm[36:42].mean(0), lm[42:48].mean(0), lm[30], lm[48], lm[54]])
    assert np.abs(five - TEMPLATE_224).max() < 3.0, five - TEMPLATE_224


@pytest.mark.parametrize("size", [(9, 12), (10, 13), (11, 11), (1, 2), (6, 8)])
def test_pnet_pool_equals_max_pool2d(size):
    """MTCNN's first network pools with :class:`_MaxPool2Ceil`: bit-identical to MaxPool2d(2, 2, ceil_mode=True)."""
    x = torch.randn(2, 10, *size)
    x[0, 0, 0, 0] = float("nan")  # NaN propagates as in PyTorch's pooling
    ref = torch.nn.MaxPool2d(2, 2, ceil_mode=True)(x)
    assert torch.equal(_MaxPool2Ceil()(x).nan_to_num(7.0), ref.nan_to_num(7.0))
    assert isinstance(_mtcnn("cpu").pnet.pool1, _MaxPool2Ceil)
