"""Differentiable face renderer: morphable-model coefficients to an image.

Pipeline (Deep3DFaceRecon's camera, pose and lighting conventions, see ``camera.py``):
shape -> rotate/translate -> vertex normals of the posed shape -> SH shading per vertex (with the
0.8 ambient offset added to the first SH coefficient of each colour channel) -> clip space ->
``rasterize`` -> ``interpolate`` the shaded colours -> image. Differentiable end to end w.r.t. the
coefficients and the albedo (through ``interpolate``'s gradients to the attributes and, via the
barycentrics, to the vertex positions).
"""

from __future__ import annotations

import torch
from torch import nn

from pyfaid.render import camera as cam
from pyfaid.render.rasterize import interpolate, rasterize
from pyfaid.render.shading import sh_shading, vertex_normals

__all__ = ["Renderer", "AMBIENT_OFFSET"]

#: Added to the first (constant) SH coefficient of each colour channel before shading, so that
#: all-zero lighting coefficients mean a plain ambient light (Deep3DFaceRecon's ``init_lit``).
AMBIENT_OFFSET = 0.8


def _posed_normals(face_model, shape, world, rotation, tri) -> torch.Tensor:
    """Vertex normals ``[B, V, 3]`` of the posed mesh ``world = shape @ R^T + t``.

    A fixed mesh moved rigidly (``shape`` without gradient, the rotation with one: fitting's pose and
    colour stages) has its rest normals rotated, so the gradient reaches the pose without the normal
    kernel's backward; ``face_model.rest_normals`` holds them when cached.
    """
    if shape.requires_grad or not rotation.requires_grad:
        return vertex_normals(world.contiguous(), tri)
    rest = getattr(face_model, "rest_normals", None)  # normals of this `shape`, if cached
    if rest is None or rest.shape != shape.shape:
        rest = vertex_normals(shape.detach().contiguous(), tri)
    return rest.to(shape.dtype) @ rotation.transpose(1, 2)


