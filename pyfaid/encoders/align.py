"""Face detection and 5-point alignment (MTCNN from ``facenet-pytorch``, weights in its wheel).

Every photo pyfaid reconstructs is first warped, by a similarity transform (rotation, uniform
scale, translation; least-squares Umeyama fit of MTCNN's five landmarks), onto a fixed five-point
template in a 224x224 crop: :data:`TEMPLATE_224`. The same landmarks can also be warped onto
dlib's 150x150 face chip (:data:`DLIB_TEMPLATE_150`) for :class:`~pyfaid.encoders.DlibFaceNet`.

Landmark order everywhere: image-left eye, image-right eye, nose tip, image-left mouth corner,
image-right mouth corner; coordinates ``(x, y)`` in pixels, x right, y down, pixel centres at
integer coordinates (OpenCV's convention).
"""

from __future__ import annotations

import warnings
from typing import Sequence

import cv2
import numpy as np
import torch
from skimage.transform import SimilarityTransform

__all__ = [
    "detect_faces",
    "align_crop",
    "MAX_DETECT_SIDE",
    "TEMPLATE_224",
    "DLIB_TEMPLATE_150",
    "ARCFACE_TEMPLATE_112",
    "AlignResult",
    "FaceNotFoundError",
    "align_faces",
    "align_face",
    "similarity_transform",
    "crop224_to_dlib_chip_matrix",
    "refine_face",
    "face_threshold",
]

#: The widely used ArcFace/InsightFace 112x112 five-point template (reference only).
ARCFACE_TEMPLATE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)

#: pyfaid's 224x224 alignment template: the ArcFace template scaled by 1.7 about the centre of its
#: 112 box, moved to the centre of the 224 box and 23.5 px up. That gives an eye distance of ~60 px,
#: eyes at y~81, mouth corners at y~150: where the default face model's frontal render at zero
#: translation (the centre of the synthetic training data) puts its eye centres, nose tip and mouth
#: corners, within 2 px. So aligned photos are framed like the faces the model trains on, the
#: whole face from forehead to chin is inside the crop (face ~150 px wide, like Deep3DFaceRecon's
#: 224 crops), and dlib's 150 chip (padding 0.25) lies inside the crop (x 22..202, y 28..209), so
#: the identity encoder resamples it without running off the border.
TEMPLATE_224 = (ARCFACE_TEMPLATE_112 - 56.0) * 1.7 + np.array([112.0, 88.5])

#: Where MTCNN's five points fall in dlib's ``get_face_chip(img, shape, size=150, padding=0.25)``
#: (the chip :class:`~pyfaid.encoders.DlibFaceNet` expects). dlib places its chip by a similarity
#: fit of its 5-point shape predictor's landmarks to fixed chip positions (``get_face_chip_details``);
#: MTCNN's points detected on the full image were mapped through that same fit, for scikit-image's
#: astronaut at three scales and mirrored (spread < 1 px), averaged and made left/right symmetric
#: about the chip centre x = 74.5.
DLIB_TEMPLATE_150 = np.array(
    [[47.98, 46.87], [101.02, 46.87], [74.5, 79.72], [47.44, 94.5], [101.56, 94.5]], dtype=np.float64
)


class FaceNotFoundError(ValueError, RuntimeError):
    """No face was detected in an input image (the message names the input)."""


