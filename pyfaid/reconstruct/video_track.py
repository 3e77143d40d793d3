"""Reading a clip's frames, and following one face through them.

:class:`VideoFrames` reads a video file with OpenCV (or takes frames in memory) and can be read
more than once. :class:`FaceTracker` follows one face: MTCNN detects it on the first frame and
whenever the track is lost; on the other frames only MTCNN's last stage runs (its output network,
:func:`~pyfaid.encoders.align.refine_face`), on the face's box from the previous frame moved on at
the face's speed: it says whether the face is still there, refines the box and gives the five
points the crop is aligned by, exactly as a detection's are. The detector runs once, not per
frame, and the crop never depends on the network's own landmarks of the previous frame: the
landmark head follows a face moved inside its crop by only part of the move (a feedback loop
through it lags or oscillates), MTCNN's points follow it fully.

The output network's probability is noisy from frame to frame on a face that does not move (on
dark, low-contrast faces it dips well below its threshold for a single frame), so the track has a
grace of :data:`GRACE_FRAMES` frames: a refined box scoring below the threshold but at least
:data:`KEEP_FLOOR` is still followed, and only a score below the floor, or a run of low scores
longer than the grace, sends the tracker back to detection.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from typing import Iterator, Optional

import cv2
import numpy as np
import torch

from pyfaid.encoders.align import FaceNotFoundError, face_threshold, refine_face
from pyfaid.fileio import atomic_path
from pyfaid.reconstruct.detect import Crop, Detection, crop_face, detect
from pyfaid.reconstruct.io import ImageReadError, to_rgb_uint8

__all__ = ["VideoFrames", "VideoReadError", "FaceTracker", "Track", "VIDEO_EXTENSIONS", "write_video", "GRACE_FRAMES",
           "KEEP_FLOOR"]

#: Consecutive frames a track keeps whose refined score is below MTCNN's threshold.
GRACE_FRAMES = 1
#: The refined score below which a track is dropped at once (the face is gone).
KEEP_FLOOR = 0.2

#: File extensions the command line treats as videos.
VIDEO_EXTENSIONS = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")


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
        photo_to_crop: ``2x3`` similarity frame (photo) pixels -> crop pixels.
        crop: ``[3, 224, 224]`` the aligned crop, RGB in [0, 1] (kept for the clip's key frames).
        coeffs: ``[layout.size]`` the network's coefficients (crop frame).
        landmarks_photo_px: ``[68, 2]`` the landmark head's points in frame pixels.
        confidence: ``[68]`` their confidences.
        score: MTCNN's face probability.
        detected: the detector ran on this frame (the track started or was lost).
    """

    photo_to_crop: np.ndarray
    crop: Optional[torch.Tensor]
    coeffs: torch.Tensor
    landmarks_photo_px: np.ndarray
    confidence: np.ndarray
    score: float
    detected: bool


def _photo_points(points_crop: np.ndarray, m: np.ndarray) -> np.ndarray:
    a = np.linalg.inv(np.vstack([m, [0, 0, 1.0]]))[:2]
    return points_crop @ a[:, :2].T + a[:, 2]


def _square(box) -> np.ndarray:
    """``[x0, y0, x1, y1]`` -> the square box with the same centre and the longer side."""
    box = np.asarray(box, np.float64)
    c, half = (box[:2] + box[2:]) / 2, 0.5 * (box[2:] - box[:2]).max()
    return np.concatenate([c - half, c + half])


class FaceTracker:
    """Follows one face through a clip's frames (see the module's docstring).

    Args:
        net: a FAID model with a landmark head (its coarse model runs on every frame).
        device: where the network and MTCNN's output network run (detection runs on the CPU).
        name: the clip's name (the crops' source).
    """

    def __init__(self, net, device="cpu", name: str = "frames"):
        if getattr(net.coarse, "landmarks", None) is None:
            raise ValueError("video tracking needs a model with a landmark head (model.landmark_head: true; the "
                             "shipped model has one)")
        self.net, self.device, self.name = net, torch.device(device), name
        self.threshold = face_threshold(self.device)
        self.box: Optional[np.ndarray] = None  # the face's square box in the last tracked frame (photo pixels)
        self.before: Optional[np.ndarray] = None  # the box in the frame before it (when tracked too)
        self.low = 0  # consecutive frames followed with a score below the threshold

    @torch.no_grad()
    def _predict(self, crop: Crop) -> tuple:
        """Step 2 on the coarse model alone: ``(coeffs [layout.size], landmarks [68, 2] photo px,
        confidence [68])`` (the fine stage and the segmenter run only on the clip's key frames)."""
        out = self.net.coarse.predict(crop.image[None])
        lm_crop_px = out["landmarks_unit"][0].double().cpu().numpy() * crop.image.shape[-1] - 0.5
        return (out["coeffs"][0].cpu(), _photo_points(lm_crop_px, crop.photo_to_crop),
                out["confidence"][0].cpu().numpy())

    def _detect(self, frame: np.ndarray) -> Optional[Detection]:
        """Step 1 on a whole frame: the largest face, or once tracked the one nearest the track."""
        try:
            found = detect(frame, "frame", retries=False)  # the next frame is the retry
        except FaceNotFoundError:
            return None
        if self.box is None:
            return found[0]
        centre = (self.box[:2] + self.box[2:]) / 2
        return min(found, key=lambda d: np.linalg.norm(d.landmarks5_photo_px.mean(0) - centre))

    def step(self, frame: np.ndarray, index: int = 0) -> Optional[Track]:
        """Track the face into the next frame (``[H, W, 3]`` uint8 RGB, number ``index``); None when
        no face is found."""
        detected = False
        found = None
        if self.box is not None:
            guess = self.box if self.before is None else 2 * self.box - self.before  # constant velocity
            refined = refine_face(frame, guess, self.device)
            score = refined["score"]
            low = score < self.threshold
            if not low or (score >= KEEP_FLOOR and self.low < GRACE_FRAMES):
                found = Detection(_square(refined["box"]), np.asarray(refined["landmarks5"]), float(score))
                self.low = self.low + 1 if low else 0
        if found is None:
            det = self._detect(frame)
            self.before = None
            if det is None:
                self.box = None
                return None
            found, detected = Detection(_square(det.box_photo_px), det.landmarks5_photo_px, det.score), True
            self.low = 0
        crop = crop_face(frame, found, self.name, index, self.device)
        coeffs, landmarks, conf = self._predict(crop)
        self.before, self.box = (None if detected else self.box), found.box_photo_px
        return Track(crop.photo_to_crop, crop.image, coeffs, landmarks, conf, found.score, detected)


def write_video(frames, path, fps: float) -> str:
    """Write RGB frames (any iterable of ``[H, W, 3]`` uint8) to a video file with OpenCV
    (``.avi``: MJPG; others, e.g. ``.mp4``: MPEG-4 part 2), atomically.

    Returns:
        the path.

    Raises:
        OSError: OpenCV could not open a writer for the path. ValueError: no frames.
    """
    path = os.fspath(path)
    frames = iter(frames)
    first = next(frames, None)
    if first is None:
        raise ValueError(f"{path}: no frames to write")
    h, w = first.shape[:2]
    fourcc = cv2.VideoWriter_fourcc(*("MJPG" if path.lower().endswith(".avi") else "mp4v"))
    with atomic_path(path) as tmp:
        writer = cv2.VideoWriter(tmp, fourcc, float(fps), (w, h))
        if not writer.isOpened():
            raise OSError(f"{path}: OpenCV could not open a video writer")
        try:
            for f in itertools.chain([first], frames):
                writer.write(cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2BGR))
        finally:
            writer.release()
    return path
