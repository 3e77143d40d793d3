"""Mixed precision: bfloat16 for pyfaid's networks where the hardware has it, float32 elsewhere.

The networks (the coarse model's backbone, the face segmenter, the frozen identity and attribute
encoders) declare themselves with :func:`network`; inside :func:`use` with a bf16
:class:`Precision`, they run under ``torch.autocast`` in bfloat16, their image inputs in
channels-last memory format, and hand float32 outputs back. Everything else stays float32: the
heads on the pooled features, the face model, the renderer and the graph kernels (which cast
reduced-precision inputs to float32 themselves, see :func:`fp32_input`), the losses and the
optimizer state (the parameters stay float32; autocast casts copies).

    prec = precision.resolve("auto", torch.device("cpu"))   # bf16 where the CPU has native bf16
    print(prec.describe())
    with precision.use(prec):
        out = faid(images)                                   # networks in bf16, the rest in fp32

``train.precision`` (``auto | fp32 | bf16``) picks it for training; ``pyfaid.reconstruct`` and
``pyfaid.evaluate`` take ``precision=`` / ``--precision`` (:func:`for_call`). Outside :func:`use`
every network runs exactly as before (float32, the caller's memory format).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

__all__ = ["PRECISIONS", "Precision", "resolve", "native_bf16", "use", "active", "for_call", "network",
           "fp32_input", "saved_config"]

#: Values of ``train.precision`` / ``--precision``.
PRECISIONS = ("auto", "fp32", "bf16")

#: CPU flags of native bfloat16 arithmetic (``/proc/cpuinfo``; ``lscpu`` shows the same).
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")

_REDUCED = (torch.bfloat16, torch.float16)


@dataclass(frozen=True)
class Precision:
    """A resolved precision: ``name`` (``"fp32"`` or ``"bf16"``), the device type it applies to
    and why it was chosen."""

    name: str
    device_type: str
    reason: str

    @property
    def mixed(self) -> bool:
        """True when the networks run in bfloat16."""
        return self.name == "bf16"

    def describe(self) -> str:
        """One line for a start-up message: what was chosen and why."""
        what = "bfloat16 networks (autocast, channels-last), float32 kernels, losses and optimizer" \
            if self.mixed else "float32 throughout"
        return f"precision {self.name} on {self.device_type}: {what} ({self.reason})"


@functools.lru_cache(maxsize=None)
def _cpu_flags() -> frozenset:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def native_bf16(device: torch.device) -> tuple[bool, str]:
    """Whether ``device`` computes bfloat16 natively, and what says so.

    CPU: the ``avx512_bf16`` or ``amx_bf16`` flag (without them, PyTorch emulates bfloat16 and
    is slower than float32). CUDA: ``torch.cuda.is_bf16_supported(including_emulation=False)``.
    """
    device = torch.device(device)
    if device.type == "cuda":
        ok = torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
        name = torch.cuda.get_device_name(device) if torch.cuda.is_available() else "no GPU"
        return ok, f"{name} {'has' if ok else 'has no'} native bfloat16"
    if device.type != "cpu":
        return False, f"no bfloat16 policy for {device.type}"
    have = [f for f in BF16_CPU_FLAGS if f in _cpu_flags()]
    if have:
        return True, f"the CPU has {' and '.join(have)}"
    return False, f"the CPU lacks {' / '.join(BF16_CPU_FLAGS)} (bfloat16 would be emulated, slower than float32)"


def resolve(name: str, device, source: str = "precision") -> Precision:
    """Turn ``auto | fp32 | bf16`` into a :class:`Precision` for ``device``.

    ``auto`` is bf16 where the device has native bfloat16 (:func:`native_bf16`) and fp32
    elsewhere. ``bf16`` is honoured on any CPU or CUDA device (emulated where not native: slower,
    the reason says so). ``source`` names the setting in errors (``"train.precision"``).

    Raises:
        ValueError: an unknown name.
    """
    if name not in PRECISIONS:
        raise ValueError(f"{source} must be one of {', '.join(PRECISIONS)}, got {name!r}")
    device = torch.device(device)
    native, why = native_bf16(device)
    if name == "fp32":
        return Precision("fp32", device.type, "asked for")
    if name == "bf16":
        if device.type not in ("cpu", "cuda"):
            raise ValueError(f"{source} bf16: no autocast policy for device {device.type!r}")
        return Precision("bf16", device.type, "asked for; " + why)
    return Precision("bf16" if native else "fp32", device.type, "auto: " + why)


def saved_config(config: dict) -> dict:
    """A checkpoint's config dict as it trained: one written before ``train.precision`` existed
    trained in float32, so it resumes in float32 (not in what ``auto`` picks now)."""
    train = config.get("train") or {}
    if "precision" in train:
        return config
    return dict(config, train=dict(train, precision="fp32"))


_ACTIVE: contextvars.ContextVar[Optional[Precision]] = contextvars.ContextVar("pyfaid_precision", default=None)


@contextlib.contextmanager
def use(prec: Optional[Precision]):
    """Run the :func:`network` modules called inside in ``prec`` (fp32: as declared; None: as
    outside, i.e. no change)."""
    token = _ACTIVE.set(prec) if prec is not None else None
    try:
        yield prec
    finally:
        if token is not None:
            _ACTIVE.reset(token)


def active() -> Optional[Precision]:
    """The precision of the innermost :func:`use` (None outside any)."""
    return _ACTIVE.get()


def for_call(name: Optional[str], device) -> Precision:
    """The precision of a call with ``precision=name`` on ``device``: ``name`` resolved (see
    :func:`resolve`), or with None the innermost :func:`use`'s, else ``auto``'s."""
    if name is None:
        outer = active()
        if outer is not None and outer.device_type == torch.device(device).type:
            return outer
        name = "auto"
    return resolve(name, device)


def _outputs_to_fp32(out):
    if torch.is_tensor(out):
        return out.float() if out.dtype in _REDUCED else out
    if isinstance(out, (list, tuple)):
        return type(out)(_outputs_to_fp32(o) for o in out)
    if isinstance(out, dict):
        return {k: _outputs_to_fp32(v) for k, v in out.items()}
    return out


def network(module: nn.Module) -> nn.Module:
    """Declare ``module`` a network that runs in the active precision (see :func:`use`).

    Its forward pass then runs under ``torch.autocast`` in bfloat16 when a bf16 precision is
    active for the device of its first argument, that argument (an image batch ``[B, C, H, W]``)
    in channels-last memory format; floating outputs in bfloat16 come back as float32, so the
    code around the network never sees a reduced-precision tensor. The parameters are untouched
    (float32, their own memory format): the state dict, checkpoints and fp32 calls are as before.

    Args:
        module: a network whose ``forward`` takes the image batch first.

    Returns:
        ``module`` (forward pre-hook and hook registered).
    """
    entered: list = []  # the autocast contexts of the calls in progress (nested calls push more)

    def before(mod, args, kwargs):
        prec = _ACTIVE.get()
        x = args[0] if args else None
        if prec is None or not prec.mixed or not torch.is_tensor(x) or x.device.type != prec.device_type:
            entered.append(None)
            return None
        ctx = torch.autocast(prec.device_type, dtype=torch.bfloat16)
        ctx.__enter__()
        entered.append(ctx)
        if x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return (x,) + tuple(args[1:]), kwargs

    def after(mod, args, kwargs, out):
        ctx = entered.pop() if entered else None
        if ctx is None:
            return None
        ctx.__exit__(None, None, None)
        return _outputs_to_fp32(out)

    module.register_forward_pre_hook(before, with_kwargs=True)
    module.register_forward_hook(after, with_kwargs=True, always_call=True)
    return module


def fp32_input(t: torch.Tensor) -> torch.Tensor:
    """A kernel's input as the kernel computes it: a bfloat16 / float16 tensor is cast to float32
    while autocast is enabled on its device (what autocast hands a float32 op), anything else is
    returned as it is (the kernel's own dtype checks then apply)."""
    if torch.is_tensor(t) and t.dtype in _REDUCED and torch.is_autocast_enabled(t.device.type):
        return t.float()
    return t
