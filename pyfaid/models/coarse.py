"""Coarse model (paper Sec. 3.1): a ResNet regressing the face model's coefficient vector
(Deep3DFaceRecon's 257 numbers for BFM), optionally with 68-point landmark heads (2D-style and
3D-style conventions)."""

from __future__ import annotations

import copy
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


#: Where the landmark heads read their features: ``"shared"`` the backbone's pooled features (the
#: coefficients' own), ``"layer4"`` a copy of a ResNet's last block of their own (started from the
#: backbone's; trainable while the rest stays fixed, so the coefficients do not change).
LANDMARK_BRANCHES = ("shared", "layer4")


def _new_head(feat: int) -> nn.Linear:
    """68 x (x, y) + 68 log scales; starts at the image centre, scale 1."""
    head = nn.Linear(feat, 68 * 3)
    nn.init.zeros_(head.weight)
    with torch.no_grad():
        head.bias.zero_()
        head.bias[:136] = 0.5
    return head


class CoarseModel(nn.Module):
    """ResNet backbone -> coefficient vector (``face_model.layout``: id, exp, tex, 3 angles, 27 SH,
    3 translation), and optionally 68 image landmarks in either or both conventions (2D-style: the
    jaw on the visible outline, 300-W; 3D-style: the landmark vertices projected, AFLW2000-3D) with
    a confidence each.

    No weights are downloaded: the backbone starts from random initialisation unless ``weights``
    names a local torchvision-format state dict (e.g. ImageNet ``resnet50-*.pth``; its ``fc`` is
    ignored). The final layer is zero-initialised, so training starts from the mean face, frontal,
    at the canonical position, under ambient light (as Deep3DFaceRecon does).

    The landmark head (``landmark_head=True``, the 2D-style points) is a linear layer on the pooled
    features that predicts 68 points in units of the image side (the image spans ``[0, 1]``, x
    right, y down; pixel ``j``'s centre is at ``(j + 0.5) / W``) and, per point, the log scale of a
    Laplace distribution of its error (trained with :func:`pyfaid.losses.landmark_nll`);
    ``confidence = exp(-log_scale)``. ``landmark_head_3d=True`` adds a second such layer for the
    3D-style points. With ``landmark_branch="layer4"`` (ResNets) the heads read the pooled output
    of their own copy of the backbone's last block instead of the shared features.

    Args:
        num_coeffs: length of the coefficient vector (``face_model.layout.size``).
        backbone: ``"resnet50"`` (paper), ``"resnet18"`` (CPU default), ``"resnet34"`` or
            ``"mobilenet_v3_large"`` (the fastest per image on a CPU).
        weights: path to backbone weights or None.
        input_size: images are resized to ``input_size x input_size`` before the CNN.
        landmark_head: add the 68-point landmark head (2D-style points).
        landmark_head_3d: add the 3D-style landmark head.
        landmark_branch: one of :data:`LANDMARK_BRANCHES`.
    """

    def __init__(self, num_coeffs: int, backbone: str = "resnet50", weights: Optional[str] = None,
                 input_size: int = 224, landmark_head: bool = False, landmark_head_3d: bool = False,
                 landmark_branch: str = "shared"):
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
        if landmark_branch not in LANDMARK_BRANCHES:
            raise ValueError(f"CoarseModel: `landmark_branch` must be one of {LANDMARK_BRANCHES}, got {landmark_branch!r}")
        if landmark_branch == "layer4" and not hasattr(net, "layer4"):
            raise ValueError(f"CoarseModel: landmark_branch='layer4' needs a ResNet backbone, not {backbone!r}")
        self.landmarks = _new_head(feat) if landmark_head else None
        self.landmarks_3d = _new_head(feat) if landmark_head_3d else None
        self.landmark_block = None
        if landmark_branch == "layer4" and (landmark_head or landmark_head_3d):
            self.landmark_block = copy.deepcopy(net.layer4)
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
            [B, 68, 2]`` (2D-style) in units of the image side, ``log_scale [B, 68]`` and
            ``confidence [B, 68]``; with the 3D-style head ``landmarks_3d_unit``, ``log_scale_3d``,
            ``confidence_3d`` likewise.
        """
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"CoarseModel: images must be [B, 3, H, W], got {tuple(images.shape)}")
        if images.shape[-1] != self.input_size or images.shape[-2] != self.input_size:
            images = F.interpolate(images, size=(self.input_size, self.input_size), mode="bilinear",
                                   align_corners=False, antialias=True)
        x = (images - self.mean) / self.std
        if self.landmark_block is None:
            feat = lm_feat = self.backbone(x)
        else:
            net = self.backbone
            h = net.layer3(net.layer2(net.layer1(net.maxpool(net.relu(net.bn1(net.conv1(x)))))))
            feat = torch.flatten(net.avgpool(net.layer4(h)), 1)
            lm_feat = torch.flatten(net.avgpool(self.landmark_block(h)), 1)
        out = {"coeffs": self.fc(feat) * self.out_scale}
        for head, suffix in ((self.landmarks, ""), (self.landmarks_3d, "_3d")):
            if head is not None:
                raw = head(lm_feat * self.out_scale)  # scaled like the coefficients (see __init__)
                log_scale = raw[:, 136:].clamp(-8.0, 4.0)
                out["landmarks" + suffix + "_unit"] = raw[:, :136].view(-1, 68, 2)
                out["log_scale" + suffix] = log_scale
                out["confidence" + suffix] = torch.exp(-log_scale)
        return out

    def complete_from_backbone(self, missing) -> list:
        """After loading weights that lack the landmark branch (``landmark_block.*`` in
        ``missing``), start it from the loaded backbone's last block; returns the keys filled."""
        keys = [k for k in missing if k.startswith("landmark_block.")]
        if keys and self.landmark_block is not None:
            self.landmark_block.load_state_dict(self.backbone.layer4.state_dict())
        return keys

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Regress coefficients ``[B, num_coeffs]`` from ``[B, 3, H, W]`` images in [0, 1]."""
        return self.predict(images)["coeffs"]
