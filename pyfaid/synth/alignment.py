"""The framing of aligned crops, with the errors MTCNN makes, for synthetic faces.

At test time every photo is cropped by :func:`pyfaid.encoders.align_crop`: MTCNN's five points are
mapped onto :data:`~pyfaid.encoders.align.TEMPLATE_224` by a least-squares similarity. So a crop
shows the face where the *detected* points say, not where its true points are. Synthetic training
crops are rendered directly with the camera of the aligned crop, and must be framed the same way:

1. the face's true five points (eye centres = mean of landmarks 36-41 and 42-47, nose tip 30,
   mouth corners 48 and 54) are projected for its pose, and the similarity ``S_true`` that
   aligns them onto the template is computed, exactly as ``align_crop`` would with perfect
   points;
2. MTCNN's error is a residual similarity ``E = S_mtcnn o S_true^-1`` (in crop pixels), sampled
   from a table measured once by running MTCNN on photo-like synthetic frames (``python -m
   pyfaid.data measure-alignment``), for the face's yaw (errors grow on turned faces);
3. the target crop transform ``E o S_true`` is turned into pose coefficients: a roll change and a
   translation ``(x, y, z)`` (z scales the face under this near-orthographic camera), solved by a
   few Gauss-Newton steps on the five projected points. The crop is then rendered directly, so all
   ground truth stays exact.

:class:`AlignmentJitter` holds the table and samples ``E``; :func:`frame_pose` does step 3.
"""

from __future__ import annotations

import json
import os

import numpy as np

from pyfaid.fileio import write_atomic

__all__ = ["five_points", "umeyama", "compose", "AlignmentJitter", "frame_pose", "similarity_params",
           "residual_matrix", "read_table", "write_table", "RESIDUALS_PATH"]

#: The measured residual table shipped with the package (``python -m pyfaid.data measure-alignment`` writes it).
RESIDUALS_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets", "alignment_residuals.json")

#: The 224 template (pyfaid.encoders.align.TEMPLATE_224), copied so pyfaid.data needs no encoder import.
TEMPLATE_224 = (np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655],
                          [70.7299, 92.2041]]) - 56.0) * 1.7 + np.array([112.0, 88.5])
_CENTRE_224 = TEMPLATE_224.mean(0)


def five_points(landmarks: np.ndarray) -> np.ndarray:
    """MTCNN's five points from iBUG-68 landmarks ``[..., 68, 2]`` -> ``[..., 5, 2]``."""
    lm = np.asarray(landmarks)
    return np.stack([lm[..., 36:42, :].mean(-2), lm[..., 42:48, :].mean(-2), lm[..., 30, :], lm[..., 48, :],
                     lm[..., 54, :]], -2)


