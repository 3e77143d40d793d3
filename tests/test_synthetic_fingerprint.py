"""Fingerprints of small synthetic batches: proof that a refactor kept the generated data identical.

``SyntheticFaces(seed, ...)`` items depend only on ``(seed, index)`` and the options. This test
hashes every tensor of two small batches (the default options, and pretraining's
``occlusion_prob: 0.6``) and compares the digests with the ones recorded in
``synthetic_fingerprint.json``. A change that means to change the data (new content, new labels)
records the new ones with ``python tests/test_synthetic_fingerprint.py --record`` and says so in
its commit; any other change must leave them as they are.

Bit-identity holds on the platform the digests were recorded on (torch, numpy and OpenCV versions
and torch's CPU capability: BLAS kernels and SIMD paths round differently elsewhere). On another
platform only the per-tensor sums and absolute sums are compared (relative 1e-4; they are checked
everywhere), which still catches any change of content.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys

import numpy as np
import pytest
import torch

#: name -> (SyntheticFaces options, indices of the batch)
CASES = {
    "default": (dict(seed=11, length=1000, image_size=64), [3, 17, 42, 999]),
    "pretrain": (dict(seed=7, length=2_000_000, image_size=64, occlusion_prob=0.6), [0, 5, 1234, 1_999_999]),
}


def platform() -> str:
    import cv2

    return f"torch {torch.__version__}, numpy {np.__version__}, opencv {cv2.__version__}, " \
           f"cpu {torch.backends.cpu.get_cpu_capability()}"


def _tensors(batch: dict) -> dict:
    out = {k: v for k, v in batch.items() if k != "labels"}
    out.update({"labels." + k: v for k, v in batch["labels"].items()})
    return dict(sorted(out.items()))


def fingerprint(batch: dict) -> dict:
    """SHA-256 (16 hex digits) of every tensor of a batch: its bytes, dtype and shape."""
    return {k: hashlib.sha256(np.ascontiguousarray(v.numpy()).tobytes() + f"{v.dtype}{tuple(v.shape)}".encode())
            .hexdigest()[:16] for k, v in _tensors(batch).items()}


def summary(batch: dict) -> dict:
    """``[sum, sum of |x|]`` of every tensor (float64), for platforms where bits may differ."""
    return {k: [float(v.double().sum()), float(v.double().abs().sum())] for k, v in _tensors(batch).items()}


def _batch(name: str) -> dict:
    from pyfaid.data import SyntheticFaces

    kw, idx = CASES[name]
    old = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a DataLoader worker
    try:
        return SyntheticFaces(**kw).batch(idx)
    finally:
        torch.set_num_threads(old)


RECORDED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "synthetic_fingerprint.json")


def _recorded() -> dict:
    with open(RECORDED) as f:
        return json.load(f)


@pytest.mark.parametrize("name", sorted(CASES))
def test_synthetic_batch_is_unchanged(name):
    rec = _recorded()
    batch = _batch(name)
    if platform() == rec["recorded_on"]:
        got, want = fingerprint(batch), rec["digests"][name]
        changed = sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))
        assert not changed, f"synthetic data changed ({name}): {changed}"
    _check_summary(summary(batch), rec["summaries"][name])


def _check_summary(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want)
    for k, (s, a) in got.items():
        ws, wa = want[k]
        assert s == pytest.approx(ws, rel=1e-4, abs=1e-6 * max(wa, 1.0)) and a == pytest.approx(wa, rel=1e-4), k


def test_summary_catches_a_changed_item():
    """The cross-platform check is not vacuous: another item of the same dataset fails it."""
    from pyfaid.data import SyntheticFaces

    kw, idx = CASES["default"]
    other = summary(SyntheticFaces(**kw).batch([i - 1 for i in idx]))
    with pytest.raises(AssertionError):
        _check_summary(other, _recorded()["summaries"]["default"])


def test_generator_threads_give_one_thread_bits_in_any_process():
    """``SyntheticFaces(threads=1)`` (the default) in a 2-thread process gives the bits of a 1-thread
    process, and leaves the process's thread count as it was."""
    from pyfaid.data import SyntheticFaces

    kw = dict(seed=7, length=100, image_size=48, occlusion_prob=0.6)
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        one = SyntheticFaces(**kw).batch(range(6))
        assert torch.get_num_threads() == 2
        torch.set_num_threads(1)
        process = SyntheticFaces(threads=0, **kw).batch(range(6))
    finally:
        torch.set_num_threads(old)
    assert fingerprint(one) == fingerprint(process)
    with pytest.raises(ValueError, match="threads"):
        SyntheticFaces(threads=-1, **kw)


if __name__ == "__main__":  # python tests/test_synthetic_fingerprint.py --record: record a deliberate change
    got = {n: _batch(n) for n in sorted(CASES)}
    out = {"recorded_on": platform(), "digests": {n: fingerprint(b) for n, b in got.items()},
           "summaries": {n: summary(b) for n, b in got.items()}}
    if "--record" in sys.argv:
        with open(RECORDED, "w") as f:
            json.dump(out, f, indent=1)
    print(json.dumps(out["digests"], indent=1))
