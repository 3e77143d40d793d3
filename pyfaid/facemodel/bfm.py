"""Loader for the Basel Face Model 2009 in Deep3DFaceRecon's formats (user-supplied files).

Two inputs are understood:

``BFM_model_front.mat``
    The converted front-face model (35,709 vertices) used by Deep3DFaceRecon: ``meanshape``
    ``[1, 3V]``, ``idBase`` ``[3V, 80]``, ``exBase`` ``[3V, 64]``, ``meantex`` ``[1, 3V]`` (0..255),
    ``texBase`` ``[3V, 80]`` (0..255 scale), ``tri`` ``[F, 3]`` and ``keypoints`` ``[68]`` (1-based),
    optionally ``frontmask2_idx`` (1-based, the photometric-loss region -> ``face_mask``) and
    ``skinmask`` (-> ``labels["skin_mask"]``).
The original files, converted here as Deep3DFaceRecon does
    ``01_MorphableModel.mat`` (``shapeMU shapePC shapeEV texMU texPC texEV``), ``Exp_Pca.bin``
    (FaceWarehouse expression PCA from Guo et al.: int32 ``n``, float32 mean ``[3N]``, float32
    components ``[n, 3N]``, little-endian), ``std_exp.txt`` (``n`` standard deviations),
    ``BFM_exp_idx.mat`` (``trimIndex``: the 53,215 BFM vertices the expression model covers,
    1-based), ``BFM_front_idx.mat`` (``idx``: the 35,709 front-face vertices among those, 1-based)
    and ``facemodel_info.mat`` (``tri``, ``keypoints``, ``frontmask2_idx``, ``skinmask``).
    Bases are scaled by their standard deviations; shapes go from micrometres to decimetres
    (``/ 1e5``); 80 identity, 64 expression and 80 albedo components are kept.

In both cases the mean shape is centred (vertex mean at the origin, Deep3DFaceRecon's
``recenter``) and albedo is divided by 255 so that it lies in [0, 1] (a file whose ``meantex`` is
already below 2 is taken to be in [0, 1] already).

UV layout: the BFM files carry no texture coordinates, so one is generated once at load time from
the mean shape, :func:`pyfaid.facemodel.uv.cylindrical_layout`: a cylindrical unwrap about the
vertical axis through the face's own curvature (least-squares circle of the vertices seen from
above), ``u`` the arc length around it and ``v`` the height, at equal texel density along both,
scaled into the unit square. The front face spans well under 360 degrees, so the layout is one
island without seams; the steep sides of the nose and the cheeks toward the ears get fewer
texels than surfaces facing the cylinder's axis.
"""

from __future__ import annotations

import os

import numpy as np
from scipy.io import loadmat

from .model import MorphableModel
from .uv import cylindrical_layout

__all__ = ["load", "load_front_mat", "convert_bfm09", "read_exp_pca"]

_FRONT = "BFM_model_front.mat"
_RAW_FILES = ("01_MorphableModel.mat", "Exp_Pca.bin", "std_exp.txt", "BFM_exp_idx.mat", "BFM_front_idx.mat", "facemodel_info.mat")
_N_ID, _N_EXP, _N_TEX = 80, 64, 80


def _loadmat(path):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"missing BFM file: {path}")
    try:
        return loadmat(path)
    except Exception as exc:
        raise ValueError(f"{path}: cannot read as a MATLAB .mat file ({exc})") from exc


def _field(mat, name, path, ndim=None, cols=None):
    if name not in mat:
        fields = sorted(k for k in mat if not k.startswith("__"))
        raise ValueError(f"{path}: missing field '{name}' (found: {', '.join(fields) or 'none'})")
    a = np.asarray(mat[name])
    if a.dtype.kind not in "fiub" or a.size == 0:
        raise ValueError(f"{path}: field '{name}' must be a non-empty numeric array, got dtype {a.dtype}, shape {a.shape}")
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{path}: field '{name}' must be {ndim}-D, got shape {a.shape}")
    if cols is not None and a.shape[1] != cols:
        raise ValueError(f"{path}: field '{name}' must have {cols} columns, got shape {a.shape}")
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        raise ValueError(f"{path}: field '{name}' contains non-finite values")
    return a


