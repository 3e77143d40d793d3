"""Identity encoders: dlib ResNet port (parity with dlib itself), FaceNet loading, the interface."""

import warnings

import numpy as np
import pytest
import torch

from pyfaid.encoders import (
    DlibFaceNet,
    FaceNet,
    FaceNetWeightsNotFound,
    identity_encoder,
)
from pyfaid.encoders.dlib_format import DlibFormatError, read_dlib_net
from pyfaid.encoders.dlib_resnet import dlib_model_path


@pytest.fixture(scope="module")
def net():
    return DlibFaceNet()


def _test_images():
    skimage_data = pytest.importorskip("skimage.data")
    img = skimage_data.astronaut()
    import cv2

    return {
        "astronaut": img,
        "astronaut_flipped": np.ascontiguousarray(img[:, ::-1]),
        "astronaut_darker": np.clip(img.astype(np.float64) * 0.6 + 10, 0, 255).astype(np.uint8),
        "astronaut_brighter_small": cv2.resize(
            np.clip(img.astype(np.float64) * 1.2 + 25, 0, 255).astype(np.uint8), (300, 300),
            interpolation=cv2.INTER_AREA),
        "astronaut_rotated": cv2.warpAffine(
            img, cv2.getRotationMatrix2D((256, 200), 12, 1.0), (512, 512), borderMode=cv2.BORDER_REFLECT),
    }


