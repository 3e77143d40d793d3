"""Mesh processing for building face models: OBJ reading, boundary loops, connected components,
Catmull-Clark subdivision (as a linear operator), Laplacian smoothing, cropping and hole closing.

Meshes are lists of polygons (tuples of vertex ids, consistently oriented) over numpy vertex arrays;
triangle meshes are ``[F, 3]`` integer arrays. Nothing here knows about MakeHuman's files beyond the
OBJ reader, so :mod:`pyfaid.facemodel.builder.makehuman` (the default face model) and
:mod:`pyfaid.synth.context` (the head around it) share these steps.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

__all__ = ["read_obj", "edges_of", "boundary_loops", "boundary_vertices", "largest_component", "compact_faces",
           "catmull_clark", "subdivision", "subdivide_points", "laplacian_smooth", "superellipse_crop", "zip_hole",
           "close_holes", "smooth_outer_boundary"]


# ---------------------------------------------------------------------------- files
def read_obj(path):
    """Vertices [N,3], body-group quads [F,4], their UV index quads [F,4] and UVs [T,2]."""
    verts, uvs, faces, fuv = [], [], [], []
    group = None
    with open(path) as fh:
        for line in fh:
            if line.startswith("v "):
                verts.append(line.split()[1:4])
            elif line.startswith("vt "):
                uvs.append(line.split()[1:3])
            elif line.startswith("g "):
                group = line.split()[1]
            elif line.startswith("f ") and group == "body":
                parts = [p.split("/") for p in line.split()[1:]]
                if len(parts) != 4:
                    raise ValueError(f"{path}: expected quads in group 'body'")
                faces.append([int(p[0]) - 1 for p in parts])
                fuv.append([int(p[1]) - 1 for p in parts])
    return (np.asarray(verts, np.float64), np.asarray(faces, np.int64), np.asarray(fuv, np.int64),
            np.asarray(uvs, np.float64))


# ---------------------------------------------------------------------------- topology
def edges_of(faces):
    """Directed edges of polygon list -> (a, b) arrays, face id array."""
    a, b, fid = [], [], []
    for i, f in enumerate(faces):
        k = len(f)
        for j in range(k):
            a.append(f[j])
            b.append(f[(j + 1) % k])
            fid.append(i)
    return np.asarray(a), np.asarray(b), np.asarray(fid)


def boundary_loops(faces):
    """Boundary loops (lists of vertex ids, in the faces' winding order) of a polygon mesh."""
    a, b, _ = edges_of(faces)
    und = set(zip(a.tolist(), b.tolist()))
    nxt = {}
    for x, y in zip(a.tolist(), b.tolist()):
        if (y, x) not in und:
            nxt.setdefault(x, []).append(y)
    loops, seen = [], set()
    for start in list(nxt):
        if start in seen:
            continue
        loop, cur = [], start
        while cur not in seen:
            seen.add(cur)
            loop.append(cur)
            cur = nxt[cur][0]
        loops.append(loop)
    return loops


def boundary_vertices(tri: np.ndarray) -> np.ndarray:
    """Vertices on the outer boundary loop of a triangle mesh, in loop order."""
    loops = boundary_loops([tuple(t) for t in tri.tolist()])
    return np.asarray(max(loops, key=len), np.int64)


def largest_component(faces, n):
    """The polygons of the largest connected component (polygons sharing a vertex are connected).

    Args:
        faces: list of polygons (vertex id tuples).
        n: number of vertices.

    Returns:
        list of the polygons of the component with the most polygons, in their order in ``faces``.
    """
    rows = np.repeat(np.arange(len(faces)), [len(f) for f in faces])
    cols = np.concatenate([np.asarray(f) for f in faces])
    inc = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(faces), n))
    adj = inc @ inc.T
    _, lab = connected_components(adj, directed=False)
    best = np.bincount(lab).argmax()
    return [f for f, l in zip(faces, lab) if l == best]


def compact_faces(faces, n):
    """Drop the vertices no polygon uses.

    Args:
        faces: list of polygons over ``n`` vertices.
        n: number of vertices.

    Returns:
        ``(keep [K], faces)``: the used vertex ids (sorted) and the polygons renumbered into them.
    """
    keep = np.unique(np.concatenate([np.asarray(f) for f in faces]))
    remap = np.full(n, -1, np.int64)
    remap[keep] = np.arange(len(keep))
    return keep, [tuple(int(remap[v]) for v in f) for f in faces]


