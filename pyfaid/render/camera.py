"""Pose and pinhole camera of the Deep3DFaceRecon model family.

Conventions (so coefficients from that family mean the same thing here):

* Model/world space: x to the image right, y up, z toward the camera.
* Pose: three Euler angles ``(x, y, z)`` in radians (pitch, yaw, roll) and a translation. The
  rotation is ``R = Rz(z) @ Ry(y) @ Rx(x)`` applied to column vectors, so a posed point is
  ``p' = R p + t`` (row-vector form: ``p' = p @ R.T + t``). Positive yaw moves the nose toward the
  image right, positive pitch moves it down, positive roll turns the face counter-clockwise.
* Camera: sits on the +z axis at ``camera_distance`` and looks toward -z; camera space keeps x and
  y and measures depth ``z_cam = camera_distance - z``.
* Pinhole projection: ``u = focal * x / z_cam + center``, ``v = focal * y / z_cam + center``
  (v grows upward). In the returned images row 0 is the TOP of the picture, so pixel coordinates
  (x right, y down, the centre of pixel ``(row i, col j)`` at ``(j, i)``) are
  ``(u - 0.5, image_size - v - 0.5)``.
* Clip space for the rasterizer follows nvdiffrast (row 0 at NDC y = -1, pixel centres at
  ``(2 i + 1) / H - 1``): NDC x = ``2 u / W - 1`` and NDC y = ``1 - 2 v / H``, with ``w = z_cam``;
  NDC depth maps ``[near, far]`` to ``[-1, 1]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = [
    "Camera",
    "euler_rotation",
    "apply_pose",
    "to_camera",
    "project",
    "to_pixels",
    "clip_space",
    "random_angles",
]


#: Deep3DFaceRecon's focal length for a 224 x 224 image (pixels); it scales with the image size.
FOCAL_AT_224 = 1015.0
#: Camera distance from the model origin along +z, in model units.
CAMERA_DISTANCE = 10.0


@dataclass(frozen=True)
class Camera:
    """A pinhole camera of the Deep3DFaceRecon family (square images, principal point at the centre).

    Build one with :meth:`for_image_size`: the focal length is Deep3DFaceRecon's 1015 px at 224,
    scaled with the image size, so a face fills the same fraction of the image at every resolution
    and coefficients mean the same at every size.

    Attributes:
        image_size: height (= width) of the image in pixels.
        focal: focal length in pixels.
        center: principal point (x and y) in pixels.
        distance: camera distance from the model origin along +z (model units).
        near, far: depths mapped to NDC z = -1 and +1.
    """

    image_size: int
    focal: float
    center: float
    distance: float = CAMERA_DISTANCE
    near: float = 5.0
    far: float = 15.0

    def __post_init__(self):
        if int(self.image_size) <= 0:
            raise ValueError(f"Camera: `image_size` must be positive, got {self.image_size}")
        if not 0.0 < self.near < self.far:
            raise ValueError(f"Camera: need 0 < near < far, got near={self.near}, far={self.far}")

    @classmethod
    def for_image_size(cls, image_size: int, **overrides) -> "Camera":
        """The camera for a square image of ``image_size`` pixels (the one rule pyfaid uses).

        Args:
            image_size: side of the image in pixels.
            **overrides: replace ``focal``, ``center``, ``distance``, ``near`` or ``far``.
        """
        size = int(image_size)
        values = {"focal": FOCAL_AT_224 * size / 224.0, "center": size / 2.0}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(image_size=size, **values)

    def scaled(self, image_size: int) -> "Camera":
        """The same camera for another image size (focal length and centre scaled)."""
        s = int(image_size) / self.image_size
        return Camera(int(image_size), self.focal * s, self.center * s, self.distance, self.near, self.far)

    def to_pixels(self, points_world: torch.Tensor) -> torch.Tensor:
        """World-space points ``[..., 3]`` to pixel coordinates ``[..., 2]`` (x right, y down)."""
        return to_pixels(project(to_camera(points_world, self.distance), self.focal, self.center), self.image_size)

    def clip(self, points_world: torch.Tensor) -> torch.Tensor:
        """World-space points ``[B, N, 3]`` to clip space ``[B, N, 4]`` for the rasterizer."""
        return clip_space(to_camera(points_world, self.distance), self.focal, self.center, self.image_size,
                          self.near, self.far)


def euler_rotation(angles: torch.Tensor) -> torch.Tensor:
    """Rotation matrices from Deep3DFaceRecon's Euler angles.

    Args:
        angles: ``[B, 3]`` radians ``(x, y, z)``: rotation about the x axis (pitch), the y axis
            (yaw) and the z axis (roll).

    Returns:
        ``[B, 3, 3]`` matrices ``R = Rz @ Ry @ Rx`` acting on column vectors (``p' = R p``).
        With positive yaw, a point in front of the face (+z, the nose) moves to +x (image right);
        with positive pitch it moves to -y (down in the image); positive roll turns the face
        counter-clockwise as seen by the camera.
    """
    if angles.dim() != 2 or angles.shape[1] != 3:
        raise ValueError(f"euler_rotation: `angles` must be [B, 3], got {tuple(angles.shape)}")
    x, y, z = angles.unbind(1)
    one, zero = torch.ones_like(x), torch.zeros_like(x)
    cx, sx, cy, sy, cz, sz = x.cos(), x.sin(), y.cos(), y.sin(), z.cos(), z.sin()
    rot_x = torch.stack([one, zero, zero, zero, cx, -sx, zero, sx, cx], 1).view(-1, 3, 3)
    rot_y = torch.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], 1).view(-1, 3, 3)
    rot_z = torch.stack([cz, -sz, zero, sz, cz, zero, zero, zero, one], 1).view(-1, 3, 3)
    return rot_z @ rot_y @ rot_x


def apply_pose(points: torch.Tensor, rotation: torch.Tensor, translation: torch.Tensor) -> torch.Tensor:
    """Rotate then translate points: ``p @ R.T + t``.

    Args:
        points: ``[B, N, 3]``.
        rotation: ``[B, 3, 3]`` (column-vector convention, from ``euler_rotation``).
        translation: ``[B, 3]``.

    Returns:
        ``[B, N, 3]`` posed points in world space.
    """
    return points @ rotation.transpose(1, 2) + translation[:, None, :]


def to_camera(points: torch.Tensor, camera_distance: float) -> torch.Tensor:
    """World space to camera space: keeps x, y; depth ``z_cam = camera_distance - z``.

    Args:
        points: ``[..., 3]`` world-space points.
        camera_distance: distance of the camera from the origin along +z.

    Returns:
        ``[..., 3]`` camera-space points (positive depth in front of the camera).
    """
    return torch.cat([points[..., :2], camera_distance - points[..., 2:3]], dim=-1)


def project(points_cam: torch.Tensor, focal: float, center: float) -> torch.Tensor:
    """Pinhole projection to Deep3DFaceRecon's image plane (u right, v UP).

    Args:
        points_cam: ``[..., 3]`` camera-space points with positive depth.
        focal: focal length in pixels.
        center: principal point (same for u and v) in pixels.

    Returns:
        ``[..., 2]`` ``(u, v)``.
    """
    depth = points_cam[..., 2:3]
    return focal * points_cam[..., :2] / depth + center


def to_pixels(uv: torch.Tensor, image_size: int) -> torch.Tensor:
    """``(u, v)`` from ``project`` to pixel coordinates of the rendered image.

    Args:
        uv: ``[..., 2]`` projected points (v up).
        image_size: height (= width) of the image in pixels.

    Returns:
        ``[..., 2]`` ``(x, y)`` with x right, y down and pixel ``(row i, col j)`` centred at ``(j, i)``.
    """
    return torch.stack([uv[..., 0] - 0.5, image_size - uv[..., 1] - 0.5], dim=-1)


def clip_space(
    points_cam: torch.Tensor,
    focal: float,
    center: float,
    image_size: int,
    near: float = 5.0,
    far: float = 15.0,
) -> torch.Tensor:
    """Camera-space points to homogeneous clip space for ``pyfaid.render.rasterize``.

    Args:
        points_cam: ``[B, N, 3]`` camera-space points (depth in z).
        focal: focal length in pixels.
        center: principal point in pixels.
        image_size: rendered image height (= width) in pixels.
        near: depth mapped to NDC z = -1.
        far: depth mapped to NDC z = +1.

    Returns:
        ``[B, N, 4]`` clip-space positions; after division by w, pixel rows grow downward in
        the image (row 0 at NDC y = -1 is the top of the picture).
    """
    x, y, z = points_cam.unbind(-1)
    s = 2.0 * focal / image_size
    off = 2.0 * center / image_size - 1.0
    x_clip = s * x + off * z
    y_clip = -s * y - off * z
    z_clip = (far + near) / (far - near) * z - 2.0 * far * near / (far - near)
    return torch.stack([x_clip, y_clip, z_clip, z], dim=-1)


def random_angles(
    batch: int,
    generator: torch.Generator | None = None,
    max_yaw: float = 80.0,
    max_pitch: float = 25.0,
    max_roll: float = 20.0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Random head poses, uniform within the given limits.

    Args:
        batch: number of poses.
        generator: optional ``torch.Generator`` (CPU) for reproducibility.
        max_yaw: yaw limit in degrees (rotation about y), drawn from ``[-max_yaw, max_yaw]``.
        max_pitch: pitch limit in degrees (rotation about x).
        max_roll: roll limit in degrees (rotation about z).
        dtype: output dtype.
        device: output device.

    Returns:
        ``[batch, 3]`` angles in radians ``(pitch, yaw, roll)`` in Deep3DFaceRecon's slot order.
    """
    limits = torch.tensor([max_pitch, max_yaw, max_roll], dtype=torch.float64) * (math.pi / 180.0)
    u = torch.rand(batch, 3, generator=generator, dtype=torch.float64) * 2.0 - 1.0
    return (u * limits).to(dtype=dtype, device=device)
