"""From the image back to the mesh: per-vertex averages over each vertex's rendered footprint.

The renderer takes per-vertex values to pixels (``interpolate``: every covered pixel blends its
triangle's three corners by barycentric weight). :func:`vertex_average` goes the other way: every
covered pixel gives each of its triangle's corners its barycentric weight, and a vertex's value
is the weighted mean over the pixels it touches. :func:`photo_albedo` applies it to a photo: the
photo's colour per vertex divided by the render's per-vertex light (an albedo estimate under the
model's own lighting), and the share of each vertex's footprint that a per-pixel visibility (a
face/occluder segmentation) says the photo shows. The fine model takes both as inputs
(:class:`pyfaid.models.FineModel`, ``photo_input``) and test-time fitting uses the support to
find the vertices the photo hides (:mod:`pyfaid.reconstruct.fill`).

Both are measurements, not part of any loss: they run without gradient.
"""

from __future__ import annotations

import torch

__all__ = ["vertex_average", "photo_albedo"]


@torch.no_grad()
def vertex_average(rast: torch.Tensor, triangles: torch.Tensor, values: torch.Tensor, num_vertices: int,
                   min_pixels: float = 0.5) -> tuple:
    """Per-vertex averages of per-pixel values over each vertex's rendered footprint.

    Every covered pixel gives its three triangle corners their barycentric weights. A vertex with
    less than ``min_pixels`` of footprint (turned away, hidden behind the nose, off the crop) is
    marked unseen and gets 0.

    Args:
        rast: ``[B, H, W, 4]`` rasterizer output (``u, v, depth, triangle id + 1``, 0 = background).
        triangles: ``[F, 3]`` mesh triangles.
        values: ``[B, K, H, W]`` per-pixel values.
        num_vertices: V.
        min_pixels: footprint (summed barycentric weight) below which a vertex is unseen.

    Returns:
        ``(averages [B, V, K], seen [B, V] bool)``.
    """
    B, H, W, _ = rast.shape
    K = values.shape[1]
    if values.shape != (B, K, H, W):
        raise ValueError(f"vertex_average: `values` must be [{B}, K, {H}, {W}], got {tuple(values.shape)}")
    V = int(num_vertices)
    tid = rast[..., 3].reshape(B, -1).round().long()  # [B, HW]
    on = tid > 0
    batch = torch.arange(B, device=rast.device)[:, None].expand(B, H * W)[on]  # [N]
    uv = rast[..., :2].reshape(B, -1, 2)[on].float()  # [N, 2]
    bary = torch.cat([uv, (1 - uv.sum(-1, keepdim=True)).clamp_min(0)], dim=-1).reshape(-1)  # [N * 3]
    corners = (triangles.long().to(rast.device)[tid[on] - 1] + (batch * V)[:, None]).reshape(-1)  # [N * 3]
    vals = values.permute(0, 2, 3, 1).reshape(B, -1, K)[on].float()  # [N, K]
    total = torch.zeros(B * V, device=rast.device).index_add_(0, corners, bary)
    acc = torch.zeros(B * V, K, device=rast.device).index_add_(
        0, corners, bary[:, None] * vals.repeat_interleave(3, dim=0))
    seen = total >= min_pixels
    avg = torch.where(seen[:, None], acc / total.clamp_min(1e-6)[:, None], torch.zeros_like(acc))
    return avg.view(B, V, K), seen.view(B, V)


@torch.no_grad()
def photo_albedo(rast: torch.Tensor, triangles: torch.Tensor, image: torch.Tensor, shading: torch.Tensor,
                 fallback: torch.Tensor, visibility: torch.Tensor = None, min_shading: float = 0.05,
                 max_albedo: float = 1.5) -> tuple:
    """The photo's colours on the mesh, unlit by the render's shading, and how much of each vertex
    the photo shows.

    Args:
        rast: ``[B, H, W, 4]`` rasterizer output of the mesh in the photo's view.
        triangles: ``[F, 3]``.
        image: ``[B, 3, H, W]`` the photo in [0, 1].
        shading: ``[B, V, 3]`` the render's per-vertex light (``sh_shading`` of a white albedo).
        fallback: ``[B, V, 3]`` the value of vertices the photo does not show (the model's albedo).
        visibility: ``[B, 1, H, W]`` probability that a pixel shows the face unoccluded (None: all).
        min_shading: shading floor (per channel) for the division.
        max_albedo: ceiling of the estimate.

    Returns:
        ``(photo [B, V, 3], support [B, V])``: the photo's albedo estimate per vertex, and the
        visible share of its footprint in [0, 1] (0 where the vertex is not rendered).
    """
    B, V = shading.shape[:2]
    if image.shape[:2] != (B, 3) or image.shape[2:] != rast.shape[1:3]:
        raise ValueError(f"photo_albedo: `image` must be [{B}, 3, {rast.shape[1]}, {rast.shape[2]}], "
                         f"got {tuple(image.shape)}")
    vis = torch.ones_like(image[:, :1]) if visibility is None else visibility.to(image).clamp(0, 1)
    if vis.shape != image[:, :1].shape:
        raise ValueError(f"photo_albedo: `visibility` must be {tuple(image[:, :1].shape)}, got {tuple(vis.shape)}")
    # the photo weighted by visibility, and the visibility itself: their ratio is the visible mean
    avg, seen = vertex_average(rast, triangles, torch.cat([image * vis, vis], 1), V)
    support = avg[..., 3].clamp(0, 1) * seen
    color = avg[..., :3] / avg[..., 3:].clamp_min(1e-4)
    photo = (color / shading.float().clamp_min(min_shading)).clamp(0, max_albedo)
    photo = torch.where(support[..., None] > 1e-3, photo, fallback.float().clamp(0, max_albedo))
    return photo.to(fallback.dtype), support.to(fallback.dtype)
