"""Typed values between the renderer's stages: a posed, lit mesh, its rasterization, its render.

The face renderer is three steps with a named value between each, as PyTorch3D's ``MeshRenderer``
is (``fragments = rasterizer(meshes); images = shader(fragments, meshes)``):

    mesh = face_model.mesh(coeffs)                 # FaceMesh: posed vertices, normals, albedo, light
    fragments = rasterize_mesh(mesh, camera)       # Fragments: nvdiffrast's raster + camera-space vertices
    image, shaded = shade(fragments, mesh.normals_world, albedo, sh)   # any number of textures

so a second texture on the same mesh is a second :func:`shade` of the same :class:`Fragments`, with
no second rasterization. A UV texture (:class:`UVTexture`: an image in the mesh's UV layout, its mip
pyramid built once) is drawn per pixel by :func:`shade_texture`, and :func:`antialias_image` smooths
a shaded image's outline and gives its coverage a gradient to the silhouette's vertices.
:class:`~pyfaid.render.Renderer` composes them with Deep3DFaceRecon's camera and ambient light and
returns a :class:`Render`.

Frames (see :mod:`pyfaid.render.camera`): ``_world`` is the posed model frame (x right, y up, z
toward the camera, model units); ``_cam`` is camera space (x, y kept, z = depth in front of the
camera); ``_px`` is pixels of the rendered image (x right, y down, pixel centres at integers).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from pyfaid.render import camera as cam
from pyfaid.render.antialias import antialias
from pyfaid.render.rasterize import interpolate, rasterize, rasterize_db
from pyfaid.render.shading import sh_shading, vertex_normals
from pyfaid.render.texture import TextureMips, texture_mipmaps
from pyfaid.render.texture import texture as sample_texture
from pyfaid.render.topology import MeshTopology

__all__ = ["RestShape", "FaceMesh", "Fragments", "UVTexture", "Render", "pose_mesh", "rasterize_mesh", "shade",
           "shade_texture", "antialias_image"]


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
        pos_clip: ``[B, V, 4]`` the clip-space positions given to the rasterizer (what
            :func:`~pyfaid.render.antialias` needs; None in fragments made by hand).
        rast_db: ``[B, H, W, 4]`` the barycentrics' image-space derivatives
            ``(du/dX, du/dY, dv/dX, dv/dY)`` in pixels, when rasterized with ``grad_db=True``
            (:meth:`with_derivatives` adds them later).
    """

    rast: torch.Tensor
    vertices_cam: torch.Tensor
    topology: MeshTopology
    camera: cam.Camera
    pos_clip: Optional[torch.Tensor] = None
    rast_db: Optional[torch.Tensor] = None

    def _require_pos(self, what: str) -> torch.Tensor:
        if self.pos_clip is None:
            raise ValueError(f"{what} needs the clip-space positions: Fragments from rasterize_mesh (or "
                             "Renderer.rasterize), or made with `pos_clip=`")
        return self.pos_clip

    def with_derivatives(self) -> "Fragments":
        """These fragments with ``rast_db`` (computed from the raster now if it was made without;
        no second rasterization)."""
        if self.rast_db is not None:
            return self
        db = rasterize_db(self._require_pos("Fragments.with_derivatives"), self.topology, self.rast)
        return Fragments(self.rast, self.vertices_cam, self.topology, self.camera, self.pos_clip, db)

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


def rasterize_mesh(mesh: FaceMesh, camera: cam.Camera, grad_db: bool = False) -> Fragments:
    """Rasterize a posed mesh with a camera: :class:`Fragments` (with ``rast_db`` if ``grad_db``,
    which UV-texture lookups with mip levels need)."""
    verts_cam = cam.to_camera(mesh.vertices_world, camera.distance)  # [B, V, 3]
    pos = cam.clip_space(verts_cam, camera.focal, camera.center, camera.image_size, camera.near,
                         camera.far).contiguous()  # [B, V, 4]
    size = (camera.image_size, camera.image_size)
    if grad_db:
        rast, rast_db = rasterize(pos, mesh.topology, size, grad_db=True)  # [B, H, W, 4] each
    else:
        rast, rast_db = rasterize(pos, mesh.topology, size), None
    return Fragments(rast, verts_cam, mesh.topology, camera, pos, rast_db)


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


