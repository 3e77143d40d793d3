"""Left-right mirror pairs of a face mesh's vertices.

Faces are close to mirror-symmetric, and so are morphable face models built on a symmetric template:
pyfaid's default model (MakeHuman's base mesh is modelled symmetric; its mirror pairs lie within
1e-4 model units of each other's reflection for 99 % of the vertices) and the Basel Face Model
(registered to a symmetric reference; its mean shape is symmetric to within a fraction of its
vertex spacing, which is what the tolerance below accepts). :func:`mirror_pairs` finds, for every
vertex of a mesh, the vertex at its mirror image: the mesh is reflected across its symmetry plane
(first the plane ``x = median(x)`` of the model's frame, x to the face's right; then refined by a
few rigid ICP steps, so a model whose plane is slightly off its axis pairs the same), and each
reflected vertex is matched to the nearest vertex within a tolerance of the mesh's own vertex
spacing. Vertices with no vertex at their mirror image (an asymmetric detail) get no partner (-1).

:class:`~pyfaid.facemodel.MorphableModel` builds the map once, from its mean shape, when it is
constructed (``mirror_idx``, a non-persistent buffer that moves with the model).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial import cKDTree

__all__ = ["mirror_pairs", "MIRROR_TOLERANCE"]

#: A reflected vertex pairs with the nearest vertex closer than this share of the mesh's median edge
#: length (farther: no partner).
MIRROR_TOLERANCE = 0.5

_ICP_STEPS = 4


def _kabsch(src: np.ndarray, dst: np.ndarray) -> tuple:
    """Rotation ``R`` and translation ``t`` minimising ``|src @ R.T + t - dst|``."""
    cs, cd = src.mean(0), dst.mean(0)
    u, _, vt = np.linalg.svd((src - cs).T @ (dst - cd))
    d = np.sign(np.linalg.det(vt.T @ u.T))
    rot = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
    return rot, cd - cs @ rot.T


def _median_edge(vertices: np.ndarray, triangles: np.ndarray) -> float:
    e = np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]])
    lengths = np.linalg.norm(vertices[e[:, 0]] - vertices[e[:, 1]], axis=1)
    lengths = lengths[lengths > 0]
    if lengths.size == 0:
        raise ValueError("mirror_pairs: the mesh has no edge of positive length")
    return float(np.median(lengths))


def mirror_pairs(vertices, triangles, tolerance: float = MIRROR_TOLERANCE) -> torch.Tensor:
    """The mirror partner of every vertex of a roughly left-right symmetric mesh.

    Args:
        vertices: ``[V, 3]`` positions (x across the face: the mirror plane is near ``x = const``).
        triangles: ``[F, 3]`` vertex indices (sets the tolerance's scale: the median edge length).
        tolerance: accept a partner closer than this times the median edge length to the vertex's
            reflection.

    Returns:
        ``[V]`` int64: the partner's index, the vertex itself on the mirror plane, -1 where no vertex
        lies at the reflection. An exactly mirror-symmetric mesh gives an involution
        (``m[m] == arange(V)``).

    Raises:
        ValueError: misshapen or non-finite vertices, or a mesh without edges.
    """
    x = np.asarray(torch.as_tensor(vertices).detach().cpu().double())
    if x.ndim != 2 or x.shape[1] != 3 or len(x) < 1:
        raise ValueError(f"mirror_pairs: `vertices` must be [V, 3], got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("mirror_pairs: `vertices` holds non-finite values")
    tri = np.asarray(torch.as_tensor(triangles).detach().cpu().long())
    tol = float(tolerance) * _median_edge(x, tri)
    tree = cKDTree(x)
    refl = x * np.array([-1.0, 1.0, 1.0])
    refl[:, 0] += 2.0 * np.median(x[:, 0])  # across the plane x = median(x)
    for _ in range(_ICP_STEPS):  # refine the plane: the rigid motion taking the reflection onto the mesh
        d, idx = tree.query(refl)
        near = d <= max(np.quantile(d, 0.9), tol)  # the symmetric bulk, not the asymmetric details
        if near.sum() < 3:
            break
        rot, t = _kabsch(refl[near], x[idx[near]])
        refl = refl @ rot.T + t
    d, idx = tree.query(refl)
    return torch.from_numpy(np.where(d <= tol, idx, -1).astype(np.int64))