def _index(mat, name, path, n, one_based=True):
    a = _field(mat, name, path).reshape(-1).astype(np.float64)
    if not np.all(a == np.round(a)):
        raise ValueError(f"{path}: field '{name}' must hold integer indices")
    a = a.astype(np.int64) - (1 if one_based else 0)
    if a.min() < 0 or a.max() >= n:
        raise ValueError(f"{path}: field '{name}' has indices outside [1, {n}]")
    return a


def _triangles(mat, path, n):
    t = _field(mat, "tri", path, ndim=2, cols=3).astype(np.float64)
    if not np.all(t == np.round(t)):
        raise ValueError(f"{path}: field 'tri' must hold integer vertex indices")
    t = t.astype(np.int64) - 1
    if t.min() < 0 or t.max() >= n:
        raise ValueError(f"{path}: field 'tri' has indices outside [1, {n}] (1-based)")
    return t


def _albedo_scale(meantex):
    return 255.0 if float(np.max(meantex)) > 2.0 else 1.0


def _finish(mean, id_base, exp_base, mean_tex, tex_base, tri, keypoints, front_idx, skin, meta):
    mean = mean - mean.mean(0, keepdims=True)  # Deep3DFaceRecon's recenter
    nv = len(mean)
    mask = np.ones(nv, bool)
    if front_idx is not None:
        mask = np.zeros(nv, bool)
        mask[front_idx] = True
    labels = {}
    if skin is not None:
        labels["skin_mask"] = skin

    uv, uv_faces = cylindrical_layout(mean, tri)  # generated once (see the module docs)
    return MorphableModel(
        mean_shape=mean, id_base=id_base, exp_base=exp_base, mean_tex=mean_tex, tex_base=tex_base,
        triangles=tri, landmark_idx=keypoints, face_mask=mask, meta=meta, labels=labels,
        uv=uv, uv_faces=uv_faces,
    )


def load_front_mat(path: str) -> MorphableModel:
    """Read a converted ``BFM_model_front.mat`` (Deep3DFaceRecon's format, see module docs).

    Args:
        path: the ``.mat`` file.

    Returns:
        MorphableModel
    """
    mat = _loadmat(path)
    mean = _field(mat, "meanshape", path).astype(np.float64).reshape(-1)
    if mean.size % 3:
        raise ValueError(f"{path}: field 'meanshape' must hold 3V numbers, got {mean.size}")
    nv = mean.size // 3
    bases = {}
    for name, cap in (("idBase", _N_ID), ("exBase", _N_EXP), ("texBase", _N_TEX)):
        b = _field(mat, name, path, ndim=2)
        if b.shape[0] != 3 * nv:
            raise ValueError(f"{path}: field '{name}' must have 3V = {3 * nv} rows, got shape {b.shape}")
        bases[name] = b[:, :cap].astype(np.float64)
    tex = _field(mat, "meantex", path).astype(np.float64).reshape(-1)
    if tex.size != 3 * nv:
        raise ValueError(f"{path}: field 'meantex' must hold 3V = {3 * nv} numbers, got {tex.size}")
    scale = _albedo_scale(tex)
    tri = _triangles(mat, path, nv)
    kp = _index(mat, "keypoints", path, nv)
    if kp.size != 68:
        raise ValueError(f"{path}: field 'keypoints' must hold 68 indices, got {kp.size}")
    front = _index(mat, "frontmask2_idx", path, nv) if "frontmask2_idx" in mat else None
    skin = None
    if "skinmask" in mat:
        skin = _field(mat, "skinmask", path).reshape(-1)
        if skin.size != nv:
            raise ValueError(f"{path}: field 'skinmask' must hold V = {nv} entries, got {skin.size}")
        skin = skin > 0
    meta = {"name": "bfm09_front", "source": os.path.abspath(path), "version": "BFM_model_front.mat"}
    return _finish(
        mean.reshape(nv, 3), bases["idBase"], bases["exBase"], tex.reshape(nv, 3) / scale,
        bases["texBase"] / scale, tri, kp, front, skin, meta,
    )


