"""pyfaid.metrics against known values."""

import math

import numpy as np
import pytest
import torch

from pyfaid import metrics


def _images(b=2, h=48, w=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    # smooth-ish images so SSIM is meaningful
    base = torch.rand(b, 3, h // 8, w // 8, generator=g)
    return torch.nn.functional.interpolate(base, size=(h, w), mode="bilinear", align_corners=False)


def test_identical_images():
    a = _images()
    assert torch.isinf(metrics.psnr(a, a)).all()
    assert torch.allclose(metrics.ssim(a, a), torch.ones(2), atol=1e-5)
    m = torch.zeros(2, 1, 48, 48)
    m[:, :, 10:30, 12:40] = 1
    assert torch.isinf(metrics.psnr(a, a, m)).all()
    assert torch.allclose(metrics.ssim(a, a, m), torch.ones(2), atol=1e-5)


@pytest.mark.parametrize("sigma", [0.01, 0.05, 0.1])
def test_gaussian_noise_psnr(sigma):
    g = torch.Generator().manual_seed(1)
    a = torch.full((2, 3, 64, 64), 0.5)  # mid grey: no clipping of the noise
    b = a + sigma * torch.randn(a.shape, generator=g)
    expected = 10 * math.log10(1 / sigma**2)
    assert expected == pytest.approx(metrics.psnr_from_sigma(sigma))
    got = metrics.psnr(b, a)
    assert torch.allclose(got, torch.full_like(got, expected), atol=0.15), (got, expected)
    # the same noise inside a mask only
    m = torch.zeros(2, 1, 64, 64)
    m[..., 8:56, 8:56] = 1
    c = torch.where(m > 0, b, a)
    assert torch.allclose(metrics.psnr(c, a, m), torch.full((2,), expected), atol=0.15)
    # whole-image PSNR is higher because the clean outside pixels dilute the error
    frac = 48 * 48 / 64 / 64
    assert torch.allclose(metrics.psnr(c, a), torch.full((2,), expected - 10 * math.log10(frac)), atol=0.15)


def test_psnr_matches_skimage():
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    a = _images(b=1, h=64, w=64)
    b = (a + 0.03 * torch.randn_like(a)).clamp(0, 1)
    ref = peak_signal_noise_ratio(a[0].numpy().astype(np.float64), b[0].numpy().astype(np.float64), data_range=1.0)
    assert metrics.psnr(b, a).item() == pytest.approx(ref, abs=1e-3)
    s_ref = structural_similarity(
        a[0].permute(1, 2, 0).numpy(), b[0].permute(1, 2, 0).numpy(), data_range=1.0,
        channel_axis=2, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
    )
    assert metrics.ssim(b, a).item() == pytest.approx(s_ref, abs=2e-2)
    assert metrics.ssim(b, a).item() < 0.99


def test_masked_metrics_ignore_outside_pixels():
    a = _images(b=2, h=64, w=64)
    m = torch.zeros(2, 1, 64, 64)
    m[..., 16:48, 16:48] = 1
    noise = 0.05 * torch.randn_like(a)
    b = (a + noise).clamp(0, 1)
    # garbage outside a wide band around the mask: masked PSNR exactly unchanged,
    # masked SSIM unchanged too (the 11x11 windows of inside pixels do not reach it)
    far = torch.ones_like(m)
    far[..., 10:54, 10:54] = 0
    c = torch.where(far > 0, torch.rand_like(b), b)
    assert torch.allclose(metrics.psnr(c, a, m), metrics.psnr(b, a, m))
    assert torch.allclose(metrics.ssim(c, a, m), metrics.ssim(b, a, m), atol=1e-6)
    # and PSNR ignores even the immediately adjacent outside pixels
    d = torch.where(m > 0, b, 1 - a)
    assert torch.allclose(metrics.psnr(d, a, m), metrics.psnr(b, a, m))
    # whereas whole-image numbers change
    assert (metrics.psnr(c, a) < metrics.psnr(b, a) - 1).all()
    assert (metrics.ssim(c, a) < metrics.ssim(b, a) - 0.05).all()
    # empty mask: defined (nan), not a crash
    empty = torch.zeros_like(m)
    assert torch.isnan(metrics.psnr(b, a, empty)).all()
    assert torch.isnan(metrics.ssim(b, a, empty)).all()


def test_bad_input():
    a = _images()
    with pytest.raises(ValueError, match="differ in shape"):
        metrics.psnr(a, a[:1])
    with pytest.raises(ValueError, match="mask"):
        metrics.psnr(a, a, torch.ones(2, 1, 10, 10))
    with pytest.raises(ValueError, match="11x11"):
        metrics.ssim(a[..., :8, :8], a[..., :8, :8])


class _FakeEncoder:
    """A fixed linear embedding: enough to test the cosine plumbing, not an identity model."""

    def __init__(self):
        self.w = torch.randn(3, 16, generator=torch.Generator().manual_seed(3))

    def embed(self, x):
        return x.mean(dim=(2, 3)) @ self.w


def test_id_similarity_plumbing():
    a = _images()
    enc = _FakeEncoder()
    s = metrics.id_similarity(a, a, enc)
    assert torch.allclose(s, torch.ones(2), atol=1e-5)
    out = metrics.image_metrics(a, a.flip(0), torch.ones(2, 1, 48, 48), {"fake": enc})
    assert set(out) == {"psnr", "ssim", "psnr_mask", "ssim_mask", "id_fake"}


def test_id_similarity_dlib():
    enc = metrics.identity_encoders(("dlib",))
    assert "dlib" in enc, "the default dlib identity encoder must always be available"
    from skimage import data

    img = torch.from_numpy(data.astronaut()).permute(2, 0, 1).float()[None] / 255
    img = torch.nn.functional.interpolate(img, size=(224, 224), mode="bilinear", align_corners=False)
    same = metrics.id_similarity(img, img, "dlib")
    assert same.item() == pytest.approx(1.0, abs=1e-4)
    other = metrics.id_similarity(img, torch.rand_like(img), "dlib")
    assert other.item() < same.item() - 0.05
