"""Atomic writes: a failed write keeps the previous file and leaves no temporary file."""

import numpy as np
import pytest

from pyfaid.fileio import atomic_path, savez_atomic, write_atomic


def test_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "sub" / "a.txt"
    write_atomic(target, "old")
    assert target.read_text() == "old" and oct(target.stat().st_mode & 0o777) == "0o644"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            open(tmp, "w").write("partial")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.txt"]
    savez_atomic(tmp_path / "b.npz", x=np.arange(3))
    assert np.load(tmp_path / "b.npz")["x"].tolist() == [0, 1, 2]