class AlignResult(tuple):
    """Result of :func:`align_faces`; unpacks as ``crops, transforms, landmarks5``.

    Attributes:
        crops: ``[B, 3, 224, 224]`` float in [0, 1]; all zeros where no face was found.
        transforms: list of ``2x3`` float64 matrices mapping image pixels to crop pixels, or None.
        landmarks5: list of ``[5, 2]`` MTCNN landmarks in image pixels, or None.
        errors: list of error strings (None where the face was found).
        valid: ``[B]`` bool tensor, True where a face was found.
        probs: list of detection probabilities (None where no face).
        dlib_chips: ``[B, 3, 150, 150]`` dlib-style chips warped from the image (only when asked).
    """

    def __new__(cls, crops, transforms, landmarks5, errors, probs, dlib_chips=None):
        self = super().__new__(cls, (crops, transforms, landmarks5))
        self.crops = crops
        self.transforms = transforms
        self.landmarks5 = landmarks5
        self.errors = errors
        self.probs = probs
        self.valid = torch.tensor([e is None for e in errors], dtype=torch.bool)
        self.dlib_chips = dlib_chips
        return self


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (Umeyama) mapping points ``src [N,2]`` onto ``dst [N,2]``; 2x3 matrix."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    if hasattr(SimilarityTransform, "from_estimate"):  # scikit-image >= 0.26
        tf = SimilarityTransform.from_estimate(src, dst)
        ok = bool(tf)
    else:
        tf = SimilarityTransform()
        ok = tf.estimate(src, dst)
    if not ok or not np.all(np.isfinite(tf.params)):
        raise ValueError("could not fit a similarity transform to the landmarks (degenerate points)")
    return tf.params[:2].copy()


def crop224_to_dlib_chip_matrix() -> np.ndarray:
    """2x3 similarity mapping 224-crop pixels to dlib-chip (150) pixels (fit between the templates)."""
    return similarity_transform(TEMPLATE_224, DLIB_TEMPLATE_150)


_MTCNN_CACHE: dict = {}


class _MaxPool2Ceil(torch.nn.Module):
    """``MaxPool2d(2, 2, ceil_mode=True)`` as the maximum of four strided views (a trailing odd row
    or column padded with -inf): the same values, bit for bit (a maximum rounds nothing), about 5x
    faster on the CPU than PyTorch's NCHW pooling kernel. MTCNN's first network pools every level
    of the image pyramid with it, which was the largest single cost of detection."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h % 2 or w % 2:
            x = torch.nn.functional.pad(x, (0, w % 2, 0, h % 2), value=float("-inf"))
        return torch.maximum(torch.maximum(x[..., 0::2, 0::2], x[..., 0::2, 1::2]),
                             torch.maximum(x[..., 1::2, 0::2], x[..., 1::2, 1::2]))


def _fast_pnet_pool(mtcnn) -> None:
    """Swap the first network's 2 x 2 pooling for :class:`_MaxPool2Ceil` (identical output)."""
    pool = getattr(mtcnn.pnet, "pool1", None)
    if isinstance(pool, torch.nn.MaxPool2d) and pool.kernel_size in (2, (2, 2)) and \
            pool.stride in (2, (2, 2)) and pool.padding in (0, (0, 0)) and pool.dilation in (1, (1, 1)) and \
            pool.ceil_mode and not pool.return_indices:
        mtcnn.pnet.pool1 = _MaxPool2Ceil()


def _mtcnn(device, thresholds=None):
    from facenet_pytorch import MTCNN  # weights ship inside the wheel

    key = (str(device), None if thresholds is None else tuple(thresholds))
    if key not in _MTCNN_CACHE:
        kw = {} if thresholds is None else {"thresholds": list(thresholds)}
        _MTCNN_CACHE[key] = MTCNN(keep_all=False, select_largest=True, device=device, **kw)
        _fast_pnet_pool(_MTCNN_CACHE[key])
    return _MTCNN_CACHE[key]


def _to_numpy_images(images, name: str) -> list:
    """Normalise the input to a list of HxWx3 uint8 RGB arrays."""
    if torch.is_tensor(images):
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"{name}: a tensor input must be [B, 3, H, W], got {tuple(images.shape)}")
        t = images.detach().cpu()
        if t.is_floating_point():
            t = (t.clamp(0, 1) * 255.0).round()
        return [np.ascontiguousarray(x.permute(1, 2, 0).numpy().astype(np.uint8)) for x in t]
    if isinstance(images, np.ndarray) and images.ndim == 3:
        images = [images]
    if not isinstance(images, Sequence) and not isinstance(images, np.ndarray):
        raise TypeError(f"{name}: expected a list of HxWx3 uint8 arrays or a [B,3,H,W] tensor, "
                        f"got {type(images).__name__}")
    out = []
    for i, im in enumerate(images):
        a = np.asarray(im)
        if a.ndim != 3 or a.shape[2] != 3:
            raise ValueError(f"{name}[{i}]: expected an HxWx3 RGB image, got shape {a.shape}")
        if a.dtype != np.uint8:
            if np.issubdtype(a.dtype, np.floating) and a.size and float(np.nanmax(a)) <= 1.0:
                a = a * 255.0
            a = np.clip(np.nan_to_num(a), 0, 255).round().astype(np.uint8)
        out.append(np.ascontiguousarray(a))
    return out


