"""Fine model (paper Sec. 3.2): mesh-wise refiner + feature-wise (FAID) refiner, both Chebyshev GCNs.

Both refiners predict a per-vertex colour residual on top of the coarse 3DMM texture; the fine
texture is the coarse texture plus the average of the two residuals, i.e. the average of the two
refiners' outputs ``(T_mesh + T_faid) / 2`` with ``T_x = T_coarse + r_x``. The residual heads are
zero-initialised, so an untrained fine model returns the coarse texture unchanged (with
``photo_input``: blended half-way to the photo where the photo shows the face, see
:class:`FineModel`).

Two architectures: *flat* (the refiners' Chebyshev layers all run on the full mesh), and
*hierarchical* (``hierarchy=...``, the default configs' choice): the refiners are U-Nets over a
mesh hierarchy (:mod:`pyfaid.models.gcn`), as the GCN face-texture work the paper builds on (Lin et
al. 2020) uses, so they see a large part of the face at little cost and most channels live on the
coarse levels.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn

from pyfaid.graph import ChebConv, ChebResBlock, Laplacian
from pyfaid.models.gcn import HierarchyMaps, MeshDecoder, MeshUNet


def mesh_laplacian(triangles: torch.Tensor, num_vertices: int) -> Laplacian:
    """Scaled Laplacian ``2L/lambda_max - I`` (``[V, V]``) of a mesh's vertex graph, checked once."""
    return Laplacian.of_mesh(triangles.to(torch.int32).cpu(), int(num_vertices))


class _ChebGCN(nn.Module):
    """lift (ChebConv in -> hidden) -> ``blocks`` ChebResBlocks -> zero-initialised linear head."""

    def __init__(self, in_channels: int, hidden: int, K: int, blocks: int = 4, out_channels: int = 3):
        super().__init__()
        self.lift = ChebConv(in_channels, hidden, K)
        self.blocks = nn.ModuleList([ChebResBlock(hidden, K) for _ in range(blocks)])
        self.head = nn.Linear(hidden, out_channels)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor, lap: torch.Tensor) -> torch.Tensor:
        h = self.lift(x, lap)
        for blk in self.blocks:
            h = blk(h, lap)
        return self.head(h)


class MeshRefiner(nn.Module):
    """3D mesh-wise refiner (paper 3.2.1): GCN from coarse vertex colours to a colour residual.

    Args:
        hidden: GCN width. K: Chebyshev order. blocks: residual blocks (paper: 4).
    """

    def __init__(self, hidden: int = 16, K: int = 3, blocks: int = 4):
        super().__init__()
        self.gcn = _ChebGCN(3, hidden, K, blocks)

    def forward(self, coarse_colors: torch.Tensor, lap: torch.Tensor) -> torch.Tensor:
        """Args: coarse_colors ``[B, V, 3]``; lap: the ``[V, V]`` Laplacian. Returns the residual
        ``[B, V, 3]``."""
        return self.gcn(coarse_colors - 0.5, lap)


def farthest_point_sample(points: torch.Tensor, n: int) -> torch.Tensor:
    """Indices ``[n]`` of a deterministic farthest-point subset of ``points [V, 3]`` (starts at the
    point nearest the centroid)."""
    V = points.shape[0]
    n = min(n, V)
    p = points.double()
    idx = torch.empty(n, dtype=torch.long)
    idx[0] = torch.argmin(((p - p.mean(0)) ** 2).sum(1))
    dist = ((p - p[idx[0]]) ** 2).sum(1)
    for i in range(1, n):
        idx[i] = torch.argmax(dist)
        dist = torch.minimum(dist, ((p - p[idx[i]]) ** 2).sum(1))
    return idx


