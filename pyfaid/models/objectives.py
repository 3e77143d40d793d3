"""Training objectives of the FAID model: the coarse stage and the FAID stage (paper Sec. 3.2.3-3.2.4).

Every objective is a module over a :class:`~pyfaid.models.FAID` with
``forward(batch, generator, step) -> (total, terms, output, extras)``: ``batch`` a dict with ``image
[B, 3, H, W]`` in [0, 1] and optionally ``mask [B, 1, H, W]`` (usable face pixels) and
``landmarks [B, 68, 2]`` (pixels); ``terms`` every unweighted loss term (for logging), ``output``
the :class:`~pyfaid.models.FAIDOutput` of the batch, ``extras`` images for the TensorBoard grid.
A term whose weight is 0 is never computed, so ablations really remove it. The loss functions
themselves are the pure functions of :mod:`pyfaid.losses`.

:class:`StagedObjective` holds one objective per training stage (``OBJECTIVES`` by name) behind one
module, the unit that DDP wraps.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn

from pyfaid import losses as L
from pyfaid.models.faid import FAID, FAIDOutput
from pyfaid.occlusion import occlude

__all__ = ["CoarseObjective", "PretrainObjective", "FAIDObjective", "StagedObjective", "OBJECTIVES", "self_augment"]


def _uniform_angles(batch: int, generator: torch.Generator, max_angles, like: torch.Tensor) -> torch.Tensor:
    """Uniform random (pitch, yaw, roll) ``[B, 3]`` within +-max_angles (radians)."""
    u = torch.rand(batch, 3, generator=generator, device=generator.device) * 2 - 1
    return (u * torch.tensor(max_angles, dtype=u.dtype, device=u.device)).to(like)


def _regularizers(faid: FAID, coeffs: torch.Tensor, cfg, terms: dict) -> None:
    split = faid.face_model.split_coeffs(coeffs)
    if cfg.reg > 0:
        terms["reg"] = L.coefficient_regularizer(split, cfg.reg_id, cfg.reg_exp, cfg.reg_tex)
    if cfg.gamma > 0:
        terms["gamma"] = L.gamma_regularizer(split["gamma"])


class CoarseObjective(nn.Module):
    """The coarse stage: the coarse regressor alone, Deep3DFaceRecon-style.

    ``coarse_only`` (class attribute): the fine model gets no gradient from this objective.

    The paper starts from a pretrained coarse regressor (Deep3DFaceRecon, trained with photometric,
    landmark and regularisation terms); this objective trains :class:`CoarseModel` the same way:
    masked photometric loss on the coarse render, the landmark term (weight ``loss.landmark``; the
    data must then provide landmarks), the landmark head's loss (``loss.landmark_head``) and the
    coefficient regularisers. No encoder, refiner or self-augmentation runs.

    Args:
        faid: the model. cfg: :class:`pyfaid.config.LossConfig`.
    """

    coarse_only = True

    def __init__(self, faid: FAID, cfg):
        super().__init__()
        self.faid = faid
        self.cfg = cfg

    def weights(self) -> dict:
        c = self.cfg
        return {"coarse_photo": c.photo, "landmark": c.landmark, "landmark_head": c.landmark_head,
                "reg": c.reg, "gamma": c.gamma}

    def forward(self, batch: dict, generator: Optional[torch.Generator] = None, step: int = 0):
        c = self.cfg
        images, mask, landmarks = batch["image"], batch.get("mask"), batch.get("landmarks")
        if (c.landmark > 0 or c.landmark_head > 0) and landmarks is None:
            raise ValueError("coarse stage: loss.landmark / loss.landmark_head > 0 but the data gives no "
                             "`landmarks` ([B, 68, 2] pixels); set them to 0 or use data that has them")
        out = self.faid(images, render_coarse=True, coarse_only=True)
        m = out.mask if mask is None else mask
        terms = {"coarse_photo": L.photometric_loss(images, out.image, m)}
        size = images.shape[-1]
        if c.landmark > 0:
            terms["landmark"] = L.landmark_loss(out.landmarks_mesh_px, landmarks, size)
        if c.landmark_head > 0:
            if out.landmarks_head_px is None:
                raise ValueError("loss.landmark_head > 0 but the coarse model has no landmark head "
                                 "(model.landmark_head: true)")
            terms["landmark_head"] = L.landmark_nll(out.landmarks_head_px / size, out.landmark_log_scale,
                                                    landmarks / size)
        _regularizers(self.faid, out.coeffs, c, terms)
        total = L.total_loss(terms, self.weights())
        terms["photo"] = terms["coarse_photo"]  # the progress bar's photometric column
        return total, terms, out, {}


class PretrainObjective(nn.Module):
    """Supervised pre-training of the coarse model (and its landmark head) on synthetic faces.

    Synthetic data knows every face's coefficients, albedo and landmarks, so the coarse regressor
    learns them directly (as synthetic-only face work does), which converges far faster than the
    photometric losses alone: model-space vertex error (``loss.sup_shape``, cm, over the face
    region), rotation error (``loss.sup_pose``), albedo error against the exact per-vertex colours
    (``loss.sup_tex``), lighting error (``loss.sup_light``), the projected-landmark term
    (``loss.landmark``, which ties translation and scale), the landmark head's NLL against the
    2D-style 68 points (``loss.landmark_head``, ``landmarks_2d`` when the data has them), the
    3D-style head's against the 3D-style points (``loss.landmark_head_3d``, ``landmarks_3d`` or
    ``landmarks``) and optionally the photometric term (``loss.coarse_photo``) and the regularisers.
    Terms of weight 0 are not computed, so a stage can train the landmark heads alone on a fixed
    backbone (``train.freeze``).

    The batch must hold ``coeffs [B, layout.size]`` and ``colors [B, V, 3]`` (pyfaid's synthetic
    data does) besides ``image``, ``mask`` and ``landmarks``.
    """

    coarse_only = True

    def __init__(self, faid: FAID, cfg):
        super().__init__()
        self.faid = faid
        self.cfg = cfg

    def weights(self) -> dict:
        c = self.cfg
        return {"coarse_photo": c.coarse_photo, "landmark": c.landmark, "landmark_head": c.landmark_head,
                "landmark_head_3d": c.landmark_head_3d, "sup_shape": c.sup_shape, "sup_pose": c.sup_pose, "sup_tex": c.sup_tex, "sup_light": c.sup_light,
                "seg": c.seg, "reg": c.reg, "gamma": c.gamma}

    def _supervised(self, out: FAIDOutput, batch: dict, terms: dict) -> None:
        c, fm = self.cfg, self.faid.face_model
        if "coeffs" not in batch or "colors" not in batch:
            raise ValueError("the pretrain objective needs data with ground-truth `coeffs` and `colors` "
                             "(pyfaid's synthetic faces); use the coarse objective for other data")
        pred, gt = fm.split_coeffs(out.coeffs), fm.split_coeffs(batch["coeffs"])
        region = fm.face_mask
        if c.sup_shape > 0:
            d = fm.shape(pred["id"], pred["exp"])[:, region] - fm.shape(gt["id"], gt["exp"])[:, region]
            terms["sup_shape"] = 10.0 * torch.sqrt((d * d).sum(-1) + 1e-12).mean()  # decimetres -> cm
        if c.sup_pose > 0:
            terms["sup_pose"] = (pred["angle"] - gt["angle"]).pow(2).sum(-1).mean()
        if c.sup_tex > 0:
            terms["sup_tex"] = (out.coarse_colors[:, region] - batch["colors"][:, region]).abs().mean()
        if c.sup_light > 0:
            terms["sup_light"] = (pred["gamma"] - gt["gamma"]).pow(2).mean()

    def forward(self, batch: dict, generator: Optional[torch.Generator] = None, step: int = 0):
        c = self.cfg
        images, mask, landmarks = batch["image"], batch.get("mask"), batch.get("landmarks")
        out = self.faid(images, render_coarse=c.coarse_photo > 0, coarse_only=True)
        terms = {}
        self._supervised(out, batch, terms)
        size = images.shape[-1]
        if c.landmark > 0:
            terms["landmark"] = L.landmark_loss(out.landmarks_mesh_px, landmarks, size)
        if c.landmark_head > 0:
            target = batch.get("landmarks_2d", landmarks)
            w = batch.get("landmark_visible")
            terms["landmark_head"] = L.landmark_nll(out.landmarks_head_px / size, out.landmark_log_scale, target / size,
                                                    None if w is None else w.float())
        if c.landmark_head_3d > 0:
            if out.landmarks_head_3d_px is None:
                raise ValueError("loss.landmark_head_3d > 0 but the coarse model has no 3D-style landmark head "
                                 "(model.landmark_head_3d: true)")
            target = batch.get("landmarks_3d", landmarks)
            # every point counts, hidden or not (3D-style points are defined where hidden), inside the picture
            w = ((target >= -0.5) & (target <= size - 0.5)).all(-1).float()
            terms["landmark_head_3d"] = L.landmark_nll(out.landmarks_head_3d_px / size, out.landmark_log_scale_3d,
                                                       target / size, w)
        if c.coarse_photo > 0:
            terms["coarse_photo"] = L.photometric_loss(images, out.image, out.mask if mask is None else mask)
        if c.seg > 0:
            if self.faid.segmenter is None or mask is None:
                raise ValueError("loss.seg > 0 needs model.segmenter: true and data with a visible-face `mask`")
            logits = self.faid.segmenter(images)
            terms["seg"] = torch.nn.functional.binary_cross_entropy_with_logits(logits, (mask > 0.5).float())
        _regularizers(self.faid, out.coeffs, c, terms)
        return L.total_loss(terms, self.weights()), terms, out, {}


def self_augment(faid: FAID, recon: FAIDOutput, generator: torch.Generator, rot: bool = True,
                 occ: bool = True, max_angles=(0.3, 0.9, 0.2), want_id: bool = True, want_att: bool = True) -> dict:
    """Self-augmentation (paper 3.2.3): re-render the current reconstruction and feed it back.

    ``I_rot`` is the reconstruction rendered with a random pose, ``I_occ`` the reconstruction's
    render with synthetic occluders; both are treated as new inputs (detached) and passed through
    the model again, together in one batch (with the coarse model frozen, as in the main job, exactly
    what two passes give; a coarse model in training mode sees both in its BatchNorm statistics).

    Args:
        faid: the model. recon: output for the input batch. generator: random source (views and
            occluders). max_angles: largest |pitch|, |yaw|, |roll| in radians.
        want_id, want_att: which features of the augmented inputs to compute (once: they feed both
            the FAID decoder and the perceptual targets).

    Returns:
        dict with ``rot`` and/or ``occ`` entries, each a dict: ``input [B,3,H,W]``, ``input_mask``
        (pixels of the input to compare), ``enc`` (the input's features, no gradient), ``recon``
        (:class:`FAIDOutput` of the input), and ``at_input_view`` (that reconstruction under the
        original input's pose and light, with ``image`` and ``mask`` comparable pixel by pixel with
        the original image: a :class:`~pyfaid.render.Render` for ``rot``, the reconstruction
        itself for ``occ``, whose input has the original's view).
    """
    want_id = want_id or faid.use_id_features
    want_att = want_att or faid.use_fa_features
    out = {}
    det = recon.detach()
    if rot:
        angles = _uniform_angles(det.coeffs.shape[0], generator, max_angles, det.coeffs)
        with torch.no_grad():
            r = faid.render_view(det.coeffs, angles, det.fine_colors)
        out["rot"] = {"input": r.image, "input_mask": r.mask}
    if occ:
        img_occ, occ_mask = occlude(det.image, generator=generator)
        out["occ"] = {"input": img_occ, "input_mask": det.mask * (1.0 - occ_mask), "clean": det.image}
    if not out:
        return out
    # both augmented batches through the encoders and the model at once (one pass instead of two)
    inputs = torch.cat([a["input"] for a in out.values()])
    with torch.no_grad():
        enc = faid.encode(inputs, want_id, want_att)
    rec_all = faid(inputs, enc)
    start = 0
    for a, e in zip(out.values(), _split_features(enc, [len(a["input"]) for a in out.values()])):
        stop = start + len(a["input"])
        a["enc"], a["recon"] = e, rec_all.map(lambda t, lo=start, hi=stop: t[lo:hi])
        start = stop
    if rot:
        rec = out["rot"]["recon"]
        out["rot"]["at_input_view"] = faid.renderer(faid.face_model, faid.layout.with_pose_light(rec.coeffs, det.coeffs),
                                                    colors=rec.fine_colors)
    if occ:
        rec = out["occ"]["recon"]
        out["occ"]["at_input_view"] = rec  # the occluded input is seen from the input's view
    return out


def _split_features(enc: dict, sizes: list) -> list:
    """Split a feature dict of concatenated images back into one dict per part (``sizes`` items each)."""
    parts = [{} for _ in sizes]
    for k, v in enc.items():
        chunks = torch.split(v, sizes) if torch.is_tensor(v) else list(zip(*(torch.split(t, sizes) for t in v)))
        for d, c in zip(parts, chunks):
            d[k] = c if torch.is_tensor(c) else list(c)
    return parts


def encode_grouped(faid: FAID, requests: list) -> list:
    """Frozen-encoder features of several image batches, in one encoder pass per feature set.

    A FAID step compares up to six renders with the encoders (the input's, random views, an
    occluded render, the self-augmented reconstructions); one batched pass costs less than six small
    ones (15 % of the step). The encoders are frozen and in eval mode, so batching does not change
    any feature.

    Args:
        faid: the model (its :meth:`FAID.encode`).
        requests: ``(images [N_i, 3, H, W], want_id, want_att)`` per batch.

    Returns:
        One feature dict per request, in order.
    """
    groups: dict = {}
    for i, (_, want_id, want_att) in enumerate(requests):
        groups.setdefault((bool(want_id), bool(want_att)), []).append(i)
    out: list = [None] * len(requests)
    for (want_id, want_att), items in groups.items():
        enc = faid.encode(torch.cat([requests[i][0] for i in items]), want_id, want_att)
        for i, part in zip(items, _split_features(enc, [requests[i][0].shape[0] for i in items])):
            out[i] = part
    return out


class FAIDObjective(nn.Module):
    """The FAID stage's loss (paper Eq. 5 + self-augmentation + regularisers).

    On data with ground-truth per-vertex colours (pyfaid's synthetic faces), ``loss.sup_fine_tex``
    adds the fine albedo's L1 error against them: the photometric terms alone reward copying the
    photo's shading (cast shadows, highlights) into the albedo, which renders the input well but is
    the wrong texture for any other view or light.

    A step computes the pixel terms first, then the identity / attribute terms of every render at
    once (:func:`encode_grouped`): each perceptual comparison is a ``(name, render, reference
    features, want_id, want_att)`` row of one list, read back in the same order.

    Args:
        faid: :class:`FAID`. cfg: :class:`pyfaid.config.LossConfig`.
    """

    coarse_only = False

    def __init__(self, faid: FAID, cfg):
        super().__init__()
        self.faid = faid
        self.cfg = cfg

    def weights(self) -> dict:
        c = self.cfg
        w = {"photo": c.photo, "coarse_photo": c.coarse_photo, "id": c.id, "att": c.att, "rob": c.rob,
             "reg": c.reg, "gamma": c.gamma, "fine_smooth": c.fine_smooth, "fine_residual": c.fine_residual,
             "sup_fine_tex": c.sup_fine_tex}
        for aug in ("rot", "occ"):
            for pair in ("aug", "in"):
                w[f"sa_{aug}_{pair}_photo"] = c.photo * c.sa_weight
                w[f"sa_{aug}_{pair}_id"] = c.id * c.sa_weight
                w[f"sa_{aug}_{pair}_att"] = c.att * c.sa_weight
        return w

    def _input_terms(self, images, mask, out: FAIDOutput, terms: dict) -> torch.Tensor:
        """Photometric and regulariser terms of the input batch; returns the mask used."""
        c, faid = self.cfg, self.faid
        # Eq. 6's mask M: the input's usable face pixels when the data provides them. It is NOT
        # intersected with the rendered face region: with the intersection, moving the face out of
        # the image drives the loss to 0 (observed in training); uncovered face pixels must cost.
        # Without a data mask: the rendered region, times the segmenter's visible-face probability
        # when the model has one (the paper's pre-trained face segmentation network).
        if mask is None:
            m = out.mask if faid.segmenter is None else out.mask * faid.segmenter.visibility(images)
        else:
            m = mask
        terms["photo"] = L.photometric_loss(images, out.image, m)
        if c.coarse_photo > 0 and faid.fine is not None:
            terms["coarse_photo"] = L.photometric_loss(images, out.coarse_image, m)
        _regularizers(faid, out.coeffs, c, terms)
        if out.residual is not None:
            if c.fine_smooth > 0:
                terms["fine_smooth"] = L.laplacian_smoothness(out.residual, faid.fine.lap)
            if c.fine_residual > 0:
                terms["fine_residual"] = out.residual.pow(2).mean()
        return m

    def _robust_renders(self, images, out: FAIDOutput, generator, extras: dict) -> list:
        """L_rob's inputs (Eq. 9): random views of the reconstruction and an occluded render, each
        compared with the input's features."""
        c, faid = self.cfg, self.faid
        renders = []
        max_angles = (c.max_pitch, c.max_yaw, c.max_roll)
        for _ in range(c.rob_views):
            ang = _uniform_angles(images.shape[0], generator, max_angles, out.coeffs)
            view = faid.render_view(out.coeffs, ang, out.fine_colors).image
            renders.append(view)
            extras.setdefault("rob_view", view)
        if c.rob_occ:
            occ_img, _ = occlude(L.composite(out.image, out.mask, images), generator=generator)
            renders.append(occ_img)
        return renders

    def _self_aug_terms(self, images, mask, m, enc, out: FAIDOutput, generator, terms, extras) -> list:
        """The photometric terms of the pairs (I_aug, I_aug^r) and (I, I_aug^r) of paper 3.2.3 for
        I_rot and I_occ; returns their perceptual comparisons ``(name, render, reference features)``."""
        c, faid = self.cfg, self.faid
        # at least 2 items: BatchNorm in train mode needs more than one value per channel
        n = images.shape[0] if c.sa_size <= 0 else min(max(c.sa_size, 2), images.shape[0])
        sub = out if n == images.shape[0] else out.map(lambda t: t[:n])
        sa = self_augment(faid, sub, generator, rot=c.sa_rot, occ=c.sa_occ,
                          max_angles=(c.max_pitch, c.max_yaw, c.max_roll), want_id=c.id > 0, want_att=c.att > 0)
        img_n, m_n = images[:n], m[:n]
        enc_n = {k: (v[:n] if torch.is_tensor(v) else [t[:n] for t in v]) for k, v in enc.items()}
        compare = []
        for name, a in sa.items():
            rec, back = a["recon"], a["at_input_view"]
            # (I_aug, I_aug^r): reconstruct the augmented input itself
            terms[f"sa_{name}_aug_photo"] = L.photometric_loss(a.get("clean", a["input"]), rec.image, a["input_mask"])
            # (I, I_aug^r): the reconstruction of the augmented input must also explain I
            terms[f"sa_{name}_in_photo"] = L.photometric_loss(
                img_n, back.image, m_n if mask is not None else m_n * back.mask)
            compare += [(f"sa_{name}_aug_", rec.image, a["enc"]),
                        (f"sa_{name}_in_", L.composite(back.image, back.mask, img_n), enc_n)]
            extras[f"sa_{name}"] = a["input"]
            extras[f"sa_{name}_recon"] = rec.image
        return compare

    def forward(self, batch: dict, generator: torch.Generator, step: int = 0):
        """The FAID stage's total loss of one batch at training step ``step`` (self-augmentation runs
        on the steps that ``loss.sa_every`` divides)."""
        c, faid = self.cfg, self.faid
        images, mask = batch["image"], batch.get("mask")
        want_id = c.id > 0 or c.rob > 0 or faid.use_id_features
        want_att = c.att > 0 or c.rob > 0 or faid.use_fa_features
        with torch.no_grad():
            enc = faid.encode(images, want_id, want_att)
        out = faid(images, enc, render_coarse=True)
        terms, extras = {}, {}
        m = self._input_terms(images, mask, out, terms)
        # perceptual comparisons: (term prefix, render, reference features, want_id, want_att)
        pid, patt = c.id > 0, c.att > 0
        compare = [("", L.composite(out.image, out.mask, images), enc, pid, patt)]
        if c.rob > 0:
            compare += [("rob", r, enc, True, True) for r in self._robust_renders(images, out, generator, extras)]
        if c.self_aug and (c.sa_rot or c.sa_occ) and int(step) % max(1, c.sa_every) == 0:
            compare += [(name, r, ref, pid, patt)
                        for name, r, ref in self._self_aug_terms(images, mask, m, enc, out, generator, terms, extras)]
        if c.sup_fine_tex > 0:
            if "colors" not in batch:
                raise ValueError("loss.sup_fine_tex > 0 needs data with ground-truth per-vertex `colors` "
                                 "(pyfaid's synthetic faces); set loss.sup_fine_tex=0 for other data")
            region = faid.face_model.face_mask
            terms["sup_fine_tex"] = (out.fine_colors[:, region] - batch["colors"][:, region]).abs().mean()
        feats = encode_grouped(faid, [(r, w_id, w_att) for _, r, _, w_id, w_att in compare])
        rob = []
        for (name, _, ref, _, _), f in zip(compare, feats):
            losses = L.perceptual_losses(ref, f)
            if name == "rob":
                rob.append(sum(losses.values()))  # L_rob = L_id + L_att of each robust render
            else:
                terms.update({name + k: v for k, v in losses.items()})
        if rob:
            terms["rob"] = torch.stack(rob).mean()
        return L.total_loss(terms, self.weights()), terms, out, extras


#: Objective classes by the name a training stage gives (``train.stages[*].objective``).
OBJECTIVES = {"coarse": CoarseObjective, "pretrain": PretrainObjective, "faid": FAIDObjective}


class StagedObjective(nn.Module):
    """One module holding the objective of every training stage (what DDP wraps).

    Args:
        faid: the model. cfg: :class:`pyfaid.config.LossConfig`. names: objective names used by
            the stages (keys of :data:`OBJECTIVES`).
    """

    def __init__(self, faid: FAID, cfg, names):
        super().__init__()
        unknown = sorted(set(names) - set(OBJECTIVES))
        if unknown:
            raise ValueError(f"unknown training objective(s) {unknown}; choose from {sorted(OBJECTIVES)}")
        self.faid = faid
        self.objectives = nn.ModuleDict({n: OBJECTIVES[n](faid, cfg) for n in dict.fromkeys(names)})

    def forward(self, batch: dict, generator: torch.Generator, objective: str, step: int = 0):
        return self.objectives[objective](batch, generator, step)
