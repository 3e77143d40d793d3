"""A head's pose in two pinhole cameras of a clip: a frame's crop camera (the network's, over the
224 aligned crop) and the clip's fixed camera over whole frames (:func:`clip_pose`, :func:`crop_pose`).
"""

from __future__ import annotations

import math

import numpy as np

from pyfaid.reconstruct.expression import Pinhole

__all__ = ["clip_pose", "crop_pose", "photo_scale"]


def _split(m: np.ndarray) -> tuple:
    """A similarity photo -> crop: ``(L, b, s, phi)`` of its inverse crop -> photo ``p = L c + b``
    (``s`` photo pixels per crop pixel, ``phi`` its rotation in pixel coordinates)."""
    a = np.linalg.inv(np.vstack([np.asarray(m, np.float64), [0, 0, 1.0]]))[:2]
    lin, b = a[:, :2], a[:, 2]
    return lin, b, float(np.hypot(lin[0, 0], lin[1, 0])), float(math.atan2(lin[1, 0], lin[0, 0]))


def clip_pose(m, angle, trans, crop_cam: Pinhole, clip_cam: Pinhole) -> tuple:
    """A pose in a frame's crop camera -> the same head in the clip's camera.

    The head's origin keeps its pixel and its apparent size; the rotation turns by the crop's
    in-plane rotation (the crop is the frame turned and scaled, so only the roll changes).

    Args:
        m: ``2x3`` the frame's photo -> crop similarity.
        angle, trans: ``[3]`` radians and ``[3]`` model units in the crop camera.
        crop_cam, clip_cam: the two cameras.

    Returns:
        ``(angle [3], trans [3])`` in the clip camera (numpy float64).
    """
    lin, b, s, phi = _split(m)
    angle, trans = np.asarray(angle, np.float64), np.asarray(trans, np.float64)
    depth_c = crop_cam.distance - trans[2]
    pc = np.array([crop_cam.focal * trans[0] / depth_c + crop_cam.cx, -crop_cam.focal * trans[1] / depth_c + crop_cam.cy])
    pp = lin @ pc + b
    depth = depth_c * clip_cam.focal / (s * crop_cam.focal)
    out = np.array([(pp[0] - clip_cam.cx) * depth / clip_cam.focal, -(pp[1] - clip_cam.cy) * depth / clip_cam.focal,
                    clip_cam.distance - depth])
    return np.array([angle[0], angle[1], angle[2] - phi]), out


def crop_pose(m, angle, trans, crop_cam: Pinhole, clip_cam: Pinhole) -> tuple:
    """The inverse of :func:`clip_pose`: a pose in the clip's camera -> the frame's crop camera."""
    m = np.asarray(m, np.float64)
    _, _, s, phi = _split(m)
    angle, trans = np.asarray(angle, np.float64), np.asarray(trans, np.float64)
    depth = clip_cam.distance - trans[2]
    pp = np.array([clip_cam.focal * trans[0] / depth + clip_cam.cx, -clip_cam.focal * trans[1] / depth + clip_cam.cy])
    pc = m[:, :2] @ pp + m[:, 2]
    depth_c = depth * s * crop_cam.focal / clip_cam.focal
    out = np.array([(pc[0] - crop_cam.cx) * depth_c / crop_cam.focal, -(pc[1] - crop_cam.cy) * depth_c / crop_cam.focal,
                    crop_cam.distance - depth_c])
    return np.array([angle[0], angle[1], angle[2] + phi]), out


def photo_scale(m) -> float:
    """Photo pixels per crop pixel of a ``2x3`` photo -> crop similarity."""
    return _split(m)[2]
