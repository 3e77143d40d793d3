"""Plain-PyTorch texture lookups (the twins of pyfaid's texture kernels), nvdiffrast's conventions.

Texel centres at ``(i + 0.5) / Wt`` (``grid_sample`` with ``align_corners=False``); boundaries wrap
(fractional part), clamp (to the border texels' centres) or zero. Mipmaps: a 2 x 2 average-pooled
pyramid, the level from the footprint of the uv derivatives (log2 of its major axis), blended
between floor(level) and the next. Everything is differentiable, so autograd through these gives
the reference gradients. ``benchmarks/bm_texture.py`` times them as the plain-PyTorch peer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bilinear_reference(tex, uv, boundary):
    """tex [Bt, Ht, Wt, C], uv [B, H, W, 2] -> [B, H, W, C] with grid_sample (align_corners=False:
    texel centres at (i + 0.5) / Wt). wrap: the texture padded circularly by one texel."""
    B = uv.shape[0]
    t = tex.permute(0, 3, 1, 2).expand(B, -1, -1, -1)
    if boundary == "wrap":
        ht, wt = tex.shape[1:3]
        t = F.pad(t, (1, 1, 1, 1), mode="circular")
        frac = uv - torch.floor(uv)
        scale = torch.tensor([wt, ht], dtype=uv.dtype)
        uv = (frac * scale + 1) / (scale + 2)  # the same texel coordinates in the padded texture
    padding = {"wrap": "border", "clamp": "border", "zero": "zeros"}[boundary]
    out = F.grid_sample(t, uv * 2 - 1, mode="bilinear", padding_mode=padding, align_corners=False)
    return out.permute(0, 2, 3, 1)


def nearest_reference(tex, uv, boundary):
    B, H, W, _ = uv.shape
    ht, wt = tex.shape[1:3]
    if boundary == "wrap":
        uv = uv - torch.floor(uv)
    x, y = torch.floor(uv[..., 0] * wt).long(), torch.floor(uv[..., 1] * ht).long()
    inside = (x >= 0) & (x < wt) & (y >= 0) & (y < ht)
    x, y = x.clamp(0, wt - 1), y.clamp(0, ht - 1)
    b = torch.arange(B).view(B, 1, 1) if tex.shape[0] > 1 else torch.zeros(B, 1, 1, dtype=torch.long)
    out = tex[b.expand(B, H, W), y, x]
    if boundary == "zero":
        out = out * inside[..., None]
    return out


def pyramid_reference(tex, levels):
    """[tex, level 1, ...] by 2 x 2 average pooling (2 x 1 once a side is 1)."""
    out = [tex]
    for _ in range(levels):
        t = out[-1].permute(0, 3, 1, 2)
        k = (2 if t.shape[2] > 1 else 1, 2 if t.shape[3] > 1 else 1)
        out.append(F.avg_pool2d(t, k).permute(0, 2, 3, 1))
    return out


def mip_level_reference(uv_da, bias, ht, wt, max_level):
    s_x, s_y = uv_da[..., 0] * wt, uv_da[..., 1] * wt
    t_x, t_y = uv_da[..., 2] * ht, uv_da[..., 3] * ht
    a, b, c = s_x ** 2 + t_x ** 2, s_y ** 2 + t_y ** 2, s_x * s_y + t_x * t_y
    major = (a + b) / 2 + torch.sqrt((a - b) ** 2 / 4 + c ** 2)  # footprint's major axis length^2
    level = 0.5 * torch.log2(major)
    if bias is not None:
        level = level + bias
    return level.clamp(0, max_level)


def trilinear_reference(tex, uv, uv_da, bias, boundary, max_level, nearest_level=False):
    pyr = pyramid_reference(tex, max_level)
    level = mip_level_reference(uv_da, bias, tex.shape[1], tex.shape[2], max_level)
    samples = torch.stack([bilinear_reference(t, uv, boundary) for t in pyr])  # [L+1, B, H, W, C]
    l0 = torch.floor(level).long()
    l1 = (l0 + 1).clamp(max=max_level)
    frac = torch.zeros_like(level) if nearest_level else level - l0
    pick = lambda l: samples.gather(0, l[None, ..., None].expand(1, *samples.shape[1:]))[0]  # noqa: E731
    return pick(l0) * (1 - frac[..., None]) + pick(l1) * frac[..., None]