def _mip_levels(height: int, width: int) -> int:
    """How many times both sides of a ``height x width`` texture halve evenly (its mip levels)."""
    levels = 0
    while (height > 1 or width > 1) and height % 2 in (0, height) and width % 2 in (0, width):
        height, width, levels = max(height // 2, 1), max(width // 2, 1), levels + 1
    return levels


@dataclass(frozen=True)
class UVTexture:
    """An image in a mesh's UV layout, prepared once to be drawn by :func:`shade_texture`.

    Build it with :meth:`of` (a face model: ``face_model.uv_texture(image)``) once per texture: the
    mip pyramid is built there, so a texture drawn many times (a turntable, fitting with a fixed
    texture) is filtered once. Gradients reach ``image`` through the lookup; rebuild the
    UVTexture when the image's values change.

    Attributes:
        image: ``[Bt, Ht, Wt, C]`` texels (``Bt`` 1, shared by the batch, or the batch size), row 0
            at the top of the picture (``v = 1``), as pyfaid bakes textures and image files hold them.
        mips: its :class:`~pyfaid.render.TextureMips` (as many levels as both sides halve evenly).
        texcoords: ``[T, 2]`` the layout's coordinates as :func:`~pyfaid.render.texture` reads
            ``image``: ``(u, 1 - v)``.
        uv_topology: ``[F, 3]`` corners into ``texcoords``, triangle for triangle with the mesh's
            triangles (the raster's triangle ids index both).
    """

    image: torch.Tensor
    mips: TextureMips
    texcoords: torch.Tensor
    uv_topology: MeshTopology

    @classmethod
    def of(cls, image, uv, uv_faces) -> "UVTexture":
        """Prepare ``image`` for drawing.

        Args:
            image: ``[Ht, Wt, C]`` or ``[Bt, Ht, Wt, C]`` float texture (uint8 is scaled to [0, 1]),
                tensor or array; it stays on its device and dtype (match the mesh's).
            uv: ``[T, 2]`` texture coordinates in [0, 1], v up (the layouts' convention).
            uv_faces: ``[F, 3]`` indices into ``uv`` (or their MeshTopology).

        Raises:
            TypeError / ValueError naming the input for a misshapen or non-numeric one.
        """
        img = torch.as_tensor(image)
        if img.dtype == torch.uint8:
            img = img.float() / 255.0
        if not img.dtype.is_floating_point:
            raise TypeError(f"UVTexture: `image` must be float (or uint8), got {img.dtype}")
        img = img[None] if img.dim() == 3 else img
        if img.dim() != 4 or min(img.shape[1:3]) < 1:
            raise ValueError(f"UVTexture: `image` must be [Ht, Wt, C] or [Bt, Ht, Wt, C], got {tuple(image.shape)}")
        uv_t = torch.as_tensor(uv).to(img.device, img.dtype)
        if uv_t.dim() != 2 or uv_t.shape[1] != 2 or not bool(torch.isfinite(uv_t).all()):
            raise ValueError(f"UVTexture: `uv` must be a finite [T, 2] array, got shape {tuple(uv_t.shape)}")
        topo = uv_faces
        if not isinstance(topo, MeshTopology):
            try:
                topo = MeshTopology(torch.as_tensor(uv_faces), uv_t.shape[0])
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"UVTexture: `uv_faces` into `uv`: {exc}") from exc
        if topo.num_vertices != uv_t.shape[0]:
            raise ValueError(f"UVTexture: `uv_faces` indexes {topo.num_vertices} coordinates but `uv` has "
                             f"{uv_t.shape[0]}")
        img = img.contiguous()
        texcoords = torch.stack([uv_t[:, 0], 1.0 - uv_t[:, 1]], dim=1).contiguous()
        return cls(img, texture_mipmaps(img, _mip_levels(img.shape[1], img.shape[2])), texcoords, topo)


#: Texture filters :func:`shade_texture` takes (:func:`~pyfaid.render.texture`'s, "auto" aside).
TEXTURE_FILTERS = ("linear-mipmap-linear", "linear-mipmap-nearest", "linear", "nearest")


