"""The frozen face features the FAID model computes from images: identity and attributes.

The model owns this module (as Deep3DFaceRecon's model owns its recognition network): it feeds the
FAID decoder (paper 3.2.2) and gives the perceptual losses (:func:`pyfaid.losses.perceptual_losses`)
the features to compare. Its encoders stay frozen and in eval mode whatever ``train()`` is called
with; gradients still flow through them to the images (renders).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["FeatureEncoder", "ENCODER_SIZE", "to_encoder_size"]

#: The identity and attribute encoders take aligned 224 x 224 crops.
ENCODER_SIZE = 224


def to_encoder_size(images: torch.Tensor, size: int = ENCODER_SIZE) -> torch.Tensor:
    """Resize ``[B, 3, H, W]`` images to the encoders' ``size x size`` input (no-op if already)."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)


class FeatureEncoder(nn.Module):
    """Frozen identity + attribute encoders.

    Args:
        identity: module with ``embed(images [B, 3, 224, 224]) -> [B, D_id]`` and
            ``features(images) -> list`` (e.g. :func:`pyfaid.encoders.identity_encoder`), or None.
        attributes: module with ``features(images [B, 3, 224, 224]) -> [B, D_fa]`` (e.g.
            :func:`pyfaid.encoders.load_attribute_encoder`), or None.
        id_inter: also return the identity network's intermediate feature maps (``id_inter``).
    """

    def __init__(self, identity: Optional[nn.Module] = None, attributes: Optional[nn.Module] = None,
                 id_inter: bool = False):
        super().__init__()
        for enc in (identity, attributes):
            if enc is not None:
                enc.eval()
                for p in enc.parameters():
                    p.requires_grad_(False)
        self.identity = identity
        self.attributes = attributes
        self.id_inter = bool(id_inter)

    def train(self, mode: bool = True):
        # The encoders are frozen networks: BatchNorm statistics must not move.
        super().train(False)
        return self

    def encode(self, images: torch.Tensor, want_id: bool = True, want_att: bool = True) -> dict:
        """Features of ``[B, 3, H, W]`` images (resized to 224 first).

        Returns:
            dict with ``id [B, D_id]`` (and ``id_inter``, a list of maps, when ``id_inter``) and
            ``att [B, D_fa]``, for the encoders present and asked for.
        """
        x = to_encoder_size(images)
        out = {}
        if want_id and self.identity is not None:
            out["id"] = self.identity.embed(x)
            if self.id_inter:
                out["id_inter"] = self.identity.features(x)
        if want_att and self.attributes is not None:
            out["att"] = self.attributes.features(x)
        return out

    @torch.no_grad()
    def dims(self) -> dict:
        """Feature sizes ``{"id": D_id, "att": D_fa}`` of the encoders present (one probe pass)."""
        probe = torch.zeros(1, 3, ENCODER_SIZE, ENCODER_SIZE, device=self._device())
        return {k: v.shape[1] for k, v in self.encode(probe).items() if k in ("id", "att")}

    def _device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        for b in self.buffers():
            return b.device
        return torch.device("cpu")
