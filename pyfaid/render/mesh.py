"""Typed values between the renderer's stages: a posed, lit mesh, its rasterization, its render.

The face renderer is three steps with a named value between each, as PyTorch3D's ``MeshRenderer``
is (``fragments = rasterizer(meshes); images = shader(fragments, meshes)``):

    mesh = face_model.mesh(coeffs)                 # FaceMesh: posed vertices, normals, albedo, light
    fragments = rasterize_mesh(mesh, camera)       # Fragments: nvdiffrast's raster + camera-space vertices
    image, shaded = shade(fragments, mesh.normals_world, albedo, sh)   # any number of textures

so a second texture on the same mesh is a second :func:`shade` of the same :class:`Fragments`, with
no second rasterization. :class:`~pyfaid.render.Renderer` composes them with Deep3DFaceRecon's
camera and ambient light and returns a :class:`Render`.

Frames (see :mod:`pyfaid.render.camera`): ``_world`` is the posed model frame (x right, y up, z
toward the camera, model units); ``_cam`` is camera space (x, y kept, z = depth in front of the
camera); ``_px`` is pixels of the rendered image (x right, y down, pixel centres at integers).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from pyfaid.render import camera as cam
from pyfaid.render.rasterize import interpolate, rasterize
from pyfaid.render.shading import sh_shading, vertex_normals
from pyfaid.render.topology import MeshTopology

__all__ = ["RestShape", "FaceMesh", "Fragments", "Render", "pose_mesh", "rasterize_mesh", "shade"]


@dataclass(frozen=True)
class RestShape:
    """An unposed mesh held fixed while only its pose changes (test-time fitting's pose and colour
    stages): its vertices and their normals, computed once.

    Attributes:
        vertices: ``[B, V, 3]`` model-frame vertices (no gradient).
        normals: ``[B, V, 3]`` their vertex normals; posing rotates them instead of recomputing
            normals of the posed mesh, so gradients reach the pose without the normal kernel.
    """

    vertices: torch.Tensor
    normals: torch.Tensor

    @classmethod
    def of(cls, vertices: torch.Tensor, topology: MeshTopology) -> "RestShape":
        """The rest shape of ``vertices [B, V, 3]`` (detached) with its normals."""
        v = vertices.detach()
        return cls(v, vertex_normals(v, topology))


@dataclass(frozen=True)
class FaceMesh:
    """A posed, lit mesh: what the face model makes of a coefficient vector.

    Attributes:
        vertices_world: ``[B, V, 3]`` posed vertices ``R p + t`` in the world frame.
        normals_world: ``[B, V, 3]`` unit vertex normals of the posed mesh.
        albedo: ``[B, V, 3]`` per-vertex albedo (RGB, nominally in [0, 1]).
        light: ``[B, 27]`` spherical-harmonic lighting coefficients (Deep3DFaceRecon's convention,
            before the renderer's ambient offset).
        topology: the mesh's :class:`MeshTopology`.
        landmark_idx: ``[68]`` vertex indices of the 68 landmarks (3D-style: fixed vertices).
    """

    vertices_world: torch.Tensor
    normals_world: torch.Tensor
    albedo: torch.Tensor
    light: torch.Tensor
    topology: MeshTopology
    landmark_idx: Optional[torch.Tensor] = None

    def with_albedo(self, albedo: torch.Tensor) -> "FaceMesh":
        """The same posed mesh with another albedo ``[B, V, 3]``."""
        return FaceMesh(self.vertices_world, self.normals_world, albedo, self.light, self.topology, self.landmark_idx)


def pose_mesh(shape: torch.Tensor, rotation: torch.Tensor, translation: torch.Tensor, topology: MeshTopology,
              rest_normals: Optional[torch.Tensor] = None) -> tuple:
    """Posed vertices and normals ``([B, V, 3], [B, V, 3])`` of ``shape @ R^T + t``.

    A fixed mesh moved rigidly (``shape`` without gradient, the rotation with one: fitting's pose
    and colour stages) has its rest normals (``rest_normals``, or computed here) rotated, so the
    gradient reaches the pose without the normal kernel's backward; otherwise the normals are the
    kernel's normals of the posed mesh.
    """
    world = cam.apply_pose(shape, rotation, translation)
    if shape.requires_grad or not rotation.requires_grad:
        return world, vertex_normals(world.contiguous(), topology)
    rest = rest_normals
    if rest is None or rest.shape != shape.shape:
        rest = vertex_normals(shape.detach().contiguous(), topology)
    return world, rest.to(shape.dtype) @ rotation.transpose(1, 2)


@dataclass(frozen=True)
class Fragments:
    """A mesh rasterized by a camera (nvdiffrast's layout).

    Attributes:
        rast: ``[B, H, W, 4]`` ``(u, v, z/w, triangle_id + 1)``, rows in image order (row 0 at the
            top); 0 in the last channel marks an empty pixel.
        vertices_cam: ``[B, V, 3]`` the mesh in camera space (depth in z).
        topology: the mesh's :class:`MeshTopology`.
        camera: the :class:`~pyfaid.render.Camera` that made them.
    """

    rast: torch.Tensor
    vertices_cam: torch.Tensor
    topology: MeshTopology
    camera: cam.Camera

    @property
    def coverage(self) -> torch.Tensor:
        """``[B, H, W, 1]`` 1 where a triangle covers the pixel, else 0 (the vertices' dtype)."""
        return (self.rast[..., 3:4] > 0).to(self.vertices_cam.dtype)

    @property
    def mask(self) -> torch.Tensor:
        """``[B, 1, H, W]`` face coverage (float 0/1)."""
        return self.coverage.permute(0, 3, 1, 2).contiguous()

    def project_px(self, points_cam: torch.Tensor) -> torch.Tensor:
        """Camera-space points ``[..., 3]`` to pixels ``[..., 2]`` of this raster (x right, y down)."""
        c = self.camera
        return cam.to_pixels(cam.project(points_cam, c.focal, c.center), c.image_size)


def rasterize_mesh(mesh: FaceMesh, camera: cam.Camera) -> Fragments:
    """Rasterize a posed mesh with a camera: :class:`Fragments`."""
    verts_cam = cam.to_camera(mesh.vertices_world, camera.distance)  # [B, V, 3]
    pos = cam.clip_space(verts_cam, camera.focal, camera.center, camera.image_size, camera.near, camera.far)
    rast = rasterize(pos.contiguous(), mesh.topology, (camera.image_size, camera.image_size))  # [B, H, W, 4]
    return Fragments(rast, verts_cam, mesh.topology, camera)


def shade(fragments: Fragments, normals: torch.Tensor, albedo: torch.Tensor, sh: torch.Tensor) -> tuple:
    """Shade and draw a rasterized mesh with one albedo.

    Args:
        fragments: the mesh's :class:`Fragments`.
        normals: ``[B, V, 3]`` world-frame vertex normals.
        albedo: ``[B, V, 3]`` per-vertex albedo.
        sh: ``[B, 27]`` SH coefficients as the shading kernel takes them (ambient offset included).

    Returns:
        ``(image [B, 3, H, W] in [0, 1] (0 outside the mesh), shaded [B, V, 3] lit vertex colours)``.
    """
    shaded = sh_shading(normals, albedo.contiguous(), sh)  # [B, V, 3]
    color_img = interpolate(shaded.contiguous(), fragments.rast, fragments.topology)  # [B, H, W, 3]
    image = (color_img * fragments.coverage).clamp(0.0, 1.0)
    return image.permute(0, 3, 1, 2).contiguous(), shaded


@dataclass(frozen=True)
class Render:
    """One render of a face mesh (what :class:`~pyfaid.render.Renderer` returns).

    Attributes:
        image: ``[B, 3, H, W]`` RGB in [0, 1] (0 outside the face, row 0 at the top).
        shaded: ``[B, V, 3]`` lit per-vertex colours (not clamped).
        mesh: the :class:`FaceMesh` drawn (``mesh.albedo`` is the albedo used).
        fragments: its :class:`Fragments`.
    """

    image: torch.Tensor
    shaded: torch.Tensor
    mesh: FaceMesh
    fragments: Fragments

    @property
    def mask(self) -> torch.Tensor:
        """``[B, 1, H, W]`` face coverage (float 0/1)."""
        return self.fragments.mask

    @property
    def rast(self) -> torch.Tensor:
        """``[B, H, W, 4]`` the rasterizer output."""
        return self.fragments.rast

    @property
    def vertices_cam(self) -> torch.Tensor:
        """``[B, V, 3]`` camera-space vertices (depth in z)."""
        return self.fragments.vertices_cam

    @property
    def landmarks_px(self) -> torch.Tensor:
        """``[B, 68, 2]`` the mesh's 68 landmark vertices projected to pixels (3D-style points)."""
        return self.fragments.project_px(self.vertices_cam[:, self.mesh.landmark_idx])

    _LEGACY = {"image": "image", "mask": "mask", "landmarks": "landmarks_px", "vertices": "vertices_cam",
               "shaded": "shaded", "rast": "rast"}

    def __getitem__(self, key: str) -> torch.Tensor:
        """The keys of the renderer's former dict output (``"image"``, ``"mask"``, ``"landmarks"``,
        ``"vertices"``, ``"colors"``, ``"shaded"``, ``"normals"``, ``"rast"``), for code written
        against it."""
        if key == "colors":
            return self.mesh.albedo
        if key == "normals":
            return self.mesh.normals_world
        if key not in self._LEGACY:
            raise KeyError(key)
        return getattr(self, self._LEGACY[key])
