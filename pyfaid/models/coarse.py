"""Coarse model (paper Sec. 3.1): a ResNet regressing the face model's coefficient vector
(Deep3DFaceRecon's 257 numbers for BFM), optionally with a 68-point landmark head."""

from __future__ import annotations

import math
import os
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

from pyfaid import precision

BACKBONES = {"resnet18": torchvision.models.resnet18, "resnet34": torchvision.models.resnet34,
             "resnet50": torchvision.models.resnet50, "mobilenet_v3_large": torchvision.models.mobilenet_v3_large}


def _feature_net(name: str):
    """``(network with its classifier removed, feature size)``."""
    net = BACKBONES[name](weights=None)
    if name.startswith("mobilenet"):
        feat = net.classifier[0].in_features  # pooled features, before the 1280-wide hidden layer
        net.classifier = nn.Identity()
    else:
        feat = net.fc.in_features
        net.fc = nn.Identity()
    return net, feat


class CoarseModel(nn.Module):
    """ResNet backbone -> coefficient vector (``face_model.layout``: id, exp, tex, 3 angles, 27 SH,
    3 translation), and optionally 68 image landmarks with a confidence each.

    No weights are downloaded: the backbone starts from random initialisation unless ``weights``
    names a local torchvision-format state dict (e.g. ImageNet ``resnet50-*.pth``; its ``fc`` is
    ignored). The final layer is zero-initialised, so training starts from the mean face, frontal,
    at the canonical position, under ambient light (as Deep3DFaceRecon does).

    The landmark head (``landmark_head=True``) is a linear layer on the same pooled features that
    predicts 68 points in units of the image side (the image spans ``[0, 1]``, x right, y down;
    pixel ``j``'s centre is at ``(j + 0.5) / W``) and, per point, the log scale of a Laplace distribution of its error
    (trained with :func:`pyfaid.losses.landmark_nll`); ``confidence = exp(-log_scale)``.

    Args:
        num_coeffs: length of the coefficient vector (``face_model.layout.size``).
        backbone: ``"resnet50"`` (paper), ``"resnet18"`` (CPU default), ``"resnet34"`` or
            ``"mobilenet_v3_large"`` (the fastest per image on a CPU).
        weights: path to backbone weights or None.
        input_size: images are resized to ``input_size x input_size`` before the CNN.
        landmark_head: add the 68-point landmark head.
    """

    def __init__(self, num_coeffs: int, backbone: str = "resnet50", weights: Optional[str] = None,
                 input_size: int = 224, landmark_head: bool = False):
        super().__init__()
        if not isinstance(num_coeffs, int) or num_coeffs < 1:
            raise ValueError(f"CoarseModel: `num_coeffs` must be a positive int, got {num_coeffs!r}")
        if backbone not in BACKBONES:
            raise ValueError(f"CoarseModel: unknown backbone {backbone!r}; choose from {sorted(BACKBONES)}")
        net, feat = _feature_net(backbone)
        if weights is not None:
            if not os.path.isfile(weights):
                raise FileNotFoundError(f"CoarseModel: backbone weights file not found: {weights}")
            state = torch.load(weights, map_location="cpu", weights_only=True)
            if isinstance(state, dict) and "state_dict" in state:
                state = state["state_dict"]
            state = {k: v for k, v in state.items() if not k.startswith(("fc.", "classifier."))}
            missing, unexpected = net.load_state_dict(state, strict=False)
            if missing or unexpected:
                raise ValueError(f"CoarseModel: {weights} does not fit {backbone}: missing {list(missing)[:5]}, "
                                 f"unexpected {list(unexpected)[:5]}")
        self.backbone = precision.network(net)  # bf16 under a mixed precision; the heads stay fp32
        self.num_coeffs = num_coeffs
        self.fc = nn.Linear(feat, num_coeffs)
        nn.init.zeros_(self.fc.weight)
        nn.init.zeros_(self.fc.bias)
        self.landmarks = None
        if landmark_head:
            # 68 x (x, y) + 68 log scales; starts at the mean landmark layout's centre, scale 1.
            self.landmarks = nn.Linear(feat, 68 * 3)
            nn.init.zeros_(self.landmarks.weight)
            with torch.no_grad():
                self.landmarks.bias.zero_()
                self.landmarks.bias[:136] = 0.5
        # Adam moves every fc weight by ~lr in its first steps, so an unscaled head would shift each
        # coefficient by ~lr * sum|features| (~0.2 rad / units per step at lr 1e-4 for a random
        # ResNet-18): the face jumps out of the image before photometric gradients can steer it.
        self.out_scale = 1.0 / math.sqrt(feat)
        self.input_size = int(input_size)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)

    def predict(self, images: torch.Tensor) -> dict:
        """Regress coefficients (and landmarks, with the landmark head).

        Args:
            images: ``[B, 3, H, W]`` RGB in [0, 1].

        Returns:
            dict with ``coeffs [B, num_coeffs]`` and, with the landmark head, ``landmarks_unit
            [B, 68, 2]`` in units of the image side, ``log_scale [B, 68]`` and
            ``confidence [B, 68]``.
        """
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"CoarseModel: images must be [B, 3, H, W], got {tuple(images.shape)}")
        if images.shape[-1] != self.input_size or images.shape[-2] != self.input_size:
            images = F.interpolate(images, size=(self.input_size, self.input_size), mode="bilinear",
                                   align_corners=False, antialias=True)
        x = (images - self.mean) / self.std
        feat = self.backbone(x)
        out = {"coeffs": self.fc(feat) * self.out_scale}
        if self.landmarks is not None:
            raw = self.landmarks(feat * self.out_scale)  # scaled like the coefficients (see __init__)
            log_scale = raw[:, 136:].clamp(-8.0, 4.0)
            out["landmarks_unit"] = raw[:, :136].view(-1, 68, 2)
            out["log_scale"] = log_scale
            out["confidence"] = torch.exp(-log_scale)
        return out

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Regress coefficients ``[B, num_coeffs]`` from ``[B, 3, H, W]`` images in [0, 1]."""
        return self.predict(images)["coeffs"]
