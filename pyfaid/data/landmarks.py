"""Photos annotated with 68 landmarks: the 300-W / iBUG ``.pts`` layout and AFLW2000-3D.

* :func:`read_pts` reads one iBUG ``.pts`` file (``version: 1``, ``n_points: 68``, ``{ x y ... }``;
  coordinates with the origin at the top-left pixel's *corner*, so the first pixel's centre is
  ``(0.5, 0.5)``) and returns points in pyfaid's convention (pixel centres at integers).
* :func:`annotated_photos` lists the photos of a folder with their points (and head pose, for
  AFLW2000-3D's ``Pose_Para``): the input of the landmark protocol (:mod:`pyfaid.evaluate.landmarks`).
* :class:`iBUG300W` is the same folder as a training/evaluation ``Dataset`` of aligned crops.

Point order is the iBUG 68-point scheme: 0-16 jaw (the visible silhouette), 17-26 brows, 27-35
nose, 36-47 eyes, 48-67 mouth.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import List, Optional

import cv2
import numpy as np
import scipy.io
import torch

from pyfaid.data.datasets import IMAGE_EXTS, ImageFolderFaces, list_images

__all__ = ["read_pts", "write_pts", "AnnotatedPhoto", "annotated_photos", "iBUG300W", "INNER_51", "GROUPS",
           "OUTER_EYE_CORNERS", "write_aflw2000"]

#: The 51 inner points (brows, nose, eyes, mouth: everything but the jaw line).
INNER_51 = tuple(range(17, 68))
#: Point groups of the iBUG scheme, by name.
GROUPS = {"jaw": tuple(range(17)), "brows": tuple(range(17, 27)), "nose": tuple(range(27, 36)),
          "eyes": tuple(range(36, 48)), "mouth": tuple(range(48, 68)), "inner": INNER_51, "all": tuple(range(68))}
#: The outer eye corners (inter-ocular normalisation).
OUTER_EYE_CORNERS = (36, 45)


class AnnotationError(ValueError):
    """An annotation file that cannot be read (the message names it)."""


def read_pts(path: str) -> np.ndarray:
    """One iBUG ``.pts`` file -> ``[N, 2]`` float64 points, pixel centres at integer coordinates.

    Raises:
        AnnotationError: a missing file or one that does not follow the format.
    """
    if not os.path.isfile(path):
        raise AnnotationError(f"{path}: no such annotation file")
    with open(path, errors="replace") as f:
        text = f.read()
    head, brace, rest = text.partition("{")
    body, close, _ = rest.partition("}")
    if not brace or not close:
        raise AnnotationError(f"{path}: not an iBUG .pts file (no {{ ... }} block)")
    n = None
    for line in head.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "n_points":
            try:
                n = int(value)
            except ValueError:
                raise AnnotationError(f"{path}: bad n_points line {line!r}") from None
    try:
        pts = np.array([float(v) for v in body.split()], np.float64).reshape(-1, 2)
    except ValueError:
        raise AnnotationError(f"{path}: the point block holds something that is not a number") from None
    if n is None or len(pts) != n:
        raise AnnotationError(f"{path}: n_points says {n} but the block holds {len(pts)} points")
    if not np.isfinite(pts).all():
        raise AnnotationError(f"{path}: non-finite coordinates")
    return pts - 0.5


def write_pts(path: str, points: np.ndarray) -> None:
    """Write ``[N, 2]`` points (pixel centres at integers) as an iBUG ``.pts`` file."""
    pts = np.asarray(points, np.float64) + 0.5
    lines = ["version: 1", f"n_points:  {len(pts)}", "{"] + [f"{x:.3f} {y:.3f}" for x, y in pts] + ["}"]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


@dataclass
class AnnotatedPhoto:
    """A photo with its 68 annotated points.

    Attributes:
        path: the image file.
        points: ``[68, 2]`` pixel coordinates (centres at integers, x right, y down).
        pose: ``(pitch, yaw, roll)`` in radians when the dataset gives it, else None.
        depth: ``[68]`` the points' depth in pixels (AFLW2000-3D's third ``pt3d_68`` row), else None.
    """

    path: str
    points: np.ndarray
    pose: Optional[np.ndarray] = None
    depth: Optional[np.ndarray] = None

    @property
    def box(self) -> np.ndarray:
        """``[x0, y0, x1, y1]``: the bounding box of the points."""
        return np.concatenate([self.points.min(0), self.points.max(0)])

    @property
    def box_size(self) -> float:
        """``sqrt(w * h)`` of :attr:`box` (the 3DDFA normalisation)."""
        w, h = self.points.max(0) - self.points.min(0)
        return float(np.sqrt(max(w, 1e-6) * max(h, 1e-6)))

    @property
    def interocular(self) -> float:
        """Distance of the outer eye corners 36 and 45."""
        return float(np.linalg.norm(self.points[OUTER_EYE_CORNERS[0]] - self.points[OUTER_EYE_CORNERS[1]]))


def _aflw_points(mat_path: str):
    try:
        mat = scipy.io.loadmat(mat_path)
        pt3d = np.asarray(mat["pt3d_68"], np.float64)
        pts = pt3d[:2].T  # [68, 2]
        depth = pt3d[2] if pt3d.shape[0] >= 3 else None
        pose = np.asarray(mat["Pose_Para"], np.float64).reshape(-1)[:3]
    except Exception as exc:  # noqa: BLE001 - name the broken file
        raise AnnotationError(f"{mat_path}: not an AFLW2000-3D annotation ({exc})") from exc
    if pts.shape != (68, 2):
        raise AnnotationError(f"{mat_path}: pt3d_68 must hold 68 points, got {pts.shape}")
    return pts, pose, depth


def annotated_photos(root: str, kind: str = "300w") -> List[AnnotatedPhoto]:
    """The annotated photos of a folder (searched recursively), sorted by path.

    Args:
        root: the folder.
        kind: ``"300w"`` (``NAME.jpg|png`` + ``NAME.pts``) or ``"aflw2000"`` (``NAME.jpg`` +
            ``NAME.mat`` with ``pt3d_68`` and ``Pose_Para``).

    Raises:
        FileNotFoundError: no such folder. ValueError: no annotated photo in it.
        AnnotationError: an annotation file that cannot be read.
    """
    if not os.path.isdir(root):
        raise FileNotFoundError(f"{kind}: dataset folder not found: {root}")
    out = []
    for img in list_images(root):
        stem = os.path.splitext(img)[0]
        if kind == "300w" and os.path.isfile(stem + ".pts"):
            pts = read_pts(stem + ".pts")
            if len(pts) != 68:
                raise AnnotationError(f"{stem}.pts: expected 68 points, got {len(pts)}")
            out.append(AnnotatedPhoto(img, pts))
        elif kind == "aflw2000" and os.path.isfile(stem + ".mat"):
            pts, pose, depth = _aflw_points(stem + ".mat")
            out.append(AnnotatedPhoto(img, pts, pose, depth))
    if not out:
        ext = ".pts" if kind == "300w" else ".mat"
        raise ValueError(f"{kind}: no image ({', '.join(IMAGE_EXTS)}) with a {ext} file beside it in {root}")
    return out


class iBUG300W(ImageFolderFaces):
    """A 300-W-layout folder (``NAME.jpg|png`` + ``NAME.pts``) as aligned crops (MTCNN, 224).

    Items add ``landmarks68 [68, 2]``: the annotated points in the crop's pixels.
    """

    name = "300-W"

    def __init__(self, root: str, image_size: int = 224, align: bool = True, cache_dir: Optional[str] = None):
        self.photos = annotated_photos(root, "300w")
        super().__init__(root, image_size, align, cache_dir, None, files=[p.path for p in self.photos])

    def __getitem__(self, i: int):
        got = self._aligned(self.files[i])
        if got is None:
            return None
        x, m = got
        S = self.image_size
        if x.shape[-1] != S:
            x = torch.nn.functional.interpolate(x[None], size=(S, S), mode="bilinear", align_corners=False,
                                                antialias=True)[0]
        item = {"image": x.clamp(0, 1), "mask": torch.ones(1, S, S), "index": i}
        if m is not None:
            pts = self.photos[i].points @ np.asarray(m)[:, :2].T + np.asarray(m)[:, 2]
            item["landmarks68"] = torch.as_tensor(pts * (self.image_size / 224.0), dtype=torch.float32)
        return item


def write_aflw2000(path_stem: str, image: np.ndarray, points_xyz: np.ndarray, pose: np.ndarray) -> None:
    """Write one photo in AFLW2000-3D's layout: ``STEM.jpg`` and ``STEM.mat`` with ``pt3d_68``
    (``[3, 68]``: x, y in pixels with pixel centres at integers, z depth in pixels) and
    ``Pose_Para`` (``[1, 7]``: pitch, yaw, roll in radians, then zeros).

    Args:
        path_stem: the output path without extension.
        image: ``[H, W, 3]`` uint8 RGB.
        points_xyz: ``[68, 3]``.
        pose: ``[3]`` pitch, yaw, roll (radians).
    """
    if not cv2.imwrite(path_stem + ".jpg", np.ascontiguousarray(image[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 95]):
        raise OSError(f"could not write {path_stem}.jpg")
    para = np.zeros((1, 7))
    para[0, :3] = pose
    scipy.io.savemat(path_stem + ".mat", {"pt3d_68": np.asarray(points_xyz, np.float64).T, "Pose_Para": para})