class Renderer(nn.Module):
    """Renders a morphable face model with Deep3DFaceRecon's camera.

    Args:
        image_size: output height and width in pixels; the camera is
            :meth:`Camera.for_image_size` of it unless ``camera`` is given.
        camera: a :class:`~pyfaid.render.Camera` (its ``image_size`` wins over ``image_size``).
        ambient_offset: added to SH coefficients 0, 9 and 18 (the constant term of each colour
            channel) before shading.
        **camera_overrides: ``focal``, ``center``, ``distance``, ``near`` or ``far`` replacing the
            defaults of :meth:`Camera.for_image_size`.

    Example:
        >>> model = pyfaid.facemodel.load("default")
        >>> out = Renderer(224)(model, model.layout.zeros(1))
        >>> out["image"].shape
        torch.Size([1, 3, 224, 224])
    """

    def __init__(self, image_size: int = 224, camera: cam.Camera | None = None,
                 ambient_offset: float = AMBIENT_OFFSET, **camera_overrides) -> None:
        super().__init__()
        if camera is None:
            camera = cam.Camera.for_image_size(image_size, **camera_overrides)
        elif camera_overrides:
            raise ValueError("Renderer: give either `camera` or camera overrides, not both")
        self.camera = camera
        self.ambient_offset = float(ambient_offset)

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
        return f"image_size={c.image_size}, focal={c.focal}, center={c.center}, camera_distance={c.distance}"

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

    def forward(
        self,
        face_model: nn.Module,
        coeffs: torch.Tensor,
        colors: torch.Tensor | None = None,
        angles: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Render faces from coefficients.

        Args:
            face_model: a ``pyfaid.facemodel.MorphableModel`` (on the same device as ``coeffs``).
            coeffs: ``[B, face_model.layout.size]`` (id, exp, tex, angles, SH, translation).
            colors: optional albedo ``[B, V, 3]`` or ``[V, 3]`` replacing the model's texture.
            angles: optional ``[B, 3]`` rotation angles (radians) replacing the ``angle`` part.

        Returns:
            dict with
            ``image [B, 3, H, W]`` RGB in [0, 1] (clamped; 0 outside the face, row 0 at the top),
            ``mask [B, 1, H, W]`` face coverage (float 0/1),
            ``landmarks [B, 68, 2]`` pixel coordinates (x right, y down),
            ``vertices [B, V, 3]`` camera-space vertices (depth in z),
            ``colors [B, V, 3]`` the albedo used,
            ``shaded [B, V, 3]`` lit per-vertex colours (not clamped),
            ``normals [B, V, 3]`` world-space normals of the posed mesh,
            ``rast [B, H, W, 4]`` the rasterizer output (rows in image order).
        """
        face_model.layout.check(coeffs, "Renderer: `coeffs`")
        batch = coeffs.shape[0]
        parts = face_model.split_coeffs(coeffs)
        shape = face_model.shape(parts["id"], parts["exp"])  # [B, V, 3]
        num_vertices = shape.shape[1]
        if angles is None:
            angles = parts["angle"]
        elif angles.shape != (batch, 3):
            raise ValueError(f"Renderer: `angles` must be [{batch}, 3], got {tuple(angles.shape)}")
        if colors is None:
            albedo = face_model.texture(parts["tex"])  # [B, V, 3]
        else:
            if colors.dim() == 2:
                colors = colors.unsqueeze(0).expand(batch, -1, -1)
            if colors.shape != (batch, num_vertices, 3):
                raise ValueError(
                    f"Renderer: `colors` must be [{batch}, {num_vertices}, 3] or [{num_vertices}, 3], "
                    f"got {tuple(colors.shape)}")
            albedo = colors
        albedo = albedo.to(shape.dtype)
        tri = face_model.topology  # indices checked once per model, not on every kernel call

        rotation = cam.euler_rotation(angles.to(shape.dtype))  # [B, 3, 3]
        world = cam.apply_pose(shape, rotation, parts["trans"].to(shape.dtype))  # [B, V, 3]
        normals = _posed_normals(face_model, shape, world, rotation, tri)  # [B, V, 3], rotated with the mesh
        gamma = self.lit_gamma(parts["gamma"].to(shape.dtype))  # [B, 27]
        shaded = sh_shading(normals, albedo.contiguous(), gamma)  # [B, V, 3]

        verts_cam = cam.to_camera(world, self.camera_distance)  # [B, V, 3]
        c = self.camera
        pos = cam.clip_space(verts_cam, c.focal, c.center, c.image_size, c.near, c.far)
        size = self.image_size
        rast = rasterize(pos.contiguous(), tri, (size, size))  # [B, H, W, 4]
        color_img = interpolate(shaded.contiguous(), rast, tri)  # [B, H, W, 3]
        mask = (rast[..., 3:4] > 0).to(shape.dtype)  # [B, H, W, 1]
        image = (color_img * mask).clamp(0.0, 1.0)

        landmarks = self.project_points(verts_cam[:, face_model.landmark_idx])  # [B, 68, 2]
        return {
            "image": image.permute(0, 3, 1, 2).contiguous(),
            "mask": mask.permute(0, 3, 1, 2).contiguous(),
            "landmarks": landmarks,
            "vertices": verts_cam,
            "colors": albedo,
            "shaded": shaded,
            "normals": normals,
            "rast": rast,
        }

    def recolor(self, face_model: nn.Module, coeffs: torch.Tensor, render: dict, colors: torch.Tensor) -> dict:
        """``render`` (this renderer's output for ``coeffs``) with the albedo replaced by ``colors``
        ``[B, V, 3]``: the same geometry (rasterization, normals) shaded and interpolated again, so a
        second texture on the same mesh costs no second rasterization. Equal to
        ``self(face_model, coeffs, colors=colors)``; gradients reach ``colors``, and the geometry
        through ``render``'s tensors."""
        batch, num_vertices = render["shaded"].shape[:2]
        if colors.shape != (batch, num_vertices, 3):
            raise ValueError(f"Renderer.recolor: `colors` must be [{batch}, {num_vertices}, 3], got {tuple(colors.shape)}")
        normals, rast = render["normals"], render["rast"]
        gamma = self.lit_gamma(face_model.split_coeffs(coeffs)["gamma"].to(normals.dtype))
        shaded = sh_shading(normals, colors.to(normals.dtype).contiguous(), gamma)
        color_img = interpolate(shaded.contiguous(), rast, face_model.topology)
        image = (color_img * render["mask"].permute(0, 2, 3, 1)).clamp(0.0, 1.0)
        return dict(render, image=image.permute(0, 3, 1, 2).contiguous(), colors=colors, shaded=shaded)

    def render_views(
        self,
        face_model: nn.Module,
        coeffs: torch.Tensor,
        angles: torch.Tensor,
        colors: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Render the same reconstructions with replaced rotation angles.

        Args:
            face_model: the morphable model.
            coeffs: ``[B, layout.size]`` coefficients; their angles are ignored.
            angles: ``[B, 3]`` new rotation angles in radians (pitch, yaw, roll).
            colors: optional albedo ``[B, V, 3]`` or ``[V, 3]``.

        Returns:
            The same dict as ``forward``.
        """
        return self.forward(face_model, coeffs, colors=colors, angles=angles)

    def random_views(
        self,
        face_model: nn.Module,
        coeffs: torch.Tensor,
        colors: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        max_yaw: float = 80.0,
        max_pitch: float = 25.0,
        max_roll: float = 20.0,
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
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
            ``(render dict, angles [B, 3])``.
        """
        angles = cam.random_angles(coeffs.shape[0], generator, max_yaw, max_pitch, max_roll,
                                   dtype=coeffs.dtype, device=coeffs.device)
        return self.render_views(face_model, coeffs, angles, colors), angles
