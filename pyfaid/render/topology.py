"""Per-mesh data checked once and handed to every kernel call (as nvdiffrast does with its
topology hashes).

``rasterize``, ``interpolate`` and ``vertex_normals`` accept either a plain ``[F, 3]`` index tensor,
which the kernels check on every call (on CUDA that check costs a device-to-host synchronisation),
or a :class:`MeshTopology`, whose indices were checked once when it was built: the kernels then
only compare its vertex count with the inputs' (a shape test, no synchronisation).
"""

from __future__ import annotations

import warnings

import torch

__all__ = ["MeshTopology", "as_triangles"]


class MeshTopology:
    """The triangles of one mesh, validated once.

    Args:
        triangles: ``[F, 3]`` integer vertex indices (any device; stored as contiguous int32).
        num_vertices: ``V``; every index must lie in ``[0, V)``.

    The index tensor must not be modified after construction (the checks are not repeated).
    Copies on other devices are made once and cached (:meth:`on`).

    Raises:
        TypeError / ValueError naming the problem for a non-integer, misshapen or out-of-range
        index tensor.
    """

    def __init__(self, triangles: torch.Tensor, num_vertices: int):
        if not isinstance(triangles, torch.Tensor):
            raise TypeError(f"MeshTopology: `triangles` must be a torch.Tensor, got {type(triangles).__name__}")
        if triangles.dtype.is_floating_point or triangles.dtype.is_complex or triangles.dtype == torch.bool:
            raise TypeError(f"MeshTopology: `triangles` must hold integer vertex indices, got {triangles.dtype}")
        if triangles.dim() != 2 or triangles.shape[1] != 3:
            raise ValueError(f"MeshTopology: `triangles` must be [F, 3], got {tuple(triangles.shape)}")
        n = int(num_vertices)
        if n < 1:
            raise ValueError(f"MeshTopology: `num_vertices` must be >= 1, got {num_vertices}")
        if triangles.shape[0] >= 2 ** 31:
            raise ValueError("MeshTopology: too many triangles for int32 indices")
        cpu = triangles.detach().to("cpu", torch.int64)
        if cpu.numel():
            lo, hi = int(cpu.min()), int(cpu.max())
            if lo < 0 or hi >= n:
                raise ValueError(f"MeshTopology: `triangles` holds vertex indices in [{lo}, {hi}], outside "
                                 f"[0, {n}) for {n} vertices")
        self.num_vertices = n
        tri = triangles.detach().to(torch.int32).contiguous()
        # device -> [F, 3] int32; (name, device) -> the edges, Laplacian, triangle neighbours there
        self._by_device = {tri.device: tri}

    @property
    def num_triangles(self) -> int:
        return self.triangles.shape[0]

    def on(self, device) -> torch.Tensor:
        """The ``[F, 3]`` int32 index tensor on ``device`` (copied once, then cached)."""
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        if device not in self._by_device:
            self._by_device[device] = self.triangles.to(device)
        return self._by_device[device]

    def edges(self, device=None) -> torch.Tensor:
        """Unique undirected edges ``[E, 2]`` (int64, ``i < j``) of the mesh on ``device`` (cached)."""
        key = ("edges", torch.device(device) if device is not None else self.triangles.device)
        if key not in self._by_device:
            e = torch.cat([self.triangles[:, [0, 1]], self.triangles[:, [1, 2]], self.triangles[:, [2, 0]]]).long().cpu()
            e = torch.sort(e, dim=1).values
            e = e[e[:, 0] != e[:, 1]]
            n = self.num_vertices
            key_ = torch.unique(e[:, 0] * n + e[:, 1])
            self._by_device[key] = torch.stack([key_ // n, key_ % n], dim=1).to(key[1])
        return self._by_device[key]

    def triangle_neighbors(self, device=None) -> torch.Tensor:
        """The triangle across each triangle edge: ``[F, 3]`` int32 on ``device`` (cached), entry
        ``k`` for the edge opposite corner ``k`` (corners ``k + 1`` and ``k + 2``), ``-1`` where no
        single other triangle shares the edge (a border edge, an edge of three or more triangles,
        or a triangle with a repeated corner). :func:`pyfaid.render.antialias` finds silhouette
        edges with it (nvdiffrast's topology hash), built once per mesh."""
        key = ("neighbors", torch.device(device) if device is not None else self.triangles.device)
        if key not in self._by_device:
            self._by_device[key] = self._neighbors_cpu().to(key[1])
        return self._by_device[key]

    def _neighbors_cpu(self) -> torch.Tensor:
        t = self.triangles.cpu().long()  # [F, 3]
        f = t.shape[0]
        a, b = t[:, [1, 2, 0]], t[:, [2, 0, 1]]  # edge k joins corners k + 1 and k + 2
        n = self.num_vertices
        keys = (torch.minimum(a, b) * n + torch.maximum(a, b)).reshape(-1)  # [3F]
        valid = (t[:, 0] != t[:, 1]) & (t[:, 1] != t[:, 2]) & (t[:, 2] != t[:, 0])
        valid = valid[:, None].expand(f, 3).reshape(-1)
        keys = torch.where(valid, keys, -1 - torch.arange(3 * f))  # unique keys: never paired
        order = torch.argsort(keys, stable=True)
        _, counts = torch.unique_consecutive(keys[order], return_counts=True)
        starts = torch.cumsum(counts, 0) - counts
        pair = starts[counts == 2]
        first, second = order[pair], order[pair + 1]  # flat (triangle, edge) slots sharing an edge
        out = torch.full((3 * f,), -1, dtype=torch.int64)
        out[first] = second // 3
        out[second] = first // 3
        return out.reshape(f, 3).to(torch.int32).contiguous()

    def laplacian(self, device=None) -> torch.Tensor:
        """The graph Laplacian ``L = D - A`` of :meth:`edges` as a sparse CSR ``[V, V]`` float32
        tensor on ``device`` (cached): ``x^T L x`` is the sum of squared differences along the edges."""
        key = ("laplacian", torch.device(device) if device is not None else self.triangles.device)
        if key not in self._by_device:
            e, n = self.edges("cpu"), self.num_vertices
            deg = torch.bincount(e.reshape(-1), minlength=n).float()
            idx = torch.cat([e.t(), e.flip(1).t(), torch.arange(n).expand(2, n)], dim=1)
            val = torch.cat([-torch.ones(2 * len(e)), deg])
            with warnings.catch_warnings():  # "sparse CSR support is in beta"
                warnings.simplefilter("ignore", UserWarning)
                lap = torch.sparse_coo_tensor(idx, val, (n, n), check_invariants=True).coalesce().to_sparse_csr()
            self._by_device[key] = lap.to(key[1])
        return self._by_device[key]

    @property
    def triangles(self) -> torch.Tensor:
        """The index tensor on the device it was built on."""
        return next(iter(self._by_device.values()))  # the first entry, made in __init__

    def __repr__(self) -> str:
        return f"MeshTopology(V={self.num_vertices}, F={self.num_triangles})"


def as_triangles(tri, device, num_vertices: int, what: str):
    """``(int32 [F, 3] on device, checked)`` for a tensor or a :class:`MeshTopology`.

    ``checked`` tells the kernels that the index range was already validated. For a
    MeshTopology the vertex count must equal ``num_vertices`` (the rows of ``what``).
    """
    if isinstance(tri, MeshTopology):
        if tri.num_vertices != num_vertices:
            raise ValueError(f"the MeshTopology has {tri.num_vertices} vertices but `{what}` has "
                             f"{num_vertices} rows")
        return tri.on(device), True
    if not isinstance(tri, torch.Tensor):
        raise TypeError(f"`tri` must be a [F, 3] integer tensor or a MeshTopology, got {type(tri).__name__}")
    if tri.dtype.is_floating_point or tri.dtype.is_complex or tri.dtype == torch.bool:
        raise TypeError(f"`tri` must hold integer vertex indices, got {tri.dtype}")
    return tri.to(torch.int32).contiguous(), False
