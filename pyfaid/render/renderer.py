"""Differentiable face renderer: morphable-model coefficients to an image, in three named steps.

``face_model.mesh(coeffs)`` -> :class:`~pyfaid.render.FaceMesh` (posed vertices, normals, albedo,
light) -> :meth:`Renderer.rasterize` -> :class:`~pyfaid.render.Fragments` -> :meth:`Renderer.shade`
-> :class:`~pyfaid.render.Render`, with Deep3DFaceRecon's camera, pose and lighting conventions
(see ``camera.py``; SH shading per vertex with the 0.8 ambient offset added to the first SH
coefficient of each colour channel). Differentiable end to end w.r.t. the coefficients and the
albedo (through ``interpolate``'s gradients to the attributes and, via the barycentrics, to the
vertex positions). A second albedo on the same mesh is a second :meth:`Renderer.shade` of the same
fragments: no second rasterization. :meth:`Renderer.shade_texture` draws a UV texture instead of
per-vertex albedo, and ``Renderer(antialias=True)`` antialiases the outline, which gives the image
and the coverage (``Render.mask``) gradients to the silhouette's vertex positions.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from pyfaid.render import camera as cam
from pyfaid.render.mesh import (
    FaceMesh,
    Fragments,
    Render,
    RestShape,
    UVTexture,
    antialias_image,
    rasterize_mesh,
    shade,
    shade_texture,
)

__all__ = ["Renderer", "AMBIENT_OFFSET"]

#: Added to the first (constant) SH coefficient of each colour channel before shading, so that
#: all-zero lighting coefficients mean a plain ambient light (Deep3DFaceRecon's ``init_lit``).
AMBIENT_OFFSET = 0.8


class Renderer(nn.Module):
    """Renders a morphable face model with Deep3DFaceRecon's camera.

    Args:
        image_size: output height and width in pixels; the camera is
            :meth:`Camera.for_image_size` of it unless ``camera`` is given.
        camera: a :class:`~pyfaid.render.Camera` (its ``image_size`` wins over ``image_size``).
        ambient_offset: added to SH coefficients 0, 9 and 18 (the constant term of each colour
            channel) before shading.
        antialias: antialias every render's outline (:func:`~pyfaid.render.antialias`): pixels
            the silhouette crosses blend face and background by how far it runs into them, and
            ``Render.mask`` is that fractional coverage; both then have gradients to the vertex
            positions at the outline (so fitting can pull a rendered outline onto a target mask).
            False (the default) gives hard 0/1 coverage, whose only gradients to the positions
            come through the interiors of triangles.
        **camera_overrides: ``focal``, ``center``, ``distance``, ``near`` or ``far`` replacing the
            defaults of :meth:`Camera.for_image_size`.

    Example:
        >>> model = pyfaid.facemodel.load("default")
        >>> out = Renderer(224)(model, model.layout.zeros(1))
        >>> out.image.shape
        torch.Size([1, 3, 224, 224])
    """

    def __init__(self, image_size: int = 224, camera: cam.Camera | None = None,
                 ambient_offset: float = AMBIENT_OFFSET, antialias: bool = False, **camera_overrides) -> None:
        super().__init__()
        if camera is None:
            camera = cam.Camera.for_image_size(image_size, **camera_overrides)
        elif camera_overrides:
            raise ValueError("Renderer: give either `camera` or camera overrides, not both")
        self.camera = camera
        self.ambient_offset = float(ambient_offset)
        self.antialias = bool(antialias)

    @property
    def image_size(self) -> int:
        return self.camera.image_size

    @property
    def focal(self) -> float:
        return self.camera.focal

    @property
    def center(self) -> float:
        return self.camera.center

    @property
    def camera_distance(self) -> float:
        return self.camera.distance

    def extra_repr(self) -> str:
        c = self.camera
        return (f"image_size={c.image_size}, focal={c.focal}, center={c.center}, camera_distance={c.distance}, "
                f"antialias={self.antialias}")

    # ------------------------------------------------------------------------------------------
    def lit_gamma(self, gamma: torch.Tensor) -> torch.Tensor:
        """SH coefficients ``[B, 27]`` (3 channels x 9) with the ambient offset added."""
        offset = torch.zeros(27, dtype=gamma.dtype, device=gamma.device)
        offset[0::9] = self.ambient_offset
        return gamma + offset

    def project_points(self, points_cam: torch.Tensor) -> torch.Tensor:
        """Camera-space points ``[B, N, 3]`` to pixel coordinates ``[B, N, 2]`` (x right, y down)."""
        uv = cam.project(points_cam, self.focal, self.center)
        return cam.to_pixels(uv, self.image_size)

    def project_landmarks(self, face_model: nn.Module, coeffs: torch.Tensor) -> torch.Tensor:
        """The model's 68 landmarks projected to pixels ``[B, 68, 2]``, without rasterizing."""
        parts = face_model.split_coeffs(coeffs)
        shape = face_model.shape(parts["id"], parts["exp"])[:, face_model.landmark_idx]
        world = cam.apply_pose(shape, cam.euler_rotation(parts["angle"]), parts["trans"])
        return self.project_points(cam.to_camera(world, self.camera_distance))

    # ------------------------------------------------------------------------------------------
    def rasterize(self, mesh: FaceMesh, grad_db: bool = False) -> Fragments:
        """Rasterize a posed mesh with this renderer's camera (``grad_db``: with the barycentric
        derivatives a textured render needs; :meth:`shade_texture` adds them when missing)."""
        return rasterize_mesh(mesh, self.camera, grad_db)

    def _render(self, image: torch.Tensor, shaded: torch.Tensor, mesh: FaceMesh, fragments: Fragments) -> Render:
        if not self.antialias:
            return Render(image, shaded, mesh, fragments)
        image, alpha = antialias_image(fragments, image)
        return Render(image, shaded, mesh, fragments, alpha)

    def shade(self, fragments: Fragments, mesh: FaceMesh, albedo: Optional[torch.Tensor] = None) -> Render:
        """Draw rasterized ``fragments`` of ``mesh`` lit by its light, with its albedo or ``albedo``
        ``[B, V, 3]`` (the same geometry with a second texture: no second rasterization)."""
        if albedo is not None:
            batch, num_vertices = mesh.albedo.shape[:2]
            if albedo.shape != (batch, num_vertices, 3):
                raise ValueError(f"Renderer.shade: `albedo` must be [{batch}, {num_vertices}, 3], "
                                 f"got {tuple(albedo.shape)}")
            mesh = mesh.with_albedo(albedo.to(mesh.normals_world.dtype))
        image, shaded = shade(fragments, mesh.normals_world, mesh.albedo, self.lit_gamma(mesh.light))
        return self._render(image, shaded, mesh, fragments)

    def shade_texture(self, fragments: Fragments, mesh: FaceMesh, texture: UVTexture, lit: bool = True,
                      filter_mode: str = "linear-mipmap-linear") -> Render:
        """Draw rasterized ``fragments`` of ``mesh`` with a UV texture instead of its per-vertex albedo.

        Per pixel: the texture (trilinear, mip level from the texture coordinates' image-space
        derivatives) times the mesh's SH light of a white albedo, interpolated
        (:func:`~pyfaid.render.shade_texture`); antialiased when the renderer is.

        Args:
            fragments: from :meth:`rasterize` (``grad_db=True`` saves recomputing ``rast_db``).
            mesh: the :class:`FaceMesh` rasterized.
            texture: a :class:`~pyfaid.render.UVTexture` of the mesh's UV layout
                (``face_model.uv_texture(image)``), in the mesh's dtype and device.
            lit: False draws the bare texture (no light).
            filter_mode: the texture filter (:data:`pyfaid.render.mesh.TEXTURE_FILTERS`):
                trilinear by default; ``"linear"`` reads the full-resolution texture bilinearly.

        Returns:
            :class:`~pyfaid.render.Render`; its ``shaded`` holds the per-vertex albedo times the
            light (the per-vertex render's colours, for comparison; the albedo when unlit).
        """
        sh = self.lit_gamma(mesh.light) if lit else None
        image, light = shade_texture(fragments, mesh.normals_world, texture, sh, filter_mode)
        shaded = mesh.albedo if light is None else mesh.albedo * light
        return self._render(image, shaded, mesh, fragments)

    def draw(self, mesh: FaceMesh, texture: Optional[UVTexture] = None, lit: bool = True,
             filter_mode: str = "linear-mipmap-linear") -> Render:
        """Rasterize and shade one mesh, with its albedo or a UV ``texture`` (:meth:`shade_texture`;
        ``lit`` and ``filter_mode`` apply to it)."""
        if texture is None:
            return self.shade(self.rasterize(mesh), mesh)
        return self.shade_texture(self.rasterize(mesh, grad_db="mipmap" in filter_mode), mesh, texture, lit,
                                  filter_mode)

    def forward(
        self,
        face_model: nn.Module,
        coeffs: torch.Tensor,
        colors: Optional[torch.Tensor] = None,
        angles: Optional[torch.Tensor] = None,
        rest: Optional[RestShape] = None,
        texture: Optional[UVTexture] = None,
    ) -> Render:
        """Render faces from coefficients: ``draw(face_model.mesh(coeffs, colors, angles, rest), texture)``.

        Args:
            face_model: a ``pyfaid.facemodel.MorphableModel`` (on the same device as ``coeffs``).
            coeffs: ``[B, face_model.layout.size]`` (id, exp, tex, angles, SH, translation).
            colors: optional albedo ``[B, V, 3]`` or ``[V, 3]`` replacing the model's texture.
            angles: optional ``[B, 3]`` rotation angles (radians) replacing the ``angle`` part.
            rest: optional :class:`~pyfaid.render.RestShape` replacing the shape of ``coeffs``
                (a fixed mesh moved rigidly).
            texture: optional :class:`~pyfaid.render.UVTexture` in the model's UV layout
                (``face_model.uv_texture(image)``) drawn instead of the albedo.

        Returns:
            :class:`~pyfaid.render.Render`: ``image [B, 3, H, W]``, ``mask [B, 1, H, W]``,
            ``landmarks_px [B, 68, 2]``, ``vertices_cam``, ``shaded``, ``mesh``, ``fragments``.
        """
        return self.draw(face_model.mesh(coeffs, colors, angles, rest), texture)

    def render_views(
        self,
        face_model: nn.Module,
        coeffs: torch.Tensor,
        angles: torch.Tensor,
        colors: Optional[torch.Tensor] = None,
    ) -> Render:
        """Render the same reconstructions with replaced rotation angles.

        Args:
            face_model: the morphable model.
            coeffs: ``[B, layout.size]`` coefficients; their angles are ignored.
            angles: ``[B, 3]`` new rotation angles in radians (pitch, yaw, roll).
            colors: optional albedo ``[B, V, 3]`` or ``[V, 3]``.

        Returns:
            The same :class:`~pyfaid.render.Render` as ``forward``.
        """
        return self.forward(face_model, coeffs, colors=colors, angles=angles)

    def random_views(
        self,
        face_model: nn.Module,
        coeffs: torch.Tensor,
        colors: Optional[torch.Tensor] = None,
        generator: Optional[torch.Generator] = None,
        max_yaw: float = 80.0,
        max_pitch: float = 25.0,
        max_roll: float = 20.0,
    ) -> tuple:
        """Render the reconstructions from random poses (self-augmentation's ``I_rot``).

        Args:
            face_model: the morphable model.
            coeffs: ``[B, layout.size]``.
            colors: optional albedo override.
            generator: optional ``torch.Generator`` for the poses.
            max_yaw: yaw limit in degrees.
            max_pitch: pitch limit in degrees.
            max_roll: roll limit in degrees.

        Returns:
            ``(Render, angles [B, 3])``.
        """
        angles = cam.random_angles(coeffs.shape[0], generator, max_yaw, max_pitch, max_roll,
                                   dtype=coeffs.dtype, device=coeffs.device)
        return self.render_views(face_model, coeffs, angles, colors), angles