def _synthetic_faces(n=6):
    """Near-frontal clean synthetic faces, when pyfaid.synth.SyntheticFaces can render here."""
    try:
        from pyfaid.synth import SyntheticFaces

        ds = SyntheticFaces(seed=5, length=n, occlusion=False, max_yaw=10, max_pitch=5, max_roll=5,
                            harsh_light_prob=0, blur_prob=0, noise_prob=0)
        clean = ds.batch(list(range(n)))["clean"]
    except (ImportError, AttributeError, FileNotFoundError, RuntimeError):
        return {}
    return {f"synthetic_{i}": np.ascontiguousarray((c.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
            for i, c in enumerate(clean)}


def test_dlib_parity(net):
    """Our embedding of dlib's chip matches dlib's compute_face_descriptor (cosine >= 0.999)."""
    dlib = pytest.importorskip("dlib")
    det = dlib.get_frontal_face_detector()
    sp = dlib.shape_predictor(str(dlib_model_path("shape_predictor_5_face_landmarks.dat")))
    rec = dlib.face_recognition_model_v1(str(dlib_model_path()))
    cosines = {}
    synthetic = _synthetic_faces()
    for name, img in {**_test_images(), **synthetic}.items():
        dets = det(img, 1)
        if name.startswith("synthetic") and len(dets) == 0:
            continue  # dlib's HOG detector misses some renders; those are not parity cases
        assert len(dets) >= 1, f"dlib found no face in {name}"
        shape = sp(img, dets[0])
        ref = np.asarray(rec.compute_face_descriptor(img, shape))
        chip = dlib.get_face_chip(img, shape, size=150, padding=0.25)
        x = torch.from_numpy(np.ascontiguousarray(chip)).permute(2, 0, 1)[None].float() / 255.0
        with torch.no_grad():
            ours = net(x)[0].double().numpy()
        cosines[name] = float(ours @ ref / np.linalg.norm(ours) / np.linalg.norm(ref))
        np.testing.assert_allclose(ours, ref, atol=1e-4)
    assert min(cosines.values()) >= 0.999, cosines
    assert len(cosines) >= 5
    if synthetic:
        assert sum(k.startswith("synthetic") for k in cosines) >= 3, cosines


def test_dlib_net_structure_and_features(net):
    x = torch.rand(2, 3, 150, 150)
    maps = net.features(x)
    assert [tuple(m.shape[1:]) for m in maps] == [
        (32, 35, 35), (32, 35, 35), (64, 17, 17), (128, 8, 8), (256, 4, 4), (256, 2, 2)]
    e = net(x)
    assert e.shape == (2, 128) and torch.isfinite(e).all()
    torch.testing.assert_close(net.head(maps[-1]), e)
    assert not any(p.requires_grad for p in net.parameters())
    with pytest.raises(ValueError, match="150x150"):
        net(torch.rand(1, 3, 160, 160))


def test_dlib_differentiable(net):
    x = torch.rand(1, 3, 150, 150, dtype=torch.float64, requires_grad=True)
    net64 = net.double()
    try:
        e = net64(x)
        e.sum().backward()
        assert x.grad is not None and x.grad.abs().sum() > 0
        # directional finite difference agrees with autograd
        v = torch.randn_like(x)
        eps = 1e-7
        with torch.no_grad():
            fd = (net64(x + eps * v).sum() - net64(x - eps * v).sum()) / (2 * eps)
        assert abs(float(fd) - float((x.grad * v).sum())) < 1e-3 * max(1.0, abs(float(fd)))
    finally:
        net.float()


def test_dlib_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PYFAID_CACHE", str(tmp_path))
    a = DlibFaceNet()
    files = list(tmp_path.glob("dlib_resnet_*.pt"))
    assert len(files) == 1
    b = DlibFaceNet()  # from the cache
    x = torch.rand(1, 3, 150, 150)
    torch.testing.assert_close(a(x), b(x))
    files[0].write_bytes(b"damaged")  # a broken cache file is rebuilt, not trusted
    c = DlibFaceNet()
    torch.testing.assert_close(a(x), c(x))


def test_dlib_format_errors(tmp_path):
    data = dlib_model_path().read_bytes()
    bad = tmp_path / "truncated.dat"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(DlibFormatError, match="truncated.dat"):
        read_dlib_net(str(bad))
    other = tmp_path / "shape.dat"
    other.write_bytes(dlib_model_path("shape_predictor_5_face_landmarks.dat").read_bytes())
    with pytest.raises(DlibFormatError):
        DlibFaceNet(path=other, cache=False)


def test_identity_encoder_dlib_matches_dlib_on_aligned_crop():
    """The 224 path (MTCNN align -> fixed warp to the chip) stays close to dlib's own pipeline."""
    dlib = pytest.importorskip("dlib")
    from pyfaid.encoders import align_faces

    img = _test_images()["astronaut"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = align_faces([img])
    enc = identity_encoder("dlib")
    x = res.crops.clone().requires_grad_(True)
    e = enc.embed(x)
    assert e.shape == (1, 128)
    torch.testing.assert_close(e.norm(dim=1), torch.ones(1))
    e.sum().backward()
    assert x.grad.abs().sum() > 0  # differentiable w.r.t. the 224 image
    det = dlib.get_frontal_face_detector()
    sp = dlib.shape_predictor(str(dlib_model_path("shape_predictor_5_face_landmarks.dat")))
    rec = dlib.face_recognition_model_v1(str(dlib_model_path()))
    ref = np.asarray(rec.compute_face_descriptor(img, sp(img, det(img, 1)[0])))
    cos = float(e[0].detach().double().numpy() @ ref / np.linalg.norm(ref))
    assert cos > 0.98, cos
    feats = enc.features(res.crops)
    assert len(feats) == 6 and feats[-1].shape == (1, 256, 2, 2)
    with pytest.raises(ValueError, match="224"):
        enc.embed(torch.rand(1, 3, 150, 150))


def test_identity_encoder_unknown_name():
    with pytest.raises(ValueError, match="dlib"):
        identity_encoder("arcface")


def test_facenet_without_weights(monkeypatch):
    pytest.importorskip("facenet_pytorch")
    monkeypatch.delenv("PYFAID_FACENET_WEIGHTS", raising=False)
    with pytest.raises(FaceNetWeightsNotFound, match="PYFAID_FACENET_WEIGHTS"):
        FaceNet()
    with pytest.raises(FaceNetWeightsNotFound, match="does not exist"):
        identity_encoder("facenet", weights="/nonexistent/vggface2.pt")


def test_facenet_loads_state_dict(tmp_path, monkeypatch):
    facenet_pytorch = pytest.importorskip("facenet_pytorch")
    ref = facenet_pytorch.InceptionResnetV1(pretrained=None, classify=False).eval()
    with torch.no_grad():  # make the saved weights distinguishable from a fresh init
        for p in ref.parameters():
            p.add_(0.01 * torch.randn_like(p))
    state = ref.state_dict()
    state["logits.weight"] = torch.zeros(8631, 512)  # the released file carries the classifier
    state["logits.bias"] = torch.zeros(8631)
    path = tmp_path / "vggface2.pt"
    torch.save(state, path)
    monkeypatch.setenv("PYFAID_FACENET_WEIGHTS", str(path))
    fn = FaceNet()
    x = torch.rand(2, 3, 160, 160)
    with torch.no_grad():
        torch.testing.assert_close(fn(x), ref((x * 255 - 127.5) / 128.0), rtol=1e-4, atol=1e-5)
    enc = identity_encoder("facenet", weights=str(path))
    e = enc.embed(torch.rand(1, 3, 224, 224))
    assert e.shape == (1, 512)
    assert len(enc.features(torch.rand(1, 3, 224, 224))) == 4
    bad = tmp_path / "bad.pt"
    torch.save({"conv.weight": torch.zeros(1)}, bad)
    with pytest.raises(ValueError, match="InceptionResnetV1"):
        FaceNet(weights=bad)
