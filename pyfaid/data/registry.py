"""The dataset registry: one place that turns a dataset name (and folder) into a Dataset.

Training (``data.dataset`` / ``data.root`` of a config) and evaluation (``--data KIND[:DIR]``) both
build their data here.

    kind, root = parse_spec("aflw2000:/data/AFLW2000")
    ds = build_dataset(kind, root, image_size=224)
"""

from __future__ import annotations

import os
from typing import Optional

from pyfaid.data import datasets as D
from pyfaid.data.cache import CachedFaces
from pyfaid.data.landmarks import iBUG300W
from pyfaid.synth.faces import SyntheticFaces

__all__ = ["DATASETS", "parse_spec", "build_dataset"]

#: Dataset kinds and what their folder holds.
DATASETS = {
    "synthetic": "pyfaid's synthetic faces (no folder)",
    "cached": "a synthetic-face cache folder written by `python -m pyfaid.data cache`",
    "folder": "any folder of face photos (searched recursively)",
    "celeba": "CelebA: <root>/img_align_celeba/ and <root>/list_attr_celeba.txt",
    "aflw2000": "AFLW2000-3D: imageXXXXX.jpg + imageXXXXX.mat (pt3d_68, Pose_Para)",
    "300w": "300-W / iBUG layout: NAME.jpg|png + NAME.pts (68 points)",
}


def parse_spec(spec: str) -> tuple[str, Optional[str]]:
    """``"KIND"`` or ``"KIND:DIR"`` -> ``(kind, root)``; the folder must exist for every kind but
    ``synthetic``.

    Raises:
        ValueError: an unknown kind, a missing folder.
    """
    kind, _, root = str(spec).partition(":")
    kind = kind.lower()
    if kind not in DATASETS:
        raise ValueError(f"--data {spec!r}: expected {', '.join(k if k == 'synthetic' else k + ':DIR' for k in DATASETS)}")
    if kind != "synthetic":
        if not root:
            raise ValueError(f"--data {spec!r}: {kind} needs a folder, e.g. {kind}:/path/to/data")
        if not os.path.isdir(root):
            raise ValueError(f"--data {spec!r}: {root} is not a folder")
    return kind, root or None


def build_dataset(kind: str, root: Optional[str] = None, *, image_size: int = 224, align: bool = True,
                  cache_dir: Optional[str] = None, masks: Optional[str] = None, seed: int = 0,
                  length: int = 10000, occlusion: bool = True, face_model=None, **synthetic_kw):
    """Build a dataset by kind.

    Args:
        kind: a key of :data:`DATASETS`.
        root: the dataset folder (every kind but ``synthetic``).
        image_size: output resolution.
        align: align real photos with MTCNN (False: they are aligned crops already).
        cache_dir: folder for cached aligned crops (real photos).
        masks: optional folder of face-segmentation masks (folder / celeba).
        seed, length, occlusion, face_model, **synthetic_kw: synthetic data options
            (:class:`~pyfaid.synth.SyntheticFaces`).

    Returns:
        a ``torch.utils.data.Dataset`` whose items are dicts with ``image [3, S, S]`` and ``mask``.
    """
    if kind not in DATASETS:
        raise ValueError(f"unknown dataset {kind!r}; choose from {', '.join(DATASETS)}")
    if kind == "synthetic":
        return SyntheticFaces(seed=seed, length=length, image_size=image_size, occlusion=occlusion,
                              face_model=face_model, **synthetic_kw)
    if kind == "cached":
        ds = CachedFaces(root, face_model=face_model)
        if ds.image_size != image_size:
            raise ValueError(f"dataset cached:{root}: the cache holds {ds.image_size}x{ds.image_size} pictures, "
                             f"{image_size} requested; make a cache with --size {image_size}")
        return ds

    if kind == "folder":
        return D.ImageFolderFaces(root, image_size, align, cache_dir, masks)
    if kind == "celeba":
        return D.CelebA(root, image_size, align, cache_dir, masks)
    if kind == "aflw2000":
        return D.AFLW2000(root, image_size, align, cache_dir)

    return iBUG300W(root, image_size, align, cache_dir)
