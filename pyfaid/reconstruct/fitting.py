"""Test-time fitting: refine coefficients and per-vertex colours of aligned photos by gradient descent.

Per image, Adam optimises the coefficient vector and a per-vertex colour offset through the
differentiable :class:`pyfaid.render.Renderer` against the loss functions of :mod:`pyfaid.losses`:

* a robust photometric loss (:func:`~pyfaid.losses.photometric_loss` with per-pixel weights:
  the rendered face region times, with a face segmenter, the probability that a pixel shows the
  face unoccluded (so occluders are not fitted), else a skin-colour test that down-weights other
  pixels); with a segmenter, the colour offsets of the vertices the photo hides are held at 0 and
  those vertices are then painted from the face itself (``fill``, :mod:`pyfaid.reconstruct.prior`:
  the mirror side, the albedo model, a seam fill), so occluders are not painted into the colours
  either,
* a landmark loss (:func:`~pyfaid.losses.landmark_loss`): projected model landmarks against
  MTCNN's 5 points (eye centres = mean of the model's eye landmarks 36-41 / 42-47, nose tip 30,
  mouth corners 48 / 54) and, when a landmark head gave them, the 68 points weighted by their
  confidences: 2D-style points with the jaw line (points 0-16) matched to the mesh's current
  outline by contour correspondence (the photo's jaw points lie on the visible outline of the
  head, which on a turned face is not the model's 3D jaw line; re-chosen as the pose changes, by
  the landmark marching that labels the synthetic faces), and 3D-style points against the
  landmark vertices,
* opt-in (``FitSchedule.w_silhouette > 0``), a silhouette term: the rendered face's outline,
  softened (:mod:`pyfaid.reconstruct.silhouette`), against the face segmenter's face region, beside
  the cheeks (between the eye and the mouth lines),
* an identity loss (:func:`~pyfaid.losses.identity_loss` of dlib embeddings of the photo and of the
  render pasted over it),
* the coefficient regularisers (Deep3DFaceRecon's weights) and an L2 + edge-smoothness
  regulariser on the colour offsets,

on a coarse-to-fine schedule (:class:`FitSchedule`): pose and light first, then shape, expression
and texture, then the per-vertex colours.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

import torch
from tqdm import tqdm

from pyfaid import losses as L
from pyfaid.reconstruct.fill import fill_hidden, hidden_vertices
from pyfaid.reconstruct.io import skin_mask
from pyfaid.reconstruct.predict import Prediction, crop_renderer
from pyfaid.reconstruct.prior import (
    HOLD,
    held_vertices,
    paint_hidden,
    paint_prediction,
    resolve_fill,
    start_colors,
)
from pyfaid.reconstruct.silhouette import SoftEdge
from pyfaid.render import camera as cam
from pyfaid.render.mesh import Render
from pyfaid.synth.contour import marching_for

__all__ = ["FitSchedule", "PREDICTION_SCHEDULE", "Fit", "fit", "fit_prediction", "LANDMARK5_FROM_68", "landmarks5_of"]

# MTCNN's 5 points (image-left eye, image-right eye, nose, image-left mouth corner, image-right
# mouth corner) as averages of the iBUG 68-point landmarks.
LANDMARK5_FROM_68 = (tuple(range(36, 42)), tuple(range(42, 48)), (30,), (48,), (54,))


def landmarks5_of(lm68: torch.Tensor) -> torch.Tensor:
    """``[B, 68, 2]`` -> ``[B, 5, 2]`` MTCNN-style points."""
    return torch.stack([lm68[:, list(idx)].mean(dim=1) for idx in LANDMARK5_FROM_68], dim=1)


@dataclass(frozen=True)
class FitSchedule:
    """Coarse-to-fine schedule and weights of test-time fitting.

    Stage 1 (the first ``pose_frac`` of the steps) optimises rotation, translation and light;
    stage 2 (up to ``shape_frac``) adds identity, expression and texture coefficients; stage 3
    (the rest) adds the per-vertex colour offsets. Learning rates are per parameter group and decay
    linearly to ``final_lr_frac`` over each stage.
    """

    pose_frac: float = 0.25
    shape_frac: float = 0.55
    lr_pose: float = 0.02
    lr_trans: float = 0.02
    lr_light: float = 0.05
    lr_shape: float = 0.05
    lr_colors: float = 0.02
    w_photo: float = 1.0
    w_landmark: float = 20.0
    w_landmark68: float = 20.0
    w_landmark3d: float = 10.0
    contour_every: int = 1
    # Off by default: with the shipped model's segmenter, 1.0 took AFW's 68-point NME (40 steps,
    # first 40 photos) from 4.49 % to 5.73 %, the inner 51 points too (3.62 -> 4.55 %).
    w_silhouette: float = 0.0
    silhouette_sigma: float = 1.0
    w_id: float = 0.2
    id_every: int = 2
    w_reg_id: float = 3e-4
    w_reg_exp: float = 0.8 * 3e-4
    w_reg_tex: float = 1.7e-2 * 3e-4
    w_gamma: float = 10.0
    w_color_l2: float = 0.05
    w_color_smooth: float = 2.0
    nonskin_weight: float = 0.2
    nonskin_weight_fine: float = 0.6
    final_lr_frac: float = 0.2


#: The fitting schedule when it starts from a network's prediction (``schedule=None``): no pose-only
#: stage (the prediction is posed), 30 % of the steps on pose, shape, lighting and texture
#: coefficients, the rest on per-vertex colours. From the mean face the default :class:`FitSchedule`
#: (pose first) applies.
PREDICTION_SCHEDULE = FitSchedule(pose_frac=0.0, shape_frac=0.3)


def _prealign(face_model, renderer, p: Dict[str, torch.Tensor], landmarks5: torch.Tensor, steps: int) -> None:
    """Landmark-only Adam steps on rotation and translation (no rasterization: ~1 ms each)."""
    with torch.no_grad():
        pts = face_model.shape(p["id"], p["exp"])[:, face_model.landmark_idx]  # [B, 68, 3]
    opt = torch.optim.Adam([p["angle"], p["trans"]], lr=0.03)
    size = float(renderer.image_size)
    for _ in range(steps):
        world = cam.apply_pose(pts, cam.euler_rotation(p["angle"]), p["trans"])
        lm = landmarks5_of(renderer.project_points(cam.to_camera(world, renderer.camera_distance)))
        loss = L.landmark_loss(lm, landmarks5, size)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    for k in ("angle", "trans"):
        p[k].grad = None


class _Landmarks68:
    """The 68-point landmark terms (photo-style points, crop pixels, squared error in image sides).

    * 2D-style points (``targets``, e.g. the landmark head's): the inner points 17-67 against the
      mesh's landmark vertices, the jaw 0-16 against the mesh's current outline by *contour
      correspondence*: each jaw point against the outline point of its line on the head
      (:class:`pyfaid.synth.contour.LandmarkMarching`, the same rule that labels the synthetic
      faces), re-chosen from the current shape and pose every ``every`` steps;
    * 3D-style points (``targets_3d``, the 3D-style head's): all 68 against the landmark vertices,
      hidden ones included.
    """

    def __init__(self, face_model, targets: Optional[torch.Tensor], weights: Optional[torch.Tensor],
                 targets_3d: Optional[torch.Tensor] = None, weights_3d: Optional[torch.Tensor] = None,
                 every: int = 1):
        self.fm = face_model
        self.targets = None if targets is None else targets.float()
        self.weights = self._weights(targets, weights)
        self.targets_3d = None if targets_3d is None else targets_3d.float()
        self.weights_3d = self._weights(targets_3d, weights_3d)
        self.march = marching_for(face_model)
        self.every = max(1, int(every))
        self.chosen = None  # [B, L] the outline point of each line, re-chosen every ``every`` steps

    @staticmethod
    def _weights(targets, weights):
        if targets is None:
            return None
        return torch.ones(targets.shape[:2], device=targets.device) if weights is None else weights.float()

    def jaw(self, renderer, verts_cam, rotation, trans, step: int) -> torch.Tensor:
        """``[B, 17, 2]`` the mesh's jaw outline points (pixels), differentiable."""
        if self.chosen is None or step % self.every == 0:
            pts, self.chosen = self.march.silhouette(verts_cam, rotation, trans, renderer)
        else:
            pts = self.march.points_at(verts_cam, rotation, trans, renderer, self.chosen)
        return pts[:, :17]

    def loss(self, renderer, out: Render, rotation, trans, step: int, size: float) -> dict:
        """``{"landmark68": ..., "landmark3d": ...}`` for the targets given (``out``: the render)."""
        terms = {}
        if self.targets is not None:
            pred = torch.cat([self.jaw(renderer, out.vertices_cam, rotation, trans, step), out.landmarks_px[:, 17:]], 1)
            err = ((pred - self.targets) / size).pow(2).sum(-1)
            terms["landmark68"] = (err * self.weights).sum() / self.weights.sum().clamp_min(1e-6)
        if self.targets_3d is not None:
            err = ((out.landmarks_px - self.targets_3d) / size).pow(2).sum(-1)
            terms["landmark3d"] = (err * self.weights_3d).sum() / self.weights_3d.sum().clamp_min(1e-6)
        return terms


def _cheek_rows(landmarks: torch.Tensor, size) -> torch.Tensor:
    """``[B, 1, H, W]`` the pixels between the eye line and the mouth line of faces with landmarks
    ``[B, 68, 2]``, along the face's own down direction: where the outline of the face is the cheeks'
    against what lies beside them. The silhouette term is held to them: below the mouth the chin
    meets the neck and above the eyes the forehead meets hair or a hat, and a face segmenter does
    not tell skin of the face from skin of the neck or hair on the brow from the background (pulled
    to its region there, fitted AFW faces slid down into the neck)."""
    eyes = landmarks[:, 36:48].mean(1)  # [B, 2]
    mouth = landmarks[:, [48, 54]].mean(1)
    down = mouth - eyes
    length = down.norm(dim=-1, keepdim=True).clamp_min(1e-6)
    down = down / length
    ys, xs = torch.meshgrid(torch.arange(size[0], device=landmarks.device), torch.arange(size[1], device=landmarks.device),
                            indexing="ij")
    pix = torch.stack([xs, ys], -1).to(landmarks.dtype)  # [H, W, 2]
    t = ((pix[None] - eyes[:, None, None]) * down[:, None, None]).sum(-1)  # [B, H, W]
    return ((t >= 0) & (t <= length[:, :, None]))[:, None]


class _Fitter:
    """State of one fitting run (parameters, optimizer, per-stage caches)."""

    STAGE_PARAMS = {1: ("angle", "trans", "gamma"), 2: ("angle", "trans", "gamma", "id", "exp", "tex"),
                    3: ("angle", "trans", "gamma", "delta")}

    def __init__(self, face_model, renderer, target, coeffs, colors, landmarks5, steps, id_encoder, sch,
                 landmarks68=None, landmark_weights=None, visibility=None, fill=True, landmarks3d=None,
                 landmark3d_weights=None, hold=None):
        self.fm, self.renderer, self.sch, self.steps = face_model, renderer, sch, steps
        dev, B = target.device, target.shape[0]
        self.layout = face_model.layout
        coeffs = self.layout.zeros(B, device=dev) if coeffs is None else coeffs.detach().to(dev, torch.float32)
        self.p = {k: v.clone().requires_grad_(True) for k, v in self.layout.split(coeffs).items()}
        self.tex_drives_colors = colors is None
        with torch.no_grad():
            self.base = face_model.texture(self.p["tex"]) if colors is None else colors.detach().to(dev, torch.float32)
        self.delta = torch.zeros(B, face_model.num_vertices, 3, device=dev, requires_grad=True)
        self.edges = face_model.topology.edges(dev)
        self.laplacian = face_model.topology.laplacian(dev)
        self.target = target.detach().float()
        self.visibility = None if visibility is None else visibility.detach().to(dev, torch.float32)
        self.skin = skin_mask(self.target) if visibility is None else None
        self.lm5 = None if landmarks5 is None else landmarks5.to(dev, torch.float32)
        self.lm68 = None
        if landmarks68 is not None or landmarks3d is not None:
            to = lambda t: None if t is None else t.to(dev)  # noqa: E731
            self.lm68 = _Landmarks68(face_model, to(landmarks68), to(landmark_weights), to(landmarks3d),
                                     to(landmark3d_weights), sch.contour_every)
        self.soft_edge = SoftEdge(face_model, sch.silhouette_sigma) \
            if self.visibility is not None and sch.w_silhouette > 0 else None
        self.id_encoder = id_encoder
        if id_encoder is not None:
            with torch.no_grad():
                self.id_target = {"id": id_encoder.embed(self.target)}
        lrs = {"angle": sch.lr_pose, "trans": sch.lr_trans, "gamma": sch.lr_light, "id": sch.lr_shape,
               "exp": sch.lr_shape, "tex": sch.lr_shape}
        groups = [{"params": [self.p[k]], "lr": lr, "lr0": lr, "name": k} for k, lr in lrs.items()]
        groups.append({"params": [self.delta], "lr": sch.lr_colors, "lr0": sch.lr_colors, "name": "delta"})
        self.opt = torch.optim.Adam(groups)
        self.n1, self.n2 = int(round(steps * sch.pose_frac)), int(round(steps * sch.shape_frac))
        self.stage, self.rest, self.albedo_fixed = 0, None, None
        self.prior = resolve_fill(fill)  # a bad value fails here, with or without visibility
        if self.visibility is None:
            self.prior = None
        self.fill = self.prior is not None
        self.hidden = None  # [B, V] bool: the vertices the photo hides (stage 3, with ``fill``)
        self.hold = None if hold is None else hold.to(dev, torch.bool)

    def coeffs(self) -> torch.Tensor:
        return self.layout.join(self.p)

    def stage_of(self, step: int) -> int:
        return 1 if step < self.n1 else (2 if step < self.n2 else 3)

    def enter(self, stage: int) -> None:
        """Stages 1 and 3 keep the shape (and the albedo under the colour offsets) fixed: cache them
        so that a step costs only the pose, lighting and rasterization."""
        self.stage = stage
        with torch.no_grad():
            self.albedo_fixed = self.fm.texture(self.p["tex"]).detach() if self.tex_drives_colors else self.base
            self.rest = None if stage == 2 else self.fm.rest_shape(self.coeffs())
        if stage == 3 and self.fill and self.hold is not None:
            self.hidden = self.hold
        elif stage == 3 and self.fill:
            with torch.no_grad():
                rast = self.renderer.rasterize(self.fm.mesh(self.coeffs(), self.albedo_fixed, rest=self.rest)).rast
            self.hidden, _ = hidden_vertices(rast, self.fm.topology.triangles, self.visibility, self.fm.num_vertices)
        active = set(self.STAGE_PARAMS[stage]) - (set() if self.tex_drives_colors else {"tex"})
        for g in self.opt.param_groups:
            g["active"] = g["name"] in active

    def set_lr(self, step: int) -> None:
        start, end = ((0, self.n1) if self.stage == 1 else (self.n1, self.n2) if self.stage == 2 else (self.n2, self.steps))
        frac = (step - start) / max(1, end - start - 1)
        for g in self.opt.param_groups:
            g["lr"] = g["lr0"] * (1.0 - (1.0 - self.sch.final_lr_frac) * frac)

    def colors(self) -> torch.Tensor:
        if self.stage == 2 and self.tex_drives_colors:
            return self.fm.texture(self.p["tex"])
        return self.albedo_fixed + self.offsets() if self.stage == 3 else self.albedo_fixed

    def offsets(self) -> torch.Tensor:
        """The colour offsets, 0 on the vertices the photo hides (they take :meth:`result`'s fill)."""
        return self.delta if self.hidden is None else self.delta * (~self.hidden)[..., None]

    def loss(self, step: int):
        """Render and return ``(loss, terms)``."""
        sch, stage = self.sch, self.stage
        out = self.renderer(self.fm, self.coeffs(), colors=self.colors(), rest=self.rest)
        mask = out.mask.detach()
        if self.visibility is not None:
            weight = mask * self.visibility
        else:
            nsw = sch.nonskin_weight if stage < 3 else sch.nonskin_weight_fine
            weight = mask * (self.skin + nsw * (1 - self.skin))
        photo = L.photometric_loss(self.target, out.image, weight)
        loss = sch.w_photo * photo
        terms = {"stage": stage, "photo": float(photo.detach())}
        if self.lm5 is not None:
            lml = L.landmark_loss(landmarks5_of(out.landmarks_px), self.lm5, self.target.shape[-1])
            loss = loss + sch.w_landmark * lml
            terms["landmark"] = float(lml.detach())
        if self.lm68 is not None:
            p = self.p
            lterms = self.lm68.loss(self.renderer, out, cam.euler_rotation(p["angle"]), p["trans"], step,
                                    float(self.target.shape[-1]))
            for name, value in lterms.items():
                loss = loss + {"landmark68": sch.w_landmark68, "landmark3d": sch.w_landmark3d}[name] * value
                terms[name] = float(value.detach())
        if self.soft_edge is not None:
            sil = self.soft_edge.loss(self.renderer.project_points(out.vertices_cam), out.rast, self.visibility,
                                      _cheek_rows(out.landmarks_px.detach(), out.rast.shape[1:3]))
            loss = loss + sch.w_silhouette * sil
            terms["silhouette"] = float(sil.detach())
        if self.id_encoder is not None and stage >= 2 and (step - self.n1) % max(1, sch.id_every) == 0:
            comp = L.composite(out.image, mask, self.target)
            idl = L.perceptual_losses(self.id_target, {"id": self.id_encoder.embed(comp)})["id"]
            loss = loss + sch.w_id * idl
            terms["id"] = float(idl.detach())
        loss = loss + sch.w_gamma * L.gamma_regularizer(self.p["gamma"])
        if stage == 2:
            loss = loss + L.coefficient_regularizer(self.p, sch.w_reg_id, sch.w_reg_exp, sch.w_reg_tex)
        if stage == 3:
            loss = loss + sch.w_color_l2 * self.delta.pow(2).mean() + \
                sch.w_color_smooth * L.edge_smoothness(self.delta, self.edges, self.laplacian)
        terms["loss"] = float(loss.detach())
        return loss, terms

    def step(self, step: int) -> dict:
        stage = self.stage_of(step)
        if stage != self.stage:
            self.enter(stage)
        self.set_lr(step)
        loss, terms = self.loss(step)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        for g in self.opt.param_groups:
            if not g["active"]:
                for t in g["params"]:
                    t.grad = None
        self.opt.step()
        return terms

    @torch.no_grad()
    def result(self):
        albedo = self.fm.texture(self.p["tex"]) if self.tex_drives_colors else self.base
        colors = (albedo + self.offsets()).clamp(0, 1).detach()
        if self.hidden is not None and self.prior.at_colour_stage:  # harmonic fill of the held offsets
            colors = (albedo + fill_hidden(self.offsets(), self.hidden, self.edges)).clamp(0, 1).detach()
        elif self.hidden is not None:  # the hidden vertices' colours from the face itself
            colors = paint_hidden(self.fm, self.renderer, self.coeffs().detach(), colors, self.visibility,
                                  self.prior, base=albedo.detach(), hidden=self.hidden)
        return self.coeffs().detach(), colors


def fit(face_model, renderer, target: torch.Tensor, coeffs: Optional[torch.Tensor] = None,
        colors: Optional[torch.Tensor] = None, landmarks5: Optional[torch.Tensor] = None, steps: int = 200,
        id_encoder=None, schedule: Optional[FitSchedule] = None, progress: bool = False,
        prealign_steps: int = 60, landmarks68: Optional[torch.Tensor] = None,
        landmark_weights: Optional[torch.Tensor] = None, visibility: Optional[torch.Tensor] = None,
        fill=True, landmarks3d: Optional[torch.Tensor] = None,
        landmark3d_weights: Optional[torch.Tensor] = None, hold: Optional[torch.Tensor] = None):
    """Test-time fitting of coefficients and per-vertex colours to aligned photos.

    Args:
        face_model: MorphableModel.
        renderer: Renderer (224 x 224 Deep3DFaceRecon camera).
        target: ``[B, 3, 224, 224]`` aligned photos in [0, 1].
        coeffs: ``[B, layout.size]`` starting coefficients (None = mean face, frontal, ambient light).
        colors: ``[B, V, 3]`` starting vertex albedo (the model's texture when None).
        landmarks5: ``[B, 5, 2]`` MTCNN points in the crop's pixel frame, or None.
        steps: Adam steps.
        id_encoder: identity encoder with ``embed`` (e.g. dlib), or None to skip that loss.
        schedule: :class:`FitSchedule` (defaults when None).
        progress: show a tqdm bar.
        prealign_steps: landmark-only pose steps before fitting from the mean face (cheap; needs
            ``landmarks5``; skipped when ``coeffs`` are given: a network's prediction is already
            posed, and MTCNN's 5 points would only pull it towards their own definition).
        landmarks68: ``[B, 68, 2]`` 68 2D-style points in crop pixels (e.g. the landmark head's:
            the jaw on the face's outline, matched to the mesh's outline), or None.
        landmark_weights: ``[B, 68]`` their weights (e.g. confidences), or None (all 1).
        visibility: ``[B, 1, 224, 224]`` probability that a pixel shows the face unoccluded (a
            face segmenter's), weighting the photometric term and, with ``schedule.w_silhouette``,
            the target of the silhouette term (the rendered outline, softened by
            :class:`~pyfaid.reconstruct.silhouette.SoftEdge`, pulled to it); None: a skin-colour test.
        fill: with ``visibility``, the colour offsets of the rendered vertices the photo hides
            (:func:`~pyfaid.reconstruct.fill.hidden_vertices`, found when the colour stage starts)
            are held at 0 while fitting, so an occluder is not painted into the face (under Adam a
            small photometric weight is no protection: each offset's step is normalised, so a
            vertex that only an occluder's pixels reach, at any weight, takes its colour); then the
            hidden vertices are filled: True (:data:`~pyfaid.reconstruct.prior.DEFAULT_PRIOR`,
            step ``"stage"``) harmonically from the visible offsets around them; a
            :class:`~pyfaid.reconstruct.prior.FillPrior` or another step of
            :data:`~pyfaid.reconstruct.prior.FILL_STEPS` painted from the face itself
            (:func:`~pyfaid.reconstruct.prior.paint_hidden`); ``"hold"`` no painting; False paints
            every vertex from the photo.
        hold: ``[B, V]`` bool, the vertices to hold (None: found when the colour stage starts).

        landmarks3d: ``[B, 68, 2]`` 3D-style points in crop pixels (e.g. the 3D-style head's),
            matched to the landmark vertices (all 68, hidden ones too), or None.
        landmark3d_weights: ``[B, 68]`` their weights, or None (all 1).

    Returns:
        ``(coeffs [B, layout.size], colors [B, V, 3], history)``; ``history`` lists per-step loss values.
    """
    f = _Fitter(face_model, renderer, target, coeffs, colors, landmarks5, steps, id_encoder,
                schedule or FitSchedule(), landmarks68, landmark_weights, visibility, fill, landmarks3d,
                landmark3d_weights, hold)
    if f.lm5 is not None and prealign_steps > 0 and coeffs is None:  # a prediction is already posed
        _prealign(face_model, renderer, f.p, f.lm5, prealign_steps)
    history = [f.step(step) for step in tqdm(range(steps), desc="fitting", leave=False, disable=not progress)]
    c, col = f.result()
    return c, col, history


@dataclass(frozen=True)
class Fit:
    """Pipeline step 3's result for ``N`` crops: the refined reconstruction.

    Attributes:
        coeffs: ``[N, layout.size]``.
        albedo: ``[N, V, 3]`` per-vertex albedo (None: the face model's texture of ``coeffs``).
        histories: per face, the losses of every fitting step (empty lists without fitting).
    """

    coeffs: torch.Tensor
    albedo: Optional[torch.Tensor]
    histories: List[list] = field(default_factory=list)


def _confidence_weights(conf: torch.Tensor) -> torch.Tensor:
    """Landmark weights from the head's confidences ``exp(-log_scale)``: relative to each face's
    median, clipped to [0.1, 1] so no point dominates."""
    rel = conf / conf.median(dim=1, keepdim=True).values.clamp_min(1e-6)
    return rel.clamp(0.1, 1.0)


def fit_prediction(face_model, crops: torch.Tensor, pred: Prediction, landmarks5_crop_px: Optional[torch.Tensor],
                   steps: int, id_encoder=None, schedule: Optional[FitSchedule] = None, progress: bool = False,
                   fill=True) -> Fit:
    """Pipeline step 3, fit: the prediction ``pred`` refined by ``steps`` of test-time fitting per face.

    Args:
        face_model: MorphableModel. crops: ``[N, 3, 224, 224]``.
        pred: :class:`~pyfaid.reconstruct.predict.Prediction` (empty for the mean face).
        landmarks5_crop_px: ``[N, 5, 2]`` MTCNN points in crop pixels (or None).
        steps: fitting steps per face (0 = the prediction as it is).
        id_encoder, progress: see :func:`fit`.
        fill: with a segmenter's ``visibility`` in ``pred``, the vertices the photo hides are held
            while fitting and then painted from the face itself, not from the photo (True, a step
            name of :data:`~pyfaid.reconstruct.prior.FILL_STEPS` or a
            :class:`~pyfaid.reconstruct.prior.FillPrior`; see :func:`fit`); with a fine stage
            (``pred.coarse_albedo``) fitting starts from
            :func:`~pyfaid.reconstruct.fill.fill_refinement` of its colours.
        schedule: see :func:`fit`; None: :data:`PREDICTION_SCHEDULE` when starting from a network's
            prediction, ``FitSchedule()`` from the mean face.

    Returns:
        :class:`Fit`.
    """
    n = crops.shape[0]
    coeffs = pred.coeffs if pred.coeffs is not None else face_model.layout.zeros(n, device=crops.device)
    if steps <= 0:
        return Fit(coeffs, pred.albedo, [[] for _ in range(n)])
    if schedule is None and pred.coeffs is not None:
        schedule = PREDICTION_SCHEDULE
    renderer = crop_renderer(crops.device)
    prior = resolve_fill(fill)
    late = prior is not None and prior.at_colour_stage  # hidden set found, and filled, inside fit()
    colors = start_colors(face_model, renderer, pred, prior)
    hold = None if late else held_vertices(face_model, renderer, coeffs, colors, pred, prior)  # [N, V] or None
    vis, lm68, conf = pred.visibility, pred.landmarks_crop_px, pred.landmark_confidence
    lm3d, conf3d = pred.landmarks_3d_crop_px, pred.landmark_confidence_3d
    out_c, out_col, hists = [], [], []
    for i in range(n):
        c, col, hist = fit(face_model, renderer, crops[i:i + 1], coeffs[i:i + 1],
                           None if colors is None else colors[i:i + 1],
                           None if landmarks5_crop_px is None else landmarks5_crop_px[i:i + 1], steps,
                           id_encoder=id_encoder, schedule=schedule, progress=progress,
                           landmarks68=None if lm68 is None else lm68[i:i + 1],
                           landmark_weights=None if conf is None else _confidence_weights(conf[i:i + 1]),
                           visibility=None if vis is None else vis[i:i + 1],
                           fill=prior if late or prior is None else HOLD, hold=None if hold is None else hold[i:i + 1],
                           landmarks3d=None if lm3d is None else lm3d[i:i + 1],
                           landmark3d_weights=None if conf3d is None else _confidence_weights(conf3d[i:i + 1]))
        out_c.append(c)
        out_col.append(col)
        hists.append(hist)
    out_c = torch.cat(out_c)  # then the vertices the photo hides, painted from the face itself
    out_col = torch.cat(out_col)
    if not late:
        out_col = paint_prediction(face_model, renderer, pred, out_c, out_col, prior, colors, hold)
    return Fit(out_c, out_col, hists)
