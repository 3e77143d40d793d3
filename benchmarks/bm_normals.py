"""Benchmark: area-weighted vertex normals (pyfaid.render.vertex_normals) against eager PyTorch.

Peer, measured in the same run on the same mesh: ``eager``, the usual PyTorch formulation
(gather the three corners, cross product, ``index_add`` into the vertices three times, then
``F.normalize``). Mesh: a bumpy 189 x 189 grid (35,721 vertices, 70,688 triangles: the size of
the BFM face), batch 16; forward only, and forward + backward. pyfaid gets the triangles as a
``MeshTopology`` (checked once, the recommended input); the peer gets the index tensor.
"""

from __future__ import annotations

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from reference_shading import vertex_normals_ref  # noqa: E402

from pyfaid.render import MeshTopology, vertex_normals  # noqa: E402


# The eager peer is the tests' plain-PyTorch reference (index_add of face normals).
vertex_normals_eager = vertex_normals_ref


def grid_mesh(n: int, batch: int, device):
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, n), torch.linspace(-1, 1, n), indexing="ij")
    z = 0.2 * torch.sin(3 * xs) * torch.cos(2 * ys)
    verts = torch.stack([xs, ys, z], -1).reshape(1, -1, 3).repeat(batch, 1, 1)
    verts = verts + 1e-3 * torch.randn_like(verts)
    i = (torch.arange(n - 1).reshape(-1, 1) * n + torch.arange(n - 1).reshape(1, -1)).reshape(-1)
    tri = torch.cat([torch.stack([i, i + 1, i + n + 1], -1), torch.stack([i, i + n + 1, i + n], -1)])
    return verts.to(device), tri.to(torch.int32).to(device)


def run(device: str = "cpu", quick: bool = False) -> list[dict]:
    iters = 3 if quick else 10
    warmup = 1 if quick else 2
    B = 16
    verts, tri = grid_mesh(189, B, device)
    case = f"B{B} V{verts.shape[1]} F{tri.shape[0]}"
    topo = MeshTopology(tri, verts.shape[1])
    impls = {"pyfaid": (vertex_normals, topo), "eager": (vertex_normals_eager, tri)}
    rows = []
    for mode in ("fwd", "fwd+bwd"):
        v = verts.clone().requires_grad_(mode == "fwd+bwd")
        grad = torch.randn_like(verts)
        for name, (fn, t) in impls.items():
            if mode == "fwd":
                def step(fn=fn, t=t):
                    return fn(v, t)
            else:
                def step(fn=fn, t=t):
                    v.grad = None
                    fn(v, t).backward(grad)
            ms = common.time_ms(step, device, warmup=warmup, iters=iters, max_seconds=5.0 if quick else 20.0)
            rows.append(common.row("vertex_normals", f"{case} {mode}", name, ms, per_image_ms=round(ms / B, 4)))
    return common.add_speedups(rows)


if __name__ == "__main__":
    common.main(run)