class FAIDDecoder(nn.Module):
    """Feature-wise refiner (paper 3.2.2): FAID features -> per-vertex colour residual.

    Design (cheap on 20-40k vertices): a linear layer maps the concatenated identity + attribute
    features ``[B, D]`` to a code of ``code`` channels on ``nodes`` farthest-point-sampled vertices
    (``D * nodes * code`` weights instead of ``D * V * code``), the code is spread to every vertex
    by inverse-distance weights of its 3 nearest nodes (a fixed gather, no dense ``[V, nodes]``
    matrix), concatenated with a learned per-vertex positional embedding (so the GCN knows where
    lips, brows and eyes are), and decoded by the same GCN architecture as :class:`MeshRefiner`.

    Args:
        feat_dim: D = D_id + D_fa.
        mean_shape: ``[V, 3]`` template vertices used to place the nodes.
        nodes, code, pos_embed, hidden, K, blocks: sizes.
    """

    def __init__(self, feat_dim: int, mean_shape: torch.Tensor, nodes: int = 256, code: int = 16,
                 pos_embed: int = 8, hidden: int = 16, K: int = 3, blocks: int = 4):
        super().__init__()
        V = mean_shape.shape[0]
        pts = mean_shape.detach().cpu().float()
        node_idx = farthest_point_sample(pts, nodes)
        d = torch.cdist(pts, pts[node_idx])  # [V, nodes]
        k = min(3, node_idx.numel())
        dist, nn_idx = d.topk(k, dim=1, largest=False)
        w = 1.0 / (dist + 1e-6)
        w = w / w.sum(1, keepdim=True)
        self.register_buffer("nn_idx", nn_idx, persistent=False)   # [V, 3]
        self.register_buffer("nn_w", w, persistent=False)          # [V, 3]
        self.nodes, self.code = int(node_idx.numel()), int(code)
        self.norm = nn.LayerNorm(feat_dim)
        self.to_code = nn.Linear(feat_dim, self.nodes * self.code)
        self.pos = nn.Parameter(0.1 * torch.randn(V, pos_embed)) if pos_embed > 0 else None
        self.gcn = _ChebGCN(self.code + max(pos_embed, 0), hidden, K, blocks)

    def forward(self, features: torch.Tensor, lap: torch.Tensor) -> torch.Tensor:
        """Args: features ``[B, D]``; lap: the ``[V, V]`` Laplacian. Returns the residual ``[B, V, 3]``."""
        B = features.shape[0]
        code = self.to_code(self.norm(features)).view(B, self.nodes, self.code)
        up = (code[:, self.nn_idx] * self.nn_w[None, :, :, None]).sum(2)  # [B, V, code]
        if self.pos is not None:
            up = torch.cat([up, self.pos[None].expand(B, -1, -1)], dim=2)
        return self.gcn(up, lap)


class HierarchicalMeshRefiner(nn.Module):
    """Mesh-wise refiner as a U-Net over the mesh hierarchy: coarse colours -> colour residual.

    With ``photo_input`` it also reads the photo on the mesh (:func:`pyfaid.render.photo_albedo`:
    the photo's albedo estimate per vertex and the visible share of its footprint) and outputs a
    fourth channel, the logit of how much of the photo's colour each vertex takes (see
    :class:`FineModel`).

    Args:
        maps: :class:`~pyfaid.models.gcn.HierarchyMaps`. channels: per level, finest first.
        K: Chebyshev terms. blocks: residual blocks per level. photo_input: see above.
    """

    def __init__(self, maps: HierarchyMaps, channels, K: int = 3, blocks: int = 1, photo_input: bool = False):
        super().__init__()
        self.photo_input = bool(photo_input)
        extra = 4 if self.photo_input else 0
        self.unet = MeshUNet(maps, 3 + extra, channels, K, out_channels=3 + (1 if self.photo_input else 0),
                             blocks=blocks)

    def forward(self, coarse_colors: torch.Tensor, lap=None, photo: Optional[tuple] = None) -> torch.Tensor:
        """Args: coarse_colors ``[B, V, 3]`` (``lap`` unused); photo: ``(albedo [B, V, 3], support
        [B, V])`` when built with ``photo_input``. Returns the residual ``[B, V, 3]`` (and the photo
        logit as a fourth channel with ``photo_input``)."""
        x = coarse_colors - 0.5
        if self.photo_input:
            if photo is None:
                raise ValueError("HierarchicalMeshRefiner: built with photo_input, needs `photo`")
            albedo, support = photo
            s = support[..., None].to(x)
            x = torch.cat([x, (albedo.to(x) - coarse_colors) * s, s], -1)
        return self.unet(x)


class HierarchicalFAIDDecoder(nn.Module):
    """FAID decoder over the mesh hierarchy: the features become a code on the coarsest level's
    vertices, decoded up to the full mesh (a learned per-vertex positional embedding joins at the
    finest level, so the decoder knows where lips, brows and eyes are).

    Args:
        feat_dim: D = D_id + D_fa. maps: the hierarchy. channels: per level, finest first.
        code: code channels per coarsest-level vertex. pos_embed: positional-embedding channels.
        K: Chebyshev terms. blocks: residual blocks per level.
    """

    def __init__(self, feat_dim: int, maps: HierarchyMaps, channels, code: int = 16, pos_embed: int = 8,
                 K: int = 3, blocks: int = 1):
        super().__init__()
        self.nodes, self.code = maps.sizes[-1], int(code)
        self.norm = nn.LayerNorm(feat_dim)
        self.to_code = nn.Linear(feat_dim, self.nodes * self.code)
        self.pos = nn.Parameter(0.1 * torch.randn(maps.sizes[0], pos_embed)) if pos_embed > 0 else None
        self.dec = MeshDecoder(maps, channels, self.code, K, extra0=max(pos_embed, 0), blocks=blocks)

    def forward(self, features: torch.Tensor, lap=None) -> torch.Tensor:
        """Args: features ``[B, D]`` (``lap`` unused). Returns the residual ``[B, V, 3]``."""
        B = features.shape[0]
        code = self.to_code(self.norm(features)).view(B, self.nodes, self.code)
        pos = None if self.pos is None else self.pos[None].expand(B, -1, -1)
        return self.dec(code, extra0=pos)


