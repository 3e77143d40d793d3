"""MakeHuman targets for the default face model: reading them, the identity and expression deltas
on the cropped base mesh, and their PCA (see :mod:`pyfaid.facemodel.builder.makehuman`).

A target file lists vertex indices and their displacements (``.target`` text, gzipped or not).
Identity targets are the face modifiers under :data:`ID_GROUPS` plus named phenotype axes from the
adult macrodetails (:func:`macro_axes`); each gets a slider standard deviation (:data:`ID_SIGMA_GROUP`
per folder, :data:`MACRO_SIGMA` for the named axes). Expression targets are ``faceunits01``'s 52
blendshapes. :func:`pca_basis` turns weighted deltas into a basis on the subdivided mesh.
"""

from __future__ import annotations

import gzip
import os
import re

import numpy as np

__all__ = ["ID_GROUPS", "ID_SIGMA_GROUP", "MACRO_SIGMA", "ANTISYM_FACTOR", "read_target", "load_targets",
           "sym_pairs", "macro_axes", "identity_targets", "expression_targets", "pca_basis", "region_weight"]

#: The folders of MakeHuman face modifiers used as identity targets.
ID_GROUPS = ("cheek", "chin", "eyebrows", "eyes", "forehead", "head", "mouth", "nose")
#: Slider standard deviation of the identity targets, per folder.
ID_SIGMA_GROUP = {
    "cheek": 0.2, "chin": 0.2, "eyebrows": 0.2, "eyes": 0.15, "forehead": 0.2, "head": 0.2,
    "mouth": 0.18, "nose": 0.2,
}
#: Standard deviations of the named macrodetails axes (one unit = the full MakeHuman range).
MACRO_SIGMA = {"gender": 0.5, "age": 0.25, "muscle": 0.3, "weight": 0.3, "ethnic": 0.4}
#: Sigma factor of the antisymmetric (``l-r``) combination of a left/right pair.
ANTISYM_FACTOR = 0.3
# identity targets that only move or turn the whole head (the pose absorbs those)
ID_EXCLUDE = re.compile(r"head-trans-|head-angle-")


def read_target(path):
    """MakeHuman target: (vertex indices [K], deltas [K,3])."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt") as fh:
        lines = [ln for ln in fh.read().splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        return np.zeros(0, np.int64), np.zeros((0, 3))
    arr = np.asarray(" ".join(lines).split(), np.float64).reshape(-1, 4)
    return arr[:, 0].astype(np.int64), arr[:, 1:]


def load_targets(paths, keep_base):
    """Deltas ``[len(paths), K, 3]`` of MakeHuman target files on the kept base vertices."""
    K = len(keep_base)
    remap = np.full(int(keep_base.max()) + 1, -1, np.int64)
    remap[keep_base] = np.arange(K)
    raw = np.zeros((len(paths), K, 3))
    for t, f in enumerate(paths):
        i, d = read_target(f)
        ok = i < len(remap)
        r = remap[i[ok]]
        sel = r >= 0
        raw[t, r[sel]] = d[ok][sel]
    return raw


def sym_pairs(names):
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
            out.append((base + ":antisym", [(i, 1.0), (j, -1.0)], ANTISYM_FACTOR))
            used.update((i, j))
        elif "/r-" in n and n.replace("/r-", "/l-") in idx:
            continue  # handled with its left mate
        else:
            out.append((n, [(i, 1.0)], 1.0))
            used.add(i)
    return out


def macro_axes(tdir, keep_base):
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
    E = dict(zip(ek, load_targets([eth[k] for k in ek], keep_base)))
    U = dict(zip(uk, load_targets([uni[k] for k in uk], keep_base)))

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


def identity_targets(data, keep_base):
    """Identity target deltas on the kept base vertices: (names, D [3K, T], sigma [T])."""
    tdir = os.path.join(data, "mpfb2", "targets")
    files, names = [], []
    for g in ID_GROUPS:
        for fn in sorted(os.listdir(os.path.join(tdir, g))):
            if fn.endswith(".target.gz") and not ID_EXCLUDE.search(fn):
                files.append(os.path.join(tdir, g, fn))
                names.append(g + "/" + fn[: -len(".target.gz")])
    raw = load_targets(files, keep_base)
    groups = sym_pairs(names)
    D, sig, gnames = [], [], []
    for gname, members, factor in groups:
        D.append(sum(w * raw[i] for i, w in members))
        sig.append(ID_SIGMA_GROUP[gname.split("/")[0]] * factor * (0.5 if len(members) == 2 else 1.0))
        gnames.append(gname)
    for name, delta in macro_axes(tdir, keep_base).items():
        D.append(delta)
        sig.append(MACRO_SIGMA[name.split("/")[1] if name.split("/")[1] in MACRO_SIGMA else "ethnic"])
        gnames.append(name)
    D = np.stack(D)
    # remove each target's mean translation over the face: the pose's translation absorbs it
    # (the macrodetails also move the head with the body's height)
    D -= D.mean(1, keepdims=True)
    nz = np.abs(D).reshape(len(D), -1).max(1) > 1e-6
    keep = [g for g, z in zip(gnames, nz) if z]
    return keep, D[nz].reshape(int(nz.sum()), -1).T, np.asarray(sig)[nz]


def expression_targets(data, keep_base):
    """The 52 ``faceunits01`` blendshape deltas on the kept base vertices: (names, D [3K, 52])."""
    fdir = os.path.join(data, "faceunits01", "targets", "faceunits")
    files = sorted(f for f in os.listdir(fdir) if f.endswith(".target"))
    if len(files) != 52:
        raise RuntimeError(f"expected 52 expression targets in {fdir}, found {len(files)}")
    D = load_targets([os.path.join(fdir, f) for f in files], keep_base)
    return [f[: -len(".target")] for f in files], D.reshape(len(files), -1).T


def pca_basis(D, sigma, n_keep, S, rel_tol=1e-4):
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
    Vk = evecs[:, :k]
    # deterministic signs: the largest-magnitude entry of each column is positive
    Vk = Vk * np.sign(Vk[np.abs(Vk).argmax(0), np.arange(k)])
    basis = (S @ (Dw @ Vk).reshape(K, 3 * k)).reshape(-1, k)  # = U_k s_k on the final mesh
    from_target = Vk.T / sigma[None, :]  # [k, T]: slider values -> coefficients
    to_target = Vk * sigma[:, None]  # [T, k]: coefficients -> minimum-norm slider values
    return basis, from_target, to_target


def region_weight(data, names_glob, keep_base):
    """Per kept base vertex: normalised magnitude of the deltas of the given targets."""
    tdir = os.path.join(data, "mpfb2", "targets")
    D = load_targets([os.path.join(tdir, rel + ".target.gz") for rel in names_glob], keep_base)
    w = np.linalg.norm(D, axis=2).max(0)
    if w.max() > 0:
        w = w / w.max()
    return w
