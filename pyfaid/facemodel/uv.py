"""UV layouts of face models: checks, islands, packing, a generated unwrap and seam splitting.

Conventions (those of OBJ and OpenGL; trimesh converts for glTF on export):

* ``uv [T, 2]`` texture coordinates in ``[0, 1]``; ``(0, 0)`` is the bottom-left corner of the
  texture image and ``v`` grows upward, so ``v = 1`` is the image's top row (row 0 of an array).
* ``uv_faces [F, 3]`` indices into ``uv``, one row per triangle of the model, corner for corner:
  corner ``k`` of triangle ``f`` (vertex ``triangles[f, k]``) has texture coordinate
  ``uv[uv_faces[f, k]]``. UVs are *face-varying*: a vertex on a seam has one UV per side.

Everything here is NumPy and runs once per model (at build or load time), never per image.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

__all__ = ["check_layout", "islands", "pack_islands", "cylindrical_layout", "split_seams"]


def check_layout(uv, uv_faces, num_triangles: int, name: str = "uv"):
    """Validate a per-corner UV layout.

    Args:
        uv: ``[T, 2]`` texture coordinates.
        uv_faces: ``[F, 3]`` integer indices into ``uv``.
        num_triangles: ``F``, the number of triangles the layout belongs to.
        name: how to call the layout in error messages.

    Returns:
        ``(uv float64 [T, 2], uv_faces int64 [F, 3])``.

    Raises:
        ValueError: naming the problem (shape, non-finite values, values outside [0, 1], an
            index out of range, a corner count that does not match the triangles).
    """
    uv = np.asarray(uv, dtype=np.float64)
    faces = np.asarray(uv_faces)
    if uv.ndim != 2 or uv.shape[1] != 2 or uv.shape[0] < 3:
        raise ValueError(f"{name}: texture coordinates must be [T, 2] with T >= 3, got shape {uv.shape}")
    if not np.isfinite(uv).all():
        raise ValueError(f"{name}: texture coordinates contain non-finite values")
    if uv.min() < 0.0 or uv.max() > 1.0:
        raise ValueError(f"{name}: texture coordinates must lie in [0, 1], got [{uv.min():.4g}, {uv.max():.4g}]")
    if faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError(f"{name}_faces must be [F, 3], got shape {faces.shape}")
    if faces.dtype.kind not in "iu":
        raise ValueError(f"{name}_faces must hold integer indices, got dtype {faces.dtype}")
    if faces.shape[0] != int(num_triangles):
        raise ValueError(f"{name}_faces has {faces.shape[0]} rows but the mesh has {num_triangles} triangles "
                         "(one UV triangle per mesh triangle)")
    faces = faces.astype(np.int64)
    if faces.min() < 0 or faces.max() >= uv.shape[0]:
        raise ValueError(f"{name}_faces indices must lie in [0, {uv.shape[0]}), got [{faces.min()}, {faces.max()}]")
    return uv, faces


def islands(uv_faces, num_uv: int):
    """Connected UV islands (triangles sharing a UV index belong together).

    Args:
        uv_faces: ``[F, k]`` polygon corners as UV indices.
        num_uv: ``T``.

    Returns:
        ``(count, label [F])``.
    """
    faces = np.asarray(uv_faces, np.int64)
    f, k = faces.shape
    # triangles and UV indices as one bipartite graph
    rows = np.repeat(np.arange(f), k)
    graph = sp.csr_matrix((np.ones(f * k), (rows, f + faces.reshape(-1))), shape=(f + num_uv, f + num_uv))
    count, label = connected_components(graph, directed=False)
    used, label = np.unique(label[:f], return_inverse=True)
    return len(used), label


def _orientation(uv_corners, xyz_corners):
    """Rotation/reflection ``Q [2, 2]`` that turns an island so that model x runs along u and y along v.

    Fits ``xy ~ L uv + b`` by least squares and returns the orthogonal factor of ``L``'s polar
    decomposition (identity when the fit is degenerate).
    """
    a = np.c_[uv_corners - uv_corners.mean(0)]
    if len(a) < 3 or np.linalg.matrix_rank(a, tol=1e-9) < 2:
        return np.eye(2)
    lin, *_ = np.linalg.lstsq(a, xyz_corners[:, :2] - xyz_corners[:, :2].mean(0), rcond=None)  # xy = uv @ lin
    u, s, vt = np.linalg.svd(lin.T)  # L = lin.T maps uv to xy
    if s[-1] < 1e-6 * max(s[0], 1e-12):
        return np.eye(2)
    return u @ vt


def _shelf_pack(sizes, width, gap):
    """Places boxes ``[N, 2]`` (w, h) left to right in rows of ``width``; returns offsets and extent."""
    order = np.argsort(-sizes[:, 1], kind="stable")
    offs = np.zeros_like(sizes)
    x = y = row_h = used_w = 0.0
    for i in order:
        w, h = sizes[i]
        if x > 0 and x + w > width:
            y += row_h + gap
            x = row_h = 0.0
        offs[i] = (x, y)
        x += w + gap
        row_h = max(row_h, h)
        used_w = max(used_w, x - gap)
    height = y + row_h
    offs[:, 1] = height - offs[:, 1] - sizes[:, 1]  # first row at the top of the image (v up)
    return offs, (used_w, height)


def _best_packing(sizes, gap):
    """The shelf packing of boxes ``[N, 2]`` whose bounding square is smallest (over row widths)."""
    widths = np.r_[sizes[:, 0].max(), np.cumsum(np.sort(sizes[:, 0])[::-1]) + gap * np.arange(len(sizes))]
    best = None
    for w in np.unique(widths):
        offs, ext = _shelf_pack(sizes, w, gap)
        if best is None or max(ext) < max(best[1]):
            best = (offs, ext)
    return best


def pack_islands(uv, uv_faces, positions=None, triangles=None, margin: float = 0.01, gap: float = 0.03):
    """Re-lay UV islands into the unit square, each with its own texel density kept relative to the others.

    Each island is (optionally) turned upright, then the islands' bounding boxes are shelf-packed
    into a square, scaled uniformly so that the packing fills ``[margin, 1 - margin]``.

    Args:
        uv: ``[T, 2]`` texture coordinates (any range).
        uv_faces: ``[F, k]`` UV indices of every polygon corner.
        positions: optional ``[V, 3]`` model-space vertices; with ``triangles``, each island is
            turned (rotation or reflection) so that model x runs along u and model y along v, so the
            texture image shows the face upright and unmirrored.
        triangles: ``[F, k]`` vertex indices matching ``uv_faces`` row for row.
        margin: empty border of the square (fraction of its side).
        gap: empty space between islands (fraction of the square's side), room for seam padding.

    Returns:
        ``[T, 2]`` texture coordinates in ``[0, 1]`` (UVs that no polygon uses keep their relative place
        but are clipped into the square).
    """
    uv = np.asarray(uv, np.float64).copy()
    faces = np.asarray(uv_faces, np.int64)
    count, label = islands(faces, len(uv))
    owner = np.full(len(uv), -1, np.int64)
    owner[faces.reshape(-1)] = np.repeat(label, faces.shape[1])
    for i in range(count):
        if positions is None or triangles is None:
            break
        sel = label == i
        q = _orientation(uv[faces[sel].reshape(-1)], np.asarray(positions, np.float64)[np.asarray(triangles)[sel].reshape(-1)])
        idx = owner == i
        uv[idx] = uv[idx] @ q.T
    lo = np.array([uv[owner == i].min(0) for i in range(count)])
    sizes = np.array([uv[owner == i].max(0) for i in range(count)]) - lo
    avail = 1.0 - 2.0 * margin
    scale = avail / max(sizes.max(), 1e-12)
    for _ in range(4):  # the gap is given in final units: iterate packing <-> scale
        offs, ext = _best_packing(sizes, gap / scale)
        scale = avail / max(max(ext), 1e-12)
    centre = (np.ones(2) - np.asarray(ext) * scale) / 2.0
    out = uv.copy()
    for i in range(count):
        idx = owner == i
        out[idx] = (uv[idx] - lo[i] + offs[i]) * scale + centre
    return np.clip(out, 0.0, 1.0)


def cylindrical_layout(vertices, triangles, margin: float = 0.01):
    """A generated UV layout: a cylindrical unwrap about the model's vertical (y) axis.

    The cylinder's axis is the least-squares circle through the vertices seen from above (x-z
    plane), so a face shell unwraps around its own curvature; ``u`` is the arc length around it,
    ``v`` the height, both in model units (equal texel density along both axes), scaled into the
    unit square. A closed mesh gets a seam at the back (the triangles that straddle it get
    their own UVs), and a vertex on the axis (a sphere's pole) one UV per triangle; an almost flat
    mesh is projected orthographically onto x-y.

    Args:
        vertices: ``[V, 3]`` model-space positions (x right, y up, z toward the viewer).
        triangles: ``[F, 3]`` vertex indices.
        margin: empty border of the unit square.

    Returns:
        ``(uv [T, 2] in [0, 1], uv_faces [F, 3])``.
    """
    p = np.asarray(vertices, np.float64)
    tri = np.asarray(triangles, np.int64)
    used = np.unique(tri)
    x, z = p[used, 0], p[used, 2]
    extent = max(np.ptp(p[used], axis=0).max(), 1e-12)
    a = np.c_[x, z, np.ones_like(x)]
    sol, *_ = np.linalg.lstsq(a, -(x ** 2 + z ** 2), rcond=None)
    cx, cz = -sol[0] / 2.0, -sol[1] / 2.0
    r2 = cx ** 2 + cz ** 2 - sol[2]
    radius = np.sqrt(r2) if r2 > 0 else np.inf
    flat = not np.isfinite(radius) or radius > 20 * extent or np.ptp(z) < 1e-3 * extent
    corners = tri.reshape(-1)
    if flat:
        u = p[corners, 0]
        wrap = np.zeros(len(corners), np.int64)
    else:
        dx, dz = p[corners, 0] - cx, p[corners, 2] - cz
        theta = np.arctan2(dx, dz).reshape(-1, 3)
        on_axis = (np.hypot(dx, dz) < 1e-6 * extent).reshape(-1, 3)  # e.g. the poles of a sphere
        # triangles across the back (theta jumps by ~2 pi): move their negative corners up by 2 pi
        t_off = np.where(on_axis, np.nan, theta)
        straddle = (np.nanmax(t_off, 1, initial=-np.inf) - np.nanmin(t_off, 1, initial=np.inf)) > np.pi
        wrap = (straddle[:, None] & (theta < 0) & ~on_axis).astype(np.int64)
        theta = theta + 2 * np.pi * wrap
        # a corner on the axis has no angle of its own: it takes its triangle's (one UV per corner)
        if on_axis.any():
            others = np.where(on_axis, np.nan, theta)
            mean = np.nanmean(np.where(on_axis.all(1, keepdims=True), 0.0, others), axis=1)
            theta = np.where(on_axis, mean[:, None], theta)
            wrap = np.where(on_axis, 2 + np.arange(on_axis.size).reshape(-1, 3), wrap)
        u = (radius * theta).reshape(-1)
        wrap = wrap.reshape(-1)
    v = p[corners, 1]
    key = corners * (2 + corners.size) + wrap
    uniq, first, inv = np.unique(key, return_index=True, return_inverse=True)
    uv = np.c_[u[first], v[first]]
    uv_faces = inv.reshape(-1, 3)
    return pack_islands(uv, uv_faces, margin=margin, gap=0.0), uv_faces


def split_seams(triangles, uv_faces, num_vertices: int | None = None):
    """One vertex per (vertex, UV) pair: the form file formats and GPUs need (a vertex has one UV).

    Vertices keep their index (with the first UV they are used with); each extra UV of a seam
    vertex adds a copy at the end. So vertex ``i < V`` of the result is model vertex ``i``, and
    per-vertex data (landmark indices, masks) still applies to the first ``V`` vertices.

    Args:
        triangles: ``[F, 3]`` vertex indices.
        uv_faces: ``[F, 3]`` UV indices, corner for corner.
        num_vertices: ``V`` (default: ``triangles.max() + 1``).

    Returns:
        ``(vertex_of [N], uv_of [N], faces [F, 3])``: model vertex and UV index of each output
        vertex (``N >= V``; a vertex used by no triangle gets UV index 0), and the triangles
        re-indexed into the output vertices.
    """
    tri = np.asarray(triangles, np.int64)
    uvf = np.asarray(uv_faces, np.int64)
    if tri.shape != uvf.shape:
        raise ValueError(f"split_seams: triangles {tri.shape} and uv_faces {uvf.shape} must have the same shape")
    nv = int(tri.max()) + 1 if num_vertices is None else int(num_vertices)
    nt = int(uvf.max()) + 1
    key = tri.reshape(-1) * nt + uvf.reshape(-1)
    pairs, inv = np.unique(key, return_inverse=True)  # sorted by vertex, then UV index
    pv, pt = pairs // nt, pairs % nt
    primary = np.r_[True, pv[1:] != pv[:-1]]  # the first (smallest) UV of each vertex
    new_index = np.empty(len(pairs), np.int64)
    new_index[primary] = pv[primary]
    extra = np.flatnonzero(~primary)
    new_index[extra] = nv + np.arange(len(extra))
    vertex_of = np.r_[np.arange(nv), pv[extra]]
    uv_of = np.zeros(nv + len(extra), np.int64)
    uv_of[pv[primary]] = pt[primary]
    uv_of[nv:] = pt[extra]
    return vertex_of, uv_of, new_index[inv].reshape(-1, 3)
