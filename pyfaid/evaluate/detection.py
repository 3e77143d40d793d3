"""Face detection under occlusion: how often the face of an annotated photo is missed when pyfaid's
occluders are pasted on it (``python -m pyfaid.evaluate --protocol detection``).

For every annotated photo (300-W ``.pts`` or AFLW2000-3D) and condition (``none``, ``synthetic``:
every occluder kind at random, or one kind), the occluders are drawn in a face crop placed by the
annotation (the 68 points give the occluders their eyes, nose and jaw line; the crop's resolution
follows the face's size in the photo) and warped back into the photo, so the detector sees an
occluded face at the photo's own scale, with the rest of the photo around it. Detection runs as
:func:`pyfaid.reconstruct` runs it (:func:`~pyfaid.encoders.detect_retry.detect_with_retries`);
the annotated face is found when a detection's 5 points centre inside the annotation's box
(:func:`~pyfaid.evaluate.landmarks.match_face`). The report counts, per condition, the misses of
the plain detection alone and after the retries, and which attempt found the face.
"""

from __future__ import annotations

import time
from typing import Dict, Sequence

import cv2
import numpy as np
from tqdm import tqdm

from pyfaid.data.landmarks import annotated_photos
from pyfaid.data.registry import parse_spec
from pyfaid.encoders.align import TEMPLATE_224, similarity_transform
from pyfaid.encoders.detect_retry import PLAIN, RETRIES, detect_with_retries
from pyfaid.evaluate.landmarks import match_face
from pyfaid.occlusion import occlude_arrays
from pyfaid.reconstruct.io import load_image

__all__ = ["occlude_photo", "evaluate_detection", "detection_markdown"]

#: The 68-point groups giving MTCNN-style 5 points (eye centres, nose tip, mouth corners).
_FIVE = (tuple(range(36, 42)), tuple(range(42, 48)), (30,), (48,), (54,))