class FineModel(nn.Module):
    """Mesh-wise refiner + FAID decoder; fine colours = average of the two refiners' outputs.

    With ``photo_input`` (hierarchical refiners only) the mesh-wise refiner also reads the photo on
    the mesh, as the GCN texture refiner of Lin et al. 2020 does, and the fine colours blend the
    photo's own albedo estimate into the refined texture where the photo shows the vertex:
    ``fine = (1 - w) * (coarse + residual) + w * photo`` with ``w = support * sigmoid(g)``, ``g``
    the refiner's fourth output (0 at initialisation, so ``w = support / 2``). Vertices the photo
    does not show (occluded, turned away: support 0) take the refiners' colours only.

    Args:
        triangles: ``[F, 3]`` mesh triangles; num_vertices: V.
        mean_shape: ``[V, 3]`` (places the FAID decoder's nodes).
        feat_dim: FAID feature size (0 disables the FAID decoder).
        mesh_refiner: use the mesh-wise refiner.
        hierarchy: a :class:`~pyfaid.facemodel.hierarchy.MeshHierarchy` for the hierarchical
            refiners (``channels`` per level), or None for the flat ones (``hidden``, ``nodes``).
    """

    def __init__(self, triangles: torch.Tensor, mean_shape: torch.Tensor, feat_dim: int,
                 hidden: int = 16, K: int = 3, blocks: int = 4, nodes: int = 256, code: int = 16,
                 pos_embed: int = 8, mesh_refiner: bool = True, hierarchy=None, channels=(8, 16, 32, 64),
                 photo_input: bool = False):
        super().__init__()
        V = mean_shape.shape[0]
        self.photo_input = bool(photo_input)
        if self.photo_input and (hierarchy is None or not mesh_refiner):
            raise ValueError("FineModel: photo_input needs the hierarchical mesh-wise refiner "
                             "(model.hierarchy: true, model.mesh_refiner: true)")
        # Not a buffer: the Chebyshev layers take the Laplacian's copy on their input's device
        # (made once, cached), so it follows the model through .to(device) without moving.
        self.lap = mesh_laplacian(triangles, V)
        if hierarchy is not None:
            if hierarchy.sizes()[0] != V:
                raise ValueError(f"FineModel: the hierarchy's finest level has {hierarchy.sizes()[0]} vertices, "
                                 f"the mesh {V}")
            if len(channels) != len(hierarchy):
                raise ValueError(f"FineModel: {len(hierarchy)} hierarchy levels need as many channel counts, "
                                 f"got {tuple(channels)}")
            self.maps = HierarchyMaps(hierarchy)
            self.mesh = (HierarchicalMeshRefiner(self.maps, channels, K, photo_input=self.photo_input)
                         if mesh_refiner else None)
            self.faid = (HierarchicalFAIDDecoder(feat_dim, self.maps, channels, code, pos_embed, K)
                         if feat_dim > 0 else None)
        else:
            self.mesh = MeshRefiner(hidden, K, blocks) if mesh_refiner else None
            self.faid = (FAIDDecoder(feat_dim, mean_shape, nodes, code, pos_embed, hidden, K, blocks)
                         if feat_dim > 0 else None)
        if self.mesh is None and self.faid is None:
            raise ValueError("FineModel: both refiners are disabled")

    def forward(self, coarse_colors: torch.Tensor, features: Optional[torch.Tensor] = None,
                photo: Optional[tuple] = None):
        """Refine vertex colours.

        Args:
            coarse_colors: ``[B, V, 3]`` coarse 3DMM texture.
            features: ``[B, D]`` concatenated identity + attribute features (needed by the FAID decoder).
            photo: ``(albedo [B, V, 3], support [B, V])``, the photo on the mesh
                (:func:`pyfaid.render.photo_albedo`); needed with ``photo_input``, ignored otherwise.

        Returns:
            ``(fine_colors [B, V, 3], residual [B, V, 3])``, residual = fine - coarse.
        """
        res, logit = [], None
        if self.mesh is not None:
            r = self.mesh(coarse_colors, self.lap, photo) if self.photo_input else self.mesh(coarse_colors, self.lap)
            if self.photo_input:
                r, logit = r[..., :3], r[..., 3]
            res.append(r)
        if self.faid is not None:
            if features is None:
                raise ValueError("FineModel: the FAID decoder needs identity/attribute features")
            res.append(self.faid(features, self.lap))
        residual = res[0] if len(res) == 1 else (res[0] + res[1]) * 0.5
        fine = coarse_colors + residual
        if logit is not None:
            albedo, support = photo
            w = (support.to(fine) * torch.sigmoid(logit))[..., None]
            fine = fine + w * (albedo.to(fine) - fine)
            residual = fine - coarse_colors
        return fine, residual
