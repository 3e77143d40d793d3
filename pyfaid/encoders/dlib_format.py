"""Reader for dlib's binary serialization of DNN models (``.dat`` files).

pyfaid reads dlib's networks itself, so the identity encoder needs no dlib at run time. The format,
as written by dlib's ``serialize`` functions (``dlib/serialize.h``, ``dlib/dnn/tensor.h``,
``dlib/dnn/core.h``, ``dlib/dnn/layers.h``, ``dlib/dnn/input.h``, ``dlib/dnn/loss.h``):

* integers: one control byte (bit 7: negative, low 4 bits: number of magnitude bytes that follow),
  then the magnitude, least significant byte first;
* floating point numbers: an integer mantissa then an integer exponent, value = m * 2**e (exponents
  32000/32001/32002 mean +inf/-inf/nan);
* strings: length (integer) then the bytes; booleans: one byte, ``'1'``/``'0'`` (or 1/0);
* tensors: version 2, then num_samples, k, nr, nc (integers), then the values as little-endian
  float32; ``alias_tensor``: version 1 then the four sizes;
* a network ``add_loss_layer``: version, the loss layer's details, then its subnetwork.
  ``add_layer`` writes its version, then its *subnetwork first*, then its own layer details and
  bookkeeping (flags and cached tensors); tag and skip layers write only a version and their
  subnetwork. The stream therefore starts with the wrapper versions from the output inward, holds
  the input layer in the middle, and then the layer details from the input outward.

:func:`read_dlib_net` returns that structure as plain Python objects (numpy arrays for tensors).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["DlibFormatError", "DlibLayer", "DlibNet", "read_dlib_net"]


class DlibFormatError(ValueError):
    """The file is not a dlib DNN model this reader understands."""


@dataclass
class DlibLayer:
    """One entry of the network, from the input outward.

    ``kind`` is ``"tag"`` for a tag/skip wrapper (dlib stores no id for them) or the layer
    details' type string (``"con_4"``, ``"affine_"``, ``"relu_"``, ``"add_prev_"``,
    ``"max_pool_2"``, ``"avg_pool_2"``, ``"fc_2"``, ...). ``fields`` holds the parsed details.
    """

    kind: str
    fields: dict = field(default_factory=dict)


@dataclass
class DlibNet:
    """A parsed dlib network: loss details, input layer details and the layers (input outward)."""

    loss: dict
    input: dict
    layers: list


class _Reader:
    def __init__(self, data: bytes, name: str):
        self.data = data
        self.pos = 0
        self.name = name

    def fail(self, msg: str):
        raise DlibFormatError(f"{self.name}: {msg} (at byte {self.pos})")

    def _need(self, n: int):
        if self.pos + n > len(self.data):
            self.fail(f"unexpected end of file (needed {n} more bytes)")

    def int(self) -> int:
        self._need(1)
        ctrl = self.data[self.pos]
        size = ctrl & 0x0F
        if ctrl & 0x70 or size > 8:
            self.fail(f"bad integer control byte 0x{ctrl:02x}")
        self._need(1 + size)
        val = int.from_bytes(self.data[self.pos + 1 : self.pos + 1 + size], "little")
        self.pos += 1 + size
        return -val if ctrl & 0x80 else val

    def float(self) -> float:
        mantissa = self.int()
        exponent = self.int()
        if exponent == 32000:
            return math.inf
        if exponent == 32001:
            return -math.inf
        if exponent == 32002:
            return math.nan
        return math.ldexp(float(mantissa), exponent)

    def string(self) -> str:
        n = self.int()
        if n < 0 or n > 4096:
            self.fail(f"implausible string length {n}")
        self._need(n)
        s = self.data[self.pos : self.pos + n]
        self.pos += n
        try:
            return s.decode("ascii")
        except UnicodeDecodeError:
            self.fail("string is not ASCII")

    def peek_string(self) -> str | None:
        """Return the string at the cursor if one is there (cursor unchanged), else None."""
        pos = self.pos
        try:
            n = self.int()
            if not 1 <= n <= 64 or self.pos + n > len(self.data):
                return None
            s = self.data[self.pos : self.pos + n]
            if not all(32 < c < 127 for c in s):
                return None
            return s.decode("ascii")
        except DlibFormatError:
            return None
        finally:
            self.pos = pos

    def bool(self) -> bool:
        self._need(1)
        c = self.data[self.pos]
        self.pos += 1
        if c in (0, ord("0")):
            return False
        if c in (1, ord("1")):
            return True
        self.fail(f"bad boolean byte 0x{c:02x}")

    def tensor(self) -> np.ndarray:
        version = self.int()
        if version != 2:
            self.fail(f"unsupported tensor version {version} (expected 2)")
        shape = tuple(self.int() for _ in range(4))
        if any(s < 0 for s in shape):
            self.fail(f"negative tensor size {shape}")
        count = int(np.prod(shape))
        self._need(4 * count)
        arr = np.frombuffer(self.data, dtype="<f4", count=count, offset=self.pos)
        self.pos += 4 * count
        return arr.reshape(shape).astype(np.float32)

    def alias_tensor(self) -> tuple:
        version = self.int()
        if version != 1:
            self.fail(f"unsupported alias_tensor version {version} (expected 1)")
        return tuple(self.int() for _ in range(4))


def _read_details(r: _Reader) -> DlibLayer:
    kind = r.string()
    f: dict[str, Any] = {}
    if kind == "con_4":
        f["params"] = r.tensor()
        for key in ("num_filters", "nr", "nc", "stride_y", "stride_x", "padding_y", "padding_x"):
            f[key] = r.int()
        f["filters"] = r.alias_tensor()
        f["biases"] = r.alias_tensor()
        for key in ("lr_mult", "wd_mult", "bias_lr_mult", "bias_wd_mult"):
            f[key] = r.float()
    elif kind == "affine_":
        f["params"] = r.tensor()
        f["gamma"] = r.alias_tensor()
        f["beta"] = r.alias_tensor()
        f["mode"] = r.int()  # 0: CONV_MODE (per channel), 1: FC_MODE (per element)
    elif kind in ("relu_", "add_prev_"):
        pass
    elif kind in ("max_pool_2", "avg_pool_2"):
        for key in ("nr", "nc", "stride_y", "stride_x", "padding_y", "padding_x"):
            f[key] = r.int()
    elif kind == "fc_2":
        f["num_outputs"] = r.int()
        f["num_inputs"] = r.int()
        f["params"] = r.tensor()
        f["weights"] = r.alias_tensor()
        f["biases"] = r.alias_tensor()
        f["bias_mode"] = r.int()  # 0: FC_HAS_BIAS, 1: FC_NO_BIAS
        for key in ("lr_mult", "wd_mult", "bias_lr_mult", "bias_wd_mult"):
            f[key] = r.float()
    else:
        r.fail(f"unsupported layer type {kind!r}")
    return DlibLayer(kind, f)


def _read_input(r: _Reader) -> dict:
    kind = r.string()
    if kind == "input_rgb_image_sized":
        avg = (r.float(), r.float(), r.float())
        nr, nc = r.int(), r.int()
        return {"kind": kind, "avg_rgb": avg, "nr": nr, "nc": nc}
    r.fail(f"unsupported input layer {kind!r}")


def _read_loss(r: _Reader) -> dict:
    kind = r.string()
    if kind == "loss_metric_2":
        return {"kind": kind, "margin": r.float(), "dist_thresh": r.float()}
    if kind == "loss_metric_":
        return {"kind": kind}
    r.fail(f"unsupported loss layer {kind!r}")


def read_dlib_net(path: str) -> DlibNet:
    """Parse a dlib DNN ``.dat`` file (a network with a loss layer on top).

    Args:
        path: path of the file, e.g. ``dlib_face_recognition_resnet_model_v1.dat``.

    Returns:
        DlibNet with the loss, the input layer and the layers from the input outward; tag/skip
        wrappers appear as ``DlibLayer("tag")`` at their place in the stack.

    Raises:
        DlibFormatError: the file is truncated or holds something this reader does not know.
    """
    with open(path, "rb") as fh:
        data = fh.read()
    r = _Reader(data, str(path))
    version = r.int()
    if version != 1:
        r.fail(f"unsupported add_loss_layer version {version}")
    loss = _read_loss(r)

    # Wrapper versions from the output inward, until the input layer's type string.
    versions = []
    while True:
        s = r.peek_string()
        if s is not None and s.startswith("input"):
            break
        v = r.int()
        if v not in (1, 2, 3):
            r.fail(f"unexpected layer wrapper version {v}")
        versions.append(v)
        if len(versions) > 100000:
            r.fail("no input layer found")
    if not versions:
        r.fail("network has no layers")
    inner_version = versions.pop()  # add_layer directly on the input layer
    if inner_version not in (2, 3):
        r.fail(f"unexpected version {inner_version} of the first layer")
    inp = _read_input(r)

    layers = []

    def read_add_layer_tail(first: bool, v: int):
        layer = _read_details(r)
        layer.fields["flags"] = (r.bool(), r.bool(), r.bool())
        r.tensor()  # x_grad
        r.tensor()  # cached_output
        if first:
            r.tensor()  # grad_final
            if v >= 3:
                r.int()  # sample expansion factor
        elif v == 2:
            r.tensor()  # params_grad
        layers.append(layer)

    read_add_layer_tail(True, inner_version)
    for v in reversed(versions):
        if v == 1:
            layers.append(DlibLayer("tag"))
        else:
            read_add_layer_tail(False, v)
    if r.pos != len(data):
        r.fail(f"{len(data) - r.pos} trailing bytes after the network")
    return DlibNet(loss=loss, input=inp, layers=layers)