def umeyama(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares 2-D similarity ``src -> dst`` as a 2x3 matrix (as scikit-image estimates it)."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    cov = b.T @ a / len(src)
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(cov) < 0:
        d[1] = -1
    rot = u @ np.diag(d) @ vt
    var = (a * a).sum() / len(src)
    scale = float((s * d).sum() / max(var, 1e-12))
    m = np.zeros((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - m[:, :2] @ mu_s
    return m


def compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """2x3 matrices: ``a o b`` (apply b first)."""
    A = np.vstack([a, [0, 0, 1]])
    B = np.vstack([b, [0, 0, 1]])
    return (A @ B)[:2]


def similarity_params(m: np.ndarray) -> np.ndarray:
    """A 2x3 similarity (224-crop pixels) as ``(rotation rad, log scale, dx, dy)`` about the template centre."""
    theta = float(np.arctan2(m[1, 0], m[0, 0]))
    scale = float(np.hypot(m[0, 0], m[1, 0]))
    shift = m[:, :2] @ _CENTRE_224 + m[:, 2] - _CENTRE_224
    return np.array([theta, np.log(scale), shift[0], shift[1]])


def residual_matrix(params: np.ndarray, image_size: int, face_scale: float = 1.0) -> np.ndarray:
    """The 2x3 residual similarity of ``similarity_params`` in a picture of ``image_size`` pixels."""
    theta, log_s, dx, dy = (float(v) for v in params)
    k = image_size / 224.0
    c = _CENTRE_224 * k * face_scale + (image_size / 2.0) * (1 - face_scale)
    s = np.exp(log_s)
    r = s * np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    m = np.zeros((2, 3))
    m[:, :2] = r
    m[:, 2] = c - r @ c + np.array([dx, dy]) * k * face_scale
    return m


class AlignmentJitter:
    """MTCNN's residual crop similarity, sampled from a measured table by yaw.

    The table is measured on synthetic renders, where MTCNN's points sit systematically off the
    true ones (it frames the renders' faces 6-16% smaller than their true points do, more on
    turned faces): a response to how the renders look rather than to faces, which training crops
    would inherit as a framing bias. So by default each row's systematic part (the median of the
    rows within ``bin_deg`` of its yaw) is removed and only the scatter is sampled;
    ``centred=False`` samples the raw rows.

    Args:
        table: ``[N, 6]`` rows ``(|yaw| deg, pitch deg, rotation rad, log scale, dx, dy)`` (crop
            pixels at 224, measured with the yaw made non-negative by mirroring); None reads
            :data:`RESIDUALS_PATH` (an identity residual when it is missing).
        bin_deg: yaw half-window for sampling (and for the systematic part).
        centred: remove the per-yaw systematic part.
    """

    def __init__(self, table: np.ndarray | None = None, bin_deg: float = 6.0, centred: bool = True) -> None:
        if table is None:
            try:
                table, self.meta = read_table(RESIDUALS_PATH)
            except FileNotFoundError:
                table = np.zeros((0, 6))
                self.meta = {}
        else:
            self.meta = {}
        self.table = np.asarray(table, np.float64).reshape(-1, 6)
        order = np.argsort(self.table[:, 0])
        self.table = self.table[order]
        self.bin = float(bin_deg)
        self.bias = np.zeros((len(self.table), 4))
        if centred and len(self.table):
            y = self.table[:, 0]
            for k in range(len(y)):
                lo, hi = self._window(y[k])
                self.bias[k] = np.median(self.table[lo:hi, 2:], axis=0)
            self.table = self.table.copy()
            self.table[:, 2:] -= self.bias

    def _window(self, yaw_abs: float) -> tuple[int, int]:
        y = self.table[:, 0]
        lo, hi = np.searchsorted(y, yaw_abs - self.bin), np.searchsorted(y, yaw_abs + self.bin)
        if hi - lo < 8:  # too few rows near this yaw: the nearest ones
            k = int(np.clip(np.searchsorted(y, yaw_abs), 0, len(y) - 1))
            lo, hi = max(0, k - 8), min(len(y), k + 8)
        return int(lo), int(hi)

    def __len__(self) -> int:
        return len(self.table)

    def sample(self, rng: np.random.Generator, yaw_deg: float) -> np.ndarray:
        """Residual ``(rotation, log scale, dx, dy)`` for a face at ``yaw_deg`` (identity without a table)."""
        if len(self.table) == 0:
            return np.zeros(4)
        lo, hi = self._window(abs(float(yaw_deg)))
        row = self.table[int(rng.integers(lo, hi)), 2:].copy()
        if yaw_deg < 0:  # mirror: rotation and horizontal shift change sign
            row[0] = -row[0]
            row[2] = -row[2]
        return row


def frame_pose(project, roll: float, residual: np.ndarray, image_size: int, face_scale: float = 1.0,
               offset: np.ndarray | None = None, iterations: int = 4) -> tuple[float, np.ndarray]:
    """Roll and translation that frame a face as the alignment of its (detected) points would.

    Args:
        project: ``f(roll [K], trans [K, 3]) -> [K, 5, 2]``: the face's five points projected
            (pixels) for K candidate rolls (radians) and translations, pitch and yaw fixed.
        roll: the face's sampled roll (radians).
        residual: ``(rotation, log scale, dx, dy)`` MTCNN residual (zeros: perfect points).
        image_size: picture side.
        face_scale: face size relative to the aligned crop (1: an aligned crop; 0.5: the face at
            half size in the middle of a photo-like frame).
        offset: optional ``[2]`` pixel shift of the whole framing (photo-like frames).
        iterations: Gauss-Newton steps.

    Returns:
        ``(roll, trans [3])``.
    """
    k = image_size / 224.0
    template = TEMPLATE_224 * k * face_scale + (image_size / 2.0) * (1 - face_scale)
    res_m = residual_matrix(residual, image_size, face_scale)
    if offset is not None:
        template = template + np.asarray(offset)
        res_m = _shifted(res_m, offset)
    base = project(np.array([roll]), np.zeros((1, 3)))[0]
    # where the alignment puts the true points: onto the template, then MTCNN's residual
    target = compose(res_m, umeyama(base, template))
    goal = (base @ target[:, :2].T + target[:, 2]).reshape(-1)
    params = np.array([roll, 0.0, 0.0, 0.0])
    steps = np.diag([1e-4, 1e-4, 1e-4, 1e-3])
    for _ in range(iterations):
        cand = np.concatenate([params[None], params[None] + steps])  # [5, 4]: the point and 4 nudges
        pts = project(cand[:, 0], cand[:, 1:]).reshape(5, -1)
        r = pts[0] - goal
        J = (pts[1:] - pts[0]).T / np.diag(steps)[None]  # [10, 4]
        step = np.linalg.lstsq(J, -r, rcond=None)[0]
        params = params + step
        if np.abs(step).max() < 1e-7:
            break
    return float(params[0]), params[1:]


def _shifted(m: np.ndarray, offset) -> np.ndarray:
    """A similarity about a centre moved by ``offset`` pixels."""
    off = np.asarray(offset, np.float64)
    out = m.copy()
    out[:, 2] = m[:, 2] + off - m[:, :2] @ off
    return out


# ------------------------------------------------------------------------------ the table file
def read_table(path: str) -> tuple[np.ndarray, dict]:
    """A residual table written by :func:`write_table`: ``(table [N, 6] float64, meta)``."""
    with open(path) as fh:
        data = json.load(fh)
    return np.asarray(data["residuals"], np.float64).reshape(-1, 6), dict(data.get("meta", {}))


def write_table(table: np.ndarray, meta: dict, path: str) -> None:
    """Write a residual table as JSON (atomically), values rounded to 4 significant digits.

    The file holds ``about`` (what the rows are), ``meta`` and ``residuals`` (one row per line).
    """
    rows = [json.dumps([float(f"{v:.4g}") for v in r]) for r in np.asarray(table, np.float64).reshape(-1, 6)]
    text = "\n".join([
        "{",
        '  "about": ' + json.dumps(_TABLE_ABOUT) + ",",
        '  "meta": ' + json.dumps(meta) + ",",
        '  "residuals": [',
        ",\n".join("    " + r for r in rows),
        "  ]",
        "}",
    ])
    write_atomic(path, text + "\n")


_TABLE_ABOUT = ("MTCNN's residual crop similarity on photo-like synthetic frames (made by python -m pyfaid.data "
                "measure-alignment; see pyfaid.synth.alignment). Rows: (|yaw| degrees, pitch degrees, rotation "
                "radians, log scale, dx, dy) in 224-crop pixels, mirrored so the yaw is non-negative.")
