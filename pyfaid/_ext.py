"""Loads pyfaid's compiled operators into ``torch.ops.pyfaid``.

Importing this module imports the ``pyfaid._C`` extension built by ``setup.py``; its static
initialisers register every op with the PyTorch dispatcher. A missing or broken build raises an
ImportError that says how to build it, instead of an AttributeError deep inside a model.
"""

from __future__ import annotations

import torch

try:
    from pyfaid import _C  # noqa: F401  (registers torch.ops.pyfaid.*)
except ImportError as exc:  # pragma: no cover - exercised only on broken installs
    raise ImportError(
        "pyfaid's compiled operators (pyfaid._C) could not be loaded: "
        f"{exc}. Build them with `pip install --no-build-isolation .` (or `-e .`) from the "
        "repository root, with torch installed first; for a source tree, "
        "`python setup.py build_ext --inplace` also works."
    ) from exc

#: True when the extension was compiled with CUDA kernels.
WITH_CUDA: bool = bool(_C.WITH_CUDA)

ops = torch.ops.pyfaid


def check_device(t: torch.Tensor, name: str) -> None:
    """Raise a clear error when ``t`` is a CUDA tensor and the build has no CUDA kernels."""
    if t.is_cuda and not WITH_CUDA:
        raise RuntimeError(
            f"`{name}` is a CUDA tensor but this pyfaid build has no CUDA kernels. Reinstall with a "
            "CUDA-enabled torch and nvcc on PATH (or FORCE_CUDA=1): pip install --no-build-isolation ."
        )
