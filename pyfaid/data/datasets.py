"""Real-image datasets: any folder of face photos, CelebA and AFLW2000-3D.

Images are read with OpenCV, aligned with :func:`pyfaid.encoders.align_faces` (MTCNN 5 points,
224x224 crops) and resized to ``image_size``. Aligned crops can be cached as PNG files under
``cache_dir``. An image that cannot be decoded, or in which no face is found, is skipped and
counted (``dataset.skipped``); the batch collate function :func:`collate_skip` drops it and reports
how many items of the batch were dropped.

Items are dicts: ``image [3, S, S]`` RGB in [0, 1], ``mask [1, S, S]`` (face pixels to use; all
ones without a segmentation), ``index`` and dataset-specific extras.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from typing import Optional

import cv2
import numpy as np
import scipy.io
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from pyfaid.encoders import align_faces

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def _check_dir(root: Optional[str], what: str) -> str:
    if root is None:
        raise ValueError(f"{what}: no dataset folder given (data.root)")
    if not os.path.isdir(root):
        raise FileNotFoundError(f"{what}: dataset folder not found: {root}")
    return root


def list_images(root: str) -> list:
    """Sorted image paths under ``root`` (recursive)."""
    out = []
    for d, _, files in os.walk(root):
        out += [os.path.join(d, f) for f in files if f.lower().endswith(IMAGE_EXTS)]
    return sorted(out)


def read_image(path: str) -> Optional[np.ndarray]:
    """RGB uint8 ``[H, W, 3]`` or None when the file cannot be decoded."""
    try:
        img = cv2.imread(path, cv2.IMREAD_COLOR)
    except cv2.error:
        return None
    if img is None or img.size == 0:
        return None
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _to_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float() / 255.0


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    return F.interpolate(x[None], size=(size, size), mode="bilinear", align_corners=False,
                         antialias=True)[0]


class ImageFolderFaces(Dataset):
    """Every image under a folder, aligned to a 224x224 face crop.

    Args:
        root: folder (searched recursively).
        image_size: output resolution S.
        align: align with ``pyfaid.encoders.align_faces`` (False: images are already aligned crops).
        cache_dir: folder for cached aligned crops (None: no cache).
        masks: optional folder of segmentation masks named like the images (``<stem>.png``).

    Raises:
        FileNotFoundError: missing folder. ValueError: a folder without images.
    """

    name = "ImageFolderFaces"

    def __init__(self, root: str, image_size: int = 224, align: bool = True,
                 cache_dir: Optional[str] = None, masks: Optional[str] = None, files=None):
        self.root = _check_dir(root, self.name)
        self.files = list_images(self.root) if files is None else files
        if not self.files:
            raise ValueError(f"{self.name}: no images ({', '.join(IMAGE_EXTS)}) found in {root}")
        self.image_size = int(image_size)
        self.align = align
        self.cache_dir = cache_dir
        if masks is not None and not os.path.isdir(masks):
            raise FileNotFoundError(f"{self.name}: mask folder not found: {masks}")
        self.masks = masks
        self.skipped = 0
        self.skipped_files = []

    def __len__(self) -> int:
        return len(self.files)

    def _skip(self, path: str, why: str):
        self.skipped += 1
        if len(self.skipped_files) < 100:
            self.skipped_files.append((path, why))
        return None

    def _cache_path(self, path: str) -> Optional[str]:
        if self.cache_dir is None:
            return None
        h = hashlib.sha1(os.path.abspath(path).encode()).hexdigest()[:16]
        return os.path.join(self.cache_dir, f"{h}.png")

    def _aligned(self, path: str):
        """``(crop [3,224,224] float, transform or None)`` or None when unreadable / no face."""
        cp = self._cache_path(path)
        if cp is not None and os.path.isfile(cp):
            img = read_image(cp)
            if img is not None:
                return _to_tensor(img), None
        img = read_image(path)
        if img is None:
            return self._skip(path, "cannot decode image")
        x = _to_tensor(img)
        transform = None
        if self.align:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = align_faces([img])
            valid = getattr(res, "valid", None)
            if (valid is not None and not bool(valid[0])) or res[1][0] is None:
                return self._skip(path, "no face found")
            x, transform = res[0][0], res[1][0]
        if cp is not None:
            os.makedirs(self.cache_dir, exist_ok=True)
            arr = (x.clamp(0, 1) * 255 + 0.5).byte().permute(1, 2, 0).numpy()
            tmp = cp + f".tmp{os.getpid()}.png"
            cv2.imwrite(tmp, cv2.cvtColor(arr, cv2.COLOR_RGB2BGR))
            os.replace(tmp, cp)
        return x, transform

    def _mask(self, path: str, size: int) -> torch.Tensor:
        if self.masks is not None:
            stem = os.path.splitext(os.path.basename(path))[0]
            for ext in (".png", ".jpg", ".bmp"):
                mp = os.path.join(self.masks, stem + ext)
                if os.path.isfile(mp):
                    m = read_image(mp)
                    if m is not None:
                        t = (_to_tensor(m)[:1] > 0.5).float()
                        return (_resize(t, size) > 0.5).float()
        return torch.ones(1, size, size)

    def __getitem__(self, i: int):
        path = self.files[i]
        got = self._aligned(path)
        if got is None:
            return None
        x, _ = got
        S = self.image_size
        return {"image": _resize(x, S).clamp(0, 1), "mask": self._mask(path, S), "index": i}


class CelebA(ImageFolderFaces):
    """CelebA: ``<root>/img_align_celeba/*.jpg`` + ``<root>/list_attr_celeba.txt`` (40 attributes).

    Items add ``attributes [40]`` (0/1 floats). ``masks``: optional segmentation folder (e.g.
    CelebAMask-HQ style, ``<stem>.png``, nonzero = face).
    """

    name = "CelebA"

    def __init__(self, root: str, image_size: int = 224, align: bool = True,
                 cache_dir: Optional[str] = None, masks: Optional[str] = None):
        _check_dir(root, self.name)
        img_dir = os.path.join(root, "img_align_celeba")
        if not os.path.isdir(img_dir):
            raise FileNotFoundError(f"CelebA: {img_dir} not found (expected <root>/img_align_celeba/)")
        attr_file = os.path.join(root, "list_attr_celeba.txt")
        self.attr_names, self.attrs = [], {}
        if os.path.isfile(attr_file):
            with open(attr_file) as f:
                lines = f.read().splitlines()
            self.attr_names = lines[1].split()
            for line in lines[2:]:
                parts = line.split()
                if len(parts) == len(self.attr_names) + 1:
                    self.attrs[parts[0]] = torch.tensor([int(v) > 0 for v in parts[1:]], dtype=torch.float32)
        super().__init__(img_dir, image_size, align, cache_dir, masks)
        self.root = root

    def __getitem__(self, i: int):
        item = super().__getitem__(i)
        if item is not None and self.attr_names:
            name = os.path.basename(self.files[i])
            item["attributes"] = self.attrs.get(name, torch.full((len(self.attr_names),), float("nan")))
        return item


class AFLW2000(ImageFolderFaces):
    """AFLW2000-3D: ``imageXXXXX.jpg`` + ``imageXXXXX.mat`` pairs.

    Items add ``pose [3]`` (pitch, yaw, roll, radians, from ``Pose_Para``) and ``landmarks3d [68, 3]``
    (``pt3d_68``, original image pixels). Images without a ``.mat`` file are left out.
    """

    name = "AFLW2000"

    def __init__(self, root: str, image_size: int = 224, align: bool = True,
                 cache_dir: Optional[str] = None):
        _check_dir(root, self.name)
        files = [p for p in list_images(root) if os.path.isfile(os.path.splitext(p)[0] + ".mat")]
        if not files:
            raise ValueError(f"AFLW2000: no image + .mat pairs found in {root}")
        super().__init__(root, image_size, align, cache_dir, None, files=files)

    def __getitem__(self, i: int):
        item = super().__getitem__(i)
        if item is None:
            return None

        try:
            mat = scipy.io.loadmat(os.path.splitext(self.files[i])[0] + ".mat")
        except Exception:  # noqa: BLE001 - a broken annotation is skipped like a broken image
            return self._skip(self.files[i], "cannot read .mat")
        item["pose"] = torch.as_tensor(mat["Pose_Para"].reshape(-1)[:3], dtype=torch.float32)
        item["landmarks3d"] = torch.as_tensor(mat["pt3d_68"], dtype=torch.float32).T.contiguous()
        return item


def collate_skip(items):
    """Collate dicts, dropping ``None`` items (skipped images); adds ``skipped`` (int)."""
    good = [it for it in items if it is not None]
    skipped = len(items) - len(good)
    if not good:
        return {"skipped": skipped}
    out = torch.utils.data.default_collate(good)
    out["skipped"] = skipped
    return out
