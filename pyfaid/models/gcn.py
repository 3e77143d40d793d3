"""Chebyshev graph networks over a mesh hierarchy (:mod:`pyfaid.facemodel.hierarchy`).

:class:`MeshUNet` runs Chebyshev convolutions (:class:`pyfaid.graph.ChebConv`) at every level of the
hierarchy: an encoder from the full mesh down to the coarsest level and a decoder back up with skip
connections, so a vertex sees a large part of the face at little cost (most channels live on the
coarse levels: 554 vertices for the default model instead of 34.5k). :class:`MeshDecoder` is its
decoder half, for a code that starts on the coarsest level (the FAID decoder's features).
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn as nn

from pyfaid.facemodel.hierarchy import LevelMap, MeshHierarchy
from pyfaid.graph import ChebConv, ChebResBlock, Laplacian, elu

__all__ = ["MeshUNet", "MeshDecoder", "HierarchyMaps"]


class HierarchyMaps(nn.Module):
    """The hierarchy's Laplacians (:class:`pyfaid.graph.Laplacian`, checked once; the Chebyshev
    layers take their copy on the input's device) and its up/down maps
    (:class:`~pyfaid.facemodel.hierarchy.LevelMap` sparse products, built on the input's device
    and dtype at first use), so nothing here has to move with the model."""

    def __init__(self, hier: MeshHierarchy):
        super().__init__()
        self.num_levels = len(hier)
        self.sizes = hier.sizes()
        self.laps, self._down, self._up = [], [None], [None]
        for i, lv in enumerate(hier.levels):
            self.laps.append(Laplacian.of_mesh(torch.as_tensor(lv.triangles).to(torch.int32), lv.num_vertices))
            if i > 0:
                self._down.append(LevelMap(torch.as_tensor(lv.down_idx), torch.as_tensor(lv.down_w), self.sizes[i - 1]))
                self._up.append(LevelMap(torch.as_tensor(lv.up_idx), torch.as_tensor(lv.up_w), self.sizes[i]))

    def lap(self, i: int) -> Laplacian:
        return self.laps[i]

    def down(self, x: torch.Tensor, i: int) -> torch.Tensor:
        """Level ``i - 1`` features ``[B, V_{i-1}, C]`` -> level ``i``."""
        return self._down[i](x)

    def up(self, x: torch.Tensor, i: int) -> torch.Tensor:
        """Level ``i`` features ``[B, V_i, C]`` -> level ``i - 1``."""
        return self._up[i](x)


class _Level(nn.Module):
    """ChebConv(cin -> c) + ELU, then ``blocks`` residual blocks, on one level."""

    def __init__(self, cin: int, c: int, K: int, blocks: int):
        super().__init__()
        self.conv = ChebConv(cin, c, K)
        self.blocks = nn.ModuleList([ChebResBlock(c, K) for _ in range(blocks)])

    def forward(self, x, lap):
        h = elu(self.conv(x, lap))
        for b in self.blocks:
            h = b(h, lap)
        return h


class MeshDecoder(nn.Module):
    """From a code on the coarsest level up to the full mesh (with optional skips from an encoder).

    Args:
        maps: :class:`HierarchyMaps`.
        channels: per level, finest first (``len(channels) == maps.num_levels``).
        code_channels: channels of the code on the coarsest level.
        K: Chebyshev terms. out_channels: head outputs (zero-initialised).
        skips: channels of the skip input per level (0 = none), finest first.
        extra0: channels concatenated at level 0 (e.g. a positional embedding).
        blocks: residual blocks per coarse level (the full mesh gets a single convolution).
    """

    def __init__(self, maps: HierarchyMaps, channels: Sequence[int], code_channels: int, K: int = 3,
                 out_channels: int = 3, skips: Optional[Sequence[int]] = None, extra0: int = 0, blocks: int = 1):
        super().__init__()
        n = maps.num_levels
        if len(channels) != n:
            raise ValueError(f"MeshDecoder: need {n} channel counts (one per level), got {len(channels)}")
        skips = list(skips or [0] * n)
        self.maps = maps
        self.top = _Level(code_channels + skips[-1], channels[-1], K, blocks)
        self.levels = nn.ModuleList()
        for i in range(n - 2, -1, -1):
            cin = channels[i + 1] + skips[i] + (extra0 if i == 0 else 0)
            # the full mesh is where a layer costs most: one convolution there, blocks below
            self.levels.append(_Level(cin, channels[i], K, 0 if i == 0 else blocks))
        self.head = nn.Linear(channels[0], out_channels)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, code: torch.Tensor, skips: Optional[list] = None, extra0: Optional[torch.Tensor] = None):
        """Args: code ``[B, V_L, C]``; skips: per level ``[B, V_l, S_l]`` (finest first) or None;
        extra0 ``[B, V_0, E]``. Returns ``[B, V_0, out_channels]``."""
        n = self.maps.num_levels
        h = code if not skips else torch.cat([code, skips[-1]], -1)
        h = self.top(h, self.maps.lap(n - 1))
        for k, i in enumerate(range(n - 2, -1, -1)):
            h = self.maps.up(h, i + 1)
            parts = [h] + ([skips[i]] if skips else []) + ([extra0] if (i == 0 and extra0 is not None) else [])
            h = self.levels[k](torch.cat(parts, -1) if len(parts) > 1 else h, self.maps.lap(i))
        return self.head(h)


class MeshUNet(nn.Module):
    """Encoder-decoder Chebyshev GCN over the hierarchy, per-vertex in and out.

    Args:
        maps: :class:`HierarchyMaps`. in_channels: per-vertex inputs on the full mesh.
        channels: per level, finest first (e.g. ``(8, 16, 32, 64)``). K: Chebyshev terms.
        out_channels: outputs (zero-initialised head, so an untrained net outputs 0).
        blocks: residual blocks per coarse level (the full mesh gets a single convolution).
    """

    def __init__(self, maps: HierarchyMaps, in_channels: int, channels: Sequence[int], K: int = 3,
                 out_channels: int = 3, blocks: int = 1):
        super().__init__()
        self.maps = maps
        n = maps.num_levels
        self.enc = nn.ModuleList([_Level(in_channels if i == 0 else channels[i - 1], channels[i], K,
                                         0 if i == 0 else blocks) for i in range(n - 1)])
        self.dec = MeshDecoder(maps, channels, channels[-2] if n > 1 else in_channels, K, out_channels,
                               skips=list(channels[:-1]) + [0], blocks=blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, V_0, in_channels]`` -> ``[B, V_0, out_channels]``."""
        skips = []
        h = x
        for i, level in enumerate(self.enc):
            h = level(h, self.maps.lap(i))
            skips.append(h)
            h = self.maps.down(h, i + 1)
        return self.dec(h, skips + [h[..., :0]])
