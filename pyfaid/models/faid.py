"""FAID: coarse model + fine model + differentiable renderer + the frozen face features (paper Fig. 1).

    faid = build_faid(cfg)               # from a pyfaid.config.Config
    out = faid(images)                   # FAIDOutput (coefficients, colours, renders, landmarks)

The training objectives that use it (coarse stage, FAID stage with self-augmentation and the
robustified loss) live in :mod:`pyfaid.models.objectives`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import Optional

import torch
import torch.nn as nn

from pyfaid import encoders, facemodel
from pyfaid.facemodel.hierarchy import mesh_hierarchy
from pyfaid.models.coarse import CoarseModel
from pyfaid.models.features import FeatureEncoder
from pyfaid.models.fine import FineModel
from pyfaid.models.segmentation import FaceSegmenter
from pyfaid.render import (
    FaceMesh,
    Fragments,
    Render,
    Renderer,
    photo_albedo,
    sh_shading,
)

__all__ = ["FAID", "FAIDOutput", "build_faid"]


@dataclass
class FAIDOutput:
    """Output of :meth:`FAID.forward` for a batch of aligned faces.

    Attributes:
        coeffs: ``[B, layout.size]``; vertices_cam: ``[B, V, 3]`` camera space; coarse_colors /
        fine_colors: ``[B, V, 3]`` albedo; image: ``[B, 3, H, W]`` rendered with the fine colours;
        coarse_image: ``[B, 3, H, W]`` rendered with the coarse colours (None when not rendered);
        mask: ``[B, 1, H, W]`` face coverage; landmarks_mesh_px: ``[B, 68, 2]`` render pixels (the model's
        landmark vertices projected); residual: ``[B, V, 3]`` fine - coarse colours;
        landmarks_head_px: ``[B, 68, 2]`` render pixels and landmark_log_scale ``[B, 68]`` (log of each
        point's expected error in image sides) from the coarse model's landmark head (2D-style
        points; None without one); :attr:`landmark_confidence` is ``exp(-landmark_log_scale)``;
        landmarks_head_3d_px / landmark_log_scale_3d: the same from its 3D-style head.
    """

    coeffs: torch.Tensor
    vertices_cam: torch.Tensor
    coarse_colors: torch.Tensor
    fine_colors: torch.Tensor
    image: torch.Tensor
    coarse_image: Optional[torch.Tensor]
    mask: torch.Tensor
    landmarks_mesh_px: torch.Tensor
    residual: Optional[torch.Tensor] = None
    landmarks_head_px: Optional[torch.Tensor] = None
    landmark_log_scale: Optional[torch.Tensor] = None
    landmarks_head_3d_px: Optional[torch.Tensor] = None
    landmark_log_scale_3d: Optional[torch.Tensor] = None

    @property
    def landmark_confidence(self) -> Optional[torch.Tensor]:
        return None if self.landmark_log_scale is None else torch.exp(-self.landmark_log_scale)

    @property
    def landmark_confidence_3d(self) -> Optional[torch.Tensor]:
        return None if self.landmark_log_scale_3d is None else torch.exp(-self.landmark_log_scale_3d)

    def __getitem__(self, key: str):
        """Dict-style access (``out["coeffs"]``)."""
        if key not in self:
            raise KeyError(key)
        return getattr(self, key)

    def __contains__(self, key) -> bool:
        return key in {f.name for f in fields(self)}

    def keys(self):
        return [f.name for f in fields(self)]

    def map(self, fn) -> "FAIDOutput":
        """A copy with ``fn`` applied to every tensor field (``detach``, ``[:n]`` slicing, ...)."""
        return FAIDOutput(**{f.name: (fn(getattr(self, f.name)) if torch.is_tensor(getattr(self, f.name))
                                      else getattr(self, f.name)) for f in fields(self)})

    def detach(self) -> "FAIDOutput":
        return self.map(torch.Tensor.detach)


class FAID(nn.Module):
    """The FAID model (paper Fig. 1).

    Args:
        face_model: ``pyfaid.facemodel.MorphableModel``.
        renderer: ``pyfaid.render.Renderer`` (its image size is the model's input size).
        coarse: :class:`~pyfaid.models.CoarseModel` (outputs ``face_model.layout.size`` numbers).
        fine: :class:`~pyfaid.models.FineModel` or None (coarse only).
        features: :class:`~pyfaid.models.FeatureEncoder` (frozen identity + attribute encoders) or
            None.
        use_id_features / use_fa_features: which features feed the FAID decoder.
        segmenter: :class:`~pyfaid.models.FaceSegmenter` (visible-face probabilities) or None.
    """

    def __init__(self, face_model, renderer, coarse, fine=None, features: Optional[FeatureEncoder] = None,
                 use_id_features: bool = True, use_fa_features: bool = True, segmenter: Optional[nn.Module] = None):
        super().__init__()
        if coarse.num_coeffs != face_model.layout.size:
            raise ValueError(f"FAID: the coarse model regresses {coarse.num_coeffs} coefficients but the face "
                             f"model's vector has {face_model.layout.size} ({face_model.layout.describe()})")
        self.face_model = face_model
        self.renderer = renderer
        self.coarse = coarse
        self.fine = fine
        self.features = features if features is not None else FeatureEncoder()
        self.use_id_features = use_id_features and self.features.identity is not None
        self.use_fa_features = use_fa_features and self.features.attributes is not None
        self.segmenter = segmenter
        self.render_coarse = True

    @property
    def layout(self):
        return self.face_model.layout

    @property
    def image_size(self) -> int:
        return self.renderer.image_size

    # ------------------------------------------------------------------ trained state
    TRAINED = ("coarse.", "fine.", "segmenter.")

    def freeze(self, parts) -> None:
        """Keep trained parts fixed: no gradient, and in eval mode (BatchNorm statistics kept)
        whatever ``train()`` is called with. A part is ``"coarse"``, ``"fine"``, ``"segmenter"`` or
        a submodule of one by its dotted name (``"coarse.backbone"``, ``"coarse.fc"``, ...: the rest
        of the part then trains, e.g. the landmark heads on a fixed backbone)."""
        parts = tuple(parts)
        unknown = sorted(p for p in parts if p.split(".")[0] not in ("coarse", "fine", "segmenter"))
        if unknown:
            raise ValueError(f"FAID.freeze: unknown part(s) {unknown}; choose from coarse, fine, segmenter "
                             "or a submodule of them (e.g. coarse.backbone)")
        frozen = []
        for p in parts:
            if getattr(self, p.split(".")[0]) is None:
                continue
            try:
                self.get_submodule(p)
            except AttributeError:
                raise ValueError(f"FAID.freeze: the model has no submodule {p!r}") from None
            frozen.append(p)
        self.frozen = tuple(frozen)
        for p in self.frozen:
            self.get_submodule(p).requires_grad_(False)
        self.train(self.training)

    def train(self, mode: bool = True):
        super().train(mode)
        for p in getattr(self, "frozen", ()):
            self.get_submodule(p).eval()
        return self

    def trainable_state_dict(self) -> dict:
        """State of the trained parts only (coarse, fine, segmenter); the frozen encoders and the face
        model are rebuilt from the config."""
        return {k: v for k, v in self.state_dict().items() if k.startswith(self.TRAINED)}

    def load_trainable_state_dict(self, state: dict):
        missing, unexpected = self.load_state_dict(state, strict=False)
        missing = [k for k in missing if k.startswith(self.TRAINED)]
        if missing or unexpected:
            raise RuntimeError(f"checkpoint does not fit the model: missing {missing[:5]}, "
                               f"unexpected {list(unexpected)[:5]}")

    # ------------------------------------------------------------------ features
    def encode(self, images: torch.Tensor, want_id: bool = True, want_att: bool = True) -> dict:
        """Frozen identity / attribute features of images (see :meth:`FeatureEncoder.encode`)."""
        return self.features.encode(images, want_id, want_att)

    def decoder_features(self, enc: dict) -> Optional[torch.Tensor]:
        """Concatenated identity + attribute features ``[B, D]`` (detached) for the FAID decoder."""
        parts = []
        if self.use_id_features:
            parts.append(enc["id"])
        if self.use_fa_features:
            parts.append(enc["att"])
        return torch.cat(parts, 1).detach() if parts else None

    def _decoder_input(self, images: torch.Tensor, enc: Optional[dict]) -> Optional[torch.Tensor]:
        if self.fine is None or self.fine.faid is None:
            return None
        if enc is None or (self.use_id_features and "id" not in enc) or (self.use_fa_features and "att" not in enc):
            with torch.no_grad():
                enc = self.encode(images, self.use_id_features, self.use_fa_features)
        return self.decoder_features(enc)

    # ------------------------------------------------------------------ forward
    def forward(self, images: torch.Tensor, enc: Optional[dict] = None,
                render_coarse: Optional[bool] = None, coarse_only: bool = False) -> FAIDOutput:
        """Reconstruct faces.

        Args:
            images: ``[B, 3, H, W]`` aligned faces in [0, 1] (H = W = renderer size).
            enc: precomputed encoder outputs of ``images`` (computed here when needed and absent).
            render_coarse: also render the coarse texture (default: ``self.render_coarse``).
            coarse_only: skip the fine model (and its encoders): the coarse texture is rendered
                once and is both ``image`` and ``coarse_image``.

        Returns:
            :class:`FAIDOutput`.
        """
        head = self.coarse.predict(images)
        coeffs = head["coeffs"]
        mesh = self.face_model.mesh(coeffs)  # the coarse albedo: the model's texture
        coarse_colors = mesh.albedo
        residual = None
        fine_colors = coarse_colors
        fine = None if coarse_only else self.fine
        rc = self.render_coarse if render_coarse is None else render_coarse
        fragments = self.renderer.rasterize(mesh)  # one rasterization for every texture of this mesh
        if fine is not None:
            photo = self.photo_on_mesh(images, fragments, mesh) if fine.photo_input else None
            fine_colors, residual = fine(coarse_colors, self._decoder_input(images, enc), photo)
        out = self.renderer.shade(fragments, mesh, fine_colors)
        coarse_image = None
        if rc:
            coarse_image = self.renderer.shade(fragments, mesh).image if fine is not None else out.image
        lm_head, lm_3d = head.get("landmarks_unit"), head.get("landmarks_3d_unit")
        return FAIDOutput(coeffs=coeffs, vertices_cam=out.vertices_cam, coarse_colors=coarse_colors,
                          fine_colors=fine_colors, image=out.image, coarse_image=coarse_image,
                          mask=out.mask, landmarks_mesh_px=out.landmarks_px, residual=residual,
                          landmarks_head_px=None if lm_head is None else lm_head * self.image_size - 0.5,
                          landmark_log_scale=head.get("log_scale"),
                          landmarks_head_3d_px=None if lm_3d is None else lm_3d * self.image_size - 0.5,
                          landmark_log_scale_3d=head.get("log_scale_3d"))

    @torch.no_grad()
    def photo_on_mesh(self, images: torch.Tensor, fragments: Fragments, mesh: FaceMesh) -> tuple:
        """The photo's albedo estimate per vertex and the visible share of each vertex's footprint
        (:func:`pyfaid.render.photo_albedo`, visibility from the segmenter when the model has one),
        from the coarse mesh rasterized in the photo's view. No gradient. Returns ``([B, V, 3], [B, V])``."""
        vis = None if self.segmenter is None else self.segmenter.visibility(images)
        normals = mesh.normals_world.contiguous()
        light = sh_shading(normals, torch.ones_like(normals), self.renderer.lit_gamma(mesh.light))
        return photo_albedo(fragments.rast, mesh.topology.on(images.device), images, light, mesh.albedo, vis)

    def render_view(self, coeffs: torch.Tensor, angles: torch.Tensor, colors: torch.Tensor) -> Render:
        """Render a reconstruction under replaced rotation angles ``[B, 3]`` (radians)."""
        return self.renderer.render_views(self.face_model, coeffs, angles, colors=colors)


def _need_encoders(cfg) -> tuple[bool, bool]:
    m, lc = cfg.model, cfg.loss
    need_id = lc.id > 0 or lc.rob > 0 or (m.fine and m.faid_decoder and m.use_id_features)
    # L_rob = L_id + L_att uses whichever encoders the other terms need
    need_att = lc.att > 0 or (m.fine and m.faid_decoder and m.use_fa_features)
    return need_id, need_att


def build_features(cfg) -> FeatureEncoder:
    """The frozen encoders a :class:`pyfaid.config.Config` needs (none it does not)."""
    m = cfg.model
    need_id, need_att = _need_encoders(cfg)
    id_enc = None
    if need_id:
        kw = {"weights": m.identity_weights} if m.identity_weights else {}
        id_enc = encoders.identity_encoder(m.identity_encoder, **kw)
    attr_enc = encoders.load_attribute_encoder(m.attribute_weights) if need_att else None
    return FeatureEncoder(id_enc, attr_enc, id_inter=cfg.loss.id_features)


def build_faid(cfg, device="cpu") -> FAID:
    """Build a :class:`FAID` from a :class:`pyfaid.config.Config` (face model, renderer, encoders).

    Raises:
        FileNotFoundError: a face-model / weights path that does not exist.
    """
    m = cfg.model
    if m.face_model != "default" and not os.path.exists(m.face_model):
        raise FileNotFoundError(
            f"face model file not found: {m.face_model!r} (model.face_model). Give the path to your "
            "BFM file (e.g. BFM_model_front.mat or 01_MorphableModel.mat), or use 'default'.")
    fm = facemodel.load(m.face_model)
    renderer = Renderer(cfg.data.image_size)
    coarse = CoarseModel(fm.layout.size, m.backbone, m.backbone_weights, m.input_size,
                         landmark_head=m.landmark_head, landmark_head_3d=m.landmark_head_3d,
                         landmark_branch=m.landmark_branch)
    features = build_features(cfg)
    fine = None
    if m.fine:
        dims = features.dims() if m.faid_decoder else {}
        feat_dim = (dims.get("id", 0) if m.use_id_features else 0) + (dims.get("att", 0) if m.use_fa_features else 0)
        hier = None
        if m.hierarchy:
            hier = mesh_hierarchy(fm.mean_shape, fm.triangles, factors=tuple(m.hierarchy_factors))
        fine = FineModel(fm.triangles, fm.mean_shape, feat_dim, hidden=m.hidden, K=m.cheb_k,
                         nodes=m.decoder_nodes, code=m.decoder_code, pos_embed=m.pos_embed,
                         mesh_refiner=m.mesh_refiner, hierarchy=hier, channels=tuple(m.gcn_channels),
                         photo_input=m.photo_input)
    segmenter = None
    if m.segmenter:
        segmenter = FaceSegmenter()
    faid = FAID(fm, renderer, coarse, fine, features, m.use_id_features, m.use_fa_features, segmenter)
    return faid.to(device)
