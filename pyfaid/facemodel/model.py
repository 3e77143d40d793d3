"""Linear morphable face model (3DMM) as a ``torch.nn.Module``.

``S = mean_shape + id_base @ a + exp_base @ b`` and ``T = mean_tex + tex_base @ d``. The model
describes its own coefficient vector (:attr:`MorphableModel.layout`, a
:class:`~pyfaid.facemodel.layout.CoeffLayout` in Deep3DFaceRecon's order: 257 numbers for BFM).
"""

from __future__ import annotations

import os
from typing import Optional

import numpy as np
import torch
from torch import nn

from pyfaid.fileio import savez_atomic
from pyfaid.render.bake import UVAtlas, size_of
from pyfaid.render.camera import euler_rotation
from pyfaid.render.mesh import FaceMesh, RestShape, UVTexture, pose_mesh
from pyfaid.render.topology import MeshTopology

from .layout import CoeffLayout
from .symmetry import mirror_pairs
from .uv import check_layout, cylindrical_layout

__all__ = ["MorphableModel"]

_BUFFERS = ("mean_shape", "id_base", "exp_base", "mean_tex", "tex_base", "triangles", "landmark_idx", "face_mask")


class MorphableModel(nn.Module):
    """A linear 3D morphable face model with fixed topology.

    All arrays are registered as buffers, so ``model.to(device)`` moves them. Model space follows
    Deep3DFaceRecon's ``BFM_model_front``: x to the image right, y up, z toward the camera, units of
    decimetres (a face is about 1.5 units wide), centred near the origin.

    Args:
        mean_shape: ``[V, 3]`` mean vertex positions.
        id_base: ``[3V, n_id]`` identity basis (columns scaled so unit-variance coefficients give
            plausible identities). Row ``3 * v + c`` is coordinate ``c`` of vertex ``v``.
        exp_base: ``[3V, n_exp]`` expression basis, same row layout.
        mean_tex: ``[V, 3]`` mean albedo, RGB in [0, 1].
        tex_base: ``[3V, n_tex]`` albedo basis, same row layout.
        triangles: ``[F, 3]`` vertex indices (int32), counter-clockwise seen from outside.
        landmark_idx: ``[68]`` vertex indices of the iBUG-68 landmarks (int64).
        face_mask: ``[V]`` bool, the facial skin region used by photometric losses.
        meta: small dict of strings describing the model (``name``, ``source``, ``version``...).
        labels: optional dict of per-model annotations: lists of strings (e.g.
            ``"id_target_names"``) and arrays (e.g. ``"id_from_target"`` ``[n_id, T]``); arrays
            become tensors (not buffers; they stay on the CPU).
        uv: optional ``[T, 2]`` texture coordinates in [0, 1] (v up, OBJ convention; see
            :mod:`pyfaid.facemodel.uv`). Give ``uv`` and ``uv_faces`` together, or neither (the
            exports then generate a layout, :meth:`uv_layout`).
        uv_faces: optional ``[F, 3]`` indices into ``uv``, one row per triangle, corner for corner
            (face-varying: a seam vertex has a UV per side).

    Attributes:
        mirror_idx: ``[V]`` int64, each vertex's left-right mirror partner in the mean shape (itself
            on the mirror plane, -1 where none; :func:`pyfaid.facemodel.symmetry.mirror_pairs`),
            found when the model is built; a buffer that is not saved.
    """

    def __init__(
        self,
        mean_shape,
        id_base,
        exp_base,
        mean_tex,
        tex_base,
        triangles,
        landmark_idx,
        face_mask,
        meta: dict | None = None,
        labels: dict | None = None,
        uv=None,
        uv_faces=None,
    ):
        super().__init__()
        f32 = torch.float32
        mean_shape = torch.as_tensor(np.asarray(mean_shape), dtype=f32)
        if mean_shape.ndim != 2 or mean_shape.shape[1] != 3 or mean_shape.shape[0] < 3:
            raise ValueError(f"mean_shape must be [V, 3] with V >= 3, got {tuple(mean_shape.shape)}")
        nv = mean_shape.shape[0]

        def basis(x, name):
            t = torch.as_tensor(np.asarray(x), dtype=f32)
            if t.ndim != 2 or t.shape[0] != 3 * nv:
                raise ValueError(f"{name} must be [3V, n] = [{3 * nv}, n], got {tuple(t.shape)}")
            if not torch.isfinite(t).all():
                raise ValueError(f"{name} contains non-finite values")
            return t.contiguous()

        id_base = basis(id_base, "id_base")
        exp_base = basis(exp_base, "exp_base")
        tex_base = basis(tex_base, "tex_base")
        mean_tex = torch.as_tensor(np.asarray(mean_tex), dtype=f32)
        if tuple(mean_tex.shape) != (nv, 3):
            raise ValueError(f"mean_tex must be [V, 3] = [{nv}, 3], got {tuple(mean_tex.shape)}")
        tri, lmk = _checked_indices(triangles, landmark_idx, nv)
        mask = torch.as_tensor(np.asarray(face_mask).astype(bool)).reshape(-1)
        if mask.numel() != nv:
            raise ValueError(f"face_mask must be [V] = [{nv}], got {mask.numel()} entries")
        if not torch.isfinite(mean_shape).all() or not torch.isfinite(mean_tex).all():
            raise ValueError("mean_shape / mean_tex contain non-finite values")

        self.register_buffer("mean_shape", mean_shape.contiguous())
        self.register_buffer("id_base", id_base)
        self.register_buffer("exp_base", exp_base)
        self.register_buffer("mean_tex", mean_tex.contiguous())
        self.register_buffer("tex_base", tex_base)
        self.register_buffer("triangles", tri.to(torch.int32).contiguous())
        self.register_buffer("landmark_idx", lmk.contiguous())
        self.register_buffer("face_mask", mask.contiguous())
        #: The triangles as a :class:`~pyfaid.render.MeshTopology`, checked once (copies on other
        #: devices are made by the topology itself).
        self.topology = MeshTopology(tri, nv)
        # ---- optional UV layout (texture exports)
        if (uv is None) != (uv_faces is None):
            raise ValueError("give both uv and uv_faces (a per-corner UV layout), or neither")
        if uv is not None:
            uv_np, uvf_np = check_layout(np.asarray(uv), np.asarray(uv_faces), tri.shape[0])
            uv, uv_faces = torch.as_tensor(uv_np, dtype=f32), torch.as_tensor(uvf_np.astype(np.int32))
        self.register_buffer("uv", uv)
        self.register_buffer("uv_faces", uv_faces)
        self.meta = {str(k): str(v) for k, v in (meta or {}).items()}
        self.labels = _label_dict(labels)
        # left-right mirror partner of each vertex (-1: none), found once from the mean shape
        self.register_buffer("mirror_idx", mirror_pairs(mean_shape, tri), persistent=False)
        # derived data, made on first use (a generated UV layout, UV atlases per size and device,
        # the UV triangles as a topology, the vertices that can form the face's outline)
        self._uv_generated = None
        self._uv_atlases: dict = {}
        self._uv_topology = None
        self._outline_candidates = None

    # ------------------------------------------------------------------ sizes
    @property
    def num_vertices(self) -> int:
        """Number of vertices ``V``."""
        return self.mean_shape.shape[0]

    @property
    def n_id(self) -> int:
        """Number of identity components."""
        return self.id_base.shape[1]

    @property
    def n_exp(self) -> int:
        """Number of expression components."""
        return self.exp_base.shape[1]

    @property
    def n_tex(self) -> int:
        """Number of albedo components."""
        return self.tex_base.shape[1]

    # ------------------------------------------------------------------ evaluation
    @staticmethod
    def _check_coeff(c: torch.Tensor, n: int, name: str) -> torch.Tensor:
        if not isinstance(c, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(c).__name__}")
        if c.ndim != 2 or c.shape[1] != n:
            raise ValueError(f"{name} must be [B, {n}], got {tuple(c.shape)}")
        return c

    def shape(self, id_coeff: torch.Tensor, exp_coeff: torch.Tensor) -> torch.Tensor:
        """Vertex positions in model space.

        Args:
            id_coeff: ``[B, n_id]`` identity coefficients.
            exp_coeff: ``[B, n_exp]`` expression coefficients.

        Returns:
            torch.Tensor: ``[B, V, 3]``.
        """
        self._check_coeff(id_coeff, self.n_id, "id_coeff")
        self._check_coeff(exp_coeff, self.n_exp, "exp_coeff")
        if id_coeff.shape[0] != exp_coeff.shape[0]:
            raise ValueError(f"id_coeff and exp_coeff batch sizes differ: {id_coeff.shape[0]} vs {exp_coeff.shape[0]}")
        dt = torch.promote_types(id_coeff.dtype, self.id_base.dtype)
        offs = id_coeff.to(dt) @ self.id_base.to(dt).T + exp_coeff.to(dt) @ self.exp_base.to(dt).T  # [B, 3V]
        return self.mean_shape.to(dt) + offs.reshape(offs.shape[0], -1, 3)

    def texture(self, tex_coeff: torch.Tensor) -> torch.Tensor:
        """Per-vertex albedo, RGB nominally in [0, 1] (not clamped).

        Args:
            tex_coeff: ``[B, n_tex]`` albedo coefficients.

        Returns:
            torch.Tensor: ``[B, V, 3]``.
        """
        self._check_coeff(tex_coeff, self.n_tex, "tex_coeff")
        dt = torch.promote_types(tex_coeff.dtype, self.tex_base.dtype)
        offs = tex_coeff.to(dt) @ self.tex_base.to(dt).T
        return self.mean_tex.to(dt) + offs.reshape(offs.shape[0], -1, 3)

    # ------------------------------------------------------------------ derived data (made once)
    def uv_layout(self) -> tuple:
        """The model's UV layout, or a generated one (:func:`~pyfaid.facemodel.uv.cylindrical_layout`
        of its mean shape, made once): ``(uv float32 [T, 2], uv_faces int64 [F, 3])`` NumPy arrays."""
        if self.uv is not None:
            return (self.uv.detach().cpu().numpy().astype(np.float32),
                    self.uv_faces.detach().cpu().numpy().astype(np.int64))
        if self._uv_generated is None:
            uv, uvf = cylindrical_layout(self.mean_shape.detach().cpu().numpy(), self.triangles.detach().cpu().numpy())
            self._uv_generated = (uv.astype(np.float32), uvf)
        return self._uv_generated

    def uv_topology(self) -> MeshTopology:
        """The UV layout's triangles (``uv_faces`` into ``uv``) as a :class:`~pyfaid.render.MeshTopology`."""
        if self._uv_topology is None:
            uv, uv_faces = self.uv_layout()
            self._uv_topology = MeshTopology(torch.as_tensor(uv_faces), uv.shape[0])
        return self._uv_topology

    def uv_atlas(self, size=1024, padding: Optional[int] = None) -> UVAtlas:
        """The :class:`~pyfaid.render.bake.UVAtlas` of :meth:`uv_layout` at one texture size (``int`` or
        ``(h, w)``; ``padding``: see ``UVAtlas``), made once per size, padding and device."""
        device = self.mean_shape.device
        key = (size_of(size), padding, str(device))
        if key not in self._uv_atlases:
            uv, uvf = self.uv_layout()
            self._uv_atlases[key] = UVAtlas(uv, uvf, self.topology, size=size, padding=padding, device=device)
        return self._uv_atlases[key]

    def uv_texture(self, image) -> UVTexture:
        """A texture image in :meth:`uv_layout` (``[H, W, 3]`` or ``[B, H, W, 3]``, row 0 at the top,
        float in [0, 1] or uint8; e.g. a reconstruction's baked texture) prepared for
        :meth:`Renderer.shade_texture <pyfaid.render.Renderer.shade_texture>`: its mip pyramid is
        built here, once. It stays on the image's device and dtype."""
        uv, _ = self.uv_layout()
        return UVTexture.of(image, uv, self.uv_topology())

    def outline_candidates(self) -> torch.Tensor:
        """Vertices that can form the face's outline below the eyes (where a photo's 2D-style jaw
        points lie): ``[C]`` int64 indices of face-region vertices below the eye landmarks."""
        if self._outline_candidates is None:
            mean = self.mean_shape.detach().cpu()
            lm = mean[self.landmark_idx.cpu()]
            below_eyes = mean[:, 1] < lm[36:48, 1].mean()
            self._outline_candidates = torch.nonzero(below_eyes & self.face_mask.cpu()).flatten()
        return self._outline_candidates

    @property
    def layout(self) -> CoeffLayout:
        """The coefficient vector of this model: ``n_id``, ``n_exp``, ``n_tex`` slots, then pose and light."""
        return CoeffLayout(self.n_id, self.n_exp, self.n_tex)

    def split_coeffs(self, coeffs: torch.Tensor) -> dict:
        """Split coefficient vectors ``[B, layout.size]`` into their named parts (views).

        Returns:
            dict: ``id [B, n_id]``, ``exp [B, n_exp]``, ``tex [B, n_tex]``, ``angle [B, 3]``
            (radians), ``gamma [B, 27]`` (SH lighting), ``trans [B, 3]``.
        """
        return self.layout.split(coeffs)

    def mesh(self, coeffs: torch.Tensor, albedo: Optional[torch.Tensor] = None,
             angles: Optional[torch.Tensor] = None, rest: Optional[RestShape] = None) -> FaceMesh:
        """The posed, lit mesh of coefficient vectors (what the renderer draws).

        Args:
            coeffs: ``[B, layout.size]`` (id, exp, tex, angles, SH, translation).
            albedo: optional ``[B, V, 3]`` or ``[V, 3]`` replacing the model's texture.
            angles: optional ``[B, 3]`` rotation angles (radians) replacing the ``angle`` part.
            rest: optional :class:`~pyfaid.render.RestShape` replacing the shape of ``coeffs``
                (a fixed mesh moved rigidly: its normals are rotated, not recomputed).

        Returns:
            :class:`~pyfaid.render.FaceMesh` in the world frame.
        """
        self.layout.check(coeffs, "MorphableModel.mesh: `coeffs`")
        batch = coeffs.shape[0]
        parts = self.split_coeffs(coeffs)
        shape = self.shape(parts["id"], parts["exp"]) if rest is None else rest.vertices  # [B, V, 3]
        num_vertices = shape.shape[1]
        if angles is None:
            angles = parts["angle"]
        elif angles.shape != (batch, 3):
            raise ValueError(f"MorphableModel.mesh: `angles` must be [{batch}, 3], got {tuple(angles.shape)}")
        if albedo is None:
            albedo = self.texture(parts["tex"])  # [B, V, 3]
        else:
            if albedo.dim() == 2:
                albedo = albedo.unsqueeze(0).expand(batch, -1, -1)
            if albedo.shape != (batch, num_vertices, 3):
                raise ValueError(f"MorphableModel.mesh: `colors` (albedo) must be [{batch}, {num_vertices}, 3] or "
                                 f"[{num_vertices}, 3], got {tuple(albedo.shape)}")
        rotation = euler_rotation(angles.to(shape.dtype))  # [B, 3, 3]
        world, normals = pose_mesh(shape, rotation, parts["trans"].to(shape.dtype), self.topology,
                                   None if rest is None else rest.normals)
        return FaceMesh(world, normals, albedo.to(shape.dtype), parts["gamma"].to(shape.dtype), self.topology,
                        self.landmark_idx)

    def rest_shape(self, coeffs: torch.Tensor) -> RestShape:
        """The unposed shape of ``coeffs [B, layout.size]`` with its normals, held fixed (no gradient)."""
        parts = self.split_coeffs(coeffs)
        with torch.no_grad():
            return RestShape.of(self.shape(parts["id"], parts["exp"]), self.topology)

    def forward(self, coeffs: torch.Tensor) -> tuple:
        """Shape and albedo from coefficient vectors.

        Args:
            coeffs: ``[B, layout.size]``.

        Returns:
            tuple: ``(vertices [B, V, 3], albedo [B, V, 3])`` in model space (no pose applied).
        """
        c = self.split_coeffs(coeffs)
        return self.shape(c["id"], c["exp"]), self.texture(c["tex"])

    def extra_repr(self) -> str:
        return (
            f"name={self.meta.get('name', '?')!r}, V={self.num_vertices}, F={self.triangles.shape[0]}, "
            f"n_id={self.n_id}, n_exp={self.n_exp}, n_tex={self.n_tex}"
        )

    # ------------------------------------------------------------------ files
    def save_npz(self, path: str) -> None:
        """Write the model to one ``.npz`` file, atomically (temporary file + rename).

        Args:
            path: destination file name.
        """
        arrays = {k: getattr(self, k).detach().cpu().numpy() for k in _BUFFERS}
        for k, v in self.meta.items():
            arrays["meta/" + k] = np.array(v)
        for k, v in self.labels.items():
            arrays["labels/" + k] = np.array(v) if isinstance(v, list) else v.detach().cpu().numpy()
        if self.uv is not None:
            arrays["uv"] = self.uv.detach().cpu().numpy()
            arrays["uv_faces"] = self.uv_faces.detach().cpu().numpy()

        savez_atomic(path, **arrays)

    @classmethod
    def from_npz(cls, path: str) -> "MorphableModel":
        """Read a model written by :meth:`save_npz`.

        Args:
            path: ``.npz`` file.

        Returns:
            MorphableModel
        """
        if not os.path.isfile(path):
            raise FileNotFoundError(f"face model file not found: {path}")
        try:
            with np.load(path, allow_pickle=False) as z:
                data = {k: z[k] for k in z.files}
        except Exception as exc:
            raise ValueError(f"{path}: not a readable .npz face model ({exc})") from exc
        missing = [k for k in _BUFFERS if k not in data]
        if missing:
            raise ValueError(f"{path}: missing field(s) {', '.join(missing)}")
        meta = {k[5:]: str(v) for k, v in data.items() if k.startswith("meta/")}
        labels = {k[7:]: v for k, v in data.items() if k.startswith("labels/")}
        try:
            return cls(**{k: data[k] for k in _BUFFERS}, meta=meta, labels=labels,
                       uv=data.get("uv"), uv_faces=data.get("uv_faces"))
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from exc


