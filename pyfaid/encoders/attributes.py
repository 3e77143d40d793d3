"""pyfaid's face-attribute encoder: a small CNN whose penultimate features are the "FA" features.

The FAID refiner and the attribute-aware loss use ``AttributeEncoder.features(images_224)``
(``[B, 128]``). pyfaid trains the network itself (``python -m pyfaid.train_attributes``):
by default on :class:`pyfaid.synth.SyntheticFaces` with the generator's known labels (identity,
expression and albedo coefficients, pose, skin tone, phenotype labels) as regression targets, or on
CelebA's 40 binary attributes (``--celeba DIR``). The package ships the synthetic-data weights in
``pyfaid/assets/attributes_synthetic.pt`` with a JSON card beside it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from pyfaid import precision

__all__ = ["AttributeEncoder", "load_attribute_encoder", "default_attribute_weights",
           "AttributeWeightsNotFound"]

_ASSETS = Path(__file__).resolve().parent.parent / "assets"
DEFAULT_WEIGHTS = _ASSETS / "attributes_synthetic.pt"
TRAIN_COMMAND = "python -m pyfaid.train_attributes --out pyfaid/assets/attributes_synthetic.pt"


class AttributeWeightsNotFound(FileNotFoundError):
    """No trained attribute-encoder weights at the requested (or default) path."""


def _block(cin: int, cout: int, convs: int) -> nn.Sequential:
    """Stride-2 3x3 conv, then ``convs - 1`` more 3x3 convs; each with batch norm and ReLU."""
    layers = [nn.Conv2d(cin, cout, 3, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
    for _ in range(convs - 1):
        layers += [nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class AttributeEncoder(nn.Module):
    """Small attribute CNN: 112x112 input, 5 conv blocks, 4x4 average pool, a linear+ReLU
    projection to the ``feature_dim``-D "FA" features, and a linear prediction head.

    Args:
        num_outputs: size of the prediction head (regression targets or binary attributes).
        feature_dim: D_fa, size of the penultimate ("FA") features.
        widths: channels of the 5 blocks (each halves the resolution: 112 -> 56 -> ... -> 4).
        convs: 3x3 convolutions per block (the cheap early blocks have one, the last two have two,
            ~0.75 M parameters, ~20 M multiply-adds per image: CPU-trainable).
        input_size: side the 224 crops are resized to.
        task: ``"regression"`` (standardised targets, MSE) or ``"binary"`` (logits, BCE).
        target_names: names of the outputs, for the card and for users of ``predict``.
    """

    def __init__(self, num_outputs: int, feature_dim: int = 128, widths=(16, 32, 64, 96, 128),
                 convs=(1, 1, 1, 2, 2), input_size: int = 112, task: str = "regression", target_names=None):
        super().__init__()
        if task not in ("regression", "binary"):
            raise ValueError(f"task must be 'regression' or 'binary', got {task!r}")
        if int(num_outputs) < 1:
            raise ValueError(f"num_outputs must be >= 1, got {num_outputs}")
        if len(convs) != len(widths) or min(convs) < 1:
            raise ValueError(f"convs must give >= 1 conv for each of the {len(widths)} blocks, got {convs}")
        self.config = dict(num_outputs=int(num_outputs), feature_dim=int(feature_dim),
                           widths=[int(w) for w in widths], convs=[int(c) for c in convs],
                           input_size=int(input_size), task=task,
                           target_names=list(target_names) if target_names is not None else None)
        chans = [3] + list(widths)
        self.trunk = nn.Sequential(*[_block(chans[i], chans[i + 1], convs[i]) for i in range(len(widths))])
        precision.network(self.trunk)  # the convolutions in bf16 under a mixed precision; proj / head fp32
        # A 4x4 spatial pooling keeps the face/background layout of the aligned crop (the face is
        # in the centre), which a global average would throw away.
        self.proj = nn.Sequential(nn.Linear(chans[-1] * 16, feature_dim), nn.ReLU(inplace=True))
        self.head = nn.Linear(feature_dim, num_outputs)
        # Output de-standardisation for regression targets (set by the trainer).
        self.register_buffer("target_mean", torch.zeros(num_outputs))
        self.register_buffer("target_std", torch.ones(num_outputs))
        self.register_buffer("pixel_mean", torch.tensor([0.5, 0.5, 0.5]))
        self.register_buffer("pixel_std", torch.tensor([0.25, 0.25, 0.25]))

    @property
    def feature_dim(self) -> int:
        return self.config["feature_dim"]

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` in [0, 1] (usually 224) -> ``[B, 3, S, S]`` network input (differentiable)."""
        if not torch.is_tensor(images) or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be a [B, 3, H, W] tensor, got "
                             f"{tuple(images.shape) if torch.is_tensor(images) else type(images).__name__}")
        if not images.is_floating_point():
            raise ValueError(f"images must be float in [0, 1], got {images.dtype}")
        s = self.config["input_size"]
        if images.shape[-2:] != (s, s):
            images = F.interpolate(images, size=(s, s), mode="bilinear", align_corners=False, antialias=True)
        return images

    def _trunk(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.pixel_mean.view(1, 3, 1, 1)) / self.pixel_std.view(1, 3, 1, 1)
        return self.proj(F.adaptive_avg_pool2d(self.trunk(x), 4).flatten(1))

    def features_from_input(self, x: torch.Tensor) -> torch.Tensor:
        """FA features of already-preprocessed ``[B, 3, S, S]`` inputs."""
        return self._trunk(x)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """FA features ``[B, D_fa]`` of aligned crops ``[B, 3, 224, 224]`` in [0, 1]."""
        return self._trunk(self.preprocess(images))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Raw head outputs ``[B, num_outputs]`` (standardised targets or logits)."""
        return self.head(self.features(images))

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """Predictions in label units (regression) or probabilities (binary), ``[B, num_outputs]``."""
        out = self.forward(images)
        if self.config["task"] == "binary":
            return torch.sigmoid(out)
        return out * self.target_std + self.target_mean


def default_attribute_weights() -> Path:
    """Path of the attribute weights shipped in the package."""
    return DEFAULT_WEIGHTS


def load_attribute_encoder(path: str | os.PathLike | None = None, frozen: bool = True,
                           map_location="cpu") -> AttributeEncoder:
    """Load a trained :class:`AttributeEncoder`.

    Args:
        path: a ``.pt`` file written by ``python -m pyfaid.train_attributes``; None loads
            the package's default (``pyfaid/assets/attributes_synthetic.pt``).
        frozen: ``requires_grad=False`` and eval mode.

    Returns:
        the encoder, with ``.card`` (the training card dict).

    Raises:
        AttributeWeightsNotFound: no file there (the message says how to create it).
        ValueError: the file is not an attribute-encoder checkpoint.
    """
    p = Path(path) if path is not None else DEFAULT_WEIGHTS
    if not p.is_file():
        raise AttributeWeightsNotFound(
            f"Attribute-encoder weights {str(p)!r} not found. Create them with `{TRAIN_COMMAND}`"
            + ("" if path is None else f" (or --out {p})")
            + " (trains on synthetic faces on the CPU in ~10-15 minutes; add --celeba DIR for CelebA)."
        )
    try:
        ckpt = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise ValueError(f"{p}: not a readable attribute-encoder checkpoint ({exc})") from exc
    if not isinstance(ckpt, dict) or "config" not in ckpt or "state_dict" not in ckpt:
        raise ValueError(f"{p}: not an attribute-encoder checkpoint (expected keys 'config', 'state_dict')")
    model = AttributeEncoder(**ckpt["config"])
    model.load_state_dict(ckpt["state_dict"])
    card_path = p.with_suffix(".json")
    card = ckpt.get("card", "{}")
    model.card = json.loads(card_path.read_text()) if card_path.is_file() else (
        json.loads(card) if isinstance(card, str) else card)
    if frozen:
        model.requires_grad_(False)
        model.eval()
    return model
