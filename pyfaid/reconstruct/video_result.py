"""One face through a clip: :class:`VideoReconstruction`, with its exports.

* :meth:`VideoReconstruction.save_csv`: per-frame ARKit weights and head rotation in the column
  layout of Epic's Live Link Face app (``Timecode, BlendShapeCount``, the 52 shapes,
  ``HeadYaw, HeadPitch, HeadRoll``, the eyes' rotations), which Unreal's importer, Blender
  add-ons and Maya plug-ins read.
* :meth:`VideoReconstruction.save_glb`: an animated binary glTF: the clip's face without
  expression, textured with its albedo, the 52 ARKit morph targets, keyframes of their weights and
  of the head's rotation and translation, and the clip's camera.
* :meth:`VideoReconstruction.write_overlay`: the render and the landmarks over every frame, as a
  video (OpenCV).

Frames: the clip's camera (:attr:`VideoReconstruction.camera`) is a pinhole over whole frames,
fixed for the clip; poses (:attr:`angles`, :attr:`translations`) are in it, in the face models'
convention (x right, y up, z toward the camera, which sits at ``camera.distance`` on +z).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Dict, Optional

import cv2
import numpy as np
import torch
from scipy.spatial.transform import Rotation
from tqdm import tqdm

from pyfaid.facemodel.blendshapes import LIVE_LINK_FACE_NAMES, Blendshapes
from pyfaid.fileio import atomic_path, write_atomic
from pyfaid.reconstruct import export, gltf
from pyfaid.reconstruct.expression import Pinhole, euler_matrix
from pyfaid.reconstruct.predict import CROP_SIZE, crop_renderer
from pyfaid.reconstruct.result import Reconstruction, make_reconstruction
from pyfaid.reconstruct.video_camera import crop_pose
from pyfaid.reconstruct.video_track import VideoFrames, write_video

__all__ = ["VideoReconstruction", "LIVE_LINK_FACE_COLUMNS"]

#: The columns of Live Link Face's CSV.
LIVE_LINK_FACE_COLUMNS = (("Timecode", "BlendShapeCount") + LIVE_LINK_FACE_NAMES +
                          ("HeadYaw", "HeadPitch", "HeadRoll", "LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll",
                           "RightEyeYaw", "RightEyePitch", "RightEyeRoll"))


@dataclass
class VideoReconstruction:
    """One face through a clip (see :func:`pyfaid.reconstruct.video.reconstruct_video`).

    Attributes:
        source: the clip's name (its path, or ``"frames"``).
        fps: frames per second. size: ``(width, height)`` of the frames.
        face_model: the MorphableModel (with blendshapes).
        identity: ``[n_id]`` the clip's identity coefficients. tex: ``[n_tex]`` albedo coefficients.
        albedo: ``[V, 3]`` the clip's per-vertex albedo in [0, 1].
        camera: the clip's :class:`~pyfaid.reconstruct.expression.Pinhole` (frame pixels).
        crop_camera: the network's crop camera.
        tracked: ``[T]`` bool, frames with a face. detected: ``[T]`` bool, frames where the
            detector ran and found it (the others were tracked from the previous frame).
        transforms: per frame the ``2x3`` photo -> crop similarity (None without a face).
        landmarks: ``[T, 68, 2]`` filtered landmarks in frame pixels (NaN without a face).
        landmarks_raw: ``[T, 68, 2]`` the landmark head's points before filtering.
        weights: ``[T, 52]`` ARKit weights in [0, 1] (ARKit order; NaN without a face).
        angles: ``[T, 3]`` (pitch, yaw, roll) in radians, clip camera. translations: ``[T, 3]``.
        gamma: ``[T, 27]`` SH lighting.
        fit_steps: photometric fitting steps per frame. filter: the One-Euro parameters (or None).
    """

    source: str
    fps: float
    size: tuple
    face_model: object = field(repr=False)
    identity: torch.Tensor = field(repr=False)
    tex: torch.Tensor = field(repr=False)
    albedo: torch.Tensor = field(repr=False)
    camera: Pinhole
    crop_camera: Pinhole
    tracked: np.ndarray = field(repr=False)
    detected: np.ndarray = field(repr=False)
    transforms: list = field(repr=False)
    landmarks: np.ndarray = field(repr=False)
    landmarks_raw: np.ndarray = field(repr=False)
    weights: np.ndarray = field(repr=False)
    angles: np.ndarray = field(repr=False)
    translations: np.ndarray = field(repr=False)
    gamma: np.ndarray = field(repr=False)
    fit_steps: int = 0
    filter: object = None

    @classmethod
    def assemble(cls, source, face_model, tracks, face, states, camera, params, fit_steps) -> "VideoReconstruction":
        """Stack the per-frame results of :func:`~pyfaid.reconstruct.video.reconstruct_video`."""
        n, k = len(tracks), len(Blendshapes(face_model))
        nan = lambda *s: np.full((n,) + s, np.nan)  # noqa: E731
        lm, raw, w, ang, tr, g = nan(68, 2), nan(68, 2), nan(k), nan(3), nan(3), nan(27)
        for i, s in enumerate(states):
            if s is None:
                continue
            lm[i], raw[i], g[i] = s["landmarks"], s["landmarks_raw"], s["gamma"]
            w[i], ang[i], tr[i] = s["x"][:k], s["x"][k:k + 3], s["x"][k + 3:]
        crop_cam = Pinhole.of_renderer(crop_renderer("cpu"))
        return cls(source.name, source.fps, tuple(source.size), face_model, face["id"].cpu(), face["tex"].cpu(),
                   face["albedo"].cpu(), camera, crop_cam, np.array([t is not None for t in tracks]),
                   np.array([t is not None and t.detected for t in tracks]),
                   [None if t is None else np.asarray(t.photo_to_crop) for t in tracks], lm, raw, w, ang, tr, g,
                   int(fit_steps), params)

    # ------------------------------------------------------------------ per frame
    def __len__(self) -> int:
        return len(self.tracked)

    @property
    def times(self) -> np.ndarray:
        """``[T]`` seconds of the frames."""
        return np.arange(len(self)) / self.fps

    def blendshapes(self, i: int) -> Dict[str, float]:
        """Frame ``i``'s ARKit weights ``{name: weight}`` (empty without a face)."""
        if not self.tracked[i]:
            return {}
        return Blendshapes(self.face_model).as_dict(self.weights[i])

    def pose(self, i: int) -> Dict[str, float]:
        """Frame ``i``'s head pose in degrees, as :attr:`Reconstruction.pose <pyfaid.reconstruct.Reconstruction.pose>`
        (yaw + nose toward the image right, pitch + nose down, roll + counter-clockwise as seen)."""
        if not self.tracked[i]:
            return {}
        p, y, r = np.degrees(self.angles[i])
        return {"yaw": float(y), "pitch": float(p), "roll": float((r + 180) % 360 - 180)}

    def coeffs(self, i: int) -> torch.Tensor:
        """Frame ``i``'s coefficient vector ``[layout.size]`` in its crop's frame (for rendering)."""
        if not self.tracked[i]:
            raise ValueError(f"frame {i} has no face")
        fm = self.face_model
        angle, trans = crop_pose(self.transforms[i], self.angles[i], self.translations[i], self.crop_camera, self.camera)
        parts = {"id": self.identity, "exp": Blendshapes(fm).coeffs(self.weights[i]), "tex": self.tex,
                 "angle": torch.from_numpy(angle), "gamma": torch.from_numpy(self.gamma[i]),
                 "trans": torch.from_numpy(trans)}
        return fm.layout.join({n: v.float().reshape(1, -1) for n, v in parts.items()})[0]

    def frame(self, i: int, image: np.ndarray):
        """Frame ``i`` as a :class:`~pyfaid.reconstruct.Reconstruction` (``image``: the frame, RGB uint8)."""
        m = self.transforms[i]
        crop = torch.from_numpy(cv2.warpAffine(image, m, (CROP_SIZE, CROP_SIZE), flags=cv2.INTER_LINEAR))
        crop = crop.permute(2, 0, 1) / 255.0
        lm_crop = torch.from_numpy(self.landmarks[i] @ m[:, :2].T + m[:, 2]).float()
        renderer = crop_renderer("cpu")
        return make_reconstruction(self.face_model.cpu(), renderer, crop.float(), self.coeffs(i), self.albedo, None,
                                   f"{self.source}#{i}", m, [], photo_size=(self.size[1], self.size[0]),
                                   detected=lm_crop, landmark_source="head")

    # ------------------------------------------------------------------ exports
    def _timecode(self, i: int) -> str:
        whole = int(round(self.fps))
        sec, frame = divmod(i, max(whole, 1))
        return f"{sec // 3600:02d}:{sec // 60 % 60:02d}:{sec % 60:02d}:{frame:02d}.000"

    def save_csv(self, path) -> str:
        """Write the per-frame ARKit weights and head rotation (radians, :meth:`pose`'s signs) in
        Live Link Face's CSV layout. Frames without a face repeat the last values with
        ``BlendShapeCount`` 0 (importers skip such rows); the eyes' rotations are 0 (the face
        models have no eyeballs). Returns the path."""
        order = [Blendshapes(self.face_model).names.index(n[0].lower() + n[1:]) for n in LIVE_LINK_FACE_NAMES]
        lines = [",".join(LIVE_LINK_FACE_COLUMNS)]
        last = np.zeros(len(order) + 3)
        for i in range(len(self)):
            if self.tracked[i]:
                p, y, r = self.angles[i]
                last = np.concatenate([self.weights[i][order], [y, p, (r + math.pi) % (2 * math.pi) - math.pi]])
            count = len(LIVE_LINK_FACE_COLUMNS) - 2 if self.tracked[i] else 0
            values = ",".join(f"{v:.6f}" for v in np.concatenate([last, np.zeros(6)]))
            lines.append(f"{self._timecode(i)},{count},{values}")
        write_atomic(os.fspath(path), ("\n".join(lines) + "\n").encode())
        return os.fspath(path)

    def save_glb(self, path, texture_size: int = 512) -> str:
        """Write the animated glTF (see the module's docstring; metres, one keyframe per frame
        with a face). Returns the path."""
        fm = self.face_model
        shapes = Blendshapes(fm)
        with torch.no_grad():
            neutral = fm.shape(self.identity.float()[None].to(fm.mean_shape.device),
                               torch.zeros(1, fm.n_exp, device=fm.mean_shape.device))[0].cpu()
        rec = Reconstruction(torch.zeros(3, 8, 8), torch.zeros(fm.layout.size), neutral, fm.triangles.long().cpu(),
                             self.albedo, self.albedo, fm)
        mesh = export.textured_mesh(rec, export.bake_texture(rec, "albedo", texture_size), name="face", gltf=True)
        data = mesh.export(file_type="glb", include_normals=True)
        deltas = shapes.deltas().detach().float().cpu().numpy()[:, mesh.metadata["vertex_of"]] * export.GLTF_SCALE
        on = np.flatnonzero(self.tracked)
        data = gltf.add_morph_targets(data, deltas, shapes.names, self.weights[on[0]])
        quats = np.stack([Rotation.from_matrix(euler_matrix(a)).as_quat() for a in self.angles[on]])  # x, y, z, w
        quats *= np.sign((quats * np.roll(quats, 1, 0)).sum(1, keepdims=True) + 1e-12)  # no flips between keys
        moves = (self.translations[on] - np.array([0, 0, self.camera.distance])) * export.GLTF_SCALE
        data = gltf.add_animation(data, self.times[on], weights=self.weights[on], rotations=quats, translations=moves)
        w, h = self.size
        data = gltf.add_camera(data, 2 * math.atan(h / 2 / self.camera.focal), w / h, znear=0.01)
        write_atomic(os.fspath(path), data)
        return os.fspath(path)

    def write_overlay(self, path, source, progress: bool = False) -> str:
        """Write the overlay video: every frame of ``source`` (the clip's
        :class:`~pyfaid.reconstruct.video_track.VideoFrames`, path or frames) with the render and
        the filtered landmarks drawn where it has a face. Returns the path."""
        frames = source if isinstance(source, VideoFrames) else VideoFrames(source, fps=self.fps)

        def drawn():
            for i, img in enumerate(tqdm(frames, total=len(self), desc="overlay", unit="frame", disable=not progress)):
                yield self.frame(i, img).overlay(img) if i < len(self) and self.tracked[i] else img

        return write_video(drawn(), path, self.fps)

    def save(self, folder, stem: str, source, overlay: bool = True, progress: bool = False) -> list:
        """Write ``<stem>.csv`` (Live Link Face), ``<stem>.glb`` (animated), ``<stem>.npz`` and, with
        ``overlay``, ``<stem>_overlay.mp4`` into ``folder``; ``source`` is the clip (for the overlay).
        Returns the files written."""
        folder = os.fspath(folder)
        os.makedirs(folder, exist_ok=True)
        files = [self.save_csv(os.path.join(folder, f"{stem}.csv")), self.save_glb(os.path.join(folder, f"{stem}.glb")),
                 self.save_npz(os.path.join(folder, f"{stem}.npz"))]
        if overlay:
            files.append(self.write_overlay(os.path.join(folder, f"{stem}_overlay.mp4"), source, progress))
        return files

    def save_npz(self, path) -> str:
        """Write the per-frame arrays (``landmarks_photo_px`` and ``landmarks_raw_photo_px`` in frame
        pixels, weights, pose, lighting, tracked) and the clip's identity, albedo and camera to an
        ``.npz``. Returns the path."""
        with atomic_path(os.fspath(path)) as tmp:
            np.savez_compressed(tmp, landmarks_photo_px=self.landmarks, landmarks_raw_photo_px=self.landmarks_raw,
                                weights=self.weights, angles=self.angles, translations=self.translations, gamma=self.gamma,
                                tracked=self.tracked, detected=self.detected, fps=self.fps,
                                identity=self.identity.numpy(), tex=self.tex.numpy(), albedo=self.albedo.numpy(),
                                camera=np.array([self.camera.focal, self.camera.cx, self.camera.cy,
                                                 self.camera.distance]),
                                blendshape_names=np.array(Blendshapes(self.face_model).names))
        return os.fspath(path)
