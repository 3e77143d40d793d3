"""Vertex normals and spherical-harmonic shading, differentiable, on CPU and CUDA.

Both functions wrap pyfaid's compiled ops (``torch.ops.pyfaid.vertex_normals`` and
``torch.ops.pyfaid.sh_shading``), whose backward passes are ops of their own attached with
``torch.library.register_autograd``; ``register_fake`` gives their shapes, so they work under
``torch.compile``. Second derivatives are not implemented.
"""

from __future__ import annotations

import math

import torch

from pyfaid._ext import check_device, ops
from pyfaid.precision import fp32_input
from pyfaid.render.topology import MeshTopology

__all__ = ["vertex_normals", "sh_shading"]


def _as_float(t: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor, got {type(t).__name__}")
    t = fp32_input(t)  # under autocast: float32 in, as the op computes
    if t.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"`{name}` must be float32 or float64, got {t.dtype}")
    return t.contiguous()


def _as_index(tri: torch.Tensor) -> torch.Tensor:
    if not isinstance(tri, torch.Tensor):
        raise TypeError(f"`tri` must be a torch.Tensor, got {type(tri).__name__}")
    if tri.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"`tri` must be an integer tensor (int32 or int64), got {tri.dtype}")
    if tri.dim() != 2 or tri.shape[1] != 3:
        raise ValueError(f"`tri` must have shape [F, 3], got {list(tri.shape)}")
    return tri.to(torch.int32).contiguous()


# ---- vertex normals ------------------------------------------------------------------------


def vertex_normals(verts: torch.Tensor, tri: torch.Tensor) -> torch.Tensor:
    """Unit vertex normals: the area-weighted average of the surrounding triangle normals.

    Every triangle ``(i, j, k)`` contributes its unnormalised normal
    ``(p_j - p_i) x (p_k - p_i)`` (length = twice its area) to each of its three vertices; the
    vertex normal is that sum, normalised. A triangle whose corners run counter-clockwise when seen
    from +z has a +z normal. A vertex that no triangle uses, or whose triangles are all degenerate
    (or cancel out: summed length <= 1e-12), gets the normal ``(0, 0, 1)`` and no gradient.

    Args:
        verts: vertex positions ``[B, V, 3]`` or ``[V, 3]``, float32 or float64, CPU or CUDA
            (under ``torch.autocast`` also bfloat16 / float16, cast to float32).
        tri: triangle vertex indices ``[F, 3]``, int32 (int64 is converted), each in ``[0, V)``,
            on the device of ``verts`` (their range is checked on every call, on CUDA with a
            device-to-host synchronisation); or a :class:`~pyfaid.render.MeshTopology`, whose
            indices were checked once, when it was built (the kernels skip the check).

    Returns:
        Unit normals with the shape, dtype and device of ``verts``: ``[B, V, 3]`` (or ``[V, 3]``).

    Raises:
        TypeError / ValueError / RuntimeError naming the argument for a wrong type, shape,
        device or an out-of-range index.
    """
    verts = _as_float(verts, "verts")
    if verts.dim() not in (2, 3) or verts.shape[-1] != 3:
        raise ValueError(f"`verts` must have shape [B, V, 3] or [V, 3], got {list(verts.shape)}")
    checked = isinstance(tri, MeshTopology)
    if checked:
        if tri.num_vertices != verts.shape[-2]:
            raise ValueError(f"the MeshTopology has {tri.num_vertices} vertices but `verts` has "
                             f"{verts.shape[-2]}")
        tri = tri.on(verts.device)
    tri = _as_index(tri)
    if tri.device != verts.device:
        raise ValueError(f"`tri` is on {tri.device} but `verts` is on {verts.device}")
    check_device(verts, "verts")
    unbatched = verts.dim() == 2
    if unbatched:
        verts = verts.unsqueeze(0)
    out = ops.vertex_normals(verts, tri, check_indices=not checked)
    return out.squeeze(0) if unbatched else out


@torch.library.register_fake("pyfaid::vertex_normals")
def _vertex_normals_fake(verts, tri, *, check_indices=True):
    return torch.empty_like(verts)


@torch.library.register_fake("pyfaid::vertex_normals_backward")
def _vertex_normals_backward_fake(grad_normals, verts, tri, *, check_indices=True):
    return torch.empty_like(verts)


def _vertex_normals_setup(ctx, inputs, keyword_only_inputs, output):
    verts, tri = inputs
    ctx.check_indices = keyword_only_inputs["check_indices"]  # passed on to the backward op
    ctx.save_for_backward(verts, tri)


def _vertex_normals_backward(ctx, grad_normals):
    verts, tri = ctx.saved_tensors
    grad_verts = ops.vertex_normals_backward(grad_normals.contiguous(), verts, tri,
                                             check_indices=ctx.check_indices)
    return grad_verts, None


torch.library.register_autograd(
    "pyfaid::vertex_normals", _vertex_normals_backward, setup_context=_vertex_normals_setup
)


