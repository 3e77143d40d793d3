"""Reading a clip's frames, and following one face through them.

:class:`VideoFrames` reads a video file with OpenCV (or takes frames in memory) and can be read
more than once. :class:`FaceTracker` follows one face: MTCNN detects it on the first frame and
whenever the track is lost (and the face is then framed again from the network's 68 landmarks on
it); on the other frames the crop comes from the previous frame's 68 landmarks (their five MTCNN-style points aligned onto the crop template, as a detection's five
points are), so the detector runs once, not per frame; the points are moved on at the face's speed
over the last two frames first (a moving face is then framed where it is, not where it was). A
crop whose face moved far from where the crop put it (fast motion) is taken again around the new
points, once. The track is lost when
MTCNN's last stage (its output network, on the crop's face box) no longer calls it a face; then
this frame is searched again, for the face nearest the track's last position.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator, Optional

import cv2
import numpy as np
import torch

from pyfaid.encoders.align import TEMPLATE_224, align_crop, detect_faces, face_probability, face_threshold
from pyfaid.reconstruct.fitting import landmarks5_of
from pyfaid.reconstruct.io import ImageReadError, to_rgb_uint8

__all__ = ["VideoFrames", "VideoReadError", "FaceTracker", "Track", "VIDEO_EXTENSIONS"]

#: File extensions the command line treats as videos.
VIDEO_EXTENSIONS = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")
#: Re-crop a frame when its face's five points moved more than this (crop pixels, RMS) from the
#: template the crop put them on: the network then sees the face framed as it was trained.
RECROP_PX = 8.0


class VideoReadError(ImageReadError):
    """A video could not be opened or decoded, or has no frames (the message names it)."""


class VideoFrames:
    """The frames of a video file (read with OpenCV) or of frames in memory; iterable repeatedly.

    Args:
        source: a video file, or a sequence of ``[H, W, 3]`` RGB frames (uint8, or floats in
            [0, 1]) or a ``[T, H, W, 3]`` array.
        fps: frames per second (default: the file's, or 30 for frames in memory).
        max_frames: read at most this many frames (None: all).

    Raises:
        VideoReadError: a missing, unreadable or empty video, or frames of different sizes.
    """

    def __init__(self, source, fps: Optional[float] = None, max_frames: Optional[int] = None):
        self.max_frames = None if max_frames is None else int(max_frames)
        if isinstance(source, (str, os.PathLike)):
            self.path = os.fspath(source)
            self.name = self.path
            self._frames = None
            cap = self._open()
            try:
                file_fps = cap.get(cv2.CAP_PROP_FPS)
                ok, first = cap.read()
            finally:
                cap.release()
            if not ok or first is None:
                raise VideoReadError(f"{self.path}: the video has no frames OpenCV can decode")
            self.fps = float(fps or (file_fps if file_fps and np.isfinite(file_fps) and file_fps > 0 else 30.0))
            self.size = (first.shape[1], first.shape[0])
        else:
            self.path, self.name = None, "frames"
            self._frames = [to_rgb_uint8(f, f"frames[{i}]") for i, f in enumerate(source)]
            if not self._frames:
                raise VideoReadError("frames: the sequence has no frames")
            sizes = {f.shape[:2] for f in self._frames}
            if len(sizes) > 1:
                raise VideoReadError(f"frames: all frames must have one size, got {sorted(sizes)}")
            self.fps = float(fps or 30.0)
            self.size = (self._frames[0].shape[1], self._frames[0].shape[0])
        if not self.fps > 0:
            raise ValueError(f"fps must be > 0, got {fps!r}")

    def _open(self):
        if os.path.isdir(self.path):
            raise VideoReadError(f"{self.path}: is a folder, not a video")
        if not os.path.isfile(self.path):
            raise VideoReadError(f"{self.path}: no such file")
        cap = cv2.VideoCapture(self.path)
        if not cap.isOpened():
            cap.release()
            raise VideoReadError(f"{self.path}: not a readable video (OpenCV could not open it)")
        return cap

    def __len__(self) -> int:
        """The number of frames (for a file: as its header says, which may be approximate)."""
        if self._frames is not None:
            n = len(self._frames)
        else:
            cap = self._open()
            n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
            cap.release()
        return n if self.max_frames is None else min(n, self.max_frames)

    def __iter__(self) -> Iterator[np.ndarray]:
        """``[H, W, 3]`` uint8 RGB frames, in order."""
        if self._frames is not None:
            yield from self._frames[:self.max_frames]
            return
        cap = self._open()
        try:
            k = 0
            while self.max_frames is None or k < self.max_frames:
                ok, frame = cap.read()
                if not ok:
                    break
                yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                k += 1
        finally:
            cap.release()


@dataclass
class Track:
    """One frame of a track.

    Attributes:
        transform: ``2x3`` similarity photo pixels -> crop pixels.
        crop: ``[3, 224, 224]`` the aligned crop, RGB in [0, 1].
        coeffs: ``[layout.size]`` the network's coefficients (crop frame).
        landmarks: ``[68, 2]`` the landmark head's points in photo pixels.
        confidence: ``[68]`` their confidences.
        score: MTCNN's face probability of the crop's face box.
        detected: the crop came from a detection on this frame (not from the previous frame).
    """

    transform: np.ndarray
    crop: torch.Tensor
    coeffs: torch.Tensor
    landmarks: np.ndarray
    confidence: np.ndarray
    score: float
    detected: bool


def _photo_points(points_crop: np.ndarray, m: np.ndarray) -> np.ndarray:
    a = np.linalg.inv(np.vstack([m, [0, 0, 1.0]]))[:2]
    return points_crop @ a[:, :2].T + a[:, 2]


def _box_between(box: np.ndarray, m_from: np.ndarray, m_to: np.ndarray) -> np.ndarray:
    """A square crop box ``[x0, y0, x1, y1]`` of one crop moved into another crop of the same photo."""
    corners = np.array([[box[0], box[1]], [box[2], box[1]], [box[2], box[3]], [box[0], box[3]]])
    pts = _photo_points(corners, m_from) @ m_to[:, :2].T + m_to[:, 2]
    c, half = pts.mean(0), 0.5 * (pts.max(0) - pts.min(0)).max()
    return np.array([c[0] - half, c[1] - half, c[0] + half, c[1] + half])


class FaceTracker:
    """Follows one face through a clip's frames (see the module's docstring).

    Args:
        net: a FAID model with a landmark head (its coarse model runs on every frame).
        device: where the network and MTCNN run.
    """

    def __init__(self, net, device="cpu"):
        if getattr(net.coarse, "landmarks", None) is None:
            raise ValueError("video tracking needs a model with a landmark head (model.landmark_head: true; the "
                             "shipped model has one)")
        self.net, self.device = net, torch.device(device)
        self.threshold = face_threshold(self.device)
        self.previous: Optional[np.ndarray] = None  # [68, 2] photo pixels of the last tracked frame
        self.before: Optional[np.ndarray] = None  # [68, 2] the frame before it (when tracked too)
        self.box_crop: Optional[np.ndarray] = None  # [4] x0, y0, x1, y1: MTCNN's face box in crop pixels

    @torch.no_grad()
    def _predict(self, frame: np.ndarray, lm5: np.ndarray) -> tuple:
        crop, m = align_crop(frame, lm5)
        out = self.net.coarse.predict(crop[None].to(self.device))
        size = crop.shape[-1]
        lm_crop = out["landmarks"][0].double().cpu().numpy() * size - 0.5
        return crop, m, out["coeffs"][0].cpu(), lm_crop, out["confidence"][0].cpu().numpy()

    def _score(self, crop: torch.Tensor) -> float:
        x0, y0, x1, y1 = (int(round(v)) for v in self.box_crop)
        n = crop.shape[-1]
        x0, y0, x1, y1 = max(0, x0), max(0, y0), min(n, x1), min(n, y1)
        if x1 - x0 < 8 or y1 - y0 < 8:
            return 0.0
        return float(face_probability(crop[None, :, y0:y1, x0:x1], self.device)[0])

    def _detect(self, frame: np.ndarray) -> Optional[dict]:
        found = detect_faces(frame, self.device)
        if not found:
            return None
        if self.previous is None:
            return found[0]  # the largest face
        centre = self.previous.mean(0)
        return min(found, key=lambda d: np.linalg.norm(d["landmarks5"].mean(0) - centre))

    def step(self, frame: np.ndarray) -> Optional[Track]:
        """Track the face into one frame (``[H, W, 3]`` uint8 RGB); None when no face is found."""
        if self.previous is not None:
            guess = self.previous if self.before is None else 2 * self.previous - self.before  # constant velocity
            lm5 = landmarks5_of(torch.from_numpy(guess)[None])[0].numpy()
            crop, m, coeffs, lm_crop, conf = self._predict(frame, lm5)
            moved = landmarks5_of(torch.from_numpy(lm_crop)[None])[0].numpy() - TEMPLATE_224
            if np.sqrt((moved ** 2).sum(1).mean()) > RECROP_PX:  # fast motion: frame the face again
                crop, m, coeffs, lm_crop, conf = self._predict(frame, landmarks5_of(
                    torch.from_numpy(_photo_points(lm_crop, m))[None])[0].numpy())
            score = self._score(crop)
            if score >= self.threshold:
                self.before, self.previous = self.previous, _photo_points(lm_crop, m)
                return Track(m, crop, coeffs, self.previous, conf, score, False)
        det = self._detect(frame)
        self.before = None
        if det is None:
            self.previous = None
            return None
        _, m, _, lm_crop, _ = self._predict(frame, det["landmarks5"])
        x0, y0, x1, y1 = det["box"]
        corners = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]]) @ m[:, :2].T + m[:, 2]
        c, half = corners.mean(0), 0.5 * (corners.max(0) - corners.min(0)).max()  # MTCNN's boxes are square
        self.box_crop = np.array([c[0] - half, c[1] - half, c[0] + half, c[1] + half])
        # framed again from its own landmarks, as the next frames will be: no jump when tracking starts
        lm5 = landmarks5_of(torch.from_numpy(_photo_points(lm_crop, m))[None])[0].numpy()
        crop, m2, coeffs, lm_crop, conf = self._predict(frame, lm5)
        self.box_crop = _box_between(self.box_crop, m, m2)
        self.previous = _photo_points(lm_crop, m2)
        return Track(m2, crop, coeffs, self.previous, conf, float(det["score"]), True)
