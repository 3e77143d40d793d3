"""Measuring the residual table of :class:`pyfaid.synth.alignment.AlignmentJitter`: MTCNN run on
photo-like synthetic frames (``python -m pyfaid.data measure-alignment``).

This sits apart from :mod:`pyfaid.synth.alignment` because it renders synthetic faces
(:mod:`pyfaid.synth.faces`), which themselves are framed by :mod:`pyfaid.synth.alignment`.
"""

from __future__ import annotations

import time

import numpy as np
from tqdm import tqdm

from pyfaid.encoders.align import detect_faces
from pyfaid.synth.alignment import (
    TEMPLATE_224,
    compose,
    five_points,
    similarity_params,
    umeyama,
)
from pyfaid.synth.faces import SyntheticFaces

__all__ = ["measure_residuals"]


def measure_residuals(n: int, seed: int = 0, image_size: int = 448, face_scale: float = 0.6, batch_size: int = 8,
                      device: str = "cpu", progress: bool = True, face_model=None) -> tuple[np.ndarray, dict]:
    """Measure MTCNN's residual crop similarity on photo-like synthetic frames.

    Renders ``n`` synthetic faces (``SyntheticFaces(framing="exact", face_scale=face_scale)``: the
    face at ``face_scale`` of the aligned-crop size somewhere near the middle of an
    ``image_size`` frame, with its head, hair, clothes, background and camera effects, no
    occluders), runs :func:`pyfaid.encoders.align.detect_faces` on each frame, and compares the
    similarity that aligns MTCNN's five points onto the 224 template with the one that aligns the
    true five points: ``E = S_mtcnn o S_true^-1``, in 224-crop pixels.

    Args:
        n: number of faces.
        seed: dataset seed (use one no training run uses).
        image_size: frame side in pixels.
        face_scale: face size relative to the aligned crop.
        batch_size: faces rendered per batch.
        device: where MTCNN runs.
        progress: show a progress bar.
        face_model: the face model (default: the default one).

    Returns:
        ``(table [M, 6], meta)``: rows ``(|yaw| deg, pitch deg, rotation, log scale, dx, dy)`` for
        the M faces MTCNN found (mirrored so yaw >= 0), and a dict with counts and timings.
    """
    ds = SyntheticFaces(seed=seed, length=n, image_size=image_size, occlusion=False, framing="exact",
                        face_scale=face_scale, face_model=face_model)
    rows, missed, mtcnn_s = [], 0, 0.0
    bar = tqdm(total=n, desc="MTCNN on synthetic frames", disable=not progress, unit="face")
    for start in range(0, n, batch_size):
        b = ds.batch(range(start, min(n, start + batch_size)))
        frames = (b["image"].permute(0, 2, 3, 1).numpy() * 255 + 0.5).astype(np.uint8)
        true5 = five_points(b["landmarks"].numpy().astype(np.float64))
        for k in range(len(frames)):
            t0 = time.perf_counter()
            faces = detect_faces(frames[k], device=device)
            mtcnn_s += time.perf_counter() - t0
            centre = true5[k].mean(0)
            faces = [f for f in faces if np.linalg.norm(f["landmarks5"].mean(0) - centre) < 0.5 * np.ptp(true5[k][:, 0]) + 5]
            if not faces:
                missed += 1
                continue
            s_true = umeyama(true5[k], TEMPLATE_224)
            s_mtcnn = umeyama(faces[0]["landmarks5"], TEMPLATE_224)
            inv = np.linalg.inv(np.vstack([s_true, [0, 0, 1]]))[:2]
            params = similarity_params(compose(s_mtcnn, inv))
            pitch, yaw = np.degrees(b["labels"]["angles"][k, :2].numpy().astype(np.float64))
            if yaw < 0:
                params[0], params[2] = -params[0], -params[2]
            rows.append([abs(yaw), pitch, *params])
        bar.update(len(frames))
    bar.close()
    meta = {"faces": n, "found": len(rows), "missed": missed, "image_size": image_size, "face_scale": face_scale,
            "seed": seed, "mtcnn_ms_per_frame": round(1000 * mtcnn_s / max(n, 1), 1)}
    return np.asarray(rows, np.float64).reshape(-1, 6), meta
