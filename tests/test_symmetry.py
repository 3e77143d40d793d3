"""pyfaid.facemodel.symmetry: left-right mirror pairs of a mesh's vertices (a mirrored mesh maps onto
itself, a moved mirror plane is followed, the default face model is symmetric)."""

import numpy as np
import pytest
import torch

from pyfaid.facemodel.symmetry import mirror_pairs
from pyfaid.reconstruct.predict import default_face_model


def _mirrored_mesh(seed: int = 0):
    """A random half surface (x > 0) glued to its mirror image, vertices shuffled: ``(vertices [V, 3],
    triangles [F, 3], mirror [V])`` with the true mirror partner of every vertex."""
    import trimesh

    rng = np.random.default_rng(seed)
    half = trimesh.creation.icosphere(subdivisions=2)
    v = np.asarray(half.vertices)
    keep = v[:, 0] > 0.05
    idx = -np.ones(len(v), int)
    idx[keep] = np.arange(keep.sum())
    tri = np.asarray(half.faces)
    tri = idx[tri[keep[tri].all(1)]]
    hv = v[keep] * [1.0, 1.3, 0.8] + rng.normal(0, 0.01, (keep.sum(), 3))  # not a sphere, not symmetric itself
    n = len(hv)
    mid = np.stack([np.zeros(8), np.linspace(-0.5, 0.5, 8), np.full(8, 0.9)], 1)  # on the plane: self-partners
    verts = np.concatenate([hv, hv * [-1.0, 1.0, 1.0], mid])
    tris = np.concatenate([tri, tri[:, ::-1] + n])
    mirror = np.concatenate([np.arange(n) + n, np.arange(n), 2 * n + np.arange(8)])
    perm = rng.permutation(len(verts))  # vertex i of the shuffled mesh is old vertex perm[i]
    inv = np.argsort(perm)
    return verts[perm], inv[tris], inv[mirror[perm]]


def test_mirror_pairs_of_a_mirrored_mesh_map_it_onto_itself():
    verts, tris, truth = _mirrored_mesh()
    m = mirror_pairs(torch.tensor(verts), torch.tensor(tris)).numpy()
    np.testing.assert_array_equal(m, truth)
    assert (m[m] == np.arange(len(m))).all()  # an involution
    mapped = {tuple(sorted(t)) for t in m[tris]}  # triangles map onto triangles
    assert mapped == {tuple(sorted(t)) for t in tris}


def test_mirror_pairs_follow_a_moved_plane_and_leave_unpaired_vertices():
    verts, tris, truth = _mirrored_mesh(1)
    a = np.radians(4.0)  # the mesh turned 4 degrees about y and moved: the plane is no longer x = 0
    rot = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    moved = verts @ rot.T + [0.3, -0.2, 0.1]
    lone = np.concatenate([moved, [[2.0, 0.0, 0.0]]])  # a vertex with nothing at its mirror image
    m = mirror_pairs(torch.tensor(lone), torch.tensor(tris)).numpy()
    np.testing.assert_array_equal(m[:-1], truth)
    assert m[-1] == -1
    with pytest.raises(ValueError, match="vertices"):
        mirror_pairs(torch.zeros(4, 2), torch.tensor(tris))


def test_default_model_is_left_right_symmetric():
    fm = default_face_model("cpu")
    m = fm.mirror_idx
    assert m.shape == (fm.num_vertices,) and "mirror_idx" not in fm.state_dict()
    paired = m >= 0
    assert paired.float().mean() > 0.99
    x = fm.mean_shape[:, 0]
    # partners sit across the plane, nearly every pair both ways, and triangles map onto triangles
    assert float((x[paired] + x[m[paired]] - 2 * x.median()).abs().quantile(0.99)) < 0.005
    assert float((m[m[paired]] == torch.nonzero(paired).flatten()).float().mean()) > 0.98
    tri = fm.triangles.long()
    both = (m[tri] >= 0).all(1)
    mapped = torch.sort(m[tri[both]], 1).values
    have = set(map(tuple, torch.sort(tri, 1).values.tolist()))
    assert np.mean([tuple(t) in have for t in mapped.tolist()]) > 0.97