def occlude_photo(image: np.ndarray, points68: np.ndarray, condition: str, seed: int, index: int) -> np.ndarray:
    """A photo with pyfaid's occluders pasted on one annotated face.

    Args:
        image: ``[H, W, 3]`` uint8 RGB. points68: ``[68, 2]`` the face's points in photo pixels.
        condition: ``"none"`` (the photo as it is), ``"synthetic"`` (every kind) or one occluder kind.
        seed, index: the occluders' seed and the photo's index (:func:`pyfaid.occlusion.occlude_arrays`).

    Returns:
        ``[H, W, 3]`` uint8 RGB.
    """
    if condition == "none":
        return image
    five = np.stack([points68[list(g)].mean(0) for g in _FIVE])
    eye_px = float(np.linalg.norm(five[1] - five[0]))
    template_eye = float(np.linalg.norm(TEMPLATE_224[1] - TEMPLATE_224[0]))
    size = int(224 * np.clip(np.ceil(eye_px / template_eye), 1, 4))  # about the face's own resolution
    m = similarity_transform(five, TEMPLATE_224 * (size / 224.0))
    crop = cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    lm = points68 @ m[:, :2].T + m[:, 2]
    kinds = None if condition == "synthetic" else (condition,)
    occ, _ = occlude_arrays(crop[None].astype(np.float32) / 255.0, seed, indices=[index], kinds=kinds,
                            landmarks=lm[None])
    occ = np.clip(occ[0] * 255.0 + 0.5, 0, 255).astype(np.uint8)
    changed = (np.abs(occ.astype(np.int16) - crop.astype(np.int16)).max(-1) > 0).astype(np.float32)
    h, w = image.shape[:2]
    inv = cv2.invertAffineTransform(m)
    back = cv2.warpAffine(occ, inv, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    alpha = cv2.warpAffine(changed, inv, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)[..., None]
    return np.clip(image * (1 - alpha) + back * alpha + 0.5, 0, 255).astype(np.uint8)


def evaluate_detection(data: str, occlusions: Sequence[str] = ("none", "synthetic"), n: int = 0, device="cpu",
                       seed: int = 1234, progress: bool = True) -> dict:
    """Misses of the face detector on annotated photos with occluders pasted on.

    Args:
        data: ``300w:DIR`` or ``aflw2000:DIR``.
        occlusions: conditions (see :data:`pyfaid.evaluate.protocol.CONDITIONS`).
        n: the first ``n`` photos (0: all).
        device: where MTCNN runs. seed: the occluders' seed.
        progress: a tqdm bar.

    Returns:
        The report dict (``conditions``: per condition ``photos``, ``misses_plain``, ``misses``,
        ``found_by`` (attempt name -> count), ``seconds_per_photo``; ``missed``: the paths per condition).
    """
    kind, root = parse_spec(data)
    if kind not in ("300w", "aflw2000"):
        raise ValueError(f"--data {data}: the detection protocol needs annotated photos (300w:DIR or aflw2000:DIR)")
    photos = annotated_photos(root, kind)[: n or None]
    conds: Dict[str, dict] = {c: {"photos": 0, "misses_plain": 0, "misses": 0, "found_by": {}, "seconds": 0.0}
                              for c in occlusions}
    missed: Dict[str, list] = {c: [] for c in occlusions}
    for i, photo in enumerate(tqdm(photos, desc="detection", unit="photo", disable=not progress)):
        image = load_image(photo.path)
        for cond in occlusions:
            img = occlude_photo(image, photo.points, cond, seed, i)
            t0 = time.perf_counter()
            chosen, _ = detect_with_retries(img, lambda f: match_face(f, photo), device, (PLAIN,) + RETRIES)
            st = conds[cond]
            st["seconds"] += time.perf_counter() - t0
            st["photos"] += 1
            how = chosen[0]["attempt"] if chosen else None
            st["misses_plain"] += how != PLAIN.name
            st["misses"] += how is None
            if how is None:
                missed[cond].append(photo.path)
            else:
                st["found_by"][how] = st["found_by"].get(how, 0) + 1
    for st in conds.values():
        st["seconds_per_photo"] = st.pop("seconds") / max(st["photos"], 1)
    return {"protocol": "detection", "data": data, "n": len(photos), "occlusion_seed": seed,
            "attempts": [PLAIN.name] + [a.name for a in RETRIES], "conditions": conds, "missed": missed}


def detection_markdown(report: dict) -> str:
    """``report.md`` of the detection protocol."""
    lines = [f"# pyfaid face detection under occlusion: {report['data']} ({report['n']} photos)", "",
             "Misses: photos whose annotated face no detection matches (its 5 points' centre inside the "
             "annotation's box), with the plain detection alone and with the retries "
             f"({', '.join(report['attempts'][1:])}).", "",
             "| Condition | Photos | Misses (plain) | Misses (with retries) | Miss rate | Found by a retry "
             "| s / photo |",
             "|---|---|---|---|---|---|---|"]
    for cond, st in report["conditions"].items():
        retry = sum(v for k, v in st["found_by"].items() if k != report["attempts"][0])
        rate = 100.0 * st["misses"] / max(st["photos"], 1)
        lines.append(f"| {cond} | {st['photos']} | {st['misses_plain']} | {st['misses']} | {rate:.1f} % | {retry} | "
                     f"{st['seconds_per_photo']:.2f} |")
    occluded = [st for c, st in report["conditions"].items() if c != "none"]
    if occluded:
        total, miss = sum(st["photos"] for st in occluded), sum(st["misses"] for st in occluded)
        plain = sum(st["misses_plain"] for st in occluded)
        lines += ["", f"Occluded photos together: {miss} / {total} missed ({100.0 * miss / max(total, 1):.2f} %); "
                      f"the plain detection alone {plain} ({100.0 * plain / max(total, 1):.2f} %).", ""]
    return "\n".join(lines)
