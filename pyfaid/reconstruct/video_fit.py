"""Per-frame photometric fitting of a video frame, in blendshape space.

With the clip's identity and albedo fixed, Adam refines one frame's ARKit weights (projected back
into [0, 1] after every step: fitting in blendshape space), head pose and lighting against the
frame's crop, starting from the landmark solve: the photometric loss over the pixels the model's
segmenter says show the face, and the landmark loss on the points the solve fits. It renders at the
network's size (the FAID model's renderer, 128 px for the shipped model): a step costs one
rasterization and its backward pass.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from pyfaid import losses as L
from pyfaid.facemodel.blendshapes import Blendshapes
from pyfaid.reconstruct.expression import INNER
from pyfaid.reconstruct.video_camera import clip_pose, crop_pose

__all__ = ["fit_frame", "LEARNING_RATES", "W_LANDMARK"]

#: Adam's learning rates per unknown: ARKit weights, angles (radians), translation, lighting.
LEARNING_RATES = {"w": 0.03, "angle": 0.005, "trans": 0.005, "gamma": 0.02}
#: Weight of the landmark term against the photometric one (as test-time fitting weighs its 68 points).
W_LANDMARK = 20.0


def _crop(frame: np.ndarray, m: np.ndarray, size: int = 224) -> torch.Tensor:
    warped = cv2.warpAffine(frame, np.asarray(m, np.float64), (size, size), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT)
    return torch.from_numpy(warped).permute(2, 0, 1).float() / 255.0


def fit_frame(face_model, track, frame: np.ndarray, x: np.ndarray, gamma: np.ndarray, face: dict, crop_cam,
              clip_cam, steps: int, net, shapes: Blendshapes) -> dict:
    """Fit one frame.

    Args:
        face_model: the MorphableModel (with blendshapes).
        track: the frame's :class:`~pyfaid.reconstruct.video_track.Track`.
        frame: ``[H, W, 3]`` uint8 RGB.
        x: ``[52 + 6]`` the landmark solve: weights, angles and translation in the clip's camera.
        gamma: ``[27]`` the frame's lighting.
        face: the clip's ``id``, ``tex`` and ``albedo``.
        crop_cam, clip_cam: the crop's and the clip's :class:`~pyfaid.reconstruct.expression.Pinhole`.
        steps: Adam steps.
        net: the FAID model (its renderer and segmenter).
        shapes: the model's :class:`~pyfaid.facemodel.blendshapes.Blendshapes` (made once per clip).

    Returns:
        dict with ``x [58]`` (clip camera) and ``gamma [27]``.
    """
    k = len(shapes)
    lay = face_model.layout
    renderer = net.renderer
    size = renderer.image_size
    dev = next(net.parameters()).device
    crop = _crop(frame, track.photo_to_crop).to(dev)[None]  # [1, 3, 224, 224]
    with torch.no_grad():
        vis = net.segmenter.visibility(crop) if getattr(net, "segmenter", None) is not None else None
    target = F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    vis = None if vis is None else F.interpolate(vis, size=(size, size), mode="bilinear", align_corners=False)
    m = np.asarray(track.photo_to_crop, np.float64)
    lm_crop = torch.from_numpy(track.landmarks_photo_px @ m[:, :2].T + m[:, 2]).float().to(dev)
    lm_target = ((lm_crop + 0.5) * size / crop.shape[-1] - 0.5)[list(INNER)][None]
    angle0, trans0 = crop_pose(m, x[k:k + 3], x[k + 3:], crop_cam, clip_cam)
    p = {"w": torch.tensor(x[:k], dtype=torch.float32, device=dev),
         "angle": torch.tensor(angle0, dtype=torch.float32, device=dev),
         "trans": torch.tensor(trans0, dtype=torch.float32, device=dev),
         "gamma": torch.tensor(gamma, dtype=torch.float32, device=dev)}
    for v in p.values():
        v.requires_grad_(True)
    opt = torch.optim.Adam([{"params": [p[n]], "lr": lr} for n, lr in LEARNING_RATES.items()])
    to_coeffs = shapes.to_coeffs.float().to(dev)
    albedo = face["albedo"].to(dev)[None]
    for _ in range(steps):
        c = lay.join({"id": face["id"].float().to(dev)[None], "exp": (to_coeffs @ p["w"])[None],
                      "tex": face["tex"].float().to(dev)[None], "angle": p["angle"][None],
                      "gamma": p["gamma"][None], "trans": p["trans"][None]})
        out = renderer(face_model, c, colors=albedo)
        weight = out.mask.detach() * (1.0 if vis is None else vis)
        loss = L.photometric_loss(target, out.image, weight) + 10.0 * L.gamma_regularizer(p["gamma"][None])
        loss = loss + W_LANDMARK * L.landmark_loss(out.landmarks_px[:, list(INNER)], lm_target, float(size))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            p["w"].clamp_(0.0, 1.0)  # projected: the weights stay ARKit weights
    angle, trans = clip_pose(m, p["angle"].detach().cpu().double().numpy(), p["trans"].detach().cpu().double().numpy(),
                             crop_cam, clip_cam)
    return {"x": np.concatenate([p["w"].detach().cpu().double().numpy(), angle, trans]),
            "gamma": p["gamma"].detach().cpu().double().numpy()}