def read_exp_pca(path: str):
    """Read ``Exp_Pca.bin``: int32 ``n``, float32 mean ``[3N]``, float32 components ``[n, 3N]``.

    The vertex count ``N`` (53,215 in the original file) is inferred from the file size.

    Returns:
        (mean ``[3N]``, components ``[3N, n]``) as float32 arrays.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"missing BFM file: {path}")
    size = os.path.getsize(path)
    with open(path, "rb") as fh:
        head = np.fromfile(fh, dtype="<i4", count=1)
        if head.size != 1 or head[0] <= 0:
            raise ValueError(f"{path}: malformed Exp_Pca.bin (bad component count header)")
        n = int(head[0])
        body = size - 4
        if body <= 0 or body % (4 * (n + 1)) or (body // (4 * (n + 1))) % 3:
            raise ValueError(
                f"{path}: malformed Exp_Pca.bin ({size} bytes do not fit an int32 count {n} + float32 "
                "mean [3N] + float32 components [n, 3N])"
            )
        m = body // (4 * (n + 1))
        data = np.fromfile(fh, dtype="<f4", count=m * (n + 1))
    if data.size != m * (n + 1):
        raise ValueError(f"{path}: truncated Exp_Pca.bin")
    return data[:m], data[m:].reshape(n, m).T


def convert_bfm09(folder: str) -> MorphableModel:
    """Convert the original BFM 2009 files + expression basis to the front-face model.

    Follows Deep3DFaceRecon's conversion (its ``util/load_mats.py``): the same vertex selection,
    scaling and component counts (see the module docs for the files and fields).

    Args:
        folder: folder holding the files.

    Returns:
        MorphableModel
    """
    missing = [f for f in _RAW_FILES if not os.path.isfile(os.path.join(folder, f))]
    if missing:
        raise FileNotFoundError(f"BFM folder {folder} lacks: {', '.join(missing)}")
    p_mm = os.path.join(folder, "01_MorphableModel.mat")
    mm = _loadmat(p_mm)
    shape_mu = _field(mm, "shapeMU", p_mm).astype(np.float64).reshape(-1)
    if shape_mu.size % 3:
        raise ValueError(f"{p_mm}: field 'shapeMU' must hold 3N numbers, got {shape_mu.size}")
    n_full = shape_mu.size // 3
    shape_pc = _field(mm, "shapePC", p_mm, ndim=2)
    tex_pc = _field(mm, "texPC", p_mm, ndim=2)
    tex_mu = _field(mm, "texMU", p_mm).astype(np.float64).reshape(-1)
    for name, a in (("shapePC", shape_pc), ("texPC", tex_pc)):
        if a.shape[0] != 3 * n_full:
            raise ValueError(f"{p_mm}: field '{name}' must have 3N = {3 * n_full} rows, got shape {a.shape}")
    if tex_mu.size != 3 * n_full:
        raise ValueError(f"{p_mm}: field 'texMU' must hold 3N = {3 * n_full} numbers, got {tex_mu.size}")
    shape_ev = _field(mm, "shapeEV", p_mm).astype(np.float64).reshape(-1)
    tex_ev = _field(mm, "texEV", p_mm).astype(np.float64).reshape(-1)
    for name, ev, pc in (("shapeEV", shape_ev, shape_pc), ("texEV", tex_ev, tex_pc)):
        if ev.size != pc.shape[1]:
            raise ValueError(f"{p_mm}: field '{name}' must hold one value per component ({pc.shape[1]}), got {ev.size}")

    exp_mu, exp_pc = read_exp_pca(os.path.join(folder, "Exp_Pca.bin"))
    p_std = os.path.join(folder, "std_exp.txt")
    try:
        exp_ev = np.loadtxt(p_std, dtype=np.float64).reshape(-1)
    except Exception as exc:
        raise ValueError(f"{p_std}: cannot read the expression standard deviations ({exc})") from exc
    if exp_ev.size != exp_pc.shape[1]:
        raise ValueError(f"{p_std}: holds {exp_ev.size} values but Exp_Pca.bin has {exp_pc.shape[1]} components")
    n_exp_verts = exp_pc.shape[0] // 3

    p_ei = os.path.join(folder, "BFM_exp_idx.mat")
    trim = _index(_loadmat(p_ei), "trimIndex", p_ei, n_full)
    if trim.size != n_exp_verts:
        raise ValueError(f"{p_ei}: 'trimIndex' has {trim.size} entries but Exp_Pca.bin covers {n_exp_verts} vertices")
    p_fi = os.path.join(folder, "BFM_front_idx.mat")
    front_exp = _index(_loadmat(p_fi), "idx", p_fi, n_exp_verts)  # front vertices among expression vertices
    front_shape = trim[front_exp]  # the same vertices among the full BFM's
    nv = front_exp.size

    def rows(idx):  # vertex ids -> row ids of a [3N, k] basis
        return (3 * idx[:, None] + np.arange(3)[None, :]).reshape(-1)

    r_shape, r_exp = rows(front_shape), rows(front_exp)
    k_id, k_exp, k_tex = min(_N_ID, shape_pc.shape[1]), min(_N_EXP, exp_pc.shape[1]), min(_N_TEX, tex_pc.shape[1])
    id_base = shape_pc[r_shape, :k_id].astype(np.float64) * shape_ev[None, :k_id] / 1e5
    exp_base = exp_pc[r_exp, :k_exp].astype(np.float64) * exp_ev[None, :k_exp] / 1e5
    scale = _albedo_scale(tex_mu)
    tex_base = tex_pc[r_shape, :k_tex].astype(np.float64) * tex_ev[None, :k_tex] / scale
    mean = shape_mu[r_shape].reshape(nv, 3) / 1e5
    mean_tex = tex_mu[r_shape].reshape(nv, 3) / scale

    p_info = os.path.join(folder, "facemodel_info.mat")
    info = _loadmat(p_info)
    tri = _triangles(info, p_info, nv)
    kp = _index(info, "keypoints", p_info, nv)
    if kp.size != 68:
        raise ValueError(f"{p_info}: field 'keypoints' must hold 68 indices, got {kp.size}")
    front = _index(info, "frontmask2_idx", p_info, nv)
    skin = _field(info, "skinmask", p_info).reshape(-1)
    if skin.size != nv:
        raise ValueError(f"{p_info}: field 'skinmask' must hold V = {nv} entries, got {skin.size}")
    meta = {"name": "bfm09_front", "source": os.path.abspath(folder), "version": "converted from 01_MorphableModel.mat"}
    return _finish(mean, id_base, exp_base, mean_tex, tex_base, tri, kp, front, skin > 0, meta)


def load(path: str) -> MorphableModel:
    """Load the BFM from a file or folder.

    Args:
        path: a ``BFM_model_front.mat``; ``01_MorphableModel.mat`` (its folder must hold the other
            files); or a folder holding either ``BFM_model_front.mat`` (preferred) or the original
            files (see the module docs).

    Returns:
        MorphableModel
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        front = os.path.join(path, _FRONT)
        return load_front_mat(front) if os.path.isfile(front) else convert_bfm09(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"BFM file or folder not found: {path}")
    if os.path.basename(path) == "01_MorphableModel.mat":
        return convert_bfm09(os.path.dirname(os.path.abspath(path)))
    if path.endswith(".mat"):
        return load_front_mat(path)
    raise ValueError(
        f"{path}: not a BFM model (expected BFM_model_front.mat, 01_MorphableModel.mat or a folder with the BFM files)"
    )
