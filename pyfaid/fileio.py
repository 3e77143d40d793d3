"""Atomic file writes: a temporary file in the destination's folder, renamed into place when it is
complete, so a failure never leaves a partial file nor replaces a good one."""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Iterator, Union

import numpy as np

__all__ = ["atomic_path", "write_atomic", "savez_atomic"]


@contextlib.contextmanager
def atomic_path(path: Union[str, os.PathLike], fsync: bool = False) -> Iterator[str]:
    """Yield a temporary path beside ``path`` (same extension); when the block ends without an
    error it becomes ``path`` (mode 0644), otherwise it is removed. The folder is created."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp_", suffix=os.path.splitext(path)[1], dir=folder)
    os.close(fd)
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def write_atomic(path: Union[str, os.PathLike], data: Union[bytes, str]) -> None:
    """Write ``data`` (text as UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data.encode("utf-8") if isinstance(data, str) else data)


def savez_atomic(path: Union[str, os.PathLike], **arrays) -> None:
    """``np.savez`` to ``path`` atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
