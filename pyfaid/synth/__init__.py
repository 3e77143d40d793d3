"""The synthetic-face generator: random faces of the morphable model in photo-like pictures, with
exact ground truth (coefficients, vertices, albedo, masks, landmarks in both conventions, labels).

    SyntheticFaces   the dataset (``faces.py``); its parts: sampling (identity, expression, pose),
                     skin and skin_canvas (albedo detail), hair, context and scene (head, neck,
                     clothes), lighting, backgrounds, photo (camera effects), alignment (framing
                     like MTCNN's crops), contour (2D-style jaw points), render (the face render)
    clips            scripted video clips with known motion (a synthetic face; a photo moved)

See ``README.md`` beside this file for what one item holds and how it is made.
"""

from pyfaid.synth.faces import FRAMINGS, SyntheticFaces

__all__ = ["SyntheticFaces", "FRAMINGS"]
