"""Reading user input for reconstruction: image files, arrays and tensors, folders of photos."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import warnings
from typing import List, Sequence, Union

import cv2
import numpy as np
import torch

__all__ = ["IMAGE_EXTENSIONS", "ImageReadError", "ImageDecodeWarning", "load_image", "to_rgb_uint8", "collect_inputs",
           "skin_mask"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

#: Smallest image side pyfaid accepts (MTCNN's smallest detection window is 12 px).
MIN_SIDE = 24
#: Largest value a float image may hold: 1, plus half an 8-bit step for rounding in a conversion.
FLOAT_MAX = 1.0 + 0.5 / 255


class ImageReadError(OSError):
    """An input image could not be read, decoded or used (the message names the input)."""


class ImageDecodeWarning(UserWarning):
    """The image decoder reported a problem (e.g. a truncated JPEG) but returned an image."""


@contextlib.contextmanager
def _decoder_messages():
    """Collect what C libraries write to the process's standard error (file descriptor 2) inside
    the block: libjpeg and libpng print their warnings there directly, past Python. Yields a list
    that holds the text once the block ends."""
    out: list = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield out
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            out.append(tmp.read().decode("utf-8", errors="replace"))


def load_image(path: Union[str, os.PathLike]) -> np.ndarray:
    """Read an image file with OpenCV.

    Args:
        path: image file.

    Returns:
        ``[H, W, 3]`` uint8 RGB array.

    Raises:
        ImageReadError: the file is missing, a folder, or cannot be decoded as an image.

    Warns:
        ImageDecodeWarning: the decoder complained but returned an image (a truncated or damaged
            file: its missing part is grey); one warning naming the file, instead of the
            decoder's own lines on standard error.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ImageReadError(f"{path}: is a folder, not an image (the command line takes folders; "
                             "in Python pass a list of files)")
    if not os.path.isfile(path):
        raise ImageReadError(f"{path}: no such file")
    with _decoder_messages() as messages:
        img = cv2.imread(path, cv2.IMREAD_COLOR)
    said = list(dict.fromkeys(line.strip() for line in "".join(messages).splitlines() if line.strip()))
    if img is not None and said:
        warnings.warn(f"{path}: the image decoder reported: {'; '.join(said)} (the file may be truncated or damaged; "
                      "the part that could be decoded is used)", ImageDecodeWarning, stacklevel=2)
    if img is None:
        raise ImageReadError(f"{path}: not a readable image (OpenCV could not decode it)")
    return check_size(cv2.cvtColor(img, cv2.COLOR_BGR2RGB), path)


def check_size(img: np.ndarray, name: str) -> np.ndarray:
    if min(img.shape[:2]) < MIN_SIDE:
        raise ImageReadError(f"{name}: image is {img.shape[1]}x{img.shape[0]} pixels; faces need an image of at "
                             f"least {MIN_SIDE}x{MIN_SIDE}")
    return img


def to_rgb_uint8(image, name: str = "array") -> np.ndarray:
    """Any supported in-memory image -> ``[H, W, 3]`` uint8 RGB.

    Accepts ``[H, W, 3|4]`` or ``[H, W]`` arrays (uint8 or other integers in 0-255, or floats in
    [0, 1]) and ``[3, H, W]`` (or ``[1, 3, H, W]``) float tensors in [0, 1].

    Raises:
        ImageReadError: wrong shape, an image with no finite pixel, float values above 1 (e.g. an
            image in 0-255 stored as floats: its pixels would all read as white) or integers
            outside 0-255, too small an image.
    """
    if isinstance(image, torch.Tensor):
        t = image.detach().cpu()
        if t.dim() == 4 and t.shape[0] == 1:
            t = t[0]
        if t.dim() != 3 or t.shape[0] != 3:
            raise ImageReadError(f"{name}: an image tensor must be [3, H, W] RGB in [0, 1], got {tuple(t.shape)}")
        arr = t.float().permute(1, 2, 0).numpy()
    else:
        arr = np.asarray(image)
        if arr.ndim == 2:
            arr = np.repeat(arr[..., None], 3, axis=2)
        if arr.ndim != 3 or arr.shape[2] not in (3, 4):
            raise ImageReadError(f"{name}: an image array must be [H, W, 3] RGB, got shape {arr.shape}")
        arr = arr[..., :3]
    if arr.dtype.kind in "iub" and arr.dtype != np.uint8:
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            raise ImageReadError(f"{name}: an integer image must hold values in 0-255 (8 bits), got {arr.min()} to "
                                 f"{arr.max()} ({arr.dtype})")
        arr = arr.astype(np.uint8)
    if arr.dtype != np.uint8:
        arr = arr.astype(np.float32)
        finite = np.isfinite(arr)
        if not finite.any():
            raise ImageReadError(f"{name}: the image has no finite pixel values (all NaN or inf)")
        top = float(arr[finite].max())
        if top > FLOAT_MAX:
            raise ImageReadError(f"{name}: a float image must hold values in [0, 1], but this one reaches {top:g} "
                                 "(an image in 0-255? pass it as uint8, or divide it by 255)")
        arr = (np.clip(np.where(finite, arr, 0.0), 0, 1) * 255 + 0.5).astype(np.uint8)
    return check_size(np.ascontiguousarray(arr), name)


def collect_inputs(inputs: Sequence[str]) -> List[str]:
    """Files given on the command line, with folders expanded to their images (sorted)."""
    files = []
    for x in inputs:
        if os.path.isdir(x):
            for name in sorted(os.listdir(x)):
                if name.lower().endswith(IMAGE_EXTENSIONS):
                    files.append(os.path.join(x, name))
        else:
            files.append(x)
    return files


def skin_mask(images: torch.Tensor) -> torch.Tensor:
    """Skin-coloured pixels by a YCrCb box (Cr in [133, 173], Cb in [77, 127]), slightly dilated.

    Args:
        images: ``[B, 3, H, W]`` RGB in [0, 1].

    Returns:
        ``[B, 1, H, W]`` float mask (1 = skin-like).
    """
    out = []
    for img in images.detach().cpu():
        rgb = (img.permute(1, 2, 0).clamp(0, 1).numpy() * 255).astype(np.uint8)
        ycc = cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb)
        m = cv2.inRange(ycc, (0, 133, 77), (255, 173, 127))
        m = cv2.dilate(m, np.ones((3, 3), np.uint8))
        out.append(torch.from_numpy(m > 0))
    return torch.stack(out)[:, None].float().to(images.device)
