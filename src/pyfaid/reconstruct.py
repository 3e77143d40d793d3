"""Textured 3D face from a photo: detection, FAID forward, test-time fitting, mesh export.

Python::

    import pyfaid
    rec = pyfaid.reconstruct.reconstruct("photo.jpg", checkpoint="faid.pt", fit_steps=100)
    rec.save_obj("face.obj"); rec.save_ply("face.ply")
    out = rec.render()                      # Renderer dict in the frame of rec.input
    side = rec.render(pose=(0.0, 0.6, 0.0))  # the same face turned 0.6 rad to the side

Command line::

    python -m pyfaid.reconstruct photo.jpg more_photos/ --out out/ [--checkpoint faid.pt] [--fit 200]

Per image the command writes ``<name>.obj``, ``<name>.ply`` (vertex colours), ``<name>.npz``
(coefficients, vertices, colours) and ``<name>.png``, a strip: input | overlay | shaded render |
albedo render | two novel views.

Test-time fitting (``fit_steps > 0``) optimises, per image and with Adam, the 257 coefficients and
a per-vertex colour offset through the differentiable :class:`pyfaid.render.Renderer` against

* a robust photometric loss (per-pixel L2 norm of the RGB difference, averaged over the rendered
  face region, with pixels that do not look like skin down-weighted),
* a landmark loss (projected model landmarks vs MTCNN's 5 points: eye centres = mean of the
  model's eye landmarks 36-41 / 42-47, nose tip 30, mouth corners 48 / 54),
* an identity loss (1 - cosine of dlib embeddings of the photo and the render pasted over it),
* coefficient regularisers (Deep3DFaceRecon's weights) and an L2 + edge-smoothness regulariser on
  the colour offsets,

on a coarse-to-fine schedule: pose and light first, then shape, expression and texture, then the
per-vertex colours. It starts from the network's prediction, or from the mean face without a
checkpoint.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "Reconstruction",
    "reconstruct",
    "fit",
    "FitSchedule",
    "FaceNotFoundError",
    "ImageReadError",
    "NoCheckpointError",
    "load_image",
    "load_model",
    "main",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

# MTCNN's 5 points (image-left eye, image-right eye, nose, image-left mouth corner, image-right
# mouth corner) as averages of the iBUG 68-point landmarks.
LANDMARK5_FROM_68 = (tuple(range(36, 42)), tuple(range(42, 48)), (30,), (48,), (54,))

# Deep3DFaceRecon coefficient layout.
_SLICES = {
    "id": slice(0, 80),
    "exp": slice(80, 144),
    "tex": slice(144, 224),
    "angle": slice(224, 227),
    "gamma": slice(227, 254),
    "trans": slice(254, 257),
}


class FaceNotFoundError(ValueError):
    """No face was detected in an image."""


class ImageReadError(OSError):
    """An image file could not be read or decoded."""


class NoCheckpointError(ValueError):
    """Reconstruction was asked for with neither a checkpoint nor test-time fitting."""


NO_CHECKPOINT_MESSAGE = (
    "pyfaid.reconstruct needs either a trained FAID checkpoint (--checkpoint PATH; train one with "
    "`python -m pyfaid.train`, which writes runs/default/ckpt_*.pt) or test-time fitting from the mean "
    "face (--fit N, e.g. --fit 200)."
)


# ----------------------------------------------------------------------------------------------
# Images
# ----------------------------------------------------------------------------------------------


def load_image(path: Union[str, os.PathLike]) -> np.ndarray:
    """Read an image file with OpenCV.

    Args:
        path: image file.

    Returns:
        ``[H, W, 3]`` uint8 RGB array.

    Raises:
        ImageReadError: the file is missing or cannot be decoded as an image.
    """
    import cv2

    path = str(path)
    if not os.path.isfile(path):
        raise ImageReadError(f"{path}: no such file")
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise ImageReadError(f"{path}: not a readable image (OpenCV could not decode it)")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _to_rgb_uint8(image) -> np.ndarray:
    """Any supported in-memory image -> ``[H, W, 3]`` uint8 RGB."""
    if isinstance(image, torch.Tensor):
        t = image.detach().cpu()
        if t.dim() == 4 and t.shape[0] == 1:
            t = t[0]
        if t.dim() != 3 or t.shape[0] != 3:
            raise ValueError(f"image tensor must be [3, H, W] RGB in [0, 1], got {tuple(t.shape)}")
        arr = (t.float().clamp(0, 1).permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
        return arr
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"image array must be [H, W, 3] RGB, got shape {arr.shape}")
    arr = arr[..., :3]
    if arr.dtype != np.uint8:
        arr = (np.clip(arr.astype(np.float32), 0, 1) * 255 + 0.5).astype(np.uint8)
    return np.ascontiguousarray(arr)


def skin_mask(images: torch.Tensor) -> torch.Tensor:
    """Skin-coloured pixels by a YCrCb box (Cr in [133, 173], Cb in [77, 127]), slightly dilated.

    Args:
        images: ``[B, 3, H, W]`` RGB in [0, 1].

    Returns:
        ``[B, 1, H, W]`` float mask (1 = skin-like).
    """
    import cv2

    out = []
    for img in images.detach().cpu():
        rgb = (img.permute(1, 2, 0).clamp(0, 1).numpy() * 255).astype(np.uint8)
        ycc = cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb)
        m = cv2.inRange(ycc, (0, 133, 77), (255, 173, 127))
        m = cv2.dilate(m, np.ones((3, 3), np.uint8))
        out.append(torch.from_numpy(m > 0))
    return torch.stack(out)[:, None].float().to(images.device)


# ----------------------------------------------------------------------------------------------
# Model loading
# ----------------------------------------------------------------------------------------------


def _resolve_device(device) -> torch.device:
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_model(checkpoint: Union[str, os.PathLike], device="cpu"):
    """Build a FAID model from a checkpoint written by ``python -m pyfaid.train``.

    Args:
        checkpoint: path of a ``.pt`` dict with ``model`` (trainable state dict), ``step`` and the
            resolved ``config``, or a training run folder (its latest ``ckpt_*.pt`` is used).
        device: where to put the model.

    Returns:
        ``(model, face_model)``: the FAID model in eval mode and its MorphableModel.

    Raises:
        FileNotFoundError: no such checkpoint. ValueError: not a pyfaid training checkpoint.
    """
    from pyfaid.config import from_dict
    from pyfaid.models import build_faid

    path = str(checkpoint)
    if os.path.isdir(path):  # a training run folder: its latest checkpoint
        from pyfaid.train import latest_checkpoint

        found = latest_checkpoint(path)
        if found is None:
            raise FileNotFoundError(f"checkpoint folder {path} holds no ckpt_*.pt ({NO_CHECKPOINT_MESSAGE})")
        path = found
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path}: no such file ({NO_CHECKPOINT_MESSAGE})")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - report which file is broken
        raise ValueError(f"checkpoint {path}: cannot be read by torch.load ({exc})") from exc
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        raise ValueError(f"checkpoint {path}: not a pyfaid training checkpoint (needs 'model' and 'config')")
    cfg = from_dict(ckpt["config"], source=path)
    model = build_faid(cfg, device=_resolve_device(device))
    model.load_trainable_state_dict(ckpt["model"])
    model.eval()
    return model, model.face_model


_DEFAULT_CACHE: Dict[str, object] = {}


def _default_face_model(device):
    from pyfaid import facemodel

    key = str(device)
    if key not in _DEFAULT_CACHE:
        _DEFAULT_CACHE[key] = facemodel.load("default").to(device).eval()
    return _DEFAULT_CACHE[key]


def _renderer(device):
    from pyfaid.render import Renderer

    key = f"renderer@{device}"
    if key not in _DEFAULT_CACHE:
        _DEFAULT_CACHE[key] = Renderer().to(device)
    return _DEFAULT_CACHE[key]


def _predict(model, crops: torch.Tensor):
    """FAID forward on 224 crops -> (coeffs [B, 257], fine albedo [B, V, 3]).

    The crops are resized to the model's render size first (its camera is Deep3DFaceRecon's
    scaled to that size, so the coefficients mean the same at every resolution).
    """
    size = int(getattr(model.renderer, "image_size", crops.shape[-1]))
    x = crops
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    with torch.no_grad():
        out = model(x, render_coarse=False)
    return out.coeffs, out.fine_colors


# ----------------------------------------------------------------------------------------------
# Reconstruction result
# ----------------------------------------------------------------------------------------------


@dataclass
class Reconstruction:
    """One reconstructed face.

    Attributes:
        input: ``[3, 224, 224]`` aligned crop the model saw, RGB in [0, 1].
        coeffs: ``[257]`` coefficients (Deep3DFaceRecon layout).
        vertices: ``[V, 3]`` model-space vertices (identity + expression, no pose; x right, y up,
            z toward the camera).
        faces: ``[F, 3]`` int64 triangles.
        albedo: ``[V, 3]`` vertex albedo in [0, 1] (fine colours when available).
        shaded: ``[V, 3]`` vertex colours with the estimated lighting applied, in [0, 1].
        face_model: the MorphableModel.
        renderer: the Renderer that frames ``input``.
        landmarks5: ``[5, 2]`` detected points in the crop (or None).
        source: where the image came from (file name or "array").
        transform: the alignment transform from the original photo to the crop (as returned by
            :func:`pyfaid.encoders.align_faces`).
        fit_history: losses recorded during test-time fitting (empty without fitting).
    """

    input: torch.Tensor
    coeffs: torch.Tensor
    vertices: torch.Tensor
    faces: torch.Tensor
    albedo: torch.Tensor
    shaded: torch.Tensor
    face_model: object = field(repr=False, default=None)
    renderer: object = field(repr=False, default=None)
    landmarks5: Optional[torch.Tensor] = None
    source: str = "array"
    transform: object = field(repr=False, default=None)
    fit_history: List[Dict[str, float]] = field(default_factory=list, repr=False)

    @torch.no_grad()
    def render(self, pose=None, colors: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        """Render the reconstruction with the Renderer.

        Args:
            pose: None for the estimated pose (the frame of ``input``), or ``(pitch, yaw, roll)``
                rotation angles in radians (``[3]`` or ``[1, 3]``) replacing the estimated ones.
            colors: ``[V, 3]`` vertex colours to use instead of ``albedo``.

        Returns:
            the Renderer's dict with batch size 1: ``image [1, 3, 224, 224]``,
            ``mask [1, 1, 224, 224]``, ``landmarks [1, 68, 2]``, ``vertices``, ``colors``,
            ``shaded``.
        """
        dev = self.coeffs.device
        col = (self.albedo if colors is None else colors).to(dev)[None]
        c = self.coeffs[None]
        if pose is None:
            return self.renderer(self.face_model, c, colors=col)
        angles = torch.as_tensor(pose, dtype=c.dtype, device=dev).reshape(1, 3)
        return self.renderer.render_views(self.face_model, c, angles, colors=col)

    @torch.no_grad()
    def render_albedo(self, pose=None) -> Dict[str, torch.Tensor]:
        """Render the albedo under uniform unit lighting (the texture without shading)."""
        c = self.coeffs.clone()
        c[_SLICES["gamma"]] = 0
        rec = Reconstruction(self.input, c, self.vertices, self.faces, self.albedo, self.shaded,
                             self.face_model, self.renderer)
        # The Renderer shades with its ambient term: find that constant and divide it out.
        ones = torch.ones_like(self.albedo)
        gain = rec.render(colors=ones)["shaded"][0].mean().clamp_min(1e-6)
        return rec.render(pose=pose, colors=self.albedo / gain)

    def _trimesh(self, colors: str = "albedo"):
        import trimesh

        col = {"albedo": self.albedo, "shaded": self.shaded}[colors]
        rgba = np.concatenate(
            [(col.detach().cpu().clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8),
             np.full((col.shape[0], 1), 255, np.uint8)], axis=1)
        return trimesh.Trimesh(
            vertices=self.vertices.detach().cpu().double().numpy(),
            faces=self.faces.detach().cpu().long().numpy(),
            vertex_colors=rgba,
            process=False,
        )

    def save_obj(self, path, colors: str = "albedo") -> None:
        """Write a Wavefront OBJ with per-vertex colours (``v x y z r g b``) via trimesh.

        Args:
            path: output file.
            colors: ``"albedo"`` (default) or ``"shaded"``.
        """
        self._trimesh(colors).export(str(path), file_type="obj", include_color=True)

    def save_ply(self, path, colors: str = "albedo") -> None:
        """Write a binary PLY with per-vertex RGBA colours via trimesh.

        Args:
            path: output file.
            colors: ``"albedo"`` (default) or ``"shaded"``.
        """
        self._trimesh(colors).export(str(path), file_type="ply")

    def save_npz(self, path) -> None:
        """Write coefficients, vertices, faces, colours and the 5 landmarks to an ``.npz``."""
        split = {k: self.coeffs[s].detach().cpu().numpy() for k, s in _SLICES.items()}
        np.savez_compressed(
            str(path),
            coeffs=self.coeffs.detach().cpu().numpy(),
            vertices=self.vertices.detach().cpu().numpy(),
            faces=self.faces.detach().cpu().numpy(),
            albedo=self.albedo.detach().cpu().numpy(),
            shaded=self.shaded.detach().cpu().numpy(),
            landmarks5=(self.landmarks5.detach().cpu().numpy() if self.landmarks5 is not None
                        else np.zeros((0, 2), np.float32)),
            **{f"coeff_{k}": v for k, v in split.items()},
        )

    @torch.no_grad()
    def strip(self, novel_yaw: float = 0.6) -> np.ndarray:
        """The PNG strip: input | overlay | shaded render | albedo render | two novel views.

        Returns:
            ``[224, 6 * 224, 3]`` uint8 RGB.
        """
        inp = self.input.detach().cpu().float()
        main = self.render()
        img, mask = main["image"][0].cpu().clamp(0, 1), main["mask"][0].cpu()
        overlay = mask * img + (1 - mask) * inp
        white = torch.ones_like(inp)
        shaded = mask * img + (1 - mask) * white
        alb = self.render_albedo()
        albedo = alb["mask"][0].cpu() * alb["image"][0].cpu().clamp(0, 1) + (1 - alb["mask"][0].cpu()) * white
        angles = self.coeffs[_SLICES["angle"]].detach()
        views = []
        for sign in (-1.0, 1.0):
            pose = angles.clone()
            pose[1] = pose[1] + sign * novel_yaw
            v = self.render(pose=pose)
            views.append(v["mask"][0].cpu() * v["image"][0].cpu().clamp(0, 1) + (1 - v["mask"][0].cpu()) * white)
        tiles = [inp, overlay, shaded, albedo] + views
        strip = torch.cat(tiles, dim=2).permute(1, 2, 0).numpy()
        return (strip * 255 + 0.5).astype(np.uint8)


def _make_reconstruction(face_model, renderer, crop, coeffs, colors, lm5, source, transform, history):
    with torch.no_grad():
        c = coeffs[None]
        parts = face_model.split_coeffs(c)
        verts = face_model.shape(parts["id"], parts["exp"])[0]
        out = renderer(face_model, c, colors=None if colors is None else colors[None])
        albedo = out["colors"][0]
        shaded = out["shaded"][0]
    return Reconstruction(
        input=crop.detach(),
        coeffs=coeffs.detach(),
        vertices=verts.detach(),
        faces=face_model.triangles.detach().long(),
        albedo=albedo.detach().clamp(0, 1),
        shaded=shaded.detach().clamp(0, 1),
        face_model=face_model,
        renderer=renderer,
        landmarks5=None if lm5 is None else lm5.detach(),
        source=source,
        transform=transform,
        fit_history=history,
    )


# ----------------------------------------------------------------------------------------------
# Test-time fitting
# ----------------------------------------------------------------------------------------------


@dataclass
class FitSchedule:
    """Coarse-to-fine schedule and weights of test-time fitting.

    Stage 1 (the first ``pose_frac`` of the steps) optimises rotation, translation and light;
    stage 2 (up to ``shape_frac``) adds identity, expression and texture coefficients; stage 3
    (the rest) adds the per-vertex colour offsets. Learning rates are per parameter group.
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


