"""Coarse model (paper Sec. 3.1): a ResNet regressing the 257 Deep3DFaceRecon coefficients."""

from __future__ import annotations

import math
import os
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

NUM_COEFFS = 257
BACKBONES = {"resnet18": torchvision.models.resnet18, "resnet34": torchvision.models.resnet34,
             "resnet50": torchvision.models.resnet50}


class CoarseModel(nn.Module):
    """ResNet backbone -> 257 3DMM coefficients (80 id, 64 exp, 80 tex, 3 angles, 27 SH, 3 trans).

    No weights are downloaded: the backbone starts from random initialisation unless ``weights``
    names a local torchvision-format state dict (e.g. ImageNet ``resnet50-*.pth``; its ``fc`` is
    ignored). The final layer is zero-initialised, so training starts from the mean face, frontal,
    at the canonical position, under ambient light (as Deep3DFaceRecon does).

    Args:
        backbone: ``"resnet50"`` (paper), ``"resnet18"`` (CPU default) or ``"resnet34"``.
        weights: path to backbone weights or None.
        input_size: images are resized to ``input_size x input_size`` before the CNN.
    """

    def __init__(self, backbone: str = "resnet50", weights: Optional[str] = None,
                 input_size: int = 224):
        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f"CoarseModel: unknown backbone {backbone!r}; choose from {sorted(BACKBONES)}")
        net = BACKBONES[backbone](weights=None)
        if weights is not None:
            if not os.path.isfile(weights):
                raise FileNotFoundError(f"CoarseModel: backbone weights file not found: {weights}")
            state = torch.load(weights, map_location="cpu", weights_only=True)
            if isinstance(state, dict) and "state_dict" in state:
                state = state["state_dict"]
            state = {k: v for k, v in state.items() if not k.startswith("fc.")}
            missing, unexpected = net.load_state_dict(state, strict=False)
            bad = [k for k in missing if not k.startswith("fc.")]
            if bad or unexpected:
                raise ValueError(f"CoarseModel: {weights} does not fit {backbone}: missing {bad[:5]}, "
                                 f"unexpected {list(unexpected)[:5]}")
        feat = net.fc.in_features
        net.fc = nn.Identity()
        self.backbone = net
        self.fc = nn.Linear(feat, NUM_COEFFS)
        nn.init.zeros_(self.fc.weight)
        nn.init.zeros_(self.fc.bias)
        # Adam moves every fc weight by ~lr in its first steps, so an unscaled head would shift each
        # coefficient by ~lr * sum|features| (~0.2 rad / units per step at lr 1e-4 for a random
        # ResNet-18): the face jumps out of the image before photometric gradients can steer it.
        self.out_scale = 1.0 / math.sqrt(feat)
        self.input_size = int(input_size)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Regress coefficients.

        Args:
            images: ``[B, 3, H, W]`` RGB in [0, 1].

        Returns:
            ``[B, 257]`` coefficients.
        """
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"CoarseModel: images must be [B, 3, H, W], got {tuple(images.shape)}")
        if images.shape[-1] != self.input_size or images.shape[-2] != self.input_size:
            images = F.interpolate(images, size=(self.input_size, self.input_size), mode="bilinear",
                                   align_corners=False, antialias=True)
        x = (images - self.mean) / self.std
        return self.fc(self.backbone(x)) * self.out_scale
