"""Dependency-light preview renderer for face meshes (numpy + OpenCV painter's algorithm).

This is not the differentiable renderer (see :mod:`pyfaid.render`); it is a small tool to look at
face models: triangles are sorted back to front and filled with ``cv2.fillConvexPoly`` using Lambert
shading of the per-vertex albedo, seen through the same camera rule as the renderer
(:class:`pyfaid.render.Camera`), without pyfaid's rasterizer.
"""

from __future__ import annotations

import cv2
import numpy as np

from pyfaid.render.camera import Camera

__all__ = ["render_mesh", "make_grid", "rotation_matrix", "project"]


def rotation_matrix(pitch: float = 0.0, yaw: float = 0.0, roll: float = 0.0) -> np.ndarray:
    """Rotation ``R = Rz(roll) @ Ry(yaw) @ Rx(pitch)`` (radians), applied as ``R @ p``.

    Returns:
        np.ndarray: ``[3, 3]`` rotation matrix.
    """
    cx, sx = np.cos(pitch), np.sin(pitch)
    cy, sy = np.cos(yaw), np.sin(yaw)
    cz, sz = np.cos(roll), np.sin(roll)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def render_mesh(
    vertices,
    triangles,
    colors=None,
    image_size: int = 256,
    rotation=None,
    camera=None,
    light=(0.3, 0.3, 1.0),
    ambient: float = 0.35,
    background=(1.0, 1.0, 1.0),
    return_ids: bool = False,
):
    """Render one mesh with a pinhole camera looking down -z (Deep3DFaceRecon's camera).

    Args:
        vertices: ``[V, 3]`` model-space positions (x right, y up, z toward the camera).
        triangles: ``[F, 3]`` vertex indices (counter-clockwise seen from the front).
        colors: ``[V, 3]`` RGB albedo in [0, 1]; grey when None.
        image_size: output height and width in pixels.
        rotation: optional ``[3, 3]`` rotation applied to the vertices before projection.
        camera: a :class:`pyfaid.render.Camera`; default ``Camera.for_image_size(image_size)``
            (Deep3DFaceRecon's focal length scaled to the image, so the face fills the same
            fraction of it at every size).
        light: direction toward the light (model/camera space), normalised internally.
        ambient: ambient term added to the Lambert term.
        background: RGB of empty pixels.
        return_ids: also return the ``[H, W]`` int64 map of the visible triangle (-1 = empty).

    Returns:
        np.ndarray: ``[H, W, 3]`` uint8 RGB image (and the triangle id map if ``return_ids``).
    """
    v = np.asarray(vertices, dtype=np.float64)
    tri = np.asarray(triangles, dtype=np.int64)
    if v.ndim != 2 or v.shape[1] != 3:
        raise ValueError(f"vertices must be [V, 3], got {v.shape}")
    if tri.ndim != 2 or tri.shape[1] != 3:
        raise ValueError(f"triangles must be [F, 3], got {tri.shape}")
    col = np.full((len(v), 3), 0.7) if colors is None else np.asarray(colors, dtype=np.float64)
    if rotation is not None:
        v = v @ np.asarray(rotation, dtype=np.float64).T
    camera = camera or Camera.for_image_size(image_size)
    zc = camera.distance - v[:, 2]  # depth in front of the camera
    px = project(v, image_size, camera=camera)

    a, b, d = v[tri[:, 0]], v[tri[:, 1]], v[tri[:, 2]]
    n = np.cross(b - a, d - a)
    n /= np.linalg.norm(n, axis=1, keepdims=True) + 1e-12
    # Back-face culling: keep triangles whose normal faces the camera.
    centre = (a + b + d) / 3.0
    view = np.array([0.0, 0.0, camera.distance]) - centre
    front = (n * view).sum(1) > 0
    ldir = np.asarray(light, dtype=np.float64)
    ldir = ldir / np.linalg.norm(ldir)
    shade = ambient + (1 - ambient) * np.clip(n @ ldir, 0, 1)
    tcol = col[tri].mean(1) * shade[:, None]
    order = np.argsort(-zc[tri].mean(1))  # far to near
    order = order[front[order]]

    img = np.empty((image_size, image_size, 3), np.float32)
    img[:] = background
    pts = np.round(px[tri] * 16).astype(np.int32)  # 4 bits of sub-pixel precision
    tcol = np.clip(tcol, 0, 1)
    ids = np.full((image_size, image_size), -1.0, np.float32) if return_ids else None
    for i in order:
        cv2.fillConvexPoly(img, pts[i], tcol[i].tolist(), lineType=cv2.LINE_8, shift=4)
        if ids is not None:
            cv2.fillConvexPoly(ids, pts[i], float(i), lineType=cv2.LINE_8, shift=4)
    out = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
    if return_ids:
        return out, ids.astype(np.int64)
    return out


def project(vertices, image_size: int = 256, rotation=None, camera=None):
    """Pixel coordinates ``[V, 2]`` (x right, y down) of model-space vertices, as in :func:`render_mesh`
    (the painter's pixel grid: OpenCV polygon fill, no half-pixel offset)."""
    v = np.asarray(vertices, dtype=np.float64)
    if rotation is not None:
        v = v @ np.asarray(rotation, dtype=np.float64).T
    camera = camera or Camera.for_image_size(image_size)
    f, c = camera.focal, camera.center
    zc = camera.distance - v[:, 2]
    return np.stack([f * v[:, 0] / zc + c, c - f * v[:, 1] / zc], 1)


def make_grid(images, ncol: int | None = None, pad: int = 2) -> np.ndarray:
    """Tile ``[H, W, 3]`` uint8 images into one grid image (white padding)."""
    images = list(images)
    if not images:
        raise ValueError("make_grid needs at least one image")
    n = len(images)
    ncol = ncol or int(np.ceil(np.sqrt(n)))
    nrow = int(np.ceil(n / ncol))
    h, w = images[0].shape[:2]
    grid = np.full((nrow * (h + pad) + pad, ncol * (w + pad) + pad, 3), 255, np.uint8)
    for k, im in enumerate(images):
        r, c = divmod(k, ncol)
        grid[pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (w + pad): pad + c * (w + pad) + w] = im
    return grid
