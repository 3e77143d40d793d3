"""Per-pixel face / occluder segmentation of aligned crops (the paper's mask M, Eq. 6).

The paper masks its photometric loss with "a pre-trained face segmentation network"; pyfaid trains
its own, licence-clean, on the synthetic data's exact masks (face pixels that no occluder, hair or
hand covers). :class:`FaceSegmenter` is a small U-Net: four stride-2 stages (16 to 96 channels)
down from the input and back up with skip connections, one logit per pixel. It runs at 128 x 128
(~2 ms on a CPU core) and its probabilities are resized to the caller's size.

Uses: the photometric terms of training on real photos and of test-time fitting are weighted by
the predicted visibility, so an occluder is neither fitted nor painted into the face's colours.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from pyfaid import precision

__all__ = ["FaceSegmenter"]


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class FaceSegmenter(nn.Module):
    """Small U-Net: ``[B, 3, H, W]`` crops in [0, 1] -> ``[B, 1, H, W]`` logits of "visible face".

    Args:
        widths: channels of the four down stages.
        input_size: side the crops are resized to.
    """

    def __init__(self, widths=(16, 32, 64, 96), input_size: int = 128):
        super().__init__()
        self.input_size = int(input_size)
        chans = [3] + list(widths)
        self.down = nn.ModuleList([nn.Sequential(_conv(chans[i], chans[i + 1], 2), _conv(chans[i + 1], chans[i + 1]))
                                   for i in range(len(widths))])
        # up[i] joins stage i's features with the (upsampled) output of the stage below it
        self.up = nn.ModuleList([_conv(chans[i + 1] + chans[i + 2], chans[i + 1]) for i in range(len(widths) - 1)])
        self.head = nn.Conv2d(chans[1], 1, 1)
        self.register_buffer("mean", torch.tensor([0.5, 0.5, 0.5]).view(1, 3, 1, 1), persistent=False)
        precision.network(self)  # bf16 under a mixed precision (pyfaid.precision.use); float32 logits out

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, 1, H, W]`` at the input's resolution."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"FaceSegmenter: images must be [B, 3, H, W], got {tuple(images.shape)}")
        size = images.shape[-2:]
        x = images
        if tuple(size) != (self.input_size, self.input_size):
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False,
                              antialias=True)
        x = (x - self.mean) * 4.0
        feats = []
        for stage in self.down:
            x = stage(x)
            feats.append(x)
        h = feats[-1]
        for i in range(len(self.up) - 1, -1, -1):
            h = F.interpolate(h, size=feats[i].shape[-2:], mode="bilinear", align_corners=False)
            h = self.up[i](torch.cat([feats[i], h], 1))
        logits = self.head(h)
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)

    @torch.no_grad()
    def visibility(self, images: torch.Tensor) -> torch.Tensor:
        """Probabilities ``[B, 1, H, W]`` that a pixel shows the face unoccluded."""
        return torch.sigmoid(self(images))
