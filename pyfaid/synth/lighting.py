"""Lights for synthetic faces: coloured spherical-harmonic lighting from physical lights, plus the
cast shadows and highlights SH cannot show.

:func:`sample_lighting` draws a scene (an ambient level and colour, a key light with a direction,
a colour and a strength, sometimes a fill light) and projects it onto the renderer's 27 SH
coefficients (Deep3DFaceRecon's basis, see :func:`pyfaid.render.sh_shading`): a directional light
``k max(0, n . d)`` becomes its least-squares order-2 fit, so the ``gamma`` ground truth of an item
is exact for everything SH can express. What it cannot express, cast shadows (the nose on the
cheek, the brow over the eye) and specular highlights (an oily T-zone, wet eyes), is added to the
picture as a per-pixel term (:class:`ShadowMaps` and :func:`key_light_residual`), like the
departures from the model that real photos have.
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch

from pyfaid.fileio import savez_atomic
from pyfaid.render import rasterize, vertex_normals

__all__ = ["sh_basis", "directional_sh", "sample_lighting", "ShadowMaps", "key_light_residual", "KeyLight"]

_A = (math.pi, 2 * math.pi / math.sqrt(3.0), 2 * math.pi / math.sqrt(8.0))
_C = (1 / math.sqrt(4 * math.pi), math.sqrt(3.0) / math.sqrt(4 * math.pi), 3 * math.sqrt(5.0) / math.sqrt(12 * math.pi))
#: Added by the renderer to the constant SH coefficient of every channel.
_AMBIENT_OFFSET = 0.8


def sh_basis(normals: np.ndarray) -> np.ndarray:
    """The 9 SH basis functions of the renderer at unit normals ``[M, 3]`` -> ``[M, 9]``."""
    x, y, z = normals[:, 0], normals[:, 1], normals[:, 2]
    a0c0, a1c1, a2c2 = _A[0] * _C[0], _A[1] * _C[1], _A[2] * _C[2]
    return np.stack([
        np.full_like(x, a0c0), -a1c1 * y, a1c1 * z, -a1c1 * x, a2c2 * x * y, -a2c2 * y * z,
        a2c2 / (2 * math.sqrt(3.0)) * (3 * z * z - 1), -a2c2 * x * z, a2c2 / 2 * (x * x - y * y),
    ], 1)


def _fibonacci_sphere(n: int) -> np.ndarray:
    i = np.arange(n) + 0.5
    phi = np.arccos(1 - 2 * i / n)
    theta = math.pi * (1 + 5 ** 0.5) * i
    return np.stack([np.cos(theta) * np.sin(phi), np.sin(theta) * np.sin(phi), np.cos(phi)], 1)


_FIT_NORMALS = _fibonacci_sphere(4000)
_FIT = np.linalg.pinv(sh_basis(_FIT_NORMALS))  # [9, M]


def directional_sh(direction: np.ndarray) -> np.ndarray:
    """SH coefficients ``[9]`` whose shading best fits ``max(0, n . direction)`` (unit direction)."""
    d = np.asarray(direction, np.float64)
    d = d / np.linalg.norm(d)
    return _FIT @ np.maximum(_FIT_NORMALS @ d, 0.0)


class KeyLight(tuple):
    """The dominant light of a scene: ``(direction [3] world, colour [3], strength)``."""

    def __new__(cls, direction, colour, strength):
        return super().__new__(cls, (np.asarray(direction, np.float32), np.asarray(colour, np.float32),
                                     float(strength)))

    @property
    def direction(self) -> np.ndarray:
        return self[0]

    @property
    def colour(self) -> np.ndarray:
        return self[1]

    @property
    def strength(self) -> float:
        return self[2]


def _unit(azimuth: float, elevation: float) -> np.ndarray:
    """World direction (x right, y up, z toward the camera) from azimuth about y and elevation."""
    return np.array([math.sin(azimuth) * math.cos(elevation), math.sin(elevation),
                     math.cos(azimuth) * math.cos(elevation)])


def sample_lighting(rng: np.random.Generator, harsh_light_prob: float = 0.25,
                    tint_prob: float = 0.2) -> tuple[np.ndarray, KeyLight, dict]:
    """A random light scene as renderer SH coefficients.

    Args:
        rng: the item's generator.
        harsh_light_prob: probability of a strong key light with little ambient light.
        tint_prob: probability of strongly coloured lights.

    Returns:
        ``(gamma [27] float32 (without the renderer's 0.8 ambient offset), key light, info)``;
        ``info`` holds ``ambient`` (scalar level) and ``harsh`` (0/1).
    """
    harsh = rng.random() < harsh_light_prob
    tinted = rng.random() < tint_prob

    def tint(strong):
        t = np.exp(rng.normal(0.0, 0.2 if strong else 0.05, 3))
        if not strong and rng.random() < 0.6:  # mostly warm (tungsten, sun), sometimes cool (shade)
            t = t * np.exp(np.array([1.0, 0.0, -1.0]) * rng.normal(0.03, 0.06))
        return t / t.mean()

    if harsh:
        ambient = rng.uniform(0.12, 0.4)
        strength = rng.uniform(0.7, 1.25)
    else:
        ambient = rng.uniform(0.3, 0.75)
        strength = rng.uniform(0.15, 0.7)
    amb_col = tint(tinted)
    az = rng.normal(0.0, 0.7) if not harsh else rng.choice([-1, 1]) * rng.uniform(0.5, 1.6)
    el = float(np.clip(rng.normal(0.45, 0.35), -0.5, 1.3))
    key_dir = _unit(float(np.clip(az, -1.75, 1.75)), el)
    key_col = tint(tinted)
    sh = np.zeros((3, 9))
    sh[:, 0] += ambient * amb_col / (_A[0] * _C[0])
    sh += strength * key_col[:, None] * directional_sh(key_dir)[None]
    if rng.random() < 0.4:  # a weaker fill light from the other side
        fill = _unit(-az * rng.uniform(0.5, 1.2) + rng.normal(0, 0.3), rng.normal(0.2, 0.3))
        sh += strength * rng.uniform(0.15, 0.45) * tint(False)[:, None] * directional_sh(fill)[None]
    if rng.random() < 0.3:  # light bounced from the floor / a wall: a little from below
        sh += rng.uniform(0.03, 0.12) * tint(False)[:, None] * directional_sh(_unit(rng.normal(0, 0.5), -1.0))[None]
    sh[:, 0] -= _AMBIENT_OFFSET
    return sh.reshape(-1).astype(np.float32), KeyLight(key_dir, key_col, strength), {
        "ambient": float(ambient), "harsh": float(harsh)}


class ShadowMaps:
    """Per-vertex visibility of the face model's mean shape from many light directions.

    Built once per face model by shadow mapping with pyfaid's rasterizer (orthographic views from
    ``n_dirs`` directions spread over the sphere, 3x3 percentage-closer filtering for soft edges)
    and cached as ``uint8`` in ``$PYFAID_CACHE`` (or ``~/.cache/pyfaid``).

    Args:
        face_model: the ``MorphableModel``.
        n_dirs: number of light directions.
        resolution: shadow-map side in pixels.
        cache: read/write the cache file.
    """

    def __init__(self, face_model, n_dirs: int = 64, resolution: int = 256, cache: bool = True) -> None:
        self.dirs = _fibonacci_sphere(n_dirs).astype(np.float32)  # [K, 3] model frame
        key = f"shadow_maps-v{face_model.num_vertices}-f{face_model.triangles.shape[0]}-k{n_dirs}-r{resolution}-1.npz"
        folder = os.environ.get("PYFAID_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "pyfaid")
        path = os.path.join(folder, key)
        vis = None
        if cache and os.path.isfile(path):
            try:
                with np.load(path) as z:
                    vis = z["vis"]
                if vis.shape != (n_dirs, face_model.num_vertices):
                    vis = None
            except (OSError, ValueError, KeyError):
                vis = None
        if vis is None:
            vis = self._build(face_model, resolution)
            if cache:
                try:
                    savez_atomic(path, vis=vis)
                except OSError:
                    pass
        self.vis = vis  # [K, V] uint8, 255 = lit

    @torch.no_grad()
    def _build(self, face_model, resolution: int) -> np.ndarray:
        verts = face_model.mean_shape.detach().double().cpu()
        tri = face_model.topology
        normals = vertex_normals(verts.float(), tri).double().numpy()
        centre = verts.mean(0)
        p = verts - centre
        ext = float(p.norm(dim=1).max()) * 1.05
        out = np.zeros((len(self.dirs), verts.shape[0]), np.uint8)
        for k, d in enumerate(self.dirs.astype(np.float64)):
            d = torch.from_numpy(d)
            up = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
            if abs(float(d @ up)) > 0.95:
                up = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
            e1 = torch.linalg.cross(up, d)
            e1 = e1 / e1.norm()
            e2 = torch.linalg.cross(d, e1)
            x, y, depth = p @ e1 / ext, p @ e2 / ext, -(p @ d) / ext  # nearer the light: smaller depth
            pos = torch.stack([x, -y, depth * 0.9, torch.ones_like(x)], 1).float()[None]
            rast = rasterize(pos.contiguous(), tri, (resolution, resolution))[0]
            zmap = torch.where(rast[..., 3] > 0, rast[..., 2], torch.full_like(rast[..., 2], 2.0)).numpy()
            col = np.clip((x.numpy() + 1) * resolution / 2 - 0.5, 0, resolution - 1)
            row = np.clip((-y.numpy() + 1) * resolution / 2 - 0.5, 0, resolution - 1)
            z = depth.numpy() * 0.9
            ci, ri = np.round(col).astype(int), np.round(row).astype(int)
            lit = np.zeros(len(z))
            # slope-scaled depth bias against shadow acne on surfaces at grazing angles
            bias = 0.008 + 0.05 * (1.0 - np.clip(np.abs(normals @ d.numpy()), 0, 1))
            for dr in (-1, 0, 1):
                for dc in (-1, 0, 1):
                    zz = zmap[np.clip(ri + dr, 0, resolution - 1), np.clip(ci + dc, 0, resolution - 1)]
                    lit += z <= zz + bias
            out[k] = np.round(lit / 9.0 * 255).astype(np.uint8)
        return out

    def visibility(self, direction_model: np.ndarray) -> np.ndarray:
        """Soft visibility ``[V]`` in [0, 1] of a light from ``direction_model`` (head frame)."""
        d = np.asarray(direction_model, np.float32)
        d = d / max(float(np.linalg.norm(d)), 1e-9)
        cos = self.dirs @ d
        nearest = np.argsort(-cos)[:3]
        w = np.maximum(cos[nearest] - cos[nearest].min() + 1e-3, 0) ** 2
        w = w / w.sum()
        return (w[0] * self.vis[nearest[0]] + w[1] * self.vis[nearest[1]] + w[2] * self.vis[nearest[2]]) * (1.0 / 255.0)


def key_light_residual(albedo: np.ndarray, normals: np.ndarray, visibility: np.ndarray, key: KeyLight,
                       gloss: np.ndarray, shininess: float, specular: float) -> np.ndarray:
    """What SH shading misses of the key light, per vertex: cast shadow and highlight.

    Args:
        albedo: ``[V, 3]``.
        normals: ``[V, 3]`` world-space unit normals.
        visibility: ``[V]`` in [0, 1] (1 = lit) from :class:`ShadowMaps`.
        key: the key light.
        gloss: ``[V]`` per-vertex specular weight (T-zone, lips, eyes).
        shininess: Blinn-Phong exponent.
        specular: highlight strength.

    Returns:
        ``[V, 3]`` float32 colours to add to the SH-shaded ones (negative in shadow).
    """
    d = key.direction
    ndl = np.maximum(normals @ d, 0.0)  # [V]
    shadow = albedo * (ndl * (1.0 - visibility))[:, None]
    h = d + np.array([0.0, 0.0, 1.0], np.float32)
    h = h / max(float(np.linalg.norm(h)), 1e-6)
    spec = np.maximum(normals @ h, 0.0) ** shininess * gloss * (ndl > 0) * visibility
    return (key.strength * key.colour[None] * (spec[:, None] * specular - shadow)).astype(np.float32)
