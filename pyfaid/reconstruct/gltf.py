"""Morph targets, animation and a camera in binary glTF (``.glb``) files, with ``pygltflib``.

trimesh writes the textured mesh (:func:`pyfaid.reconstruct.export.textured_mesh`); these functions
take its bytes and add what trimesh does not write:

* :func:`add_morph_targets`: named morph targets (blendshapes) on the mesh, with their weights
  set, as Blender (shape keys), three.js (``morphTargetDictionary``) and Unity read them: the
  names go to ``mesh.extras.targetNames``, the de-facto convention of glTF exporters. Targets are
  sparse accessors (only the vertices a target moves are stored), so 52 face units add a few
  megabytes rather than twenty.
* :func:`add_animation`: keyframes of the morph weights and of the head's rotation and
  translation (linear interpolation; rotations as quaternions), on a ``head`` node made the
  parent of the mesh's node.
* :func:`add_camera`: a perspective camera at the origin looking down -z (glTF's camera
  convention, which is also the face models' camera frame: x right, y up).
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import pygltflib as gl

__all__ = ["add_morph_targets", "add_animation", "add_camera", "morph_target_names"]

_FLOAT = gl.FLOAT  # 5126
_UINT16, _UINT32 = gl.UNSIGNED_SHORT, gl.UNSIGNED_INT


def _load(glb: bytes) -> tuple:
    g = gl.GLTF2.load_from_bytes(bytes(glb))
    blob = bytearray(g.binary_blob() or b"")
    if len(g.buffers) != 1:
        raise ValueError(f"expected a .glb with one buffer, got {len(g.buffers)}")
    return g, blob


def _save(g, blob: bytearray) -> bytes:
    g.buffers[0].byteLength = len(blob)
    g.set_binary_blob(bytes(blob))
    return b"".join(g.save_to_bytes())


def _view(g, blob: bytearray, data: np.ndarray) -> int:
    """Append ``data`` (4-byte aligned) to the binary chunk as a new buffer view; its index."""
    blob.extend(b"\0" * (-len(blob) % 4))
    raw = np.ascontiguousarray(data).tobytes()
    g.bufferViews.append(gl.BufferView(buffer=0, byteOffset=len(blob), byteLength=len(raw)))
    blob.extend(raw)
    return len(g.bufferViews) - 1


def _accessor(g, blob, data: np.ndarray, kind: str, minmax: bool = False) -> int:
    """A dense float accessor (``kind`` ``SCALAR``, ``VEC3`` or ``VEC4``) over new data."""
    data = np.asarray(data, np.float32)
    acc = gl.Accessor(bufferView=_view(g, blob, data), componentType=_FLOAT, count=int(data.shape[0]), type=kind)
    if minmax:
        flat = data.reshape(data.shape[0], -1)
        acc.min, acc.max = flat.min(0).tolist(), flat.max(0).tolist()
    g.accessors.append(acc)
    return len(g.accessors) - 1


def _sparse_vec3(g, blob, values: np.ndarray, tol: float) -> int:
    """A VEC3 accessor of ``values [N, 3]`` storing only the rows with a component above ``tol``
    (all zeros: an accessor with no data, which glTF defines as zeros)."""
    values = np.asarray(values, np.float32)
    n = values.shape[0]
    rows = np.flatnonzero(np.abs(values).max(1) > tol)
    kept = np.where(np.isin(np.arange(n), rows)[:, None], values, 0.0)
    acc = gl.Accessor(componentType=_FLOAT, count=n, type=gl.VEC3, min=kept.min(0).tolist(), max=kept.max(0).tolist())
    if rows.size:
        index_type, dtype = (_UINT16, np.uint16) if n <= 65535 else (_UINT32, np.uint32)
        acc.sparse = gl.Sparse(
            count=int(rows.size),
            indices=gl.AccessorSparseIndices(bufferView=_view(g, blob, rows.astype(dtype)), componentType=index_type),
            values=gl.AccessorSparseValues(bufferView=_view(g, blob, values[rows])))
    g.accessors.append(acc)
    return len(g.accessors) - 1


def add_morph_targets(glb: bytes, deltas: np.ndarray, names: Sequence[str], weights=None, mesh: int = 0,
                      tol: float = 1e-6) -> bytes:
    """Add named morph targets (position offsets) to every primitive of one mesh of a ``.glb``.

    Args:
        glb: the file's bytes.
        deltas: ``[K, N, 3]`` position offsets per target, in the file's units, one row per vertex
            of the mesh's primitive(s) (in the primitive's vertex order).
        names: ``K`` target names (written to ``mesh.extras.targetNames``).
        weights: ``[K]`` default weights (the mesh's ``weights``; zeros when None).
        mesh: index of the mesh.
        tol: offsets whose components are all at most this are not stored (exactly zero in the file).

    Returns:
        the new file's bytes.
    """
    g, blob = _load(glb)
    deltas = np.asarray(deltas, np.float32)
    if deltas.ndim != 3 or deltas.shape[2] != 3 or deltas.shape[0] != len(names):
        raise ValueError(f"deltas must be [K, N, 3] with K = {len(names)} names, got {deltas.shape}")
    if not 0 <= mesh < len(g.meshes):
        raise ValueError(f"the file has {len(g.meshes)} mesh(es); no mesh {mesh}")
    w = np.zeros(len(names)) if weights is None else np.asarray(weights, np.float64).reshape(-1)
    if w.shape[0] != len(names):
        raise ValueError(f"expected {len(names)} weights, got {w.shape[0]}")
    targets = None
    for prim in g.meshes[mesh].primitives:
        n = g.accessors[prim.attributes.POSITION].count
        if n != deltas.shape[1]:
            raise ValueError(f"the mesh's primitive has {n} vertices but the deltas have {deltas.shape[1]}")
        if targets is None:  # primitives with the same vertices share the target accessors
            targets = [_sparse_vec3(g, blob, d, tol) for d in deltas]
        prim.targets = [gl.Attributes(POSITION=a) for a in targets]
    m = g.meshes[mesh]
    m.weights = [float(x) for x in w]
    m.extras = dict(m.extras or {}, targetNames=[str(x) for x in names])
    return _save(g, blob)


def morph_target_names(glb: bytes, mesh: int = 0) -> list:
    """The target names a ``.glb``'s mesh declares (``mesh.extras.targetNames``; [] when none)."""
    g = gl.GLTF2.load_from_bytes(bytes(glb))
    return list((g.meshes[mesh].extras or {}).get("targetNames", []))


def _mesh_node(g, mesh: int) -> int:
    for i, node in enumerate(g.nodes):
        if node.mesh == mesh:
            return i
    raise ValueError(f"no node shows mesh {mesh}")


def add_animation(glb: bytes, times: np.ndarray, weights: Optional[np.ndarray] = None,
                  rotations: Optional[np.ndarray] = None, translations: Optional[np.ndarray] = None,
                  mesh: int = 0, name: str = "face") -> bytes:
    """Add one animation: morph weights on the mesh's node and the head's rotation and translation
    on a new ``head`` node that becomes the parent of the mesh's node (so any transform the mesh's
    node has stays as it is, under the animated one).

    Args:
        glb: the file's bytes (with morph targets on ``mesh`` when ``weights`` are given).
        times: ``[T]`` seconds, increasing.
        weights: ``[T, K]`` morph weights per keyframe (K = the mesh's targets), or None.
        rotations: ``[T, 4]`` unit quaternions ``(x, y, z, w)`` (glTF order), or None.
        translations: ``[T, 3]`` in the file's units, or None.
        mesh: the animated mesh.
        name: the animation's name.

    Returns:
        the new file's bytes.
    """
    g, blob = _load(glb)
    t = np.asarray(times, np.float32).reshape(-1)
    if t.size == 0 or (np.diff(t) <= 0).any():
        raise ValueError("times must be a non-empty increasing sequence")
    node = _mesh_node(g, mesh)
    head = gl.Node(name="head", children=[node])
    g.nodes.append(head)
    head_i = len(g.nodes) - 1
    for scene in g.scenes:  # the head node takes the mesh node's place among the roots
        scene.nodes = [head_i if n == node else n for n in scene.nodes]
    for other in g.nodes[:-1]:
        if other.children and node in other.children:
            other.children = [head_i if c == node else c for c in other.children]
    anim = gl.Animation(name=name, samplers=[], channels=[])
    t_acc = _accessor(g, blob, t, gl.SCALAR, minmax=True)

    def channel(values, kind, target_node, path):
        out = _accessor(g, blob, values, kind)
        anim.samplers.append(gl.AnimationSampler(input=t_acc, output=out, interpolation="LINEAR"))
        anim.channels.append(gl.AnimationChannel(sampler=len(anim.samplers) - 1,
                                                 target=gl.AnimationChannelTarget(node=target_node, path=path)))

    if weights is not None:
        w = np.asarray(weights, np.float32)
        k = len(g.meshes[mesh].weights or [])
        if w.shape != (t.size, k):
            raise ValueError(f"weights must be [T, K] = [{t.size}, {k}] (the mesh's morph targets), got {w.shape}")
        channel(w.reshape(-1), gl.SCALAR, node, "weights")
    if rotations is not None:
        q = np.asarray(rotations, np.float64)
        if q.shape != (t.size, 4):
            raise ValueError(f"rotations must be [T, 4] quaternions, got {q.shape}")
        channel(q / np.linalg.norm(q, axis=1, keepdims=True), gl.VEC4, head_i, "rotation")
        head.rotation = [float(x) for x in q[0] / np.linalg.norm(q[0])]
    if translations is not None:
        p = np.asarray(translations, np.float32)
        if p.shape != (t.size, 3):
            raise ValueError(f"translations must be [T, 3], got {p.shape}")
        channel(p, gl.VEC3, head_i, "translation")
        head.translation = [float(x) for x in p[0]]
    if not anim.channels:
        raise ValueError("nothing to animate: give weights, rotations or translations")
    g.animations.append(anim)
    return _save(g, blob)


def add_camera(glb: bytes, yfov: float, aspect: float, znear: float = 0.01, zfar: Optional[float] = None,
               name: str = "camera") -> bytes:
    """Add a perspective camera at the origin looking down -z (y up) as a root node.

    Args:
        glb: the file's bytes.
        yfov: vertical field of view in radians.
        aspect: width / height.
        znear, zfar: clip distances in the file's units (zfar None: infinite).
    """
    g, blob = _load(glb)
    g.cameras.append(gl.Camera(type="perspective", name=name, perspective=gl.Perspective(
        yfov=float(yfov), aspectRatio=float(aspect), znear=float(znear), zfar=None if zfar is None else float(zfar))))
    g.nodes.append(gl.Node(name=name, camera=len(g.cameras) - 1))
    for scene in g.scenes:
        scene.nodes = list(scene.nodes) + [len(g.nodes) - 1]
    return _save(g, blob)
