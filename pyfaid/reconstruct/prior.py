"""Paint what the occluder hides from the face itself: its other side, its albedo model, and a seam
fill that joins them to the photo.

Test-time fitting paints per-vertex colours from the photo where the face segmenter says it shows
the face and holds the other rendered vertices (:func:`~pyfaid.reconstruct.fill.hidden_vertices`)
at the colours it started from. :func:`paint_hidden` then gives those vertices a prior ``Q``, what
the face predicts for each vertex without looking at it:

* **symmetry**: a vertex whose mirror partner (``face_model.mirror_idx``) the photo shows takes the
  partner's fitted albedo (lighting is divided out by the fit: the albedo is shaded by the fitted
  light again where it lands, so the brighter side's light does not move across);
* **albedo model**: a vertex without a visible partner takes the face model's albedo
  (:func:`robust_albedo_fit`: its albedo basis fitted to the visible skin with outliers rejected,
  so the person's skin tone with the model's lips, brows and eyes);
* **learned**: optionally blended with the fine stage's own colours there.

The hidden vertices get ``Q + fill(c - Q)``: ``c - Q`` is known on the visible vertices (how the
photo differs from what the prior says there, e.g. one side lit brighter than the fit's light
explains, a tone the model lacks) and harmonically filled over the hidden ones
(:func:`~pyfaid.reconstruct.fill.fill_hidden`), so the fill only smooths the seam between prior and
photo. With every prior off ``Q`` is what fitting started from and this is the plain harmonic fill of
the fitted offsets.

Before the prior, the hidden set grows where occluder colour leaks: the occluders the segmenter
finds are grown by a margin in the image, and visible vertices near the hidden ones whose colour
is an outlier against the albedo model are hidden too (the robust test of occlusion-aware
morphable-model fitting: a pixel the model cannot explain is not the face).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

import cv2
import numpy as np
import torch

from pyfaid.reconstruct.fill import (
    OUTLINE_PX,
    SUPPORT_THRESHOLD,
    fill_hidden,
    fill_refinement,
    hidden_vertices,
)
from pyfaid.reconstruct.predict import Prediction
from pyfaid.render.unproject import vertex_average

__all__ = ["FillPrior", "FILL_STEPS", "DEFAULT_PRIOR", "HOLD", "resolve_fill", "paint_hidden", "robust_albedo_fit",
           "grow_occluders", "start_colors", "held_vertices", "paint_prediction"]


@dataclass(frozen=True)
class FillPrior:
    """What paints the rendered vertices the photo hides (:func:`paint_hidden`).

    Attributes:
        symmetry: a hidden vertex whose mirror partner the photo shows takes the partner's albedo.
        albedo: a hidden vertex without a visible partner takes the face model's albedo fitted
            robustly to the visible skin (False: the colour fitting started from).
        margin_px: the segmenter's occluders are grown by this many crop pixels before the hidden
            vertices are found (0: off).
        outlier_sigmas: visible vertices within ``outlier_rings`` rings of the hidden ones whose
            albedo differs from the albedo model's by more than this many robust standard deviations
            are hidden too (0: off).
        outlier_rings: how far (mesh rings) the outlier test reaches from the hidden set.
        learned: weight of the fine stage's own colours in the prior on hidden vertices (0: none).
        outline_px: hidden vertices within this many pixels of the render's outline keep the
            harmonic fill of what fitting painted, ones beyond twice that take the prior, linearly
            blended between (0: the prior everywhere).
        paint: False leaves the hidden vertices at the colours fitting started from (fitting still
            holds them; the prior can then be painted afterwards with :func:`paint_hidden`).
        at_colour_stage: True: the hidden vertices are found when fitting's colour stage starts
            (in the render of the fitted shape, not the start one), their offsets held at 0 and
            then filled harmonically from the visible ones, with no prior from the face: pyfaid's
            fill before this prior, and still the default (``fill=True``): on clean AFW photos the
            prior's steps scored 0.3-1.6 dB lower (README, Evaluate).
    """

    symmetry: bool = True
    albedo: bool = True
    margin_px: float = 0.0
    outlier_sigmas: float = 0.0
    outlier_rings: int = 0
    learned: float = 0.0
    outline_px: float = 0.0
    paint: bool = True
    at_colour_stage: bool = False

    def __post_init__(self):
        if self.margin_px < 0 or self.outlier_sigmas < 0 or self.outlier_rings < 0:
            raise ValueError(f"FillPrior: margins, sigmas and rings must be >= 0, got {self}")
        if not 0.0 <= self.learned <= 1.0:
            raise ValueError(f"FillPrior: `learned` must be in [0, 1], got {self.learned}")


#: The steps of the hidden-vertex prior, each adding to the one before (``fill=`` of
#: :func:`pyfaid.reconstruct`, ``--fill`` of ``python -m pyfaid.evaluate``).
FILL_STEPS = {
    "stage": FillPrior(symmetry=False, albedo=False, at_colour_stage=True),
    "harmonic": FillPrior(symmetry=False, albedo=False),
    "symmetry": FillPrior(symmetry=True, albedo=False, outline_px=12.0),
    "albedo": FillPrior(symmetry=True, albedo=True, outline_px=12.0),
    "edges": FillPrior(symmetry=True, albedo=True, outline_px=12.0, margin_px=2.0, outlier_sigmas=3.0,
                       outlier_rings=3),
}
FILL_STEPS["learned"] = replace(FILL_STEPS["edges"], learned=0.25)

#: The fill ``fill=True`` uses: the hidden offsets filled harmonically at the colour stage (no prior).
DEFAULT_PRIOR = FILL_STEPS["stage"]

#: Hold the hidden vertices while fitting, paint nothing (``fill="hold"``).
HOLD = FillPrior(symmetry=False, albedo=False, paint=False)


def resolve_fill(fill) -> Optional[FillPrior]:
    """``fill`` as given to fitting -> a :class:`FillPrior`, or None for no fill.

    True: :data:`DEFAULT_PRIOR`; False / None: no fill; a name of :data:`FILL_STEPS`; ``"hold"``:
    :data:`HOLD`; a FillPrior.
    """
    if fill is None or fill is False:
        return None
    if fill is True:
        return DEFAULT_PRIOR
    if isinstance(fill, FillPrior):
        return fill
    if isinstance(fill, str) and fill in FILL_STEPS:
        return FILL_STEPS[fill]
    if fill == "hold":
        return HOLD
    raise ValueError(f"fill must be True, False, a FillPrior, 'hold' or one of {', '.join(FILL_STEPS)}, "
                     f"got {fill!r}")


@torch.no_grad()
def grow_occluders(visibility: torch.Tensor, covered: torch.Tensor, margin_px: float,
                   outline_px: float = OUTLINE_PX) -> torch.Tensor:
    """Visibility with the occluders inside the face grown by ``margin_px``.

    The seeds are the render's pixels the segmenter calls hidden (visibility < 0.5) farther than
    ``outline_px + margin_px`` from the render's outline: occluders on the face, not the hair and
    background along its outline (the outline band of
    :func:`~pyfaid.reconstruct.fill.hidden_vertices`, where the photo is what the render is
    compared with). Pixels within ``margin_px`` of a seed are hidden too.

    Args:
        visibility: ``[B, 1, H, W]`` in [0, 1]. covered: ``[B, 1, H, W]`` the render's coverage.
        margin_px: the growth in pixels (0: ``visibility`` as it is).
        outline_px: the outline band's width.

    Returns:
        ``[B, 1, H, W]``.
    """
    if margin_px <= 0:
        return visibility
    r = int(np.ceil(margin_px))  # cv2's kernel
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    cover = (covered > 0.5).to(torch.uint8).cpu().numpy()[:, 0]
    hid = (visibility < 0.5).cpu().numpy()[:, 0]
    grown = []
    for c, h in zip(cover, hid):
        inside = cv2.distanceTransform(np.pad(c, 1), cv2.DIST_L2, 3)[1:-1, 1:-1] > outline_px + margin_px
        grown.append(cv2.dilate((h & inside).astype(np.uint8), kernel))
    return visibility * (1 - torch.from_numpy(np.stack(grown)[:, None]).to(visibility))


def _tex_rows(face_model, idx: torch.Tensor) -> tuple:
    """``(mean [N, 3], basis [N, 3, n_tex])`` of the albedo model at vertices ``idx``."""
    basis = face_model.tex_base.view(face_model.num_vertices, 3, -1)[idx]
    return face_model.mean_tex[idx], basis


@torch.no_grad()
def robust_albedo_fit(face_model, colors: torch.Tensor, weights: torch.Tensor, init: Optional[torch.Tensor] = None,
                      iters: int = 5, ridge: float = 1e-3, max_vertices: int = 2000,
                      cut: float = 4.685) -> tuple:
    """The face model's albedo fitted to per-vertex colours, outliers rejected (IRLS, Tukey's
    biweight on each vertex's RGB residual; scale from the median absolute residual).

    Minimises ``sum_v w_v rho(|c_v - mean_v - B_v d|) / sum_v w_v + ridge |d|^2`` over the albedo
    coefficients ``d`` (``N(0, 1)``-scaled by the model, so the ridge is a Gaussian prior). A
    vertex whose residual is past Tukey's cut gets weight 0: an occluder's colour is rejected,
    not averaged in.

    Args:
        face_model: MorphableModel. colors: ``[B, V, 3]``.
        weights: ``[B, V]`` in [0, 1], the vertices to fit (0: ignored).
        init: ``[B, n_tex]`` start (None: the mean albedo).
        iters: IRLS iterations. ridge: weight of ``|d|^2``.
        max_vertices: at most this many vertices per face enter the fit (an even stride over them).
        cut: Tukey's cut in robust standard deviations (4.685: 95 % efficiency on Gaussian noise;
            ``inf``: least squares).

    Returns:
        ``(coeffs [B, n_tex], inlier [B, V] weights in [0, 1], 0 outside ``weights``)``.
    """
    B, V, _ = colors.shape
    if weights.shape != (B, V):
        raise ValueError(f"robust_albedo_fit: `weights` must be [{B}, {V}], got {tuple(weights.shape)}")
    n = face_model.n_tex
    dev = colors.device
    d_all = torch.zeros(B, n, device=dev) if init is None else init.detach().float().clone()
    inlier = torch.zeros(B, V, device=dev)
    eye = torch.eye(n, device=dev, dtype=torch.float64)
    for b in range(B):
        idx = torch.nonzero(weights[b] > 0).flatten()
        if idx.numel() < 10:
            continue
        idx = idx[:: max(1, idx.numel() // max_vertices)]
        mean, basis = _tex_rows(face_model, idx)  # [N, 3], [N, 3, n]
        y = colors[b, idx].float() - mean  # [N, 3]
        a = basis.float().reshape(-1, n)  # [3N, n], rows (vertex, channel)
        w0 = weights[b, idx].float()
        d = d_all[b].float()
        w = w0
        for _ in range(iters):
            r = (y - (a @ d).view(-1, 3)).norm(dim=1)  # [N]
            scale = 1.4826 * torch.median(r).clamp_min(1e-3)
            u = (r / (cut * scale)).clamp(max=1.0)
            w = w0 * (1 - u * u) ** 2
            aw = a * (w / w.sum().clamp_min(1e-9)).repeat_interleave(3)[:, None]
            lhs, rhs = (aw.T @ a).double() + ridge * eye, (aw.T @ y.reshape(-1)).double()
            d = torch.linalg.solve(lhs, rhs).float()
        d_all[b] = d.float()
        inlier[b, idx] = w.float() / w0.clamp_min(1e-9).float()
    return d_all, inlier


def _grow(hidden: torch.Tensor, candidates: torch.Tensor, laplacian: torch.Tensor, rings: int) -> torch.Tensor:
    """``hidden [V]`` grown through ``candidates [V]``, ring by ring, at most ``rings`` rings.

    ``laplacian`` is the mesh's ``D - A``: for a vertex outside the set, ``(L x)_v`` is minus its
    number of neighbours in it.
    """
    out = hidden.clone()
    for _ in range(rings):
        front = ((laplacian @ out.float()[:, None])[:, 0] < 0) & candidates & ~out
        if not bool(front.any()):
            break
        out |= front
    return out


@torch.no_grad()
def paint_hidden(face_model, renderer, coeffs: torch.Tensor, colors: torch.Tensor, visibility: torch.Tensor,
                 prior: FillPrior, base: Optional[torch.Tensor] = None, hidden: Optional[torch.Tensor] = None,
                 learned: Optional[torch.Tensor] = None, tex_init: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Colours for the rendered vertices the photo hides, from the face itself (see the module).

    Args:
        face_model, renderer: the model and the crops' renderer. coeffs: ``[B, layout.size]``.
        colors: ``[B, V, 3]`` fitted albedo (the photo's where it shows the face).
        visibility: ``[B, 1, H, W]`` (renderer size) probability that a pixel shows the face.
        prior: :class:`FillPrior`.
        base: ``[B, V, 3]`` the colours fitting started from: the prior where none of its steps
            applies (None: ``colors``).
        hidden: ``[B, V]`` bool, the vertices fitting held; the margin and the outlier test add to
            them (None: the hidden vertices of the render of ``coeffs``).
        learned: ``[B, V, 3]`` the fine stage's colours (used when ``prior.learned > 0``).
        tex_init: ``[B, n_tex]`` start of the albedo fit (None: the ``tex`` part of ``coeffs``).

    Returns:
        ``[B, V, 3]`` in [0, 1]: ``colors`` on the vertices the photo shows, the prior joined to
        them on the hidden ones.
    """
    V = colors.shape[1]
    if not prior.paint:
        return colors
    frags = renderer.rasterize(face_model.mesh(coeffs, colors))
    vis = visibility.float()
    grown = grow_occluders(vis, frags.mask, prior.margin_px)
    support, dist, hid0, hid = _measures(frags.rast, face_model.topology.triangles, V, vis, grown)
    held = hid0 if hidden is None else hidden.to(hid0.device)  # what fitting held
    # with a margin, what the final fit's render hides with the occluders grown (and what was held);
    # else what fitting held (what it painted stays)
    hid = hid | held if prior.margin_px > 0 else held
    c = colors.float()
    known = (support >= SUPPORT_THRESHOLD) & ~hid  # vertices whose colour the photo gave
    q = c.clone() if base is None else base.float().clone()  # where no step applies
    if prior.albedo or prior.outlier_sigmas > 0:
        fit_w = (known & face_model.face_mask.to(known.device)[None]).float()
        init = face_model.split_coeffs(coeffs)["tex"] if tex_init is None else tex_init
        d, _ = robust_albedo_fit(face_model, c, fit_w, init)
        model = face_model.texture(d).float()
        if prior.outlier_sigmas > 0 and prior.outlier_rings > 0:
            hid, known = _reject_outliers(face_model, c, model, hid, known, prior)
        if prior.albedo:
            q = model
    if prior.symmetry:
        q = _mirrored(face_model, c, q, known)
    if prior.learned > 0 and learned is not None:
        q = (1 - prior.learned) * q + prior.learned * learned.float()
    # what the photo says beyond the prior, known on the visible vertices, filled over the hidden ones
    data = ~hid & (support > 0)  # rendered and painted from the photo (the outline band included)
    edges = face_model.topology.edges(c.device)
    seam = fill_hidden(torch.where(data[..., None], c - q, torch.zeros_like(c)), hid, edges)
    painted = q + seam
    if prior.outline_px > 0:  # near the outline, what fitting painted, and the held vertices filled from it
        b = c if base is None else base.float()
        harmonic = torch.where(held[..., None], b + fill_hidden(c - b, held, edges), c)
        a = ((dist - prior.outline_px) / prior.outline_px).clamp(0, 1)[..., None]
        painted = a * painted + (1 - a) * harmonic
    out = torch.where(hid[..., None], painted, c)
    return out.clamp(0, 1).to(colors.dtype)