def _warp(img: np.ndarray, m: np.ndarray, size: int) -> np.ndarray:
    return cv2.warpAffine(img, m, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))


#: Photos whose longer side exceeds this are searched for faces on a downscaled copy (detection time
#: grows with the pixel count; the crops are still warped from the full-resolution photo).
MAX_DETECT_SIDE = 1280


def detect_faces(image: np.ndarray, device: str | torch.device = "cpu", min_prob: float = 0.9,
                 max_side: int = MAX_DETECT_SIDE, thresholds=None) -> list:
    """Every face MTCNN finds in one photo, largest first.

    Args:
        image: ``[H, W, 3]`` uint8 RGB.
        device: where MTCNN runs.
        min_prob: minimum face probability.
        max_side: detect on a copy downscaled so its longer side is at most this (0 = never).
        thresholds: MTCNN's three stage thresholds (None: its defaults, 0.6, 0.7, 0.7).

    Returns:
        list of dicts ``{"box": [x0, y0, x1, y1], "score": p, "landmarks5": [5, 2]}`` in the
        photo's pixels (float64), sorted by box area, largest first; empty when none is found.
    """
    h, w = image.shape[:2]
    if min(h, w) < 12:
        return []
    scale = 1.0
    small = image
    if max_side and max(h, w) > max_side:
        scale = max_side / max(h, w)
        small = cv2.resize(image, (max(12, int(round(w * scale))), max(12, int(round(h * scale)))),
                           interpolation=cv2.INTER_AREA)
    boxes, probs, points = _mtcnn(device, thresholds).detect(small, landmarks=True)
    if boxes is None or len(boxes) == 0:
        return []
    out = []
    for j in range(len(boxes)):
        if probs[j] is None or probs[j] < min_prob:
            continue
        out.append({"box": np.asarray(boxes[j], np.float64) / scale, "score": float(probs[j]),
                    "landmarks5": np.asarray(points[j], np.float64).reshape(5, 2) / scale})
    return out


@torch.no_grad()
def refine_face(image: np.ndarray, box, device: str | torch.device = "cpu") -> dict:
    """MTCNN's last stage (its output network) on one square box of a photo: is it a face, where
    exactly, and its five points. A video tracker's step from one frame's box to the next frame's,
    at a fraction of a millisecond, instead of a whole detection.

    Args:
        image: ``[H, W, 3]`` uint8 RGB.
        box: ``[x0, y0, x1, y1]`` a square box around the face (as MTCNN boxes faces, forehead to
            chin) in photo pixels; parts outside the photo read as black.
        device: where MTCNN runs.

    Returns:
        dict ``{"score": probability, "box": refined square box [4], "landmarks5": [5, 2]}`` in photo
        pixels (MTCNN's point order).
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    side = max(x1 - x0, y1 - y0, 1.0)
    m = np.array([[48.0 / side, 0, -x0 * 48.0 / side], [0, 48.0 / side, -y0 * 48.0 / side]])
    patch = cv2.warpAffine(image, m, (48, 48), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_CONSTANT)
    x = torch.from_numpy(patch).permute(2, 0, 1)[None].float().to(device)
    reg, pts, prob = _mtcnn(device).onet((x - 127.5) * 0.0078125)
    reg, pts = reg[0].double().cpu().numpy(), pts[0].double().cpu().numpy()
    refined = np.array([x0, y0, x0 + side, y0 + side]) + reg * side
    c, half = (refined[:2] + refined[2:]) / 2, 0.5 * (refined[2:] - refined[:2]).max()
    return {"score": float(prob[0, 1]), "box": np.concatenate([c - half, c + half]),
            "landmarks5": np.stack([x0 + pts[:5] * side, y0 + pts[5:] * side], 1)}


def face_threshold(device: str | torch.device = "cpu") -> float:
    """The probability MTCNN's last stage requires of a face (its third threshold)."""
    return float(_mtcnn(device).thresholds[2])


