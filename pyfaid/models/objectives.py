"""Training objectives of the FAID model: the coarse stage and the FAID stage (paper Sec. 3.2.3-3.2.4).

Every objective is a module over a :class:`~pyfaid.models.FAID` with
``forward(batch, generator) -> (total, terms, output, extras)``: ``batch`` a dict with ``image
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

    def forward(self, batch: dict, generator: Optional[torch.Generator] = None):
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
            terms["landmark"] = L.landmark_loss(out.landmarks, landmarks, size)
        if c.landmark_head > 0:
            if out.landmarks_head is None:
                raise ValueError("loss.landmark_head > 0 but the coarse model has no landmark head "
                                 "(model.landmark_head: true)")
            terms["landmark_head"] = L.landmark_nll(out.landmarks_head / size, out.landmark_log_scale,
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

    def forward(self, batch: dict, generator: Optional[torch.Generator] = None):
        c = self.cfg
        images, mask, landmarks = batch["image"], batch.get("mask"), batch.get("landmarks")
        out = self.faid(images, render_coarse=c.coarse_photo > 0, coarse_only=True)
        terms = {}
        self._supervised(out, batch, terms)
        size = images.shape[-1]
        if c.landmark > 0:
            terms["landmark"] = L.landmark_loss(out.landmarks, landmarks, size)
        if c.landmark_head > 0:
            target = batch.get("landmarks_2d", landmarks)
            w = batch.get("landmark_visible")
            terms["landmark_head"] = L.landmark_nll(out.landmarks_head / size, out.landmark_log_scale, target / size,
                                                    None if w is None else w.float())
        if c.landmark_head_3d > 0:
            if out.landmarks_head_3d is None:
                raise ValueError("loss.landmark_head_3d > 0 but the coarse model has no 3D-style landmark head "
                                 "(model.landmark_head_3d: true)")
            target = batch.get("landmarks_3d", landmarks)
            # every point counts, hidden or not (3D-style points are defined where hidden), inside the picture
            w = ((target >= -0.5) & (target <= size - 0.5)).all(-1).float()
            terms["landmark_head_3d"] = L.landmark_nll(out.landmarks_head_3d / size, out.landmark_log_scale_3d,
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
        (:class:`FAIDOutput` of the input), and ``at_input_view`` (render dict of that
        reconstruction under the original input's pose and light, comparable pixel by pixel with
        the original image).
    """
    want_id = want_id or faid.use_id_features
    want_att = want_att or faid.use_fa_features

    def encoded(images):
        with torch.no_grad():
            return faid.encode(images, want_id, want_att)

    out = {}
    det = recon.detach()
    if rot:
        angles = _uniform_angles(det.coeffs.shape[0], generator, max_angles, det.coeffs)
        with torch.no_grad():
            r = faid.render_view(det.coeffs, angles, det.fine_colors)
        out["rot"] = {"input": r["image"], "input_mask": r["mask"]}
    if occ:
        from pyfaid.data import occlude

        img_occ, occ_mask = occlude(det.image, generator=generator)
        out["occ"] = {"input": img_occ, "input_mask": det.mask * (1.0 - occ_mask), "clean": det.image}
    if not out:
        return out
    # both augmented batches through the encoders and the model at once (one pass instead of two)
    inputs = torch.cat([a["input"] for a in out.values()])
    enc = encoded(inputs)
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
        out["occ"]["at_input_view"] = {"image": rec.image, "mask": rec.mask}
    return out


def _split_features(enc: dict, sizes: list) -> list:
    """Split a feature dict of concatenated images back into one dict per part (``sizes`` items each)."""
    parts = [{} for _ in sizes]
    for k, v in enc.items():
        chunks = torch.split(v, sizes) if torch.is_tensor(v) else list(zip(*(torch.split(t, sizes) for t in v)))
        for d, c in zip(parts, chunks):
            d[k] = c if torch.is_tensor(c) else list(c)
    return parts


class _EncoderQueue:
    """Renders waiting for the frozen encoders, encoded in one pass per ``(want_id, want_att)``.

    A FAID step asks the encoders about up to six renders (the input's, a random view, an occluded
    render, the self-augmented reconstructions); one batched pass costs less than six small ones. The
    encoders are frozen and in eval mode, so batching does not change any feature.
    """

    def __init__(self, faid: FAID):
        self.faid, self.items = faid, []

    def add(self, images: torch.Tensor, want_id: bool, want_att: bool, then) -> None:
        """Encode ``images`` at :meth:`run`; ``then(features)`` receives their feature dict."""
        self.items.append((images, (bool(want_id), bool(want_att)), then))

    def run(self) -> None:
        groups: dict = {}
        for item in self.items:
            groups.setdefault(item[1], []).append(item)
        self.items = []
        for (want_id, want_att), items in groups.items():
            enc = self.faid.encode(torch.cat([it[0] for it in items]), want_id, want_att)
            for (_, _, then), part in zip(items, _split_features(enc, [it[0].shape[0] for it in items])):
                then(part)


