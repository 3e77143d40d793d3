"""FaceNet (Inception-ResNet-v1, ``facenet-pytorch``) with VGGFace2 weights from a local file.

pyfaid never downloads weights: the network is built with ``pretrained=None`` (so
``facenet-pytorch`` fetches nothing) and the state dict is loaded from a path the user gives.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["FaceNet", "FaceNetWeightsNotFound", "FACENET_WEIGHTS_ENV", "FACENET_WEIGHTS_FILE"]

FACENET_WEIGHTS_ENV = "PYFAID_FACENET_WEIGHTS"
FACENET_WEIGHTS_FILE = "20180402-114759-vggface2.pt"
_FACENET_WEIGHTS_URL = (
    "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/" + FACENET_WEIGHTS_FILE
)


class FaceNetWeightsNotFound(FileNotFoundError):
    """FaceNet's VGGFace2 weights were not given or not found."""


def _how_to_get(reason: str) -> str:
    return (
        f"{reason}. pyfaid does not download weights. Get facenet-pytorch's VGGFace2 state dict "
        f"'{FACENET_WEIGHTS_FILE}' ({_FACENET_WEIGHTS_URL}) on a machine with internet access, "
        f"copy it here, and pass its path (FaceNet(weights=...), identity_encoder('facenet', "
        f"weights=...)) or set the environment variable {FACENET_WEIGHTS_ENV}=/path/to/"
        f"{FACENET_WEIGHTS_FILE}. The default identity encoder, 'dlib', needs no download."
    )


def resolve_facenet_weights(weights: str | os.PathLike | None) -> Path:
    """The weights path from the argument or ``$PYFAID_FACENET_WEIGHTS``; a clear error if missing."""
    if weights is None:
        env = os.environ.get(FACENET_WEIGHTS_ENV)
        if not env:
            raise FaceNetWeightsNotFound(_how_to_get(
                f"No FaceNet weights given (argument `weights` is None and ${FACENET_WEIGHTS_ENV} is unset)"))
        weights = env
    path = Path(weights).expanduser()
    if not path.is_file():
        raise FaceNetWeightsNotFound(_how_to_get(f"FaceNet weights file {str(path)!r} does not exist"))
    return path


class FaceNet(nn.Module):
    """facenet-pytorch's ``InceptionResnetV1`` with VGGFace2 weights loaded from a local file.

    Input: ``[B, 3, 160, 160]`` RGB face crops in [0, 1] (facenet-pytorch's standardisation,
    ``(255 x - 127.5) / 128``, is applied inside). Output: ``[B, 512]`` L2-normalised embeddings.

    Args:
        weights: path of the state dict (``20180402-114759-vggface2.pt``); default
            ``$PYFAID_FACENET_WEIGHTS``. Missing weights raise :class:`FaceNetWeightsNotFound`.
        frozen: ``requires_grad=False`` and eval mode.
    """

    def __init__(self, weights: str | os.PathLike | None = None, frozen: bool = True):
        super().__init__()
        path = resolve_facenet_weights(weights)
        from facenet_pytorch import InceptionResnetV1

        self.net = InceptionResnetV1(pretrained=None, classify=False)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ValueError(f"{path}: not a readable PyTorch state dict ({exc})") from exc
        if isinstance(state, nn.Module):
            state = state.state_dict()
        if not isinstance(state, dict):
            raise ValueError(f"{path}: expected a state dict, got {type(state).__name__}")
        # The classifier head of the training set (logits.*) is not part of the embedding network.
        state = {k: v for k, v in state.items() if not k.startswith("logits.")}
        missing, unexpected = self.net.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(
                f"{path}: not an InceptionResnetV1 state dict (missing {len(missing)} keys, e.g. "
                f"{missing[:3]}; unexpected {len(unexpected)}, e.g. {unexpected[:3]})"
            )
        self.weights_path = str(path)
        if frozen:
            self.requires_grad_(False)
            self.eval()

    @staticmethod
    def _standardise(x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"FaceNet input must be [B, 3, H, W], got {tuple(x.shape)}")
        return (x * 255.0 - 127.5) / 128.0

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Intermediate maps for crops ``[B,3,160,160]`` in [0,1]: after the stem, repeat_1,
        repeat_2 and block8 (``[B,256,17,17]``, ``[B,256,17,17]``, ``[B,896,8,8]``, ``[B,1792,3,3]``)."""
        n = self.net
        x = self._standardise(x)
        for name in ("conv2d_1a", "conv2d_2a", "conv2d_2b", "maxpool_3a", "conv2d_3b", "conv2d_4a", "conv2d_4b"):
            x = getattr(n, name)(x)
        maps = [x]
        x = n.repeat_1(x)
        maps.append(x)
        x = n.repeat_2(n.mixed_6a(x))
        maps.append(x)
        x = n.block8(n.repeat_3(n.mixed_7a(x)))
        maps.append(x)
        return maps

    def head(self, last_map: torch.Tensor) -> torch.Tensor:
        n = self.net
        x = n.avgpool_1a(last_map).flatten(1)
        x = n.last_bn(n.last_linear(n.dropout(x)))
        return F.normalize(x, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 512]`` unit-norm embeddings of face crops ``[B, 3, 160, 160]`` in [0, 1]."""
        return self.head(self.features(x)[-1])