# ---------------------------------------------------------------------------- subdivision and smoothing
def catmull_clark(faces, n):
    """One Catmull-Clark step as a linear operator.

    Args:
        faces: list of polygons (vertex id tuples), consistently oriented.
        n: number of vertices.

    Returns:
        (S, new_faces): S is a sparse ``[n + E + F, n]`` matrix giving the new vertices from the old
        ones (old vertices first, then edge points, then face points); new_faces are quads.
    """
    nf = len(faces)
    # face points
    fr, fc, fv = [], [], []
    for i, f in enumerate(faces):
        for v in f:
            fr.append(i)
            fc.append(v)
            fv.append(1.0 / len(f))
    Fp = sp.csr_matrix((fv, (fr, fc)), shape=(nf, n))
    # edges
    a, b, fid = edges_of(faces)
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    key = lo * n + hi
    ukey, inv = np.unique(key, return_inverse=True)
    ne = len(ukey)
    e_lo, e_hi = ukey // n, ukey % n
    e_nf = np.bincount(inv, minlength=ne)
    # edge points
    mid = sp.csr_matrix((np.full(2 * ne, 0.5), (np.r_[np.arange(ne), np.arange(ne)], np.r_[e_lo, e_hi])), shape=(ne, n))
    inc_ef = sp.csr_matrix((np.ones(len(inv)), (inv, fid)), shape=(ne, nf))
    interior = e_nf == 2
    avg_f = sp.diags(np.where(interior, 0.25, 0.0)) @ inc_ef @ Fp
    Ep = sp.diags(np.where(interior, 0.5, 1.0)) @ mid + avg_f
    # vertex points
    bnd_e = ~interior
    val = np.bincount(np.r_[e_lo, e_hi], minlength=n).astype(np.float64)
    nbnd = np.bincount(np.r_[e_lo[bnd_e], e_hi[bnd_e]], minlength=n)
    inc_vf = sp.csr_matrix((np.ones(len(a)), (a, fid)), shape=(n, nf))
    nfv = np.asarray(inc_vf.sum(1)).ravel()
    Q = sp.diags(1.0 / np.maximum(nfv, 1)) @ inc_vf @ Fp
    inc_ve = sp.csr_matrix((np.ones(2 * ne), (np.r_[e_lo, e_hi], np.r_[np.arange(ne), np.arange(ne)])), shape=(n, ne))
    R = sp.diags(1.0 / np.maximum(val, 1)) @ inc_ve @ mid
    is_int = (nbnd == 0) & (val >= 3)
    nval = np.maximum(val, 1)
    Vint = sp.diags(np.where(is_int, 1.0 / nval, 0)) @ (Q + 2 * R) + sp.diags(np.where(is_int, (nval - 3) / nval, 0))
    # boundary vertices with exactly two boundary neighbours: 3/4 v + 1/8 (a + b)
    is_b = nbnd == 2
    bl, bh = e_lo[bnd_e], e_hi[bnd_e]
    Bn = sp.csr_matrix((np.full(2 * len(bl), 0.125), (np.r_[bl, bh], np.r_[bh, bl])), shape=(n, n))
    Vb = sp.diags(np.where(is_b, 0.75, 0)) + sp.diags(is_b.astype(float)) @ Bn
    keep = ~(is_int | is_b)  # corners / non-manifold: keep in place
    Vp = Vint + Vb + sp.diags(keep.astype(float))
    S = sp.vstack([Vp, Ep, Fp]).tocsr()
    # new quads
    eid = {}
    for k, (x, y) in enumerate(zip(e_lo.tolist(), e_hi.tolist())):
        eid[(x, y)] = n + k
    new_faces = []
    for i, f in enumerate(faces):
        m = len(f)
        fp = n + ne + i
        for j in range(m):
            v0, v1, vm = f[j], f[(j + 1) % m], f[j - 1]
            e01 = eid[(min(v0, v1), max(v0, v1))]
            em0 = eid[(min(vm, v0), max(vm, v0))]
            new_faces.append((v0, e01, fp, em0))
    return S, new_faces


def subdivision(faces, n, levels):
    """``levels`` Catmull-Clark steps as one linear operator.

    Args:
        faces: list of polygons over ``n`` vertices.
        n: number of vertices.
        levels: number of steps.

    Returns:
        ``(S, faces, parent)``: ``S`` the sparse ``[N, n]`` operator giving the subdivided vertices,
        the subdivided quads, and ``parent`` (one entry per subdivided quad) the index of the input
        polygon it comes from (a polygon's children are consecutive).
    """
    S = sp.identity(n, format="csr")
    parent = np.arange(len(faces))
    for _ in range(levels):
        parent = np.repeat(parent, [len(f) for f in faces])
        Si, faces = catmull_clark(faces, n)
        S = (Si @ S).tocsr()
        n = Si.shape[0]
    return S, faces, parent


def subdivide_points(polys, points, levels):
    """Catmull-Clark applied ``levels`` times to polygons of their own points (face-varying data,
    e.g. UVs: the seams are the boundaries of the UV polygons).

    Args:
        polys: list of polygons (tuples of indices into ``points``).
        points: ``[T, d]`` values.
        levels: number of steps.

    Returns:
        ``(polys, points)`` subdivided (child polygons and corners ordered as :func:`subdivision`
        orders them).
    """
    for _ in range(levels):
        Su, polys = catmull_clark(polys, len(points))
        points = Su @ points
    return polys, points


