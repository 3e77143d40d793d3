"""FAID: coarse model + fine model + differentiable renderer, self-augmentation and the objective.

    recon = faid(images)                 # Reconstruction
    total, terms, recon, extras = FAIDObjective(faid, loss_cfg)(batch, generator)
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields
from typing import Optional

import torch
import torch.nn as nn

from pyfaid import losses as L


@dataclass
class Reconstruction:
    """Output of :meth:`FAID.forward`.

    Attributes:
        coeffs: ``[B, 257]``; vertices: ``[B, V, 3]`` camera space; coarse_colors / fine_colors:
        ``[B, V, 3]`` albedo; image: ``[B, 3, H, W]`` rendered with the fine colours; coarse_image:
        ``[B, 3, H, W]`` rendered with the coarse colours (None when not rendered); mask:
        ``[B, 1, H, W]`` face coverage; landmarks: ``[B, 68, 2]`` pixels; residual: ``[B, V, 3]``
        fine - coarse colours.
    """

    coeffs: torch.Tensor
    vertices: torch.Tensor
    coarse_colors: torch.Tensor
    fine_colors: torch.Tensor
    image: torch.Tensor
    coarse_image: Optional[torch.Tensor]
    mask: torch.Tensor
    landmarks: torch.Tensor
    residual: Optional[torch.Tensor] = None

    def __getitem__(self, key: str):
        """Dict-style access (``recon["coeffs"]``) for code that treats outputs as dicts."""
        if key not in self:
            raise KeyError(key)
        return getattr(self, key)

    def __contains__(self, key) -> bool:
        return key in {f.name for f in fields(self)}

    def keys(self):
        return [f.name for f in fields(self)]

    def detach(self) -> "Reconstruction":
        return Reconstruction(**{f.name: (getattr(self, f.name).detach() if torch.is_tensor(getattr(self, f.name))
                                           else getattr(self, f.name)) for f in fields(self)})


class FAID(nn.Module):
    """The FAID model (paper Fig. 1).

    Args:
        face_model: ``pyfaid.facemodel.MorphableModel``.
        renderer: ``pyfaid.render.Renderer``.
        coarse: :class:`~pyfaid.models.CoarseModel`.
        fine: :class:`~pyfaid.models.FineModel` or None (coarse only).
        id_encoder: frozen identity encoder (``embed``) or None.
        attr_encoder: frozen attribute encoder (``features``) or None.
        use_id_features / use_fa_features: which features feed the FAID decoder.
    """

    def __init__(self, face_model, renderer, coarse, fine=None, id_encoder=None, attr_encoder=None,
                 use_id_features: bool = True, use_fa_features: bool = True, id_features: bool = False):
        super().__init__()
        self.face_model = face_model
        self.renderer = renderer
        self.coarse = coarse
        self.fine = fine
        for enc in (id_encoder, attr_encoder):
            if enc is not None:
                enc.eval()
                for p in enc.parameters():
                    p.requires_grad_(False)
        self.perceptual = L.PerceptualLoss(id_encoder, attr_encoder, id_features)
        self.use_id_features = use_id_features and id_encoder is not None
        self.use_fa_features = use_fa_features and attr_encoder is not None
        self.render_coarse = True

    def train(self, mode: bool = True):
        super().train(mode)
        self.perceptual.eval()  # encoders stay frozen (BatchNorm statistics included)
        return self

    @classmethod
    def from_config(cls, config, device="cpu") -> "FAID":
        """Build an untrained model from a :class:`pyfaid.config.Config` or its dict form."""
        from pyfaid.config import Config, from_dict

        cfg = config if isinstance(config, Config) else from_dict(config or {}, source="checkpoint config")
        return build_faid(cfg, device)

    @classmethod
    def from_checkpoint(cls, ckpt, device="cpu") -> "FAID":
        """Build the model described by a ``python -m pyfaid.train`` checkpoint (path or loaded dict)
        and load its trained weights; returned in eval mode."""
        if not isinstance(ckpt, dict):
            if not os.path.isfile(str(ckpt)):
                raise FileNotFoundError(f"checkpoint not found: {ckpt}")
            ckpt = torch.load(str(ckpt), map_location="cpu", weights_only=False)
        if "model" not in ckpt or "config" not in ckpt:
            raise ValueError("not a pyfaid training checkpoint (needs 'model' and 'config' entries)")
        model = cls.from_config(ckpt["config"], device)
        model.load_trainable_state_dict(ckpt["model"])
        return model.eval()

    def trainable_state_dict(self) -> dict:
        """State of the trained parts only (coarse + fine); the frozen encoders/face model are rebuilt."""
        return {k: v for k, v in self.state_dict().items() if k.startswith(("coarse.", "fine."))}

    def load_trainable_state_dict(self, state: dict):
        missing, unexpected = self.load_state_dict(state, strict=False)
        missing = [k for k in missing if k.startswith(("coarse.", "fine."))]
        if missing or unexpected:
            raise RuntimeError(f"checkpoint does not fit the model: missing {missing[:5]}, "
                               f"unexpected {list(unexpected)[:5]}")

    def decoder_features(self, enc: dict) -> Optional[torch.Tensor]:
        """Concatenated identity + attribute features ``[B, D]`` from :meth:`PerceptualLoss.encode`."""
        parts = []
        if self.use_id_features:
            parts.append(enc["id"])
        if self.use_fa_features:
            parts.append(enc["att"])
        return torch.cat(parts, 1).detach() if parts else None

    def encode(self, images: torch.Tensor, want_id: bool = True, want_att: bool = True) -> dict:
        return self.perceptual.encode(images, want_id, want_att)

    def forward(self, images: torch.Tensor, enc: Optional[dict] = None,
                render_coarse: Optional[bool] = None, coarse_only: bool = False) -> Reconstruction:
        """Reconstruct faces.

        Args:
            images: ``[B, 3, H, W]`` aligned faces in [0, 1] (H = W = renderer size).
            enc: precomputed encoder outputs of ``images`` (computed here when needed and absent).
            render_coarse: also render the coarse texture (default: ``self.render_coarse``).
            coarse_only: skip the fine model (and its encoders): the coarse texture is rendered
                once and is both ``image`` and ``coarse_image``.

        Returns:
            :class:`Reconstruction`.
        """
        coeffs = self.coarse(images)
        split = self.face_model.split_coeffs(coeffs)
        coarse_colors = self.face_model.texture(split["tex"])
        residual = None
        fine_colors = coarse_colors
        fine = None if coarse_only else self.fine
        if fine is not None:
            feats = None
            if fine.faid is not None:
                if enc is None or (self.use_id_features and "id" not in enc) or \
                        (self.use_fa_features and "att" not in enc):
                    with torch.no_grad():
                        enc = self.encode(images, self.use_id_features, self.use_fa_features)
                feats = self.decoder_features(enc)
            fine_colors, residual = fine(coarse_colors, feats)
        out = self.renderer(self.face_model, coeffs, colors=fine_colors)
        coarse_image = None
        rc = self.render_coarse if render_coarse is None else render_coarse
        if rc and fine is not None:
            coarse_image = self.renderer(self.face_model, coeffs, colors=coarse_colors)["image"]
        elif rc:
            coarse_image = out["image"]
        return Reconstruction(coeffs=coeffs, vertices=out["vertices"], coarse_colors=coarse_colors,
                              fine_colors=fine_colors, image=out["image"], coarse_image=coarse_image,
                              mask=out["mask"], landmarks=out["landmarks"], residual=residual)

    def render_view(self, coeffs: torch.Tensor, angles: torch.Tensor, colors: torch.Tensor) -> dict:
        """Render a reconstruction under replaced rotation angles ``[B, 3]`` (radians)."""
        return self.renderer.render_views(self.face_model, coeffs, angles, colors=colors)

    def with_view(self, coeffs: torch.Tensor, view_coeffs: torch.Tensor) -> torch.Tensor:
        """Shape/texture coefficients of ``coeffs`` with pose + light (slots 224:257) of ``view_coeffs``."""
        return torch.cat([coeffs[:, :224], view_coeffs[:, 224:]], dim=1)

    def self_augment(self, recon: Reconstruction, generator: torch.Generator, rot: bool = True,
                     occ: bool = True, max_angles=(0.3, 0.9, 0.2)) -> dict:
        """Self-augmentation (paper 3.2.3): re-render the current reconstruction and feed it back.

        ``I_rot`` is the reconstruction rendered with a random pose, ``I_occ`` the reconstruction's
        render with synthetic occluders; both are treated as new inputs (detached) and passed through
        the model again.

        Args:
            recon: reconstruction of the input batch.
            generator: random source (views and occluders).
            max_angles: largest |pitch|, |yaw|, |roll| in radians.

        Returns:
            dict with ``rot`` and/or ``occ`` entries, each a dict: ``input [B,3,H,W]``, ``input_mask``
            (pixels of the input to compare), ``recon`` (:class:`Reconstruction` of the input), and
            ``at_input_view`` (render dict of that reconstruction under the original input's pose and
            light, comparable pixel by pixel with the original image).
        """
        out = {}
        det = recon.detach()
        if rot:
            angles = self.random_angles(det.coeffs.shape[0], generator, max_angles, det.coeffs)
            with torch.no_grad():
                r = self.render_view(det.coeffs, angles, det.fine_colors)
            rec = self(r["image"])
            back = self.renderer(self.face_model, self.with_view(rec.coeffs, det.coeffs), colors=rec.fine_colors)
            out["rot"] = {"input": r["image"], "input_mask": r["mask"], "recon": rec, "at_input_view": back}
        if occ:
            from pyfaid.data import occlude
            img_occ, occ_mask = occlude(det.image, generator=generator)
            rec = self(img_occ)
            out["occ"] = {"input": img_occ, "input_mask": det.mask * (1.0 - occ_mask), "recon": rec,
                          "at_input_view": {"image": rec.image, "mask": rec.mask}, "clean": det.image}
        return out

    @staticmethod
    def random_angles(batch: int, generator: torch.Generator, max_angles, like: torch.Tensor) -> torch.Tensor:
        """Uniform random (pitch, yaw, roll) ``[B, 3]`` within +-max_angles."""
        u = torch.rand(batch, 3, generator=generator, device=generator.device) * 2 - 1
        return (u * torch.tensor(max_angles, dtype=u.dtype, device=u.device)).to(like)


class FAIDObjective(nn.Module):
    """One training step's loss (paper Eq. 5 + self-augmentation + regularisers).

    ``forward(images, mask, generator)`` returns ``(total, terms, recon, extras)``; ``terms`` holds
    every unweighted loss term, ``weights`` maps term names to their weights. A term whose weight is
    0 is never computed (ablations really remove it). Wrap this module in DDP for data parallelism.

    Args:
        faid: :class:`FAID`.
        cfg: :class:`pyfaid.config.LossConfig`.
    """

    def __init__(self, faid: FAID, cfg):
        super().__init__()
        self.faid = faid
        self.cfg = cfg

    def weights(self) -> dict:
        c = self.cfg
        w = {"photo": c.photo, "coarse_photo": c.coarse_photo, "id": c.id, "att": c.att, "rob": c.rob,
             "reg": c.reg, "gamma": c.gamma, "fine_smooth": c.fine_smooth, "fine_residual": c.fine_residual}
        for aug in ("rot", "occ"):
            for pair in ("aug", "in"):
                w[f"sa_{aug}_{pair}_photo"] = c.photo * c.sa_weight
                w[f"sa_{aug}_{pair}_id"] = c.id * c.sa_weight
                w[f"sa_{aug}_{pair}_att"] = c.att * c.sa_weight
        return w

    def _perc_terms(self, target_enc: dict, render: torch.Tensor, prefix: str, terms: dict):
        c = self.cfg
        enc = self.faid.encode(render, want_id=c.id > 0, want_att=c.att > 0)
        for k, v in self.faid.perceptual.compare(target_enc, enc).items():
            terms[prefix + k] = v

    def coarse_stage(self, images: torch.Tensor, mask: Optional[torch.Tensor],
                     landmarks: Optional[torch.Tensor] = None):
        """The coarse pre-training stage's loss: the coarse regressor alone, Deep3DFaceRecon-style.

        The paper starts from a pretrained coarse regressor (Deep3DFaceRecon, trained with
        photometric, landmark and regularisation terms). With no such weights available offline,
        the first ``train.coarse_steps`` steps train :class:`CoarseModel` the same way: masked
        photometric loss on the coarse render, the landmark term (weight ``loss.landmark``; the
        data must then provide landmarks) and the coefficient regularisers. No encoder, refiner or
        self-augmentation runs, so these steps are several times cheaper.

        Args:
            images: ``[B, 3, H, W]``; mask: ``[B, 1, H, W]`` or None; landmarks: ``[B, 68, 2]``
                pixels or None.

        Returns:
            ``(total, terms, recon, extras)`` like :meth:`forward`.
        """
        c = self.cfg
        faid = self.faid
        if c.landmark > 0 and landmarks is None:
            raise ValueError("coarse stage: loss.landmark > 0 but the data gives no `landmarks` "
                             "([B, 68, 2] pixels); set loss.landmark=0 or use data that has them")
        recon = faid(images, render_coarse=True, coarse_only=True)
        split = faid.face_model.split_coeffs(recon.coeffs)
        m = recon.mask if mask is None else mask
        terms = {"coarse_photo": L.photometric_loss(images, recon.image, m)}
        if c.landmark > 0:
            terms["landmark"] = L.landmark_loss(recon.landmarks, landmarks, images.shape[-1])
        if c.reg > 0:
            terms["reg"] = L.coefficient_regularizer(split, c.reg_id, c.reg_exp, c.reg_tex)
        if c.gamma > 0:
            terms["gamma"] = L.gamma_regularizer(split["gamma"])
        w = {"coarse_photo": c.photo, "landmark": c.landmark, "reg": c.reg, "gamma": c.gamma}
        total = L.total_loss(terms, w)
        terms["photo"] = terms["coarse_photo"]  # the progress bar's photometric column
        return total, terms, recon, {}

    def forward(self, images: torch.Tensor, mask: Optional[torch.Tensor], generator: torch.Generator,
                landmarks: Optional[torch.Tensor] = None, coarse_only: bool = False):
        """Args:
            images: ``[B, 3, H, W]`` in [0, 1]; mask: ``[B, 1, H, W]`` usable face pixels (None = all);
            generator: random source for views and occluders; landmarks: ``[B, 68, 2]`` pixels or
            None (used by the coarse stage only); coarse_only: run :meth:`coarse_stage` instead.
        """
        if coarse_only:
            return self.coarse_stage(images, mask, landmarks)
        c = self.cfg
        faid = self.faid
        want_id = c.id > 0 or c.rob > 0 or faid.use_id_features
        want_att = c.att > 0 or c.rob > 0 or faid.use_fa_features
        with torch.no_grad():
            enc = faid.encode(images, want_id, want_att)
        recon = faid(images, enc, render_coarse=True)
        terms = {}
        # Eq. 6's mask M: the input's usable face pixels when the data provides them. It is NOT
        # intersected with the rendered face region: with the intersection, moving the face out of
        # the image drives the loss to 0 (observed in training); uncovered face pixels must cost.
        # Without a data mask, the rendered region is the only choice.
        m = recon.mask if mask is None else mask
        terms["photo"] = L.photometric_loss(images, recon.image, m)
        if c.coarse_photo > 0 and faid.fine is not None:
            terms["coarse_photo"] = L.photometric_loss(images, recon.coarse_image, m)
        comp = L.composite(recon.image, recon.mask, images)
        self._perc_terms(enc, comp, "", terms)
        split = faid.face_model.split_coeffs(recon.coeffs)
        if c.reg > 0:
            terms["reg"] = L.coefficient_regularizer(split, c.reg_id, c.reg_exp, c.reg_tex)
        if c.gamma > 0:
            terms["gamma"] = L.gamma_regularizer(split["gamma"])
        if recon.residual is not None:
            if c.fine_smooth > 0:
                terms["fine_smooth"] = L.laplacian_smoothness(recon.residual, faid.fine.lap)
            if c.fine_residual > 0:
                terms["fine_residual"] = recon.residual.pow(2).mean()

        extras = {}
        if c.rob > 0:
            rob = []
            max_angles = (c.max_pitch, c.max_yaw, c.max_roll)
            for _ in range(c.rob_views):
                ang = faid.random_angles(images.shape[0], generator, max_angles, recon.coeffs)
                view = faid.render_view(recon.coeffs, ang, recon.fine_colors)["image"]
                rob.append(sum(faid.perceptual.compare(enc, faid.encode(view)).values()))
                extras.setdefault("rob_view", view)
            if c.rob_occ:
                from pyfaid.data import occlude
                occ_img, _ = occlude(comp, generator=generator)
                rob.append(sum(faid.perceptual.compare(enc, faid.encode(occ_img)).values()))
            terms["rob"] = torch.stack(rob).mean()

        if c.self_aug and (c.sa_rot or c.sa_occ):
            # at least 2 items: BatchNorm in train mode needs more than one value per channel
            n = images.shape[0] if c.sa_size <= 0 else min(max(c.sa_size, 2), images.shape[0])
            sub = recon if n == images.shape[0] else _slice(recon, n)
            sa = faid.self_augment(sub, generator, rot=c.sa_rot, occ=c.sa_occ,
                                   max_angles=(c.max_pitch, c.max_yaw, c.max_roll))
            img_n, m_n = images[:n], m[:n]
            enc_n = {k: (v[:n] if torch.is_tensor(v) else [t[:n] for t in v]) for k, v in enc.items()}
            for name, a in sa.items():
                rec = a["recon"]
                target = a.get("clean", a["input"])
                # (I_aug, I_aug^r): reconstruct the augmented input itself
                terms[f"sa_{name}_aug_photo"] = L.photometric_loss(target, rec.image, a["input_mask"])
                if c.id > 0 or c.att > 0:
                    with torch.no_grad():
                        enc_aug = faid.encode(a["input"], c.id > 0, c.att > 0)
                    self._perc_terms(enc_aug, rec.image, f"sa_{name}_aug_", terms)
                # (I, I_aug^r): the reconstruction of the augmented input must also explain I
                back = a["at_input_view"]
                terms[f"sa_{name}_in_photo"] = L.photometric_loss(
                    img_n, back["image"], m_n if mask is not None else m_n * back["mask"])
                if c.id > 0 or c.att > 0:
                    self._perc_terms(enc_n, L.composite(back["image"], back["mask"], img_n),
                                     f"sa_{name}_in_", terms)
                extras[f"sa_{name}"] = a["input"]
                extras[f"sa_{name}_recon"] = rec.image
        total = L.total_loss(terms, self.weights())
        return total, terms, recon, extras


def _slice(recon: Reconstruction, n: int) -> Reconstruction:
    return Reconstruction(**{f.name: (getattr(recon, f.name)[:n] if torch.is_tensor(getattr(recon, f.name))
                                       else getattr(recon, f.name)) for f in fields(recon)})


def build_faid(cfg, device="cpu") -> FAID:
    """Build a :class:`FAID` from a :class:`pyfaid.config.Config` (face model, renderer, encoders).

    Raises:
        FileNotFoundError: a face-model / weights path that does not exist.
    """
    from pyfaid import facemodel, encoders
    from pyfaid.render import Renderer
    from pyfaid.models.coarse import CoarseModel
    from pyfaid.models.fine import FineModel

    m, lc = cfg.model, cfg.loss
    if m.face_model != "default" and not os.path.exists(m.face_model):
        raise FileNotFoundError(
            f"face model file not found: {m.face_model!r} (model.face_model). Give the path to your "
            "BFM file (e.g. BFM_model_front.mat or 01_MorphableModel.mat), or use 'default'.")
    fm = facemodel.load(m.face_model)
    S = cfg.data.image_size
    renderer = Renderer(image_size=S, focal=1015.0 * S / 224.0, center=S / 2.0)
    coarse = CoarseModel(m.backbone, m.backbone_weights, m.input_size)

    need_id = lc.id > 0 or lc.rob > 0 or (m.fine and m.faid_decoder and m.use_id_features)
    # L_rob = L_id + L_att uses whichever encoders the other terms need
    need_att = lc.att > 0 or (m.fine and m.faid_decoder and m.use_fa_features)
    id_enc = None
    if need_id:
        kw = {"weights": m.identity_weights} if m.identity_weights else {}
        id_enc = encoders.identity_encoder(m.identity_encoder, **kw)
    attr_enc = encoders.load_attribute_encoder(m.attribute_weights) if need_att else None

    fine = None
    if m.fine:
        feat_dim = 0
        if m.faid_decoder:
            probe = torch.zeros(1, 3, 224, 224)
            with torch.no_grad():
                if m.use_id_features and id_enc is not None:
                    feat_dim += id_enc.embed(probe).shape[1]
                if m.use_fa_features and attr_enc is not None:
                    feat_dim += attr_enc.features(probe).shape[1]
        fine = FineModel(fm.triangles, fm.mean_shape, feat_dim, hidden=m.hidden, K=m.cheb_k,
                         nodes=m.decoder_nodes, code=m.decoder_code, pos_embed=m.pos_embed,
                         mesh_refiner=m.mesh_refiner)
    faid = FAID(fm, renderer, coarse, fine, id_enc, attr_enc, m.use_id_features, m.use_fa_features,
                id_features=lc.id_features)
    return faid.to(device)
