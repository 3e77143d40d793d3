"""The paper's photometric protocol (section 4.3-4.4, Tables 1 and 2) on any dataset.

For every image and condition (``none``: the image itself; ``synthetic``: random occluders of every
kind from :func:`pyfaid.occlusion.occlude`; or one occluder kind, e.g. ``sunglasses``, all with a fixed
seed), each method reconstructs the face from the *input* and its render is compared with the
*clean* image, which is the reference in every condition, as in the paper. Real photos are aligned
once (MTCNN on the clean photo); the occluders are pasted into that crop, so both inputs share one
frame and detection plays no part in the score.

A method is a checkpoint (or none: the mean face) plus test-time fitting steps (0 = the network
alone): the same reconstruction :func:`pyfaid.reconstruct` gives a user.

Metrics per image: ``psnr``, ``ssim`` inside the rendered face mask (the numbers of the paper's
tables; see :mod:`pyfaid.metrics`); with occluders pasted on, ``psnr_occluded`` and ``psnr_visible``
(the same PSNR over the rendered face pixels the occluders cover and over the ones they leave
visible, so a change shows where it acts) and ``occluded_share`` (the share of the rendered face the
occluders cover); ``psnr_image``, ``ssim_image`` (the render pasted over the
reference), ``id_<encoder>`` (cosine of identity embeddings of the reference and the pasted
render), and on synthetic data against the generator's ground truth ``color_error``,
``shape_error``, ``shape_error_mm``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from tqdm import tqdm

from pyfaid import metrics
from pyfaid.checkpoint import load_model
from pyfaid.config import DataConfig
from pyfaid.data.registry import build_dataset, parse_spec
from pyfaid.encoders import TEMPLATE_224, align_faces
from pyfaid.evaluate.geometry import MM_PER_UNIT, procrustes_error
from pyfaid.models.features import to_encoder_size
from pyfaid.occlusion import OCCLUDER_KINDS, occlude
from pyfaid.reconstruct.fitting import fit_prediction
from pyfaid.reconstruct.predict import (
    crop_renderer,
    default_face_model,
    predict,
    resolve_device,
)
from pyfaid.reconstruct.prior import (
    held_vertices,
    paint_prediction,
    resolve_fill,
    start_colors,
)

__all__ = ["Method", "evaluate", "load_methods", "CONDITIONS", "OCCLUSION_SEED", "condition_names"]

OCCLUSION_SEED = 1234


def condition_names() -> dict:
    """Condition key -> the name used in reports."""
    return {"none": "clean", "synthetic": "occluded", **{k: f"occluded ({k})" for k in OCCLUDER_KINDS}}


#: Input conditions: the clean image, every occluder kind at random, or one kind
#: (:data:`pyfaid.occlusion.OCCLUDER_KINDS`).
CONDITIONS = ("none", "synthetic", "sunglasses", "glasses", "hand", "hair", "patch", "noise", "mask")


@dataclass(frozen=True)
class Method:
    """A way to reconstruct: ``checkpoint`` (file / run folder, or None for the mean face),
    ``fit_steps`` of test-time fitting, ``fill`` (how the vertices the segmenter says the photo hides
    are painted: True the default fill, a step name of
    :data:`~pyfaid.reconstruct.prior.FILL_STEPS`, False from the photo; :func:`pyfaid.reconstruct`'s
    ``fill``; methods that differ only in it share one fit) and, in the landmark
    protocol, the source of the 68 points (``landmarks``: ``"head"``, or ``"dlib"`` with the caveat
    of :mod:`pyfaid.encoders.dlib_landmarks`); ``coarse``: the checkpoint's coarse stage alone, its
    fine model skipped (the coarse-against-fine comparison of one model)."""

    name: str
    checkpoint: Optional[str] = None
    fit_steps: int = 0
    landmarks: str = "head"
    fill: object = True
    coarse: bool = False  # the checkpoint's coarse stage alone (its fine model skipped)


def _summary(values: List[float]) -> Dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    a = a[np.isfinite(a)]
    if a.size == 0:
        return {"mean": float("nan"), "std": float("nan"), "n": 0}
    return {"mean": float(a.mean()), "std": float(a.std()), "n": int(a.size)}


def _batches(dataset, count: int, batch_size: int):
    """Yield ``(items, skipped)`` with up to ``batch_size`` valid items until ``count`` valid items
    were produced or the dataset ends (datasets return None for unreadable images / no face)."""
    batch, skipped, done = [], 0, 0
    for i in range(len(dataset)):
        if done >= count:
            break
        item = dataset[i]
        if item is None:
            skipped += 1
            continue
        batch.append(item)
        done += 1
        if len(batch) == batch_size:
            yield batch, skipped
            batch, skipped = [], 0
    if batch or skipped:
        yield batch, skipped


def _landmarks5(items, clean: torch.Tensor) -> Optional[torch.Tensor]:
    """MTCNN's 5 points in crop pixels: from the items, else detected on the clean crops."""
    if all("landmarks5" in it for it in items):
        return torch.stack([torch.as_tensor(it["landmarks5"]).float() for it in items]).to(clean.device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = align_faces(clean.cpu())
    pts = [lm if lm is not None else TEMPLATE_224 for lm in res.landmarks5]
    return torch.as_tensor(np.stack(pts), dtype=torch.float32, device=clean.device)


def _ground_truth(items, face_model, dev):
    """Model-space shape and albedo of synthetic items (None for real data)."""
    if not (isinstance(items[0], dict) and "coeffs" in items[0] and "colors" in items[0]):
        return None
    # model-space shape (identity + expression, no pose) from the generator's coefficients; the
    # items' camera-space vertices are a reflection of world space, which a rotation cannot align
    gt_c = torch.stack([torch.as_tensor(it["coeffs"]) for it in items]).to(dev).float()
    parts = face_model.split_coeffs(gt_c)
    return {"vertices": face_model.shape(parts["id"], parts["exp"]),
            "colors": torch.stack([it["colors"] for it in items]).to(dev).float()}


def _metrics(img, mask, clean, encs, coeffs, fm, gt, colors, occluder=None) -> dict:
    comp = mask * img + (1 - mask) * clean
    vals = {"psnr": metrics.psnr(img, clean, mask), "ssim": metrics.ssim(img, clean, mask),
            "psnr_image": metrics.psnr(comp, clean), "ssim_image": metrics.ssim(comp, clean)}
    if occluder is not None:  # [B, 1, H, W] 1 where an occluder covers the pixel
        face = (mask > 0.5).float()
        hidden = face * (occluder > 0.5).float()
        vals["psnr_occluded"] = metrics.psnr(img, clean, hidden)  # nan where no face pixel is covered
        vals["psnr_visible"] = metrics.psnr(img, clean, face - hidden)
        vals["occluded_share"] = hidden.sum((1, 2, 3)) / face.sum((1, 2, 3)).clamp_min(1)
    for ename, enc in encs.items():
        vals[f"id_{ename}"] = metrics.id_similarity(comp, clean, enc)
    if gt is not None and fm.num_vertices == gt["colors"].shape[1]:
        fmask = fm.face_mask.to(img.device)
        vals["color_error"] = (colors[:, fmask].clamp(0, 1) - gt["colors"][:, fmask]).abs().mean(dim=(1, 2))
        parts = fm.split_coeffs(coeffs)
        err = procrustes_error(fm.shape(parts["id"], parts["exp"])[:, fmask], gt["vertices"][:, fmask])
        vals["shape_error"] = err
        vals["shape_error_mm"] = err * MM_PER_UNIT
    return vals, comp


def _reconstruct(method, net, fm, inp, lm5, fits: dict):
    """The pipeline's predict and fit steps, as :func:`pyfaid.reconstruct` runs them by default (no
    identity term): ``(coeffs, albedo or None)``. Methods that differ only in how they paint the
    hidden vertices share one fit (``fits``: the fits of this input so far): it holds the hidden
    vertices, and each method paints them (as :func:`~pyfaid.reconstruct.fitting.fit_prediction`
    does)."""
    prior = resolve_fill(method.fill)
    renderer = crop_renderer(inp.device)
    if prior is not None and prior.at_colour_stage:  # its own fit: the hidden set is found inside it
        pred = predict(net, inp)
        fitted = fit_prediction(fm, inp, pred, lm5, method.fit_steps, fill=prior)
        return fitted.coeffs, fitted.albedo
    key = (method.checkpoint, method.coarse, method.fit_steps, prior is not None)
    if key not in fits:
        pred = predict(net, inp)
        fitted = fit_prediction(fm, inp, pred, lm5, method.fit_steps, fill="hold" if prior is not None else False)
        base = start_colors(fm, renderer, pred, prior)  # what fitting started from and held
        start = pred.coeffs if pred.coeffs is not None else fm.layout.zeros(inp.shape[0], device=inp.device)
        fits[key] = pred, fitted.coeffs, fitted.albedo, base, held_vertices(fm, renderer, start, base, pred, prior)
    pred, coeffs, colors, base, hold = fits[key]
    if method.fit_steps > 0:
        colors = paint_prediction(fm, renderer, pred, coeffs, colors, prior, base, hold)
    return coeffs, colors


class _Run:
    """Accumulates per-image values and sample images across batches."""

    def __init__(self, num_samples: int):
        self.values: Dict[str, Dict[str, Dict[str, list]]] = {}
        self.samples = {"input": [], "occluded": [], "render": {}}
        self.num_samples = num_samples

    def add(self, cond: str, method: str, vals: dict):
        store = self.values.setdefault(cond, {}).setdefault(method, {})
        for key, v in vals.items():
            store.setdefault(key, []).extend(v.detach().cpu().double().tolist())

    def keep(self, key: str, images: torch.Tensor, method: Optional[str] = None):
        lst = self.samples[key] if method is None else self.samples["render"].setdefault(method, [])
        if len(lst) < self.num_samples:
            lst.extend(images[: self.num_samples - len(lst)].cpu())


@torch.no_grad()
def _score_batch(run, items, bi, methods, models, occlusions, encs, fm0, dev):
    names = condition_names()
    clean = to_encoder_size(torch.stack([torch.as_tensor(it.get("clean", it["image"])).float() for it in items]).to(dev))
    lm5 = _landmarks5(items, clean) if any(m.fit_steps > 0 for m in methods) else None
    gt = _ground_truth(items, fm0, dev)
    run.keep("input", clean)
    renderer = crop_renderer(dev)
    for occ in occlusions:
        inp, occluder = clean, torch.zeros_like(clean[:, :1])
        if occ != "none":
            kinds = None if occ == "synthetic" else (occ,)
            inp, occluder = occlude(clean.cpu(), seed=OCCLUSION_SEED + bi, kinds=kinds)
            inp, occluder = inp.to(dev), occluder.to(dev)
            if occ == occlusions[-1] or len(run.samples["occluded"]) == 0:
                run.keep("occluded", inp)
        fits: dict = {}
        for method in methods:
            net, fm = models[method.name]
            with torch.enable_grad():
                coeffs, colors = _reconstruct(method, net, fm, inp, lm5, fits)
            out = renderer(fm, coeffs, colors=colors)
            vals, comp = _metrics(out.image.clamp(0, 1), out.mask, clean, encs, coeffs, fm, gt, out.mesh.albedo,
                                  occluder)
            run.add(names[occ], method.name, vals)
            if occ != "none" or len(occlusions) == 1:
                run.keep("render", comp, method.name)


def load_methods(methods: Sequence[Method], dev) -> dict:
    """Method name -> ``(FAID model or None, face model)`` (checkpoints loaded once)."""
    models = {}
    for m in methods:
        if m.checkpoint is None:
            if m.fit_steps <= 0:
                raise ValueError(f"method {m.name}: the mean face without fitting is not a reconstruction "
                                 "(give a checkpoint or fitting steps)")
            models[m.name] = (None, default_face_model(dev))
        else:
            try:  # a file, a run folder or "pretrained" (checkpoint.resolve_checkpoint)
                net = load_model(m.checkpoint, dev)
            except FileNotFoundError as exc:
                raise FileNotFoundError(f"method {m.name}: {exc}") from exc
            if m.coarse:
                net.fine = None  # predict() then returns the coarse regressor's texture
            models[m.name] = (net, net.face_model)
    return models


def evaluate(methods, data: str = "synthetic", occlusions: Sequence[str] = ("none", "synthetic"), n: int = 100,
             batch_size: int = 8, device="cpu", seed: Optional[int] = None, id_encoders: Optional[Sequence[str]] = None,
             num_samples: int = 4, progress: bool = True):
    """Evaluate methods with the paper's photometric protocol.

    Args:
        methods: :class:`Method` list, or a dict name -> checkpoint (no fitting); the first is the
            main method.
        data: ``synthetic``, ``celeba:DIR``, ``aflw2000:DIR``, ``300w:DIR`` or ``folder:DIR``.
        occlusions: conditions (:data:`CONDITIONS`): ``none``, ``synthetic`` (all occluder kinds)
            or one kind.
        n: number of images (the first ``n`` usable ones of the dataset).
        batch_size: images per forward pass.
        device: torch device.
        seed: dataset seed (synthetic data); None: the held-out seed (``DataConfig.val_seed``, the
            trainer's held-out set, disjoint from the training faces, which use ``data.seed``);
            occlusions use :data:`OCCLUSION_SEED`.
        id_encoders: identity encoders to use; default: those available (dlib, FaceNet if present).
        num_samples: images kept for the sample grid.
        progress: tqdm progress bars.

    Returns:
        ``(report, samples)``: the ``report.json`` dict and a dict with sample images.
    """
    if isinstance(methods, dict):
        methods = [Method(k, v) for k, v in methods.items()]
    if not methods:
        raise ValueError("evaluate needs at least one method (a checkpoint, or fitting steps)")
    for occ in occlusions:
        if occ not in CONDITIONS:
            raise ValueError(f"occlusion {occ!r}: expected one of {', '.join(CONDITIONS)}")
    kind, root = parse_spec(data)
    dev = resolve_device(device)
    encs = metrics.identity_encoders(tuple(id_encoders) if id_encoders else ("dlib", "facenet"), device=dev)
    models = load_methods(methods, dev)
    fm0 = next(iter(models.values()))[1]
    if seed is None:
        seed = DataConfig().val_seed
    dataset = build_dataset(kind, root, seed=seed, length=n, occlusion=False, face_model=fm0)
    count = min(n, len(dataset))
    run = _Run(num_samples)
    bar = tqdm(total=count, desc="evaluate", unit="img", disable=not progress)
    used = skipped = 0
    for bi, (items, skip) in enumerate(_batches(dataset, count, batch_size)):
        skipped += skip
        if items:
            _score_batch(run, items, bi, methods, models, list(occlusions), encs, fm0, dev)
            used += len(items)
            bar.update(len(items))
    bar.close()
    if used == 0:
        raise ValueError(f"--data {data}: no usable images ({skipped} skipped: unreadable or no face)")
    dataset_name = {"synthetic": "Synthetic", "celeba": "CelebA", "aflw2000": "AFLW2000", "folder": "Folder",
                    "300w": "300-W"}[kind]
    report = {
        "dataset": dataset_name, "data": data, "n": used, "skipped": skipped, "seed": seed,
        "occlusion_seed": OCCLUSION_SEED, "reference": "clean image", "mask": "rendered face region",
        "identity_encoders": list(encs), "mm_per_unit": MM_PER_UNIT,
        "methods": {m.name: {"checkpoint": m.checkpoint, "fit_steps": m.fit_steps,
                             "fill": m.fill if isinstance(m.fill, (bool, str)) else repr(m.fill)} for m in methods},
        "conditions": {cond: {m: {k: _summary(v) for k, v in mv.items()} for m, mv in cv.items()}
                       for cond, cv in run.values.items()},
    }
    return report, run.samples
