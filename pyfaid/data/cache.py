"""A disk cache of synthetic faces for pretraining: written once, memory-mapped, fast to iterate.

Generating a synthetic face costs tens of milliseconds of CPU; a pretraining run reads each face
many times. :func:`write_cache` (``python -m pyfaid.data cache --out DIR --n N --size S``) renders
``N`` items of :class:`~pyfaid.synth.SyntheticFaces` into shards of plain ``.npy`` files, and
:class:`CachedFaces` serves them back with the same item keys, memory-mapped (``numpy.load(...,
mmap_mode="r")``), so opening a cache costs nothing and many loader workers share the page cache.

Layout::

    DIR/meta.json                  what was rendered (options, keys, shapes, shard size, version)
    DIR/shard_00000/image.npy      uint8 [S, 3, H, W]      (also clean.npy)
    DIR/shard_00000/face_mask.npy  uint8 [S, H, ceil(W/8)] bit-packed 0/1 (also occluder_mask.npy)
    DIR/shard_00000/coeffs.npy     float32 [S, layout.size] (landmarks, landmarks_2d: float32 [S, 68, 2],
                                   landmark_visible, landmark_3d_visible: bool [S, 68], index: int64 [S])
    DIR/shard_00000/colors.npy     uint8 [S, V, 3]  (only with ``colors=True``: albedo quantised to 1/255)
    DIR/shard_00000/label.<name>.npy  float32 [S] or [S, T]

``mask`` is not stored (it is ``face_mask * (1 - occluder_mask)``, recomputed on reading), nor are
``vertices`` (``CachedFaces(with_vertices=True)`` recomputes them exactly from ``coeffs`` with the
face model), nor ``landmarks_3d`` (the same points as ``landmarks``). Version 2: ``landmarks_2d`` follow
the head's outline (:mod:`pyfaid.synth.contour`); version-1 caches hold the older jaw points. A shard is written into ``shard_XXXXX.tmp`` and renamed when complete, so an
interrupted run leaves only whole shards; rerunning the same command skips them.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from pyfaid import facemodel
from pyfaid.render import camera as cam
from pyfaid.render.renderer import Renderer
from pyfaid.synth.faces import SyntheticFaces

__all__ = ["write_cache", "CachedFaces", "CACHE_VERSION"]

CACHE_VERSION = 2
_IMAGES = ("image", "clean")
_MASKS = ("face_mask", "occluder_mask")
_ARRAYS = ("coeffs", "landmarks", "landmarks_2d", "landmark_visible", "landmark_3d_visible", "index")


def _shard_name(k: int) -> str:
    return f"shard_{k:05d}"


def _dataset_options(ds) -> dict:
    keys = ("seed", "image_size", "occlusion", "id_scale", "exp_scale", "tex_scale", "max_yaw", "max_pitch",
            "max_roll", "harsh_light_prob", "tint_prob", "blur_prob", "noise_prob", "occlusion_prob",
            "texture_detail", "context", "lighting_extras", "camera_effects", "framing", "face_scale")
    out = {k: getattr(ds, k) for k in keys}
    out["occlusion_kwargs"] = {k: (list(v) if isinstance(v, (tuple, list)) else v) for k, v in ds.occlusion_kwargs.items()}
    out["background_kinds"] = None if ds.background_kinds is None else list(ds.background_kinds)
    out["face_model"] = dict(getattr(ds.face_model, "meta", {}))
    return out


def write_cache(out_dir: str, n: int, image_size: int = 224, seed: int = 0, shard_size: int = 1000,
                batch_size: int = 32, colors: bool = False, progress: bool = True, dataset=None,
                **dataset_kw) -> dict:
    """Render ``n`` synthetic items into a cache folder (resuming an interrupted run).

    Args:
        out_dir: the cache folder (created).
        n: number of items (indices ``0 .. n-1`` of the dataset).
        image_size: picture side.
        seed: dataset seed.
        shard_size: items per shard.
        batch_size: items rendered per ``SyntheticFaces.batch`` call.
        colors: also store the per-vertex albedo (uint8, ``V x 3`` bytes per item).
        progress: show a progress bar.
        dataset: a ready ``SyntheticFaces`` (its options are recorded); default: one built from
            ``seed``, ``image_size`` and ``dataset_kw``.
        **dataset_kw: more ``SyntheticFaces`` options.

    Returns:
        the cache's metadata (also in ``out_dir/meta.json``).

    Raises:
        ValueError: bad arguments, or ``out_dir`` holds a cache made with other settings.
    """
    if int(n) < 1:
        raise ValueError(f"cache: --n must be >= 1, got {n}")
    if int(shard_size) < 1 or int(batch_size) < 1:
        raise ValueError(f"cache: shard size and batch size must be >= 1, got {shard_size}, {batch_size}")
    if dataset is None:
        dataset = SyntheticFaces(seed=seed, length=n, image_size=image_size, **dataset_kw)
    elif len(dataset) < n:
        raise ValueError(f"cache: the dataset has {len(dataset)} items, {n} requested")
    n, shard_size, size = int(n), int(shard_size), int(dataset.image_size)
    meta = {
        "version": CACHE_VERSION, "n": n, "image_size": size, "shard_size": shard_size, "colors": bool(colors),
        "dataset": _dataset_options(dataset), "label_names": dataset.label_names(),
    }
    os.makedirs(out_dir, exist_ok=True)
    meta_path = os.path.join(out_dir, "meta.json")
    if os.path.isfile(meta_path):
        with open(meta_path) as fh:
            old = json.load(fh)
        mismatch = [k for k in ("version", "n", "image_size", "shard_size", "colors", "dataset")
                    if json.dumps(old.get(k), sort_keys=True) != json.dumps(meta[k], sort_keys=True)]
        if mismatch:
            raise ValueError(f"cache: {out_dir} holds a cache made with other settings ({', '.join(mismatch)} differ); "
                             "use another folder, or delete it to start again")
    else:
        tmp = meta_path + ".tmp"
        with open(tmp, "w") as fh:
            json.dump(meta, fh, indent=1, sort_keys=True)
        os.replace(tmp, meta_path)
    n_shards = -(-n // shard_size)
    todo = [k for k in range(n_shards) if not os.path.isdir(os.path.join(out_dir, _shard_name(k)))]
    done_items = sum(min(shard_size, n - k * shard_size) for k in range(n_shards) if k not in todo)
    bar = tqdm(total=n, initial=done_items, desc=f"cache {out_dir}", unit="face", disable=not progress)
    for k in todo:
        start, stop = k * shard_size, min(n, (k + 1) * shard_size)
        tmp_dir = os.path.join(out_dir, _shard_name(k) + ".tmp")
        if os.path.isdir(tmp_dir):
            shutil.rmtree(tmp_dir)  # left by an interrupted run
        os.makedirs(tmp_dir)
        arrays: dict = {}
        for s0 in range(start, stop, batch_size):
            idx = list(range(s0, min(stop, s0 + batch_size)))
            b = dataset.batch(idx)
            _append(arrays, b, colors)
            bar.update(len(idx))
        for name, parts in arrays.items():
            np.save(os.path.join(tmp_dir, name + ".npy"), np.concatenate(parts))
        os.replace(tmp_dir, os.path.join(out_dir, _shard_name(k)))
    bar.close()
    return meta


def _append(arrays: dict, b: dict, colors: bool) -> None:
    """Add one generated batch to the per-file lists of a shard being written."""
    def add(name, value):
        arrays.setdefault(name, []).append(value)

    for key in _IMAGES:
        add(key, (b[key].numpy() * 255.0 + 0.5).astype(np.uint8))
    for key in _MASKS:
        add(key, np.packbits(b[key][:, 0].numpy() > 0.5, axis=-1))
    for key in _ARRAYS:
        v = b[key].numpy()
        add(key, v.astype(np.float32) if v.dtype.kind == "f" else v)
    if colors:
        add("colors", (b["colors"].clamp(0, 1).numpy() * 255.0 + 0.5).astype(np.uint8))
    for name, v in b["labels"].items():
        add("label." + name, v.float().numpy())


class CachedFaces(Dataset):
    """Items of a cache written by :func:`write_cache`, memory-mapped, with SyntheticFaces' keys.

    Args:
        root: the cache folder.
        with_vertices: also return ``vertices [V, 3]`` (camera space), recomputed exactly from the
            coefficients with the face model (about a millisecond per item in batches).
        face_model: the ``MorphableModel`` for ``with_vertices`` (default: the default model,
            which must be the one the cache was made with).
        allow_partial: serve the finished shards of an unfinished cache (else: an error naming
            the missing shards).

    Items are dicts like :class:`~pyfaid.synth.SyntheticFaces`': ``image``, ``clean [3, H, W]``
    float in [0, 1]; ``mask``, ``face_mask``, ``occluder_mask [1, H, W]`` 0/1; ``coeffs``,
    ``landmarks`` (= ``landmarks_3d``), ``landmarks_2d``, ``landmark_visible``, ``landmark_3d_visible``,
    ``index``, ``labels``; ``colors`` when
    the cache stores them (quantised to 1/255); ``vertices`` with ``with_vertices``. ``index`` is
    the item's index in the synthetic dataset it came from.
    """

    def __init__(self, root: str, with_vertices: bool = False, face_model=None, allow_partial: bool = False) -> None:
        meta_path = os.path.join(root, "meta.json")
        if not os.path.isfile(meta_path):
            raise FileNotFoundError(f"CachedFaces: {root} is not a cache folder (no meta.json); "
                                    "make one with: python -m pyfaid.data cache --out DIR --n N")
        with open(meta_path) as fh:
            self.meta = json.load(fh)
        if self.meta.get("version") != CACHE_VERSION:
            raise ValueError(f"CachedFaces: {root} has cache version {self.meta.get('version')}, "
                             f"this pyfaid reads version {CACHE_VERSION}")
        self.root = root
        self.image_size = int(self.meta["image_size"])
        n, step = int(self.meta["n"]), int(self.meta["shard_size"])
        shards = []
        missing = []
        for k in range(-(-n // step)):
            path = os.path.join(root, _shard_name(k))
            count = min(step, n - k * step)
            if os.path.isdir(path):
                shards.append((path, count))
            else:
                missing.append(k)
        if missing and not allow_partial:
            raise ValueError(f"CachedFaces: {root} is unfinished: shard(s) {', '.join(map(str, missing[:10]))}"
                             f"{' ...' if len(missing) > 10 else ''} missing; rerun the same `python -m pyfaid.data "
                             "cache` command to finish it, or pass allow_partial=True")
        if not shards:
            raise ValueError(f"CachedFaces: {root} has no finished shard yet")
        self._shards = shards
        self._starts = np.cumsum([0] + [c for _, c in shards])
        self._open: dict = {}
        self.with_vertices = bool(with_vertices)
        self._face_model = face_model
        self._renderer = None
        first = self._arrays(0)
        self._labels = sorted(k[len("label."):] for k in first if k.startswith("label."))
        self.has_colors = "colors" in first

    def __len__(self) -> int:
        return int(self._starts[-1])

    def label_names(self) -> dict:
        """The names of the vector labels, as :meth:`SyntheticFaces.label_names` gave them."""
        return dict(self.meta.get("label_names", {}))

    def _arrays(self, k: int) -> dict:
        if k not in self._open:
            path = self._shards[k][0]
            out = {}
            for fn in os.listdir(path):
                if fn.endswith(".npy"):
                    try:
                        out[fn[:-4]] = np.load(os.path.join(path, fn), mmap_mode="r")
                    except (ValueError, OSError) as exc:
                        raise ValueError(f"CachedFaces: {os.path.join(path, fn)} is unreadable ({exc})") from exc
            for need in _IMAGES + _MASKS + _ARRAYS:
                if need not in out:
                    raise ValueError(f"CachedFaces: {path} lacks {need}.npy")
            self._open[k] = out
        return self._open[k]

    def _locate(self, i: int) -> tuple[int, int]:
        n = len(self)
        j = int(i)
        if j < 0:
            j += n
        if not 0 <= j < n:
            raise IndexError(f"CachedFaces: index {i} out of range for length {n}")
        k = int(np.searchsorted(self._starts, j, side="right") - 1)
        return k, j - int(self._starts[k])

    def _read(self, k: int, rows) -> dict:
        """Stacked tensors for rows (an int array or slice) of shard k."""
        a = self._arrays(k)
        size = self.image_size
        out = {key: torch.from_numpy(np.asarray(a[key][rows])).float().div_(255.0) for key in _IMAGES}
        for key in _MASKS:
            bits = np.unpackbits(np.asarray(a[key][rows]), axis=-1, count=size)
            out[key] = torch.from_numpy(bits).float()[:, None]
        out["mask"] = out["face_mask"] * (1 - out["occluder_mask"])
        for key in _ARRAYS:
            out[key] = torch.from_numpy(np.array(a[key][rows]))
        out["landmarks_3d"] = out["landmarks"]
        if self.has_colors:
            out["colors"] = torch.from_numpy(np.asarray(a["colors"][rows])).float().div_(255.0)
        out["labels"] = {name: torch.from_numpy(np.array(a["label." + name][rows])) for name in self._labels}
        return out

    def _add_vertices(self, batch: dict) -> None:
        if self._face_model is None:
            self._face_model = facemodel.load("default")
        if self._renderer is None:
            self._renderer = Renderer(self.image_size)

        fm = self._face_model
        parts = fm.split_coeffs(batch["coeffs"])
        shape = fm.shape(parts["id"], parts["exp"])
        world = cam.apply_pose(shape, cam.euler_rotation(parts["angle"]), parts["trans"])
        batch["vertices"] = cam.to_camera(world, self._renderer.camera_distance).float()

    def batch(self, indices: Sequence[int]) -> dict:
        """Several items as stacked tensors (like :meth:`SyntheticFaces.batch`)."""
        locs = [self._locate(i) for i in indices]
        if not locs:
            raise ValueError("CachedFaces.batch: `indices` is empty")
        parts, order = [], []
        for k in sorted({k for k, _ in locs}):
            rows = np.array([r for kk, r in locs if kk == k])
            pos = [p for p, (kk, _) in enumerate(locs) if kk == k]
            srt = np.argsort(rows, kind="stable")
            got = self._read(k, rows[srt])  # sorted reads are cheaper on a memory map
            inv = np.empty_like(srt)
            inv[srt] = np.arange(len(srt))
            parts.append(_take(got, torch.from_numpy(inv)))
            order += pos
        out = _cat(parts)
        if order != list(range(len(locs))):
            perm = torch.empty(len(order), dtype=torch.long)
            perm[torch.tensor(order)] = torch.arange(len(order))
            out = _take(out, perm)
        if self.with_vertices:
            with torch.no_grad():
                self._add_vertices(out)
        return out

    def __getitem__(self, index: int) -> dict:
        b = self.batch([index])
        item = {k: v[0] for k, v in b.items() if k != "labels"}
        item["labels"] = {k: v[0] for k, v in b["labels"].items()}
        return item

    def __getitems__(self, indices: Sequence[int]) -> list[dict]:
        b = self.batch(list(indices))
        out = []
        for j in range(len(indices)):
            item = {k: v[j] for k, v in b.items() if k != "labels"}
            item["labels"] = {k: v[j] for k, v in b["labels"].items()}
            out.append(item)
        return out


def _take(d: dict, idx: torch.Tensor) -> dict:
    out = {k: v[idx] for k, v in d.items() if k != "labels"}
    out["labels"] = {k: v[idx] for k, v in d["labels"].items()}
    return out


def _cat(parts: list) -> dict:
    if len(parts) == 1:
        return parts[0]
    out = {k: torch.cat([p[k] for p in parts]) for k in parts[0] if k != "labels"}
    out["labels"] = {k: torch.cat([p["labels"][k] for p in parts]) for k in parts[0]["labels"]}
    return out