def _checked_indices(triangles, landmark_idx, nv: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``triangles [F, 3]`` and ``landmark_idx [68]`` as int64 tensors, checked against ``nv`` vertices."""
    tri = torch.as_tensor(np.asarray(triangles).astype(np.int64))
    if tri.ndim != 2 or tri.shape[1] != 3 or tri.shape[0] == 0:
        raise ValueError(f"triangles must be [F, 3], got {tuple(tri.shape)}")
    if int(tri.min()) < 0 or int(tri.max()) >= nv:
        raise ValueError(f"triangles index out of range [0, {nv}): min {int(tri.min())}, max {int(tri.max())}")
    lmk = torch.as_tensor(np.asarray(landmark_idx).astype(np.int64)).reshape(-1)
    if lmk.numel() != 68:
        raise ValueError(f"landmark_idx must hold 68 indices, got {lmk.numel()}")
    if int(lmk.min()) < 0 or int(lmk.max()) >= nv:
        raise ValueError(f"landmark_idx out of range [0, {nv})")
    return tri, lmk


def _label_dict(labels: dict | None) -> dict:
    """A model's labels: string lists stay lists of ``str``, arrays become (CPU) tensors."""
    out = {}
    for k, v in (labels or {}).items():
        if isinstance(v, (list, tuple)) and all(isinstance(s, str) for s in v):
            out[str(k)] = [str(s) for s in v]
        else:
            arr = np.asarray(v)
            if arr.dtype.kind in "US":
                out[str(k)] = [str(s) for s in arr.reshape(-1)]
            else:
                out[str(k)] = torch.as_tensor(arr)
    return out