# ---- spherical-harmonic shading ------------------------------------------------------------


def sh_shading(normals: torch.Tensor, albedo: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """Lambertian shading under 2nd-order spherical-harmonic light, Deep3DFaceRecon convention.

    ``gamma`` holds 9 SH coefficients per colour channel, ``gamma.reshape(B, 3, 9)[:, c]`` for
    channel c (R, G, B). With the normal ``(x, y, z)`` and Deep3DFaceRecon's constants
    ``a = (pi, 2 pi / sqrt 3, 2 pi / sqrt 8)``, ``c = (1 / sqrt(4 pi), sqrt 3 / sqrt(4 pi),
    3 sqrt 5 / sqrt(12 pi))`` the 9 basis functions are, in this order::

        Y = ( a0 c0,  -a1 c1 y,  a1 c1 z,  -a1 c1 x,  a2 c2 x y,  -a2 c2 y z,
              a2 c2 / (2 sqrt 3) (3 z^2 - 1),  -a2 c2 x z,  a2 c2 / 2 (x^2 - y^2) )

    and ``colour[..., c] = (Y . gamma[:, c]) * albedo[..., c]``: the same numbers as
    ``ParametricFaceModel.compute_color`` of Deep3DFaceRecon_pytorch, EXCEPT that its constant
    ambient offset is not added here. Deep3DFaceRecon adds 0.8 to ``gamma[:, c, 0]`` of every
    channel before shading; callers that want its behaviour (pyfaid's face model and Renderer do)
    add it themselves, e.g. ``gamma.reshape(B, 3, 9) + tensor([0.8, 0, ..., 0])``. The normals
    are used as given (not renormalised), so pass unit normals.

    Works per vertex (``[B, V, 3]``) and per pixel (``[B, H, W, 3]`` or ``[B, H*W, 3]``).

    Args:
        normals: unit normals ``[B, *, 3]``, float32 or float64, CPU or CUDA (under
            ``torch.autocast``, bfloat16 / float16 inputs are cast to float32).
        albedo: colours ``[B, *, 3]`` (RGB), same dtype and device; its batch dimension may be 1
            (shared by the whole batch, broadcast), and its other dimensions must equal those of
            ``normals``.
        gamma: SH coefficients ``[B, 27]`` (or ``[B, 3, 9]``), same dtype and device.

    Returns:
        Shaded colours ``[B, *, 3]`` with the shape of ``normals``.

    Raises:
        TypeError / ValueError / RuntimeError naming the argument for a wrong type, shape
        or device.
    """
    normals = _as_float(normals, "normals")
    albedo = _as_float(albedo, "albedo")
    gamma = _as_float(gamma, "gamma")
    if normals.dim() < 2 or normals.shape[-1] != 3:
        raise ValueError(f"`normals` must have shape [B, *, 3], got {list(normals.shape)}")
    B = normals.shape[0]
    if albedo.dim() != normals.dim() or albedo.shape[-1] != 3 or albedo.shape[1:] != normals.shape[1:] or (
        albedo.shape[0] not in (1, B)
    ):
        raise ValueError(
            f"`albedo` must have the shape of `normals` {list(normals.shape)} (batch 1 allowed), "
            f"got {list(albedo.shape)}"
        )
    if gamma.dim() == 3 and tuple(gamma.shape[1:]) == (3, 9):
        gamma = gamma.reshape(gamma.shape[0], 27)
    if gamma.dim() != 2 or gamma.shape != (B, 27):
        raise ValueError(f"`gamma` must have shape [B, 27] = [{B}, 27], got {list(gamma.shape)}")
    for t, name in ((albedo, "albedo"), (gamma, "gamma")):
        if t.dtype != normals.dtype:
            raise TypeError(f"`{name}` must have the dtype of `normals` ({normals.dtype}), got {t.dtype}")
        if t.device != normals.device:
            raise ValueError(f"`{name}` is on {t.device} but `normals` is on {normals.device}")
    check_device(normals, "normals")
    if albedo.shape[0] != B:
        albedo = albedo.expand(normals.shape).contiguous()
    shape = normals.shape
    N = math.prod(shape[1:-1])
    out = ops.sh_shading(normals.reshape(B, N, 3), albedo.reshape(B, N, 3), gamma)
    return out.reshape(shape)


@torch.library.register_fake("pyfaid::sh_shading")
def _sh_shading_fake(normals, albedo, gamma):
    return torch.empty_like(normals)


@torch.library.register_fake("pyfaid::sh_shading_backward")
def _sh_shading_backward_fake(grad_out, normals, albedo, gamma):
    return torch.empty_like(normals), torch.empty_like(albedo), torch.empty_like(gamma)


def _sh_shading_setup(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _sh_shading_backward(ctx, grad_out):
    normals, albedo, gamma = ctx.saved_tensors
    return ops.sh_shading_backward(grad_out.contiguous(), normals, albedo, gamma)


torch.library.register_autograd("pyfaid::sh_shading", _sh_shading_backward, setup_context=_sh_shading_setup)