_ORDER = ("id", "exp", "tex", "angle", "gamma", "trans")


def _model_shape(face_model, p: Dict[str, torch.Tensor]) -> torch.Tensor:
    parts = face_model.split_coeffs(torch.cat([p[k] for k in _ORDER], dim=1))
    return face_model.shape(parts["id"], parts["exp"])


def _model_texture(face_model, p: Dict[str, torch.Tensor]) -> torch.Tensor:
    parts = face_model.split_coeffs(torch.cat([p[k] for k in _ORDER], dim=1))
    return face_model.texture(parts["tex"])


class _FixedShape:
    """A MorphableModel whose ``shape()`` returns a cached ``[B, V, 3]`` (everything else delegated)."""

    def __init__(self, face_model, shape: torch.Tensor):
        self._fm = face_model
        self._shape = shape

    def __getattr__(self, name):
        return getattr(self._fm, name)

    def shape(self, id_coeff, exp_coeff):
        return self._shape


def _edges(tri: torch.Tensor) -> torch.Tensor:
    """Unique undirected edges ``[E, 2]`` (int64) of a triangle list ``[F, 3]``."""
    e = torch.cat([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]], dim=0).long()
    e = torch.sort(e, dim=1).values
    n = int(e.max()) + 1 if e.numel() else 1
    key = torch.unique(e[:, 0] * n + e[:, 1])
    return torch.stack([key // n, key % n], dim=1)


def _landmarks5(lm68: torch.Tensor) -> torch.Tensor:
    """``[B, 68, 2]`` -> ``[B, 5, 2]`` MTCNN-style points."""
    return torch.stack([lm68[:, list(idx)].mean(dim=1) for idx in LANDMARK5_FROM_68], dim=1)


def project_landmarks(face_model, renderer, coeffs: torch.Tensor) -> torch.Tensor:
    """The model's 68 landmarks projected to pixels, without rasterizing.

    Args:
        face_model: MorphableModel.
        renderer: Renderer (its camera).
        coeffs: ``[B, 257]``.

    Returns:
        ``[B, 68, 2]`` pixel coordinates (x right, y down), as the Renderer's ``landmarks``.
    """
    from pyfaid.render import camera as cam

    parts = face_model.split_coeffs(coeffs)
    shape = face_model.shape(parts["id"], parts["exp"])[:, face_model.landmark_idx]
    world = cam.apply_pose(shape, cam.euler_rotation(parts["angle"]), parts["trans"])
    return renderer.project_points(cam.to_camera(world, renderer.camera_distance))


def _prealign(face_model, renderer, p: Dict[str, torch.Tensor], landmarks5: torch.Tensor, steps: int) -> None:
    """Landmark-only Adam steps on rotation and translation (no rasterization: ~1 ms each)."""
    from pyfaid.render import camera as cam

    with torch.no_grad():
        pts = _model_shape(face_model, p)[:, face_model.landmark_idx]  # [B, 68, 3]
    opt = torch.optim.Adam([p["angle"], p["trans"]], lr=0.03)
    size = float(renderer.image_size)
    for _ in range(steps):
        world = cam.apply_pose(pts, cam.euler_rotation(p["angle"]), p["trans"])
        lm = _landmarks5(renderer.project_points(cam.to_camera(world, renderer.camera_distance)))
        loss = (((lm - landmarks5) / size) ** 2).sum(-1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    for k in ("angle", "trans"):
        p[k].grad = None


def fit(
    face_model,
    renderer,
    target: torch.Tensor,
    coeffs: Optional[torch.Tensor] = None,
    colors: Optional[torch.Tensor] = None,
    landmarks5: Optional[torch.Tensor] = None,
    steps: int = 200,
    id_encoder=None,
    schedule: Optional[FitSchedule] = None,
    progress: bool = False,
    prealign_steps: int = 60,
):
    """Test-time fitting of coefficients and per-vertex colours to aligned photos.

    Args:
        face_model: MorphableModel.
        renderer: Renderer (224x224 Deep3DFaceRecon camera).
        target: ``[B, 3, 224, 224]`` aligned photos in [0, 1].
        coeffs: ``[B, 257]`` starting coefficients (zeros = mean face, frontal, ambient light).
        colors: ``[B, V, 3]`` starting vertex albedo (the model's texture when None).
        landmarks5: ``[B, 5, 2]`` MTCNN points in the crop's pixel frame, or None.
        steps: Adam steps.
        id_encoder: identity encoder with ``embed`` (e.g. dlib), or None to skip that loss.
        schedule: :class:`FitSchedule` (defaults when None).
        progress: show a tqdm bar.
        prealign_steps: landmark-only pose steps before fitting (cheap; needs ``landmarks5``).

    Returns:
        ``(coeffs [B, 257], colors [B, V, 3], history)``; ``history`` lists per-step loss values.
    """
    sch = schedule or FitSchedule()
    dev = target.device
    B = target.shape[0]
    V = face_model.num_vertices
    if coeffs is None:
        coeffs = torch.zeros(B, 257, device=dev)
    coeffs = coeffs.detach().to(dev, torch.float32)
    p = {k: coeffs[:, s].clone().requires_grad_(True) for k, s in _SLICES.items()}
    if colors is None:
        with torch.no_grad():
            base = _model_texture(face_model, p)
        tex_drives_colors = True
    else:
        base = colors.detach().to(dev, torch.float32)
        tex_drives_colors = False
    delta = torch.zeros(B, V, 3, device=dev, requires_grad=True)
    edges = _edges(face_model.triangles.to(dev))
    skin = skin_mask(target)
    target = target.detach().float()
    if landmarks5 is not None:
        landmarks5 = landmarks5.to(dev, torch.float32)
    if id_encoder is not None:
        with torch.no_grad():
            id_target = F.normalize(id_encoder.embed(target), dim=-1)

    if landmarks5 is not None and prealign_steps > 0:
        _prealign(face_model, renderer, p, landmarks5, prealign_steps)

    groups = {
        "angle": sch.lr_pose, "trans": sch.lr_trans, "gamma": sch.lr_light,
        "id": sch.lr_shape, "exp": sch.lr_shape, "tex": sch.lr_shape,
    }
    opt = torch.optim.Adam(
        [{"params": [p[k]], "lr": lr, "name": k} for k, lr in groups.items()]
        + [{"params": [delta], "lr": sch.lr_colors, "name": "delta"}]
    )
    for g in opt.param_groups:
        g["lr0"] = g["lr"]
    n1 = int(round(steps * sch.pose_frac))
    n2 = int(round(steps * sch.shape_frac))
    history = []
    it = range(steps)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="fitting", leave=False)
    size = float(target.shape[-1])
    model_now, albedo_fixed, stage_now = face_model, None, 0
    for step in it:
        stage = 1 if step < n1 else (2 if step < n2 else 3)
        if stage != stage_now:
            # Stages 1 and 3 keep the shape (and the albedo under the colour offsets) fixed: cache
            # them so that a step costs only the pose, lighting and rasterization.
            stage_now = stage
            with torch.no_grad():
                albedo_fixed = (_model_texture(face_model, p).detach()
                                if tex_drives_colors else base)
                if stage == 2:
                    model_now = face_model
                else:
                    model_now = _FixedShape(face_model, _model_shape(face_model, p).detach())
            for g in opt.param_groups:
                g["lr_active"] = (g["name"] in ("angle", "trans", "gamma") or
                                  (stage == 2 and g["name"] in ("id", "exp")) or
                                  (stage == 2 and g["name"] == "tex" and tex_drives_colors) or
                                  (stage == 3 and g["name"] == "delta"))
        # linear learning-rate decay to ``final_lr_frac`` over each stage (settles the oscillation
        # of the last Adam steps)
        start, end = (0, n1) if stage == 1 else ((n1, n2) if stage == 2 else (n2, steps))
        frac = (step - start) / max(1, end - start - 1)
        for g in opt.param_groups:
            g["lr"] = g["lr0"] * (1.0 - (1.0 - sch.final_lr_frac) * frac)
        c = torch.cat([p[k] for k in ("id", "exp", "tex", "angle", "gamma", "trans")], dim=1)
        if stage == 2 and tex_drives_colors:
            col = _model_texture(face_model, p)
        elif stage == 3:
            col = albedo_fixed + delta
        else:
            col = albedo_fixed
        out = renderer(model_now, c, colors=col)
        mask = out["mask"].detach()
        nsw = sch.nonskin_weight if stage < 3 else sch.nonskin_weight_fine
        w = mask * (skin + nsw * (1 - skin))
        diff = torch.sqrt(((out["image"] - target) ** 2).sum(dim=1, keepdim=True) + 1e-8)
        photo = (w * diff).sum(dim=(1, 2, 3)) / w.sum(dim=(1, 2, 3)).clamp_min(1.0)
        loss = sch.w_photo * photo.mean()
        terms = {"stage": stage, "photo": float(photo.detach().mean())}
        if landmarks5 is not None:
            lm = _landmarks5(out["landmarks"])
            lml = (((lm - landmarks5) / size) ** 2).sum(-1).mean()
            loss = loss + sch.w_landmark * lml
            terms["landmark"] = float(lml.detach())
        if id_encoder is not None and stage >= 2 and (step - n1) % max(1, sch.id_every) == 0:
            comp = mask * out["image"] + (1 - mask) * target
            emb = F.normalize(id_encoder.embed(comp), dim=-1)
            idl = (1 - (emb * id_target).sum(-1)).mean()
            loss = loss + sch.w_id * idl
            terms["id"] = float(idl.detach())
        g3 = p["gamma"].reshape(B, 3, 9)
        reg = sch.w_gamma * ((g3 - g3.mean(dim=1, keepdim=True)) ** 2).mean()
        if stage == 2:
            reg = reg + (sch.w_reg_id * (p["id"] ** 2).sum(1) + sch.w_reg_exp * (p["exp"] ** 2).sum(1)
                         + sch.w_reg_tex * (p["tex"] ** 2).sum(1)).mean()
        if stage == 3:
            d_e = delta[:, edges[:, 0]] - delta[:, edges[:, 1]]
            reg = reg + sch.w_color_l2 * (delta ** 2).mean() + sch.w_color_smooth * (d_e ** 2).mean()
        loss = loss + reg
        terms["loss"] = float(loss.detach())
        history.append(terms)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        for g in opt.param_groups:
            if not g["lr_active"]:
                for t in g["params"]:
                    t.grad = None
        opt.step()
    with torch.no_grad():
        c = torch.cat([p[k] for k in ("id", "exp", "tex", "angle", "gamma", "trans")], dim=1)
        albedo = _model_texture(face_model, p) if tex_drives_colors else base
        col = (albedo + delta).clamp(0, 1)
    return c.detach(), col.detach(), history


# ----------------------------------------------------------------------------------------------
# reconstruct()
# ----------------------------------------------------------------------------------------------


def _align(images: List[np.ndarray], device):
    """Detect and align faces.

    Returns:
        per image either ``(crop [3, 224, 224], landmarks5 in crop pixels [5, 2], transform)``
        or the error message (str) when no face was found.
    """
    from pyfaid.encoders import align_faces

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # failures are reported per image by the caller
        res = align_faces(images)
    crops, transforms, lms = res
    errors = getattr(res, "errors", [None] * len(images))
    out = []
    for i in range(len(images)):
        m = transforms[i]
        if errors[i] is not None or m is None:
            out.append(errors[i] or "no face found")
            continue
        m = np.asarray(m, np.float64)
        lm = np.asarray(lms[i], np.float64) @ m[:, :2].T + m[:, 2]  # image -> crop pixels
        out.append((crops[i].to(device).float(), torch.as_tensor(lm, dtype=torch.float32, device=device), m))
    return out


def reconstruct(
    image_or_path,
    checkpoint=None,
    fit_steps: int = 0,
    device="cpu",
    id_loss: bool = True,
    schedule: Optional[FitSchedule] = None,
    progress: bool = False,
    model=None,
):
    """Reconstruct textured 3D faces from photos.

    Args:
        image_or_path: a file path, an ``[H, W, 3]`` uint8 RGB array, a ``[3, H, W]`` float tensor
            in [0, 1], or a list of those.
        checkpoint: FAID checkpoint written by ``python -m pyfaid.train`` (``.pt``), or None to
            start from the mean face (then ``fit_steps`` must be > 0).
        fit_steps: test-time fitting steps per image (0 = network prediction only).
        device: ``"cpu"``, ``"cuda"`` or ``"auto"``.
        id_loss: use the dlib identity loss during fitting.
        schedule: fitting schedule and weights (:class:`FitSchedule`).
        progress: show tqdm progress of fitting.
        model: an already loaded ``(faid_model, face_model)`` pair (skips loading ``checkpoint``).

    Returns:
        a :class:`Reconstruction` for a single input, a list of them for a list.

    Raises:
        NoCheckpointError: no checkpoint and ``fit_steps == 0``.
        ImageReadError: an input file cannot be read.
        FaceNotFoundError: no face was detected in an input.
    """
    single = not isinstance(image_or_path, (list, tuple))
    items = [image_or_path] if single else list(image_or_path)
    if checkpoint is None and model is None and fit_steps <= 0:
        raise NoCheckpointError(NO_CHECKPOINT_MESSAGE)
    dev = _resolve_device(device)
    if model is not None:
        net, face_model = model
    elif checkpoint is not None:
        net, face_model = load_model(checkpoint, dev)
    else:
        net, face_model = None, _default_face_model(dev)
    renderer = _renderer(dev)
    images, names = [], []
    for it in items:
        if isinstance(it, (str, os.PathLike)):
            images.append(load_image(it))
            names.append(str(it))
        else:
            images.append(_to_rgb_uint8(it))
            names.append("array")
    aligned = _align(images, dev)
    for a, name in zip(aligned, names):
        if isinstance(a, str):
            raise FaceNotFoundError(f"{name}: no face detected ({a})")
    crops = torch.stack([a[0] for a in aligned])
    lms = [a[1] for a in aligned]
    if net is not None:
        coeffs, colors = _predict(net, crops)
    else:
        coeffs, colors = torch.zeros(len(items), 257, device=dev), None
    encoder = None
    if fit_steps > 0 and id_loss:
        from pyfaid.metrics import identity_encoders

        encoder = identity_encoders(("dlib",), device=dev).get("dlib")
    results = []
    for i in range(len(items)):
        hist = []
        c_i = coeffs[i:i + 1]
        col_i = None if colors is None else colors[i:i + 1]
        if fit_steps > 0:
            lm = None if lms[i] is None else lms[i][None]
            c_i, col_i, hist = fit(face_model, renderer, crops[i:i + 1], c_i, col_i, lm, fit_steps,
                                   id_encoder=encoder, schedule=schedule, progress=progress)
        results.append(_make_reconstruction(
            face_model, renderer, crops[i], c_i[0], None if col_i is None else col_i[0],
            lms[i], names[i], aligned[i][2], hist))
    return results[0] if single else results


def masked_psnr(rec: Reconstruction) -> float:
    """PSNR (dB) of the render against ``rec.input`` over the rendered face region."""
    from pyfaid.metrics import psnr

    out = rec.render()
    return float(psnr(out["image"].clamp(0, 1).cpu(), rec.input[None].cpu(), out["mask"].cpu())[0])


# ----------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------


def _collect(inputs: Sequence[str]) -> List[str]:
    files = []
    for x in inputs:
        if os.path.isdir(x):
            for name in sorted(os.listdir(x)):
                if name.lower().endswith(IMAGE_EXTENSIONS):
                    files.append(os.path.join(x, name))
        else:
            files.append(x)
    return files


def _write_outputs(rec: Reconstruction, out_dir: Path, stem: str) -> None:
    import cv2

    rec.save_obj(out_dir / f"{stem}.obj")
    rec.save_ply(out_dir / f"{stem}.ply")
    rec.save_npz(out_dir / f"{stem}.npz")
    strip = rec.strip()
    if not cv2.imwrite(str(out_dir / f"{stem}.png"), cv2.cvtColor(strip, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {out_dir / (stem + '.png')}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m pyfaid.reconstruct``; returns the exit status (1 if any image failed)."""
    ap = argparse.ArgumentParser(prog="python -m pyfaid.reconstruct", description=__doc__.split("\n")[0])
    ap.add_argument("inputs", nargs="+", help="image files and/or folders of images")
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--checkpoint", default=None, help="FAID checkpoint (.pt) from python -m pyfaid.train")
    ap.add_argument("--fit", type=int, default=0, metavar="STEPS", help="test-time fitting steps per image")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    ap.add_argument("--no-id-loss", action="store_true", help="fit without the identity loss")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch CPU threads (default 0: torch's default, all cores; use 1 when other "
                         "jobs share the cores, oversubscribed cores lose a lot)")
    args = ap.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    if args.checkpoint is None and args.fit <= 0:
        print(f"error: {NO_CHECKPOINT_MESSAGE}", file=sys.stderr)
        return 2
    from tqdm import tqdm

    dev = _resolve_device(args.device)
    files = _collect(args.inputs)
    if not files:
        print("error: no input images found", file=sys.stderr)
        return 2
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = load_model(args.checkpoint, dev) if args.checkpoint else None
    failures, psnrs = [], []
    used = set()
    for path in tqdm(files, desc="reconstruct", unit="img"):
        stem = Path(path).stem
        while stem in used:
            stem += "_"
        used.add(stem)
        try:
            rec = reconstruct(path, checkpoint=None, fit_steps=args.fit, device=dev,
                              id_loss=not args.no_id_loss, model=model,
                              progress=len(files) == 1)
            _write_outputs(rec, out_dir, stem)
            val = masked_psnr(rec)
            psnrs.append(val)
            tqdm.write(f"{path}: masked PSNR {val:.2f} dB -> {out_dir / stem}.[obj|ply|npz|png]")
        except (FaceNotFoundError, ImageReadError) as exc:
            failures.append((path, str(exc)))
            tqdm.write(f"error: {exc}", file=sys.stderr)
        except Exception as exc:  # keep going: one bad image must not lose the others
            failures.append((path, f"{type(exc).__name__}: {exc}"))
            tqdm.write(f"error: {path}: {type(exc).__name__}: {exc}", file=sys.stderr)
    dt = time.perf_counter() - t0
    done = len(files) - len(failures)
    mean = f"{np.mean(psnrs):.2f} dB" if psnrs else "n/a"
    print(f"reconstructed {done}/{len(files)} images in {dt:.1f} s; masked PSNR (render vs aligned input): {mean}")
    for path, msg in failures:
        print(f"failed: {path}: {msg}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
