"""``pyfaid.reconstruct_video``: one face through a clip, with a steady track.

The pipeline, in two passes over the frames:

1. **Track** (:class:`~pyfaid.reconstruct.video_track.FaceTracker`): detection on the first frame
   and whenever the track is lost, otherwise a crop from the previous frame's landmarks; per frame
   the coarse network's coefficients and 68 landmarks.
2. **Clip identity and albedo**: the mean of the per-frame identity coefficients, and the mean of
   the fine stage's albedo on the clip's most frontal frames (``keyframes``).
3. **Per frame**, in one camera fixed for the clip (:class:`~pyfaid.reconstruct.expression.Pinhole`
   over whole frames: the first detection's crop camera, scaled to the frame): the landmarks are
   filtered in time (One-Euro, :mod:`pyfaid.reconstruct.filters`), then the head pose and the ARKit
   blendshape weights are solved from them with the clip's identity
   (:class:`~pyfaid.reconstruct.expression.ExpressionSolver`, warm-started from the previous
   frame); lighting comes from the network. With ``fit_steps > 0`` a short photometric fit in
   blendshape space (:mod:`pyfaid.reconstruct.video_fit`) refines pose, weights and lighting on the
   frame's crop, and its outputs are filtered in time too.

The result, :class:`~pyfaid.reconstruct.video_result.VideoReconstruction`, writes a CSV in Live
Link Face's layout, an animated glTF and an overlay video.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from pyfaid.checkpoint import pretrained_available
from pyfaid.encoders.align import FaceNotFoundError
from pyfaid.facemodel.blendshapes import Blendshapes
from pyfaid.reconstruct.api import NoCheckpointError, load_model
from pyfaid.reconstruct.expression import ExpressionSolver, Pinhole
from pyfaid.reconstruct.filters import OneEuro, OneEuroFilter, similarity_speed
from pyfaid.reconstruct.predict import crop_renderer, predict, resolve_device
from pyfaid.reconstruct.video_camera import clip_pose, crop_pose, photo_scale
from pyfaid.reconstruct.video_fit import fit_frame
from pyfaid.reconstruct.video_result import VideoReconstruction
from pyfaid.reconstruct.video_track import FaceTracker, VideoFrames

__all__ = ["reconstruct_video", "DEFAULT_FILTER", "KEYFRAMES", "crop_pose", "clip_pose"]  # poses: video_camera

#: The One-Euro parameters of the outputs: landmarks in units of the face's size (the first
#: detection's eye-corner distance), pose in radians and model units, weights as they are. Chosen
#: on the synthetic clip (:func:`pyfaid.synth.clips.synthetic_clip`, ``benchmarks/bm_video.py``).
DEFAULT_FILTER = OneEuro(min_cutoff=0.5, beta=10.0, d_cutoff=1.0)
#: Frontal frames whose fine albedo is averaged into the clip's albedo.
KEYFRAMES = 5
#: Gauss-Newton steps of the pose and expression solve on the first frame of a track and on the others.
SOLVE_STEPS_START, SOLVE_STEPS = 5, 2


def _resolve(checkpoint, model, device):
    if model is not None:
        return model[0] if isinstance(model, tuple) else model
    if checkpoint == "default":
        checkpoint = "pretrained" if pretrained_available() else None
    if checkpoint is None:
        raise NoCheckpointError("reconstruct_video needs a FAID model with a landmark head (checkpoint='pretrained', "
                                "the shipped one, or a checkpoint trained with model.landmark_head: true)")
    return load_model(checkpoint, resolve_device(device))[0]


def _track(source: VideoFrames, tracker: FaceTracker, keyframes: int, progress: bool) -> tuple:
    """Pass 1: a Track (or None) per frame, and the crops of the most frontal tracked frames."""
    tracks, frontal = [], []  # frontal: (|yaw|, frame, crop)
    lay = tracker.net.face_model.layout
    for i, frame in enumerate(tqdm(source, total=len(source), desc="track", unit="frame", disable=not progress)):
        t = tracker.step(frame, i)
        tracks.append(t)
        if t is not None:
            frontal.append((abs(float(t.coeffs[lay.slice("angle")][1])), i, t.crop))
            frontal = sorted(frontal, key=lambda x: x[0])[:keyframes]
            t.crop = None  # only the key frames' crops are kept
    return tracks, [c for _, _, c in frontal]


@torch.no_grad()
def _clip_face(net, tracks: list, key_crops: list) -> dict:
    """The clip's identity (mean coefficients), albedo coefficients and albedo (step 2, the whole
    network, on the key frames)."""
    fm = net.face_model
    coeffs = torch.stack([t.coeffs for t in tracks if t is not None]).float()
    parts = fm.split_coeffs(coeffs)
    pred = predict(net, torch.stack(key_crops).to(next(net.parameters()).device))
    return {"id": parts["id"].mean(0), "tex": parts["tex"].mean(0), "albedo": pred.albedo.mean(0).clamp(0, 1).cpu()}


def reconstruct_video(path_or_frames, checkpoint="default", fit_steps: int = 0, device="cpu",
                      filter: Optional[OneEuro] = DEFAULT_FILTER, fps: Optional[float] = None,
                      max_frames: Optional[int] = None, progress: bool = True, model=None,
                      keyframes: int = KEYFRAMES) -> VideoReconstruction:
    """Reconstruct one face through a clip: one identity and albedo, pose, expression and light per frame.

    Args:
        path_or_frames: a video file (anything OpenCV reads), or a sequence of ``[H, W, 3]`` RGB
            frames (uint8, or floats in [0, 1]) or a ``[T, H, W, 3]`` array.
        checkpoint: ``"default"`` / ``"pretrained"`` (the shipped model) or a checkpoint with a
            landmark head.
        fit_steps: photometric fitting steps per frame (0: the landmark solve alone; see
            :mod:`pyfaid.reconstruct.video_fit`).
        device: ``"cpu"``, ``"cuda"`` or ``"auto"``.
        filter: One-Euro parameters of the temporal filter (None: no filtering).
        fps: frames per second (default: the file's; 30 for frames in memory).
        max_frames: stop after this many frames.
        progress: tqdm progress bars.
        model: an already loaded FAID model instead of ``checkpoint``.
        keyframes: frontal frames averaged into the clip's albedo.

    Returns:
        :class:`~pyfaid.reconstruct.video_result.VideoReconstruction`.

    Raises:
        VideoReadError: the file is missing, not a video or has no frames.
        FaceNotFoundError: no frame shows a face.
        NoCheckpointError: no model with a landmark head.
    """
    if int(fit_steps) < 0:
        raise ValueError(f"fit_steps must be >= 0, got {fit_steps}")
    if int(keyframes) < 1:
        raise ValueError(f"keyframes must be >= 1, got {keyframes}")
    source = VideoFrames(path_or_frames, fps=fps, max_frames=max_frames)
    dev = resolve_device(device)
    net = _resolve(checkpoint, model, dev)
    Blendshapes(net.face_model)  # a model without blendshapes fails here, before any work
    tracks, key_crops = _track(source, FaceTracker(net, dev, source.name), int(keyframes), progress)
    n_found = sum(t is not None for t in tracks)
    if n_found == 0:
        raise FaceNotFoundError(f"{source.name}: no face detected in any of its {len(tracks)} frames")
    face = _clip_face(net, tracks, key_crops)
    first = next(t for t in tracks if t is not None)
    crop_cam = Pinhole.of_renderer(crop_renderer(dev))
    w, h = source.size
    s0 = photo_scale(first.photo_to_crop)
    clip_cam = Pinhole(crop_cam.focal * s0, (w - 1) / 2.0, (h - 1) / 2.0, crop_cam.distance)
    frames = iter(source) if fit_steps > 0 else None
    with threadpool_limits(1, user_api="blas"):  # 58 x 58 problems: BLAS threads would only wait on each other
        states = _per_frame(net, tracks, face, clip_cam, crop_cam, source.fps, filter, fit_steps, frames, progress)
    return VideoReconstruction.assemble(source, net.face_model, tracks, face, states, clip_cam, filter, int(fit_steps))


def _per_frame(net, tracks, face, clip_cam, crop_cam, fps, params, fit_steps, frames, progress) -> list:
    """Pass 2: per frame the filtered landmarks, the solved (and fitted) pose and weights, the light."""
    fm = net.face_model
    lay = fm.layout
    solver = ExpressionSolver(fm)
    rest = solver.neutral_landmarks(face["id"])
    k = solver.num_unknowns
    scale = None
    filt = {name: OneEuroFilter(params) for name in ("light", "fit")} if params is not None else {}
    if params is not None:  # the landmarks' cutoff follows the face's motion, not each point's noise
        filt["landmarks"] = OneEuroFilter(params, speed_of=similarity_speed)
    states, x, gap = [], None, True
    for i, t in enumerate(tqdm(tracks, desc="solve" if fit_steps == 0 else "fit", unit="frame", disable=not progress)):
        frame = next(frames) if frames is not None else None
        if t is None:
            states.append(None)
            gap = True
            continue
        if gap:  # a new track: start from the network's pose, forget the filters' past
            for f in filt.values():
                f.reset()
            p = fm.split_coeffs(t.coeffs[None].double())
            angle, trans = clip_pose(t.photo_to_crop, p["angle"][0].numpy(), p["trans"][0].numpy(), crop_cam, clip_cam)
            x = np.concatenate([np.zeros(k), angle, trans])
        if scale is None:
            scale = float(np.linalg.norm(t.landmarks_photo_px[36] - t.landmarks_photo_px[45]))
        time = i / fps
        lm = t.landmarks_photo_px
        lm = lm if "landmarks" not in filt else filt["landmarks"](lm / scale, time) * scale
        x = solver.solve(rest, clip_cam, lm, x, weights=t.confidence, steps=SOLVE_STEPS_START if gap else SOLVE_STEPS)
        gamma = t.coeffs[lay.slice("gamma")].double().numpy()
        gamma = gamma if "light" not in filt else filt["light"](gamma, time)
        state = {"landmarks": lm, "landmarks_raw": t.landmarks_photo_px, "x": x.copy(), "gamma": gamma}
        if fit_steps > 0:
            fitted = fit_frame(fm, t, frame, x, gamma, face, crop_cam, clip_cam, fit_steps, net, solver.shapes)
            state["x"] = fitted["x"] if "fit" not in filt else filt["fit"](fitted["x"], time)
            state["gamma"] = fitted["gamma"]
        states.append(state)
        gap = False
    return states
