"""Batches for training: a resumable, distributed, infinite sampler and a key-trimming wrapper.

:class:`ResumableSampler`'s position is the number of samples consumed, so a run resumes exactly
(and on another number of processes with the same global data order); :class:`TrainingView` keeps
only the keys a training step needs (cheaper collation) and can cache items in memory.
"""

from __future__ import annotations

import signal

import cv2
import torch

__all__ = ["prepare_workers", "ResumableSampler", "TrainingView", "TRAINING_KEYS", "init_worker"]

#: Item keys a training step uses.
TRAINING_KEYS = ("image", "mask", "clean", "landmarks", "landmarks_2d", "landmarks_3d", "landmark_visible", "coeffs",
                 "colors")


def prepare_workers() -> None:
    """In the training process, before its DataLoader forks workers: OpenCV on one thread, so the
    workers generating data (torch already runs them on one thread) and the training process share
    the cores without oversubscribing them. It must happen here, not in the worker: a forked child
    that resizes OpenCV's thread pool waits forever for the parent's pool threads, which a fork does
    not copy; set in the parent, the pool is stopped before the fork and the workers inherit one thread."""
    cv2.setNumThreads(1)


def init_worker(worker_id: int = 0) -> None:
    """Start of a training DataLoader worker: SIGINT / SIGTERM ignored, as
    :func:`pyfaid.trainer.ignore_stop_signals` explains (the main process saves and stops its
    workers). OpenCV's threads are set before the fork (:func:`prepare_workers`)."""
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, signal.SIG_IGN)


class ResumableSampler(torch.utils.data.Sampler):
    """Infinite, shuffled, distributed batch sampler whose position is the number of samples consumed.

    Global batch ``t`` is ``perm_e[pos : pos + batch * world]`` of the epoch's permutation (seeded by
    ``seed + epoch``, wrapping into the next epoch); rank ``r`` takes the ``r``-th contiguous chunk.
    The sequence of global batches therefore depends only on the samples consumed, so a run resumes
    exactly, and resumes on a different number of processes with the same global data order.

    With ``group = K > 1`` the permutation moves blocks of ``K`` consecutive indices (the views of
    one synthetic face, ``SyntheticFaces(views=K)``), so they arrive in the same batch and the face
    is rendered once; ``group = 1`` is the plain permutation.

    Args:
        length: dataset size. batch_size: per-process batch. rank, world: this process.
        seed: shuffling seed. start: samples already consumed (from a checkpoint).
        group: indices kept together (see above).
    """

    def __init__(self, length: int, batch_size: int, rank: int = 0, world: int = 1, seed: int = 0,
                 start: int = 0, group: int = 1):
        if length <= 0:
            raise ValueError("ResumableSampler: empty dataset")
        if group < 1:
            raise ValueError(f"ResumableSampler: `group` must be >= 1, got {group}")
        self.length, self.batch, self.rank, self.world = length, batch_size, rank, world
        self.seed, self.start, self.group = seed, start, int(group)
        self._perms = {}

    def _perm(self, epoch: int) -> torch.Tensor:
        if epoch not in self._perms:
            g = torch.Generator().manual_seed(self.seed * 100003 + epoch)
            if self.group == 1:
                perm = torch.randperm(self.length, generator=g)
            else:  # blocks of `group` indices, in order inside a block (the last block may be short)
                blocks = torch.randperm(-(-self.length // self.group), generator=g)
                perm = (blocks[:, None] * self.group + torch.arange(self.group)).flatten()
                perm = perm[perm < self.length]
            self._perms = {epoch: perm}
        return self._perms[epoch]

    def global_batch(self, pos: int) -> list:
        out, n = [], self.batch * self.world
        while len(out) < n:
            epoch, off = divmod(pos + len(out), self.length)
            take = min(n - len(out), self.length - off)
            out += self._perm(epoch)[off:off + take].tolist()
        return out

    def __iter__(self):
        pos = self.start
        while True:
            g = self.global_batch(pos)
            yield g[self.rank * self.batch:(self.rank + 1) * self.batch]
            pos += self.batch * self.world

    def __len__(self):  # infinite; DataLoader only needs it for len()
        return 2 ** 62


class TrainingView(torch.utils.data.Dataset):
    """Keep only the keys training needs (cheaper collate), optionally caching items in memory."""

    def __init__(self, ds, keys=TRAINING_KEYS, cache: bool = False):
        self.ds, self.keys, self.cache = ds, keys, {} if cache else None

    def __len__(self):
        return len(self.ds)

    def _slim(self, item):
        return None if item is None else {k: item[k] for k in self.keys if k in item}

    def __getitems__(self, indices):
        """Batched fetch (SyntheticFaces renders a whole batch at once)."""
        todo = [i for i in indices if self.cache is None or i not in self.cache]
        if todo:
            if hasattr(self.ds, "__getitems__"):
                got = self.ds.__getitems__(todo)
            else:
                got = [self.ds[i] for i in todo]
            got = dict(zip(todo, (self._slim(it) for it in got)))
            if self.cache is None:
                return [got[i] for i in indices]
            self.cache.update(got)
        return [self.cache[i] for i in indices]

    def __getitem__(self, i):
        if self.cache is not None and i in self.cache:
            return self.cache[i]
        item = self._slim(self.ds[i])
        if self.cache is not None:
            self.cache[i] = item
        return item
