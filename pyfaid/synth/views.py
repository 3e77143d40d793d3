"""Several training items from one rendered face (``SyntheticFaces(views=K)``).

Rendering a face and its scene (albedo painting, the face render, head, hair, background,
compositing) is most of what an item costs; the occluders pasted on it and the camera that
photographs it are a small part. With ``views = K``, item ``i`` shows face ``i // K``: everything
about the face and its scene comes from that face's random streams, rendered once for all its
items in a batch, and each item draws its own occluders (``item_rng(seed, i, ...)``, as any item
does) and its own camera (:data:`S_VIEW`: defocus and motion blur, aberration, vignetting,
exposure, white balance, saturation, tone curve, noise, JPEG). No label is approximated: the
occluders and the camera change no label but the visible-face and occluder masks, which are
computed for each item from its own occluders, exactly as for a single view.

With ``views = 1`` nothing here runs: the generator is bit for bit what it was.
:class:`pyfaid.data.sampler.ResumableSampler` with ``group = K`` keeps the items of a face in the
same batch, so the face is rendered once per batch.
"""

from __future__ import annotations

import numpy as np
import torch

from pyfaid.synth.photo import sample_effects
from pyfaid.synth.sampling import item_rng

__all__ = ["S_VIEW", "faces_of", "views_of", "items_of_faces", "FACE_KEYS"]

#: Random stream of an item's own camera when faces have several views.
S_VIEW = 9

#: Item keys that belong to the face (shared by its views); the others belong to the item.
FACE_KEYS = ("coeffs", "vertices", "colors", "landmarks", "landmarks_2d", "landmarks_3d", "landmark_visible",
             "landmark_3d_visible", "labels")


def faces_of(idx: list, views: int) -> list:
    """The faces (sorted, distinct) the items ``idx`` show."""
    return idx if views == 1 else sorted({i // views for i in idx})


def views_of(ds, idx: list, faces: list, cleans: np.ndarray, hairies, hair_masks: np.ndarray):
    """Per item: its face's position in ``faces``, its copies of the face's pictures (the clean
    one, the one with hair over the face) and hair mask, and its own camera.

    Args:
        ds: the :class:`~pyfaid.synth.SyntheticFaces` (``seed``, ``views``, camera options).
        idx: item indices. faces: :func:`faces_of` them. cleans / hairies: ``[F, H, W, 3]``
            (hairies None without occlusion). hair_masks: ``[F, H, W]``.

    Returns:
        ``(at [N] int64, cleans [N, H, W, 3], hairies or None, hair_masks [N, H, W], cameras)``.
    """
    pos = {f: k for k, f in enumerate(faces)}
    at = np.array([pos[i // ds.views] for i in idx], np.int64)
    cameras = [sample_effects(item_rng(ds.seed, i, S_VIEW), ds.image_size, ds.camera_effects, ds.blur_prob,
                              ds.noise_prob) for i in idx]
    return at, cleans[at], None if hairies is None else hairies[at], hair_masks[at], cameras


def items_of_faces(batch: dict, at: np.ndarray) -> dict:
    """``batch`` with its face-level entries (:data:`FACE_KEYS`) repeated for the items (``at``)."""
    take = torch.from_numpy(at)
    out = dict(batch)
    for k in FACE_KEYS:
        v = batch[k]
        out[k] = {n: t[take] for n, t in v.items()} if isinstance(v, dict) else v[take]
    return out