def _measures(rast: torch.Tensor, triangles: torch.Tensor, num_vertices: int, vis: torch.Tensor,
              grown: torch.Tensor) -> tuple:
    """Per rendered vertex, in one pass over the render: ``(support [B, V]`` under the grown
    occluders, ``outline distance [B, V]`` in pixels, ``hidden [B, V]`` and ``hidden grown [B, V])``,
    hidden as :func:`~pyfaid.reconstruct.fill.hidden_vertices` finds it."""
    cover = (rast[..., 3] > 0).cpu().numpy().astype(np.uint8)
    dist = np.stack([cv2.distanceTransform(np.pad(c, 1), cv2.DIST_L2, 3)[1:-1, 1:-1] for c in cover])
    values = torch.cat([vis.clamp(0, 1), grown.clamp(0, 1), torch.from_numpy(dist).to(vis)[:, None]], 1)
    avg, seen = vertex_average(rast, triangles, values, num_vertices)
    inside = seen & (avg[..., 2] >= OUTLINE_PX)
    return avg[..., 1], avg[..., 2], inside & (avg[..., 0] < SUPPORT_THRESHOLD), inside & (avg[..., 1] < SUPPORT_THRESHOLD)


def _mirrored(face_model, c: torch.Tensor, q: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """``q`` with every vertex whose mirror partner is known set to the partner's colour."""
    m = face_model.mirror_idx.to(c.device)
    has = m >= 0
    src = torch.where(has, m, torch.zeros_like(m))
    ok = known[:, src] & has[None]  # [B, V]
    return torch.where(ok[..., None], c[:, src], q)


def _reject_outliers(face_model, c, model, hid, known, prior: FillPrior) -> tuple:
    """Visible vertices near the hidden ones whose colour the albedo model cannot explain -> hidden."""
    r = (c - model).norm(dim=-1)  # [B, V]
    lap = face_model.topology.laplacian(c.device)
    hid, known = hid.clone(), known.clone()
    for b in range(c.shape[0]):
        rb = r[b][known[b]]
        if rb.numel() < 10:
            continue
        scale = max(1.4826 * float(torch.median(rb)), 1e-3)
        grown = _grow(hid[b], known[b] & (r[b] > prior.outlier_sigmas * scale), lap, prior.outlier_rings)
        known[b] &= ~grown
        hid[b] = grown
    return hid, known


@torch.no_grad()
def start_colors(face_model, renderer, pred: Prediction, fill) -> Optional[torch.Tensor]:
    """The colours fitting starts from for a :class:`~pyfaid.reconstruct.predict.Prediction`: with
    a fine stage, a segmenter and a fill, :func:`~pyfaid.reconstruct.fill.fill_refinement` of the
    fine colours; else the predicted albedo as it is (None without any).

    Returns:
        ``[B, V, 3]`` or None.
    """
    colors, coarse, vis = pred.albedo, pred.coarse_albedo, pred.visibility
    if resolve_fill(fill) is None or colors is None or coarse is None or vis is None:
        return colors
    return fill_refinement(face_model, renderer, pred.coeffs, colors, coarse, vis)


@torch.no_grad()
def held_vertices(face_model, renderer, coeffs: torch.Tensor, colors: Optional[torch.Tensor], pred: Prediction,
                  fill) -> Optional[torch.Tensor]:
    """The vertices fitting from a prediction holds: the rendered ones the photo hides, in the render
    of the starting ``coeffs`` ``[B, layout.size]`` (None without a fill or a segmenter).

    Returns:
        ``[B, V]`` bool or None.
    """
    vis = pred.visibility
    if resolve_fill(fill) is None or vis is None:
        return None
    rast = renderer.rasterize(face_model.mesh(coeffs, colors)).rast
    return hidden_vertices(rast, face_model.topology.triangles, vis, face_model.num_vertices)[0]


@torch.no_grad()
def paint_prediction(face_model, renderer, pred: Prediction, coeffs: torch.Tensor, colors: torch.Tensor, fill,
                     base: Optional[torch.Tensor] = None, hidden: Optional[torch.Tensor] = None) -> torch.Tensor:
    """:func:`paint_hidden` for colours fitted from a prediction with the hidden vertices held
    (``fill="hold"``): its segmenter's visibility, its fine stage's colours as the learned prior.

    Args:
        face_model, renderer: the model and the crops' renderer. pred: the prediction.
        coeffs: ``[B, layout.size]`` and colors: ``[B, V, 3]`` fitted.
        fill: see :func:`resolve_fill` (no fill, or a prediction without ``visibility``:
            ``colors`` as they are).
        base: :func:`start_colors` of ``pred`` when already at hand.
        hidden: ``[B, V]`` the vertices fitting held (:func:`held_vertices`).

    Returns:
        ``[B, V, 3]``.
    """
    prior, vis = resolve_fill(fill), pred.visibility
    if prior is None or not prior.paint or vis is None or pred.albedo is None:
        return colors
    base = start_colors(face_model, renderer, pred, prior) if base is None else base
    return paint_hidden(face_model, renderer, coeffs, colors, vis, prior, base=base, hidden=hidden,
                        learned=pred.albedo)
