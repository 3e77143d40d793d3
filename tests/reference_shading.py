"""Plain-PyTorch references for pyfaid's shading ops, shared by tests/test_shading.py and the
benchmarks (bm_sh_shading.py, bm_normals.py, where they are the eager peers).

Normals: index_add of the unnormalised face normals. Shading: Deep3DFaceRecon's compute_color
formula written out, without its 0.8 ambient offset.
"""

import math

import torch

SH_A = (math.pi, 2 * math.pi / math.sqrt(3.0), 2 * math.pi / math.sqrt(8.0))
SH_C = (1 / math.sqrt(4 * math.pi), math.sqrt(3.0) / math.sqrt(4 * math.pi), 3 * math.sqrt(5.0) / math.sqrt(12 * math.pi))


def sh_basis_ref(n):
    """Deep3DFaceRecon's 9 SH basis functions of normals [..., 3] -> [..., 9]."""
    a, c = SH_A, SH_C
    x, y, z = n[..., :1], n[..., 1:2], n[..., 2:]
    return torch.cat([
        a[0] * c[0] * torch.ones_like(x),
        -a[1] * c[1] * y,
        a[1] * c[1] * z,
        -a[1] * c[1] * x,
        a[2] * c[2] * x * y,
        -a[2] * c[2] * y * z,
        0.5 * a[2] * c[2] / math.sqrt(3.0) * (3 * z ** 2 - 1),
        -a[2] * c[2] * x * z,
        0.5 * a[2] * c[2] * (x ** 2 - y ** 2),
    ], dim=-1)


def sh_shading_ref(normals, albedo, gamma):
    """compute_color of Deep3DFaceRecon_pytorch minus the 0.8 ambient offset: [B, N, 3]."""
    B = gamma.shape[0]
    g = gamma.reshape(B, 3, 9).permute(0, 2, 1)  # [B, 9, 3]
    return (sh_basis_ref(normals) @ g) * albedo


def vertex_normals_ref(verts, tri):
    """Area-weighted vertex normals by index_add; (0, 0, 1) where the sum is (near) zero."""
    t = tri.long()
    p0, p1, p2 = verts[:, t[:, 0]], verts[:, t[:, 1]], verts[:, t[:, 2]]
    fn = torch.cross(p1 - p0, p2 - p0, dim=-1)
    s = torch.zeros_like(verts)
    for k in range(3):
        s = s.index_add(1, t[:, k], fn)
    length = s.norm(dim=-1, keepdim=True)
    up = torch.zeros_like(s)
    up[..., 2] = 1
    return torch.where(length > 1e-12, s / length.clamp_min(1e-12), up)