def align_crop(image: np.ndarray, landmarks5: np.ndarray, size: int = 224) -> tuple:
    """Warp a photo onto the 224 template by its 5 points: ``(crop [3, 224, 224] float, 2x3 M)``.

    ``M`` maps photo pixels to crop pixels (pixel centres at integer coordinates).
    """
    m = similarity_transform(landmarks5, TEMPLATE_224 * (size / 224.0))
    crop = torch.from_numpy(_warp(image, m, size)).permute(2, 0, 1).float() / 255.0
    return crop, m


def align_faces(images, device: str | torch.device = "cpu", min_prob: float = 0.9,
                with_dlib_chips: bool = False, max_side: int = MAX_DETECT_SIDE) -> AlignResult:
    """Detect the main (largest) face in each image and warp it onto the 224x224 template.

    Args:
        images: list of HxWx3 uint8 RGB arrays (sizes may differ) or a ``[B, 3, H, W]`` tensor
            (float in [0, 1] or uint8).
        device: where MTCNN runs.
        min_prob: minimum MTCNN face probability to accept a detection.
        with_dlib_chips: also warp each face onto dlib's 150x150 chip (``result.dlib_chips``).
        max_side: detect on a downscaled copy of larger photos (see :func:`detect_faces`).

    Returns:
        :class:`AlignResult`, unpacking as ``(crops [B,3,224,224] in [0,1], transforms, landmarks5)``;
        images without a face get a zero crop, ``None`` transform/landmarks, an entry in
        ``result.errors`` and a warning. The batch never fails as a whole for a missing face.
    """
    arrays = _to_numpy_images(images, "images")
    crops = torch.zeros(len(arrays), 3, 224, 224)
    chips = torch.zeros(len(arrays), 3, 150, 150) if with_dlib_chips else None
    transforms, landmarks, errors, probs = [], [], [], []
    for i, img in enumerate(arrays):
        err, m, lm, prob = None, None, None, None
        try:
            if min(img.shape[:2]) < 12:
                raise FaceNotFoundError(f"image {i} is too small ({img.shape[1]}x{img.shape[0]})")
            faces = detect_faces(img, device, min_prob, max_side)
            if not faces:
                raise FaceNotFoundError(f"no face with probability >= {min_prob} found in image {i}")
            lm, prob = faces[0]["landmarks5"], faces[0]["score"]
            crops[i], m = align_crop(img, lm)
            if chips is not None:
                mc = similarity_transform(lm, DLIB_TEMPLATE_150)
                chips[i] = torch.from_numpy(_warp(img, mc, 150)).permute(2, 0, 1).float() / 255.0
        except (FaceNotFoundError, ValueError) as exc:
            err, m, lm, prob = str(exc), None, None, None
            warnings.warn(f"align_faces: {err}", stacklevel=2)
        transforms.append(m)
        landmarks.append(lm)
        errors.append(err)
        probs.append(prob)
    return AlignResult(crops, transforms, landmarks, errors, probs, chips)


def align_face(image, name: str = "image", device: str | torch.device = "cpu", min_prob: float = 0.9):
    """Align one image; raise :class:`FaceNotFoundError` naming it when no face is found.

    Args:
        image: HxWx3 uint8 RGB array or ``[3, H, W]`` tensor in [0, 1].
        name: how to call the input in the error (e.g. its file name).

    Returns:
        ``(crop [3, 224, 224], transform 2x3, landmarks5 [5, 2])``.
    """
    if torch.is_tensor(image):
        if image.dim() != 3:
            raise ValueError(f"{name}: expected a [3, H, W] tensor, got {tuple(image.shape)}")
        batch = image[None]
    else:
        batch = [image]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = align_faces(batch, device=device, min_prob=min_prob)
    if res.errors[0] is not None:
        raise FaceNotFoundError(f"{name}: {res.errors[0].replace(' in image 0', '')}")
    return res.crops[0], res.transforms[0], res.landmarks5[0]
