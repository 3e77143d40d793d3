"""Short video clips with known motion, for measuring video reconstruction (no download).

* :func:`synthetic_clip`: a face of :class:`~pyfaid.synth.SyntheticFaces` (its identity and painted
  albedo) rendered over a still background while its head pose and ARKit blendshape weights follow
  a script: still, head turns, still, a smile, a jaw opening, a blink, a brow raise, still. The
  generator's ground truth comes with it: pose, the 52 weights and the 68 model landmarks per
  frame, and which frames are still (neither pose nor expression changes).
* :func:`photo_clip`: a photo held still with fresh sensor noise in every frame, then panned,
  zoomed and turned in-plane; every frame's similarity from the photo to the frame is known, so a
  tracker's landmarks can be mapped back onto the photo, where they should not move.

Frames are ``[H, W, 3]`` uint8 RGB arrays; :func:`pyfaid.reconstruct.video_track.write_video` writes
them with OpenCV.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Optional, Sequence

import cv2
import numpy as np
import torch

from pyfaid.encoders.align import FaceNotFoundError, detect_faces
from pyfaid.facemodel.blendshapes import Blendshapes
from pyfaid.render import Renderer
from pyfaid.render.camera import Camera
from pyfaid.synth.backgrounds import background
from pyfaid.synth.faces import SyntheticFaces

__all__ = ["Clip", "synthetic_clip", "photo_clip", "SCRIPT"]

#: The synthetic clip's script: ``(frames, what)``; ``what`` is ``"still"``, ``"turn"`` or an ARKit
#: shape (or ``+``-joined shapes) raised to a peak weight and back (``name@peak``).
SCRIPT = (
    (24, "still"), (36, "turn"), (16, "still"), (30, "mouthSmileLeft+mouthSmileRight@0.8"),
    (30, "jawOpen@0.7"), (12, "eyeBlinkLeft+eyeBlinkRight@1.0"), (24, "browInnerUp@0.8"), (16, "still"),
)


@dataclass
class Clip:
    """A clip and what is known about it.

    Attributes:
        frames: list of ``[H, W, 3]`` uint8 RGB frames.
        fps: frames per second.
        still: ``[T]`` bool, frames in still segments (nothing moves but noise).
        landmarks: ``[T, 68, 2]`` true landmarks in frame pixels (synthetic clips), or None.
        angles: ``[T, 3]`` true (pitch, yaw, roll) in radians, in the clip's camera (synthetic).
        blendshapes: ``[T, 52]`` true ARKit weights (synthetic; ARKit order).
        transforms: ``[T, 2, 3]`` similarities photo pixels -> frame pixels (photo clips).
        focal: the camera's focal length in pixels (synthetic clips).
    """

    frames: list
    fps: float
    still: np.ndarray
    landmarks: Optional[np.ndarray] = None
    angles: Optional[np.ndarray] = None
    blendshapes: Optional[np.ndarray] = None
    transforms: Optional[np.ndarray] = None
    focal: Optional[float] = None
    meta: dict = field(default_factory=dict)


def _bump(n: int) -> np.ndarray:
    """``[n]`` 0 -> 1 -> 0 (a raised cosine), holding 1 over its middle third."""
    t = np.linspace(0, 1, n)
    up = np.clip(t * 3, 0, 1)
    down = np.clip((1 - t) * 3, 0, 1)
    return 0.5 - 0.5 * np.cos(np.pi * np.minimum(up, down))


def _script(names: Sequence[str], script=SCRIPT) -> tuple:
    """Per frame: angles ``[T, 3]`` (radians), weights ``[T, 52]``, still ``[T]``."""
    angles, weights, still = [], [], []
    for n, what in script:
        a = np.zeros((n, 3))
        w = np.zeros((n, len(names)))
        if what == "turn":
            t = np.linspace(0, 2 * np.pi, n)
            a[:, 1] = np.radians(25) * np.sin(t)
            a[:, 0] = np.radians(6) * np.sin(2 * t)
            a[:, 2] = np.radians(5) * np.sin(t)
        elif what != "still":
            shapes, peak = what.split("@")
            for s in shapes.split("+"):
                w[:, names.index(s)] = float(peak) * _bump(n)
        angles.append(a)
        weights.append(w)
        still.append(np.full(n, what == "still"))
    return np.concatenate(angles), np.concatenate(weights), np.concatenate(still)


def _backdrop(rng, width: int, height: int) -> np.ndarray:
    img, _ = background(rng, max(width, height), "indoor")
    img = img[:height, :width] if img.shape[0] >= height else cv2.resize(img, (width, height))
    return np.clip(img, 0, 1).astype(np.float32)


@torch.no_grad()
def synthetic_clip(seed: int = 1000003, index: int = 0, size=(640, 480), fps: float = 30.0, noise: float = 2.0,
                   face_width: float = 170.0, script=SCRIPT, face_model=None) -> Clip:
    """Render a scripted clip of one synthetic face.

    Args:
        seed, index: the :class:`~pyfaid.synth.SyntheticFaces` item whose identity, painted albedo
            and lighting the face has (the default seed is the held-out one).
        size: ``(width, height)`` of the frames.
        fps: frames per second.
        noise: sensor noise per frame, standard deviation in 8-bit levels.
        face_width: the face's width in pixels (sets the focal length).
        script: ``(frames, what)`` segments (:data:`SCRIPT`).
        face_model: a MorphableModel with blendshapes (default: the default model).

    Returns:
        :class:`Clip` with its ground truth.
    """
    ds = SyntheticFaces(seed=seed, length=index + 1, face_model=face_model, occlusion=False)
    fm = ds.face_model
    item = ds.batch([index])
    shapes = Blendshapes(fm)
    angles, weights, still = _script(list(shapes.names), script)
    w, h = size
    side = min(w, h, int(np.ceil(face_width * 2.4 / 16)) * 16)  # a window around the face is rendered
    focal = face_width * 10.0 / 1.5  # the face is ~1.5 units wide, 10 units from the camera
    renderer = Renderer(camera=Camera.for_image_size(side, focal=focal))
    lay = fm.layout
    base = item["coeffs"][0].clone()
    base[lay.slice("trans")] = 0.0
    colors = item["colors"][0][None]
    rng = np.random.default_rng((seed, index, 77))
    back = _backdrop(rng, w, h)
    y0, x0 = (h - side) // 2, (w - side) // 2  # the window's place in the frame (principal point at its centre)
    frames, lms = [], []
    for i in range(len(angles)):
        c = base.clone()
        c[lay.slice("exp")] = shapes.coeffs(weights[i])
        c[lay.slice("angle")] = torch.as_tensor(angles[i], dtype=c.dtype)
        out = renderer(fm, c[None], colors=colors)
        frame = back.copy()
        m = out.mask[0, 0].numpy()[..., None]
        win = frame[y0:y0 + side, x0:x0 + side]
        win[:] = out.image[0].permute(1, 2, 0).numpy() * m + win * (1 - m)
        frame = frame * 255 + rng.normal(0, noise, frame.shape)
        frames.append(np.clip(frame + 0.5, 0, 255).astype(np.uint8))
        lms.append(renderer.project_landmarks(fm, c[None])[0].numpy() + np.array([x0, y0]))
    return Clip(frames, float(fps), still, landmarks=np.stack(lms), angles=angles, blendshapes=weights,
                focal=focal, meta={"seed": seed, "index": index, "script": [list(s) for s in script]})


def _rgb_photo(photo) -> np.ndarray:
    """An image file or an ``[H, W, 3]`` uint8 RGB array -> the uint8 RGB array."""
    if isinstance(photo, (str, os.PathLike)):
        img = cv2.imread(os.fspath(photo), cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f"{os.fspath(photo)}: not a readable image")
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    img = np.asarray(photo)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"photo must be an [H, W, 3] uint8 RGB array, got {img.dtype} {img.shape}")
    return img


def photo_clip(photo, size=(640, 480), fps: float = 30.0, still: int = 40, moving: int = 80, noise: float = 3.0,
               face_height: float = 200.0, seed: int = 0) -> Clip:
    """A photo held still (fresh noise per frame), then panned, zoomed and turned in-plane.

    Args:
        photo: an image file (OpenCV reads it) or an ``[H, W, 3]`` uint8 RGB array; its largest
            face (MTCNN) is framed.
        size: ``(width, height)`` of the frames.
        fps: frames per second.
        still: frames held still.
        moving: frames of motion, starting and ending at rest where the still frames are: a pan of
            +-60 px and a turn of +-15 degrees over one period, a zoom of +-15 % over two.
        noise: sensor noise per frame, standard deviation in 8-bit levels.
        face_height: the face box's height in the first frame, in pixels.
        seed: noise seed.

    Returns:
        :class:`Clip` with ``transforms`` (photo -> frame) and ``still``.

    Raises:
        FaceNotFoundError: no face in the photo. ValueError: an unreadable file or a bad array.
    """
    img = _rgb_photo(photo)
    found = detect_faces(img)
    if not found:
        raise FaceNotFoundError(f"{photo if isinstance(photo, (str, os.PathLike)) else 'photo'}: no face detected")
    x0, y0, x1, y1 = found[0]["box"]
    w, h = size
    s = face_height / max(y1 - y0, 1.0)
    base = np.array([[s, 0, w / 2 - s * (x0 + x1) / 2], [0, s, h / 2 - s * (y0 + y1) / 2], [0, 0, 1.0]])
    rng = np.random.default_rng(seed)
    frames, transforms = [], []
    t = np.concatenate([np.zeros(still), np.linspace(0, 2 * np.pi, moving)])
    for k, phase in enumerate(t):
        pan = 60.0 * np.sin(phase)
        zoom = 1.0 + 0.15 * np.sin(2 * phase)
        turn = 15.0 * np.sin(phase)
        m = cv2.getRotationMatrix2D((w / 2, h / 2), float(turn), float(zoom))
        m = np.vstack([m, [0, 0, 1]])
        m[0, 2] += pan
        full = (m @ base)[:2]
        frame = cv2.warpAffine(img, full, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
        frame = frame.astype(np.float32) + rng.normal(0, noise, frame.shape)
        frames.append(np.clip(frame + 0.5, 0, 255).astype(np.uint8))
        transforms.append(full)
    return Clip(frames, float(fps), np.arange(len(t)) < still, transforms=np.stack(transforms),
                meta={"still": still, "moving": moving})