def shade_texture(fragments: Fragments, normals: torch.Tensor, texture: UVTexture,
                  sh: Optional[torch.Tensor], filter_mode: str = "linear-mipmap-linear") -> tuple:
    """Draw a rasterized mesh with a UV texture, per pixel.

    The texture coordinates are interpolated over the UV triangles (same triangle ids as the
    raster) with their image-space derivatives, which pick the mip level of a trilinear lookup
    (``linear-mipmap-linear``, clamped at the border), and the result is multiplied by the
    per-vertex SH light of a white albedo, interpolated (nvdiffrast's textured pipeline).

    Args:
        fragments: the mesh's :class:`Fragments` (``rast_db`` is computed if they lack it and the
            filter uses mip levels).
        normals: ``[B, V, 3]`` world-frame unit vertex normals.
        texture: a 3-channel :class:`UVTexture` of the mesh's UV layout, in the raster's dtype and
            on its device.
        sh: ``[B, 27]`` SH coefficients as the shading kernel takes them (ambient offset included),
            or None for the bare texture (unlit).
        filter_mode: one of :data:`TEXTURE_FILTERS`: trilinear (the default: no aliasing where the
            texture is minified, about a pixel of blur), ``"linear-mipmap-nearest"``, or
            ``"linear"`` / ``"nearest"`` on the full-resolution texture (no derivatives needed;
            aliases where several texels fall in a pixel).

    Returns:
        ``(image [B, 3, H, W] in [0, 1] (0 outside the mesh), light [B, V, 3] or None)``,
        differentiable with respect to the texture, the light and the vertex positions.
    """
    if filter_mode not in TEXTURE_FILTERS:
        raise ValueError(f"shade_texture: `filter_mode` must be one of {TEXTURE_FILTERS}, got {filter_mode!r}")
    rast = fragments.rast
    batch = rast.shape[0]
    img = texture.image
    if texture.uv_topology.num_triangles != fragments.topology.num_triangles:
        raise ValueError(f"shade_texture: the texture's UV layout has {texture.uv_topology.num_triangles} "
                         f"triangles but the mesh has {fragments.topology.num_triangles}")
    if img.shape[3] != 3 or img.shape[0] not in (1, batch):
        raise ValueError(f"shade_texture: `texture.image` must be [1 or {batch}, Ht, Wt, 3], got {tuple(img.shape)}")
    if img.dtype != rast.dtype or img.device != rast.device:
        raise ValueError(f"shade_texture: the texture is {img.dtype} on {img.device} but the raster is "
                         f"{rast.dtype} on {rast.device} (build the UVTexture from a matching image)")
    if "mipmap" in filter_mode:
        frag = fragments.with_derivatives()
        uv, uv_da = interpolate(texture.texcoords[None], rast, texture.uv_topology, frag.rast_db, diff_attrs="all")
        color = sample_texture(img, uv, uv_da, mip=texture.mips, filter_mode=filter_mode,
                               boundary_mode="clamp")  # [B, H, W, 3]
    else:
        uv = interpolate(texture.texcoords[None], rast, texture.uv_topology)
        color = sample_texture(img, uv, filter_mode=filter_mode, boundary_mode="clamp")
    light = None
    if sh is not None:
        light = sh_shading(normals, torch.ones_like(normals[:1]), sh)  # [B, V, 3]
        color = color * interpolate(light.contiguous(), rast, fragments.topology)
    image = (color * fragments.coverage).clamp(0.0, 1.0)
    return image.permute(0, 3, 1, 2).contiguous(), light


def antialias_image(fragments: Fragments, image: torch.Tensor) -> tuple:
    """Antialias the outline of an image shaded from ``fragments``, and its coverage.

    Args:
        fragments: the :class:`Fragments` it was shaded from (with ``pos_clip``).
        image: ``[B, C, H, W]`` the shaded image, 0 outside the mesh.

    Returns:
        ``(image [B, C, H, W], alpha [B, 1, H, W])``: both antialiased in one
        :func:`~pyfaid.render.antialias` call, so ``image + (1 - alpha) * background`` is the
        antialiased image over any background; both differentiable with respect to the vertex
        positions at silhouette edges (and ``image`` to its input).
    """
    pos = fragments._require_pos("antialias_image")
    channels = image.shape[1]
    color = torch.cat([image.permute(0, 2, 3, 1), fragments.coverage.to(image.dtype)], dim=-1)
    out = antialias(color, fragments.rast, pos, fragments.topology).permute(0, 3, 1, 2)
    return out[:, :channels].contiguous(), out[:, channels:].contiguous()


@dataclass(frozen=True)
class Render:
    """One render of a face mesh (what :class:`~pyfaid.render.Renderer` returns).

    Attributes:
        image: ``[B, 3, H, W]`` RGB in [0, 1] (0 outside the face, row 0 at the top).
        shaded: ``[B, V, 3]`` lit per-vertex colours (not clamped).
        mesh: the :class:`FaceMesh` drawn (``mesh.albedo`` is the albedo used).
        fragments: its :class:`Fragments`.
        alpha: ``[B, 1, H, W]`` the antialiased coverage (a renderer with ``antialias=True``),
            else None.
    """

    image: torch.Tensor
    shaded: torch.Tensor
    mesh: FaceMesh
    fragments: Fragments
    alpha: Optional[torch.Tensor] = None

    @property
    def mask(self) -> torch.Tensor:
        """``[B, 1, H, W]`` face coverage: :attr:`alpha` (fractional along the outline, with a
        gradient to the silhouette's vertices) when antialiased, else float 0/1."""
        return self.fragments.mask if self.alpha is None else self.alpha

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
