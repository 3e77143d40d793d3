"""Analytic antialiasing with gradients at silhouettes (nvdiffrast's ``antialias``), CPU and CUDA.

A rasterized image is a step function of the vertex positions at triangle boundaries: the
interpolation's gradient reaches the positions only through the interiors of triangles, never
through a silhouette moving over the background. :func:`antialias` finds the pixel pairs across a
silhouette edge (an edge with no triangle beyond it, or one whose neighbour faces away in the
current view), estimates how much of the pixels the front surface covers from where the edge
crosses between them, and blends their colours by that amount. The blend is a differentiable
function of the edge's screen position, so the image's gradient reaches the vertices of the
silhouette (e.g. to fit an outline to a mask). The kernels are ``torch.ops.pyfaid.antialias`` and
``antialias_backward``; the per-mesh edge data (:meth:`MeshTopology.triangle_neighbors`) is built
once per mesh.

The method is nvdiffrast's, with one change: where the triangle at the front pixel's centre ends
at an edge that is not a silhouette, the search walks on across the mesh towards the other pixel
instead of giving up. On a dense mesh (a face model at 224 x 224 has about one triangle per
pixel, thinner still where the surface turns away) the last triangle before the outline often
covers no pixel centre, and nvdiffrast's test, which looks only at the front pixel's own
triangle, misses most of the outline.
"""

from __future__ import annotations

import torch

from pyfaid._ext import check_device, ops
from pyfaid.render.topology import MeshTopology

__all__ = ["antialias"]


def antialias(color: torch.Tensor, rast: torch.Tensor, pos: torch.Tensor, topology) -> torch.Tensor:
    """Antialias the silhouettes of a rendered image.

    Args:
        color: ``[B, H, W, C]`` image to antialias (any shading of the rasterized mesh, with the
            background where ``rast`` is empty).
        rast: ``[B, H, W, 4]`` the :func:`pyfaid.render.rasterize` output it was shaded from.
        pos: ``[B, V, 4]`` (or ``[V, 4]`` for B = 1) the clip-space positions given to
            :func:`~pyfaid.render.rasterize`.
        topology: the mesh's :class:`~pyfaid.render.MeshTopology` (its edge adjacency is built
            once and kept on it), or an ``[F, 3]`` index tensor (a MeshTopology is then built on
            every call, with a device-to-host copy on CUDA: pass the topology for a mesh drawn
            more than once).

    Returns:
        ``[B, H, W, C]`` antialiased image, differentiable with respect to ``color`` and ``pos``
        (through the silhouette edges' screen positions).
    """
    for t, name in ((color, "color"), (rast, "rast"), (pos, "pos")):
        check_device(t, name)
    if pos.dim() == 2:
        pos = pos.unsqueeze(0)
    if not isinstance(topology, MeshTopology):
        if not isinstance(topology, torch.Tensor):
            raise TypeError(f"antialias: `topology` must be a MeshTopology or an [F, 3] index tensor, "
                            f"got {type(topology).__name__}")
        topology = MeshTopology(topology, pos.shape[-2])
    if topology.num_vertices != pos.shape[-2]:
        raise ValueError(f"antialias: the MeshTopology has {topology.num_vertices} vertices but `pos` has "
                         f"{pos.shape[-2]} rows")
    out, _alpha, _edge = ops.antialias(color.contiguous(), rast.contiguous(), pos.contiguous(),
                                       topology.on(pos.device), topology.triangle_neighbors(pos.device),
                                       check_indices=False)  # MeshTopology checked the indices
    return out


# ---- shapes for tracing ------------------------------------------------------------------------

@torch.library.register_fake("pyfaid::antialias")
def _antialias_fake(color, rast, pos, tri, neighbors, *, check_indices=True):
    torch._check(color.dim() == 4, lambda: "color must have shape [B, H, W, C]")
    pairs = (color.shape[0], color.shape[1], color.shape[2], 2)
    return torch.empty_like(color), color.new_empty(pairs), color.new_empty(pairs, dtype=torch.int32)


@torch.library.register_fake("pyfaid::antialias_backward")
def _antialias_backward_fake(grad_out, color, rast, pos, tri, pair_alpha, pair_edge, *, check_indices=True):
    return torch.empty_like(color), torch.empty_like(pos)


# ---- autograd -------------------------------------------------------------------------------

def _antialias_setup_context(ctx, inputs, keyword_only_inputs, output):
    color, rast, pos, tri, _neighbors = inputs
    _out, alpha, edge = output
    ctx.check_indices = keyword_only_inputs["check_indices"]
    ctx.mark_non_differentiable(alpha, edge)
    ctx.save_for_backward(color, rast, pos, tri, alpha, edge)


def _antialias_backward(ctx, grad_out, _grad_alpha, _grad_edge):
    color, rast, pos, tri, alpha, edge = ctx.saved_tensors
    grad_color, grad_pos = ops.antialias_backward(grad_out.contiguous(), color, rast, pos, tri, alpha, edge,
                                                  check_indices=ctx.check_indices)
    return (grad_color if ctx.needs_input_grad[0] else None, None,
            grad_pos if ctx.needs_input_grad[2] else None, None, None)


torch.library.register_autograd("pyfaid::antialias", _antialias_backward,
                                setup_context=_antialias_setup_context)