class FAIDObjective(nn.Module):
    """The FAID stage's loss (paper Eq. 5 + self-augmentation + regularisers).

    On data with ground-truth per-vertex colours (pyfaid's synthetic faces), ``loss.sup_fine_tex``
    adds the fine albedo's L1 error against them: the photometric terms alone reward copying the
    photo's shading (cast shadows, highlights) into the albedo, which renders the input well but is
    the wrong texture for any other view or light.

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

    def _perceptual(self, target_enc: dict, render: torch.Tensor, prefix: str, terms: dict,
                    queue: _EncoderQueue) -> None:
        """Queue the identity / attribute terms of ``render`` against ``target_enc`` (set at ``queue.run()``)."""
        c = self.cfg

        def then(enc):
            for k, v in L.perceptual_losses(target_enc, enc).items():
                terms[prefix + k] = v

        queue.add(render, c.id > 0, c.att > 0, then)

    def _input_terms(self, images, mask, enc, out: FAIDOutput, terms: dict, queue: _EncoderQueue) -> torch.Tensor:
        """Photometric, perceptual and regulariser terms of the input batch; returns the mask used."""
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
        self._perceptual(enc, L.composite(out.image, out.mask, images), "", terms, queue)
        _regularizers(faid, out.coeffs, c, terms)
        if out.residual is not None:
            if c.fine_smooth > 0:
                terms["fine_smooth"] = L.laplacian_smoothness(out.residual, faid.fine.lap)
            if c.fine_residual > 0:
                terms["fine_residual"] = out.residual.pow(2).mean()
        return m

    def _robust_terms(self, images, enc, out: FAIDOutput, generator, extras: dict, queue: _EncoderQueue) -> list:
        """L_rob (Eq. 9): perceptual losses of random views and an occluded render against the input.
        Returns the list their values fill at ``queue.run()`` (``terms["rob"]`` is their mean)."""
        c, faid = self.cfg, self.faid
        rob = []

        def then(e):
            rob.append(sum(L.perceptual_losses(enc, e).values()))

        max_angles = (c.max_pitch, c.max_yaw, c.max_roll)
        for _ in range(c.rob_views):
            ang = _uniform_angles(images.shape[0], generator, max_angles, out.coeffs)
            view = faid.render_view(out.coeffs, ang, out.fine_colors)["image"]
            queue.add(view, True, True, then)
            extras.setdefault("rob_view", view)
        if c.rob_occ:
            from pyfaid.data import occlude

            occ_img, _ = occlude(L.composite(out.image, out.mask, images), generator=generator)
            queue.add(occ_img, True, True, then)
        return rob

    def _self_aug_terms(self, images, mask, m, enc, out: FAIDOutput, generator, terms, extras,
                        queue: _EncoderQueue) -> None:
        """The pairs (I_aug, I_aug^r) and (I, I_aug^r) of paper 3.2.3 for I_rot and I_occ."""
        c, faid = self.cfg, self.faid
        # at least 2 items: BatchNorm in train mode needs more than one value per channel
        n = images.shape[0] if c.sa_size <= 0 else min(max(c.sa_size, 2), images.shape[0])
        sub = out if n == images.shape[0] else out.map(lambda t: t[:n])
        sa = self_augment(faid, sub, generator, rot=c.sa_rot, occ=c.sa_occ,
                          max_angles=(c.max_pitch, c.max_yaw, c.max_roll), want_id=c.id > 0, want_att=c.att > 0)
        img_n, m_n = images[:n], m[:n]
        enc_n = {k: (v[:n] if torch.is_tensor(v) else [t[:n] for t in v]) for k, v in enc.items()}
        perceptual = c.id > 0 or c.att > 0
        for name, a in sa.items():
            rec = a["recon"]
            # (I_aug, I_aug^r): reconstruct the augmented input itself
            terms[f"sa_{name}_aug_photo"] = L.photometric_loss(a.get("clean", a["input"]), rec.image, a["input_mask"])
            if perceptual:
                self._perceptual(a["enc"], rec.image, f"sa_{name}_aug_", terms, queue)
            # (I, I_aug^r): the reconstruction of the augmented input must also explain I
            back = a["at_input_view"]
            terms[f"sa_{name}_in_photo"] = L.photometric_loss(
                img_n, back["image"], m_n if mask is not None else m_n * back["mask"])
            if perceptual:
                self._perceptual(enc_n, L.composite(back["image"], back["mask"], img_n), f"sa_{name}_in_", terms, queue)
            extras[f"sa_{name}"] = a["input"]
            extras[f"sa_{name}_recon"] = rec.image

    def forward(self, batch: dict, generator: torch.Generator):
        c, faid = self.cfg, self.faid
        images, mask = batch["image"], batch.get("mask")
        want_id = c.id > 0 or c.rob > 0 or faid.use_id_features
        want_att = c.att > 0 or c.rob > 0 or faid.use_fa_features
        with torch.no_grad():
            enc = faid.encode(images, want_id, want_att)
        out = faid(images, enc, render_coarse=True)
        terms, extras, queue = {}, {}, _EncoderQueue(faid)
        m = self._input_terms(images, mask, enc, out, terms, queue)
        rob = self._robust_terms(images, enc, out, generator, extras, queue) if c.rob > 0 else None
        if c.self_aug and (c.sa_rot or c.sa_occ) and int(batch.get("step", 0)) % max(1, c.sa_every) == 0:
            self._self_aug_terms(images, mask, m, enc, out, generator, terms, extras, queue)
        if c.sup_fine_tex > 0:
            if "colors" not in batch:
                raise ValueError("loss.sup_fine_tex > 0 needs data with ground-truth per-vertex `colors` "
                                 "(pyfaid's synthetic faces); set loss.sup_fine_tex=0 for other data")
            region = faid.face_model.face_mask
            terms["sup_fine_tex"] = (out.fine_colors[:, region] - batch["colors"][:, region]).abs().mean()
        queue.run()  # every perceptual term's encoder pass, batched
        if rob is not None:
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

    def forward(self, batch: dict, generator: torch.Generator, objective: str):
        return self.objectives[objective](batch, generator)
