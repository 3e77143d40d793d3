"""Texture baking in UV space with pyfaid's own kernels.

A mesh with a UV layout (:mod:`pyfaid.facemodel.uv`: ``uv [T, 2]`` in [0, 1], v up, and
``uv_faces [F, 3]`` corner for corner with ``triangles [F, 3]``) is rasterized once in texture
space: each UV becomes the clip-space point ``(2u - 1, 1 - 2v, 0, 1)``, so texel row 0 is the top of
the texture image (``v = 1``) and the barycentrics of a texel are those of its point on the
surface. Any per-vertex attribute then becomes a texture with one ``interpolate`` call, using the
*vertex* triangles with the UV raster (same triangle ids, same corners). That is :class:`UVAtlas`,
built once per mesh and texture size (nvdiffrast's "prepare once, pass in"; a face model makes
its own with :meth:`~pyfaid.facemodel.MorphableModel.uv_atlas`).

* :func:`bake_vertex_colors`: a per-vertex colour (the reconstruction's albedo) as a texture.
* :func:`bake_photo`: the photo's pixels projected onto the visible surface and divided by the
  estimated shading (giving albedo), blended with the model's albedo where the photo does not
  show the surface: turned away from the camera (vertex normal vs view direction), hidden by
  another part of the face (depth test against the rasterized depth of the photo's view),
  outside the image, or masked out by a per-pixel visibility mask (e.g. an occlusion
  segmentation).
* :func:`texture_lookup`: sample a texture at interpolated UVs (v up; bilinear, by
  :func:`pyfaid.render.texture`), for rendering a textured mesh.

Seams: texels whose centre no triangle covers (along island borders and around seams) are filled
from the nearest covered texel up to ``padding`` texels away (a dilation, precomputed once per
atlas as an index map), so bilinear and mip-mapped lookups next to a seam read colours of the
right side of it; texels farther away get a constant background (the mean colour).
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from pyfaid.render.rasterize import interpolate, rasterize
from pyfaid.render.texture import texture as sample_texture
from pyfaid.render.topology import MeshTopology

__all__ = ["UVAtlas", "size_of", "uv_to_clip", "bake_vertex_colors", "bake_photo", "texture_lookup", "to_uint8"]


def uv_to_clip(uv: torch.Tensor) -> torch.Tensor:
    """Texture coordinates ``[T, 2]`` (v up) to clip-space points ``[T, 4]`` that rasterize onto the
    texture image (row 0 at the top, ``v = 1``)."""
    uv = torch.as_tensor(uv)
    if uv.dim() != 2 or uv.shape[1] != 2:
        raise ValueError(f"uv must be [T, 2], got {tuple(uv.shape)}")
    one = torch.ones_like(uv[:, :1])
    return torch.cat([2.0 * uv[:, :1] - 1.0, 1.0 - 2.0 * uv[:, 1:], 0.0 * one, one], dim=1).contiguous()


def size_of(size) -> tuple:
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if h < 2 or w < 2:
        raise ValueError(f"texture size must be at least 2 x 2, got {h} x {w}")
    return h, w


class UVAtlas:
    """A mesh's UV layout rasterized at one texture size, with its seam-padding map.

    Args:
        uv: ``[T, 2]`` texture coordinates in [0, 1] (v up).
        uv_faces: ``[F, 3]`` indices into ``uv``.
        triangles: ``[F, 3]`` vertex indices (the same triangles, corner for corner), or their
            :class:`~pyfaid.render.MeshTopology`.
        num_vertices: ``V`` (ignored when ``triangles`` is a MeshTopology).
        size: texture height and width in texels (an int for a square texture).
        padding: texels of seam padding around the covered texels (None: ``max(2, size // 128)``;
            ``-1``: fill every empty texel).
        device: where the raster lives (default: the device of ``uv`` if a tensor, else the CPU).

    Attributes:
        rast: ``[1, H, W, 4]`` the UV raster (``u, v, 0, triangle_id + 1``).
        mask: ``[H, W]`` bool, texels covered by a triangle.
        topology: the vertex triangles as a MeshTopology.
    """

    def __init__(self, uv, uv_faces, triangles, num_vertices: Optional[int] = None,
                 size: Union[int, Sequence[int]] = 1024, padding: Optional[int] = None, device=None):
        self.height, self.width = size_of(size)
        if device is None:
            device = uv.device if isinstance(uv, torch.Tensor) else "cpu"
        device = torch.device(device)
        uv = torch.as_tensor(np.asarray(uv.detach().cpu()) if isinstance(uv, torch.Tensor) else np.asarray(uv),
                             dtype=torch.float32)
        if uv.dim() != 2 or uv.shape[1] != 2 or not torch.isfinite(uv).all():
            raise ValueError(f"uv must be a finite [T, 2] array, got shape {tuple(uv.shape)}")
        uvf = torch.as_tensor(np.asarray(uv_faces.cpu() if isinstance(uv_faces, torch.Tensor) else uv_faces))
        if isinstance(triangles, MeshTopology):
            self.topology = triangles
        else:
            tri = torch.as_tensor(np.asarray(triangles.cpu() if isinstance(triangles, torch.Tensor) else triangles))
            if num_vertices is None:
                num_vertices = int(tri.max()) + 1
            self.topology = MeshTopology(tri, num_vertices)
        if uvf.shape != self.topology.triangles.shape:
            raise ValueError(f"uv_faces {tuple(uvf.shape)} must match the triangles "
                             f"{tuple(self.topology.triangles.shape)} row for row")
        uv_topo = MeshTopology(uvf, uv.shape[0])
        self.rast = rasterize(uv_to_clip(uv).to(device)[None], uv_topo.on(device), (self.height, self.width))
        self.mask = self.rast[0, ..., 3] > 0  # [H, W]
        if not bool(self.mask.any()):
            raise ValueError(f"no triangle covers a texel of the {self.height} x {self.width} texture "
                             "(degenerate UV layout?)")
        if padding is None:
            padding = max(2, max(self.height, self.width) // 128)
        self.padding = int(padding)
        self._covered, self._fill_dst, self._fill_src, self._beyond = self._padding_map(
            self.mask.cpu().numpy(), self.padding, device)
        self._covered_sample = self._covered[::7]  # enough texels for the mean colour

    @staticmethod
    def _padding_map(mask: np.ndarray, padding: int, device):
        """Flat texel indices: the covered texels, the empty ones within ``padding`` of them with
        their nearest covered texel (one exact Euclidean distance transform, once per atlas), and
        the empty ones beyond."""
        dist, (iy, ix) = ndimage.distance_transform_edt(~mask, return_indices=True)
        fill = ~mask if padding < 0 else (~mask & (dist <= padding))
        dst = np.flatnonzero(fill)
        src = (iy * mask.shape[1] + ix).reshape(-1)[dst]
        beyond = np.flatnonzero(~mask & ~fill)
        return tuple(torch.from_numpy(a).to(device) for a in (np.flatnonzero(mask), dst, src, beyond))

    @property
    def device(self) -> torch.device:
        return self.rast.device

    def interpolate(self, attr: torch.Tensor) -> torch.Tensor:
        """Per-vertex attributes ``[V, C]`` (or ``[B, V, C]``) as textures ``[H, W, C]`` (``[B, H, W, C]``);
        0 at texels no triangle covers."""
        batched = attr.dim() == 3
        a = attr if batched else attr[None]
        rast = self.rast if a.shape[0] == 1 else self.rast.expand(a.shape[0], -1, -1, -1)
        out = interpolate(a.contiguous(), rast, self.topology)
        return out if batched else out[0]

    def pad(self, texture: torch.Tensor, background: Union[str, float, torch.Tensor, None] = "mean") -> torch.Tensor:
        """Seam padding: copy the nearest covered texel into the empty texels within ``padding``.

        Args:
            texture: ``[H, W, C]`` or ``[B, H, W, C]``.
            background: the value of the empty texels beyond the padding: ``"mean"`` (the mean of
                the covered texels, from every 7th), a number or a ``[C]`` tensor, or None (left as
                they are).

        Returns:
            a new tensor of the same shape.
        """
        batched = texture.dim() == 4
        t = texture if batched else texture[None]
        b, h, w, c = t.shape
        if (h, w) != (self.height, self.width):
            raise ValueError(f"texture is {h} x {w} but the atlas is {self.height} x {self.width}")
        flat = t.reshape(b, h * w, c).clone()
        for k in range(b):  # [N, C] rows: index_select / index_copy_ are the fast gathers
            img = flat[k]
            if background is not None and self._beyond.numel():
                if isinstance(background, str):
                    if background != "mean":
                        raise ValueError(f"background must be 'mean', a number, a tensor or None, got {background!r}")
                    bg = img.index_select(0, self._covered_sample).mean(0)  # [C]
                else:
                    bg = torch.as_tensor(background, dtype=t.dtype, device=t.device).expand(c)
                img.index_copy_(0, self._beyond, bg.to(t.dtype).expand(self._beyond.numel(), c))
            img.index_copy_(0, self._fill_dst, img.index_select(0, self._fill_src))
        out = flat.reshape(b, h, w, c)
        return out if batched else out[0]


def bake_vertex_colors(atlas: UVAtlas, colors: torch.Tensor, background="mean") -> torch.Tensor:
    """Bake per-vertex colours into a texture.

    Args:
        atlas: the mesh's :class:`UVAtlas`.
        colors: ``[V, C]`` per-vertex values (e.g. albedo RGB in [0, 1]).
        background: value beyond the seam padding (see :meth:`UVAtlas.pad`).

    Returns:
        ``[H, W, C]`` texture (row 0 at the top of the image), seams padded.
    """
    _check_vertices(colors, atlas, "colors")
    return atlas.pad(atlas.interpolate(colors), background)


def _check_vertices(t, atlas, name, channels=None):
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor, got {type(t).__name__}")
    nv = atlas.topology.num_vertices
    if t.dim() != 2 or t.shape[0] != nv or (channels is not None and t.shape[1] != channels):
        want = f"[{nv}, {channels if channels is not None else 'C'}]"
        raise ValueError(f"`{name}` must be {want} (one row per vertex), got {tuple(t.shape)}")
    if not t.dtype.is_floating_point:
        raise TypeError(f"`{name}` must be a float tensor, got {t.dtype}")


def _smoothstep(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    t = ((x - lo) / max(hi - lo, 1e-12)).clamp(0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def bake_photo(
    atlas: UVAtlas,
    image: torch.Tensor,
    pos_clip: torch.Tensor,
    points: torch.Tensor,
    normals: torch.Tensor,
    eye,
    albedo: torch.Tensor,
    shading: torch.Tensor,
    visibility: Optional[torch.Tensor] = None,
    depth_tolerance: Optional[float] = None,
    facing: tuple = (0.15, 0.5),
    min_shading: float = 0.1,
    feather: Optional[int] = None,
    depth_resolution: Optional[Sequence[int]] = None,
) -> dict:
    """The photo's pixels projected onto the visible surface, as an albedo texture.

    For each texel: its surface point (``pos_clip`` interpolated) projects into ``image``; the
    sample divided by the shading there (``shading`` interpolated) is the photo's albedo. Its
    weight is the product of

    * facing: ``cos`` between the vertex normal and the direction to the camera (``eye``), per
      vertex and interpolated, ramping from 0 at ``facing[0]`` to 1 at ``facing[1]`` (back-facing
      and grazing texels get 0),
    * visibility: 1 if the texel's camera depth is within ``depth_tolerance`` of the depth
      rasterized from the photo's view (no other part of the mesh in front of it), else 0,
    * inside: 1 where the point projects inside the image,
    * ``visibility`` (optional per-pixel mask of the image, e.g. 0 on occluders),
    * light: 0 where the shading is darker than ``min_shading``, ramping to 1 at twice that;

    times a copy of itself eroded and blurred over about ``feather`` texels, so that the photo fades
    into the model's albedo (and never reaches a texel the tests rejected). The texture is
    ``weight * photo_albedo + (1 - weight) * albedo``, seams padded.

    Args:
        atlas: the mesh's :class:`UVAtlas`.
        image: ``[3, h, w]`` the photo (or crop), RGB in [0, 1].
        pos_clip: ``[V, 4]`` the mesh in the clip space of the photo's camera (``rasterize``'s
            convention: NDC x, y in [-1, 1] span the image, row 0 at NDC y = -1), ``w`` the
            camera depth.
        points: ``[V, 3]`` vertex positions in any frame (e.g. world space), the frame of
            ``normals`` and ``eye``.
        normals: ``[V, 3]`` unit vertex normals in that frame.
        eye: ``[3]`` the camera's centre in that frame.
        albedo: ``[V, 3]`` the model's albedo (used where the photo does not show the surface).
        shading: ``[V, 3]`` the estimated lighting factor (the photo is ``albedo * shading``).
        visibility: optional ``[h, w]`` (or ``[1, h, w]``) mask in [0, 1] over ``image``; 0 where
            the photo must not be used (occluders).
        depth_tolerance: camera-depth slack of the visibility test (default: 1% of the diagonal of
            the bounding box of ``points``).
        facing: ``(lo, hi)`` cosines of the facing ramp.
        min_shading: darkest shading whose photo values are used.
        feather: blend width in texels (default ``max(1, size // 256)``).
        depth_resolution: ``(h, w)`` of the depth test raster (default: the image's size).

    Returns:
        dict with ``texture [H, W, 3]`` (albedo, clamped to [0, 1], seams padded) and
        ``weight [H, W]`` (the photo's share per texel, 0 at uncovered texels).
    """
    _check_photo_inputs(atlas, image, pos_clip, points, normals, albedo, shading)
    dev, dt = atlas.device, torch.float32
    img = image.to(dev, dt)
    pos_clip, points, normals = pos_clip.to(dev, dt), points.to(dev, dt), normals.to(dev, dt)
    albedo, shading = albedo.to(dev, dt), shading.to(dev, dt)
    eye = torch.as_tensor(eye, dtype=dt, device=dev).reshape(1, 1, 3)
    t = _texel_samples(atlas, img, pos_clip, points, normals, eye, albedo, shading)
    weight = _photo_weight(atlas, t, img.shape[1:], pos_clip, points, visibility, depth_tolerance, facing,
                           min_shading, depth_resolution)
    weight = _feathered(atlas, weight, feather)
    photo_albedo = t["photo"] / t["shading"].clamp_min(min_shading)
    tex = t["albedo"] + weight[..., None] * (photo_albedo - t["albedo"])
    tex = atlas.pad(tex.clamp(0.0, 1.0))
    return {"texture": tex, "weight": weight}


def _check_photo_inputs(atlas, image, pos_clip, points, normals, albedo, shading) -> None:
    for t, name, c in ((pos_clip, "pos_clip", 4), (points, "points", 3), (normals, "normals", 3),
                       (albedo, "albedo", 3), (shading, "shading", 3)):
        _check_vertices(t, atlas, name, c)
    if not isinstance(image, torch.Tensor) or image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"`image` must be a [3, h, w] tensor, got "
                         f"{tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__}")


def _texel_samples(atlas, img, pos_clip, points, normals, eye, albedo, shading) -> dict:
    """Per texel: clip position ``clip [H, W, 4]``, facing ``cos [H, W, 1]``, ``albedo`` and
    ``shading [H, W, 3]``, the NDC point ``ndc [H, W, 2]`` (and as a ``grid`` for ``grid_sample``)
    and the photo's colour there ``photo [H, W, 3]``."""
    # facing the camera, per vertex (normals vary smoothly: interpolating the cosine is enough)
    cos = (F.normalize(normals, dim=-1) * F.normalize(eye[0] - points, dim=-1)).sum(-1, keepdim=True)  # [V, 1]
    # per-texel attributes in one interpolate: clip position, facing, albedo, shading
    tex_attr = atlas.interpolate(torch.cat([pos_clip, cos, albedo, shading], dim=1))  # [H, W, 11]
    clip_t, cos_t, alb_t, shade_t = tex_attr.split([4, 1, 3, 3], dim=-1)
    w_clip = clip_t[..., 3].clamp_min(1e-8)
    ndc = clip_t[..., :2] / w_clip[..., None]  # [H, W, 2]
    grid = ndc[None]  # grid_sample: x, y in [-1, 1] over the image edges (align_corners=False)
    photo = F.grid_sample(img[None], grid, mode="bilinear", padding_mode="border", align_corners=False)[0]
    photo = photo.permute(1, 2, 0)  # [H, W, 3]
    return {"clip": clip_t, "cos": cos_t, "albedo": alb_t, "shading": shade_t, "ndc": ndc, "grid": grid,
            "photo": photo}


def _photo_weight(atlas, t: dict, image_size, pos_clip, points, visibility, depth_tolerance, facing, min_shading,
                  depth_resolution) -> torch.Tensor:
    """The photo's hard weight per texel ``[H, W]``: facing x inside x not hidden x ``visibility`` x
    enough light x covered (see :func:`bake_photo`)."""
    ih, iw = image_size
    dev, dt = atlas.device, torch.float32
    clip_t, ndc, grid = t["clip"], t["ndc"], t["grid"]
    weight = _smoothstep(t["cos"][..., 0], facing[0], facing[1])
    # inside the image
    inside = (ndc.abs() <= 1.0).all(-1)
    weight = weight * inside
    # not hidden by another part of the mesh: depth test against the photo's view
    dh, dw = (ih, iw) if depth_resolution is None else (int(depth_resolution[0]), int(depth_resolution[1]))
    rast_view = rasterize(pos_clip[None], atlas.topology, (dh, dw))
    depth = interpolate(pos_clip[None, :, 3:4].contiguous(), rast_view, atlas.topology)[0, ..., 0]  # [dh, dw]
    far = float(pos_clip[:, 3].max()) * 10.0 + 1.0
    depth = torch.where(rast_view[0, ..., 3] > 0, depth, torch.full_like(depth, far))
    seen = F.grid_sample(depth[None, None], grid, mode="bilinear", padding_mode="border", align_corners=False)[0, 0]
    if depth_tolerance is None:
        depth_tolerance = 0.01 * float((points.max(0).values - points.min(0).values).norm())
    weight = weight * (clip_t[..., 3] <= seen + depth_tolerance)
    # the caller's per-pixel mask (occluders)
    if visibility is not None:
        vis = torch.as_tensor(visibility).to(dev, dt)
        if vis.dim() == 3 and vis.shape[0] == 1:
            vis = vis[0]
        if tuple(vis.shape) != (ih, iw):
            raise ValueError(f"`visibility` must be [{ih}, {iw}] like the image, got {tuple(vis.shape)}")
        weight = weight * F.grid_sample(vis[None, None], grid, mode="bilinear", padding_mode="zeros",
                                        align_corners=False)[0, 0].clamp(0, 1)
    # enough light to divide by
    weight = weight * _smoothstep(t["shading"].mean(-1), min_shading, 2.0 * min_shading)
    return weight * atlas.mask


def _feathered(atlas, weight: torch.Tensor, feather: Optional[int]) -> torch.Tensor:
    """Feather: erode by ~r texels, then blur, at 1/r resolution (cheap at any texture size), times the
    hard weight so that no texel the tests rejected gets any photo; seam-padded first, so the
    islands' borders do not erode."""
    r = max(1, max(atlas.height, atlas.width) // 256) if feather is None else int(feather)
    if r > 0:
        wp = atlas.pad(weight[..., None], background=0.0)[..., 0][None, None]  # [1, 1, H, W]
        coarse = F.avg_pool2d(wp, r, stride=r, ceil_mode=True) if r > 1 else wp
        coarse = -F.max_pool2d(-coarse, 3, stride=1, padding=1)
        coarse = F.avg_pool2d(coarse, 3, stride=1, padding=1, count_include_pad=False)
        if r > 1:
            coarse = F.interpolate(coarse, size=(atlas.height, atlas.width), mode="bilinear", align_corners=False)
        weight = weight * coarse[0, 0]
    return weight


def texture_lookup(texture: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Bilinear texture lookup at texture coordinates (v up; the texture's row 0 is its top).

    Args:
        texture: ``[H, W, C]`` float32/float64 texture.
        uv: ``[..., 2]`` coordinates in [0, 1] (e.g. ``interpolate(uv_per_vertex, rast, tri)``,
            ``[B, h, w, 2]``).

    Returns:
        ``[..., C]`` samples (clamped to the texture's border), by :func:`pyfaid.render.texture`
        (``grid_sample``'s bilinear lookup with ``align_corners=False``, border padding).
    """
    if texture.dim() != 3:
        raise ValueError(f"texture must be [H, W, C], got {tuple(texture.shape)}")
    lead = uv.shape[:-1]
    g = uv.reshape(1, -1, 1, 2).to(texture.dtype)
    g = torch.stack([g[..., 0], 1.0 - g[..., 1]], dim=-1)  # v down: texel row 0 at v = 0
    out = sample_texture(texture[None], g, filter_mode="linear", boundary_mode="clamp")  # [1, N, 1, C]
    return out.reshape(*lead, texture.shape[-1])


def to_uint8(texture: torch.Tensor) -> np.ndarray:
    """``[H, W, 3]`` float texture in [0, 1] -> ``[H, W, 3]`` uint8 RGB array (row 0 at the top)."""
    return (texture.detach().clamp(0, 1).cpu().numpy() * 255.0 + 0.5).astype(np.uint8)