def laplacian_smooth(tri, n, values, iterations, weight=0.5):
    """`iterations` steps of uniform Laplacian smoothing of per-vertex `values` ([n] or [n, C])."""
    e = np.concatenate([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]])
    A = sp.csr_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n))
    A = ((A + A.T) > 0).astype(np.float64)
    deg = np.asarray(A.sum(1)).ravel()
    W = (sp.diags(1.0 / np.maximum(deg, 1)) @ A).tocsr()
    out = np.asarray(values, np.float64)
    for _ in range(iterations):
        out = (1 - weight) * out + weight * (W @ out)
    return out


def smooth_outer_boundary(faces, V, iterations=8, weight=0.5):
    """Straighten the staircase of the crop's outer boundary (1-D Laplacian along the loop).

    Only the mean shape's boundary vertices move; the bases are unaffected.
    """
    loop = np.asarray(max(boundary_loops(faces), key=len))
    V = V.copy()
    p = V[loop]
    for _ in range(iterations):
        p = (1 - weight) * p + weight * 0.5 * (np.roll(p, 1, 0) + np.roll(p, -1, 0))
    V[loop] = p
    return V


# ---------------------------------------------------------------------------- cropping and closing holes
def superellipse_crop(V, quads, candidate, a, b, p, centre_y, min_z):
    """The candidate quads inside a superellipse in the frontal projection and in front of a plane.

    A quad is kept when all its corners satisfy ``|x / a|^p + |(y - centre_y) / b|^p <= 1`` and
    ``z >= min_z``; of those, the largest connected component is returned.

    Args:
        V: ``[N, 3]`` vertex positions.
        quads: ``[F, 4]`` vertex ids.
        candidate: ``[F]`` bool, the quads that may be kept.
        a, b, p, centre_y: the superellipse (half width, half height, exponent, centre height).
        min_z: the plane (quads behind it are dropped).

    Returns:
        list of quads (tuples).
    """
    P = V[quads]  # [F, 4, 3]
    se = np.abs(P[..., 0] / a) ** p + np.abs((P[..., 1] - centre_y) / b) ** p
    inside = (se <= 1.0).all(1) & (P[..., 2] >= min_z).all(1)
    faces = [tuple(f) for f in quads[candidate & inside].tolist()]
    faces = largest_component(faces, len(V))
    return faces


def zip_hole(loop, V):
    """Triangles joining the two halves (left corner -> right corner) of a slit-like boundary loop.

    Args:
        loop: vertex ids of a boundary loop, in the faces' winding order.
        V: vertex positions (for x, which orders the chains).

    Returns:
        list of triangles, oriented consistently with the faces around the loop.
    """
    loop = np.asarray(loop)
    x = V[loop, 0]
    i0, i1 = int(np.argmin(x)), int(np.argmax(x))
    roll = np.roll(loop, -i0)
    k1 = int(np.where(roll == loop[i1])[0][0])
    chain_a = roll[: k1 + 1]
    chain_b = np.r_[roll[k1:], roll[:1]][::-1]  # both chains run from the left to the right corner
    strip, ia, ib = [], 0, 0
    while ia < len(chain_a) - 1 or ib < len(chain_b) - 1:
        adv_a = ib >= len(chain_b) - 1 or (
            ia < len(chain_a) - 1 and V[chain_a[ia + 1], 0] <= V[chain_b[ib + 1], 0]
        )
        if adv_a:
            t = (chain_a[ia], chain_a[ia + 1], chain_b[ib])
            ia += 1
        else:
            t = (chain_a[ia], chain_b[ib + 1], chain_b[ib])
            ib += 1
        if len(set(t)) == 3:
            strip.append(tuple(int(v) for v in t))
    # faces around the loop traverse its edges in loop order, so the strip must use them reversed
    nxt = {int(loop[j]): int(loop[(j + 1) % len(loop)]) for j in range(len(loop))}
    flip = any(nxt.get(t[j]) == t[(j + 1) % 3] for t in strip for j in range(3))
    return [(t[0], t[2], t[1]) for t in strip] if flip else strip


def close_holes(faces, V):
    """Close the eye openings and the lip slit (every boundary loop but the outer one).

    Returns:
        (faces, {"mouth": loop, "eye_l": loop, "eye_r": loop}, tags [F]: 0 skin, 1 eye, 2 mouth)
    """
    loops = boundary_loops(faces)
    outer = max(loops, key=len)
    holes = {}
    tags = [0] * len(faces)
    for lp in loops:
        if lp is outer:
            continue
        c = V[lp].mean(0)
        name = "mouth" if abs(c[0]) < 0.1 else ("eye_l" if c[0] > 0 else "eye_r")
        if name in holes:
            raise RuntimeError(f"unexpected boundary loop near {c} in the cropped MakeHuman face")
        holes[name] = lp
        strip = zip_hole(lp, V)
        faces = faces + strip
        tags += [1 if name.startswith("eye") else 2] * len(strip)
    if set(holes) != {"mouth", "eye_l", "eye_r"}:
        raise RuntimeError(f"expected mouth and eye openings in the cropped face, found {sorted(holes)}")
    return faces, holes, np.asarray(tags)
