"""Textured 3D faces from photos: detection, the FAID model, test-time fitting, exports.

Python (the module is callable: ``pyfaid.reconstruct(...)`` is :func:`reconstruct`)::

    import pyfaid
    rec = pyfaid.reconstruct("photo.jpg", checkpoint="runs/default", fit_steps=100)
    rec.landmarks, rec.pose                  # 68 points in photo pixels, head pose in degrees
    rec.save_obj("face.obj"); rec.save_ply("face.ply")
    cv2.imwrite("overlay.jpg", rec.overlay("photo.jpg")[:, :, ::-1])
    side = rec.render(pose=(0.0, 0.6, 0.0))  # the same face turned 0.6 rad to the side
    many = pyfaid.reconstruct(["a.jpg", "broken.jpg"], checkpoint=..., faces="all")  # per input
    rec.blendshapes                          # {"jawOpen": 0.7, ...}: the 52 ARKit weights
    clip = pyfaid.reconstruct_video("clip.mp4")  # one face through a video (pyfaid.reconstruct.video)

Command line::

    python -m pyfaid.reconstruct photo.jpg more_photos/ --out out/ [--checkpoint CKPT] [--fit 200] [--faces all]
    python -m pyfaid.reconstruct clip.mp4 --out out/          # CSV (Live Link Face), animated glb, overlay video

Modules: :mod:`~pyfaid.reconstruct.api` (``reconstruct``), :mod:`~pyfaid.reconstruct.result`
(``Reconstruction``), :mod:`~pyfaid.reconstruct.fitting` (``fit``, ``FitSchedule``),
:mod:`~pyfaid.reconstruct.io` (images), :mod:`~pyfaid.reconstruct.cli`, :mod:`~pyfaid.reconstruct.video`
(``reconstruct_video``), :mod:`~pyfaid.reconstruct.expression` (expression from landmarks).
"""

import sys
import types

from pyfaid.reconstruct.api import (
    NO_CHECKPOINT_MESSAGE,
    DlibLandmarksUnavailable,
    FaceNotFoundError,
    ImageReadError,
    NoCheckpointError,
    ReconstructionError,
    load_model,
    reconstruct,
)
from pyfaid.reconstruct.cli import main
from pyfaid.reconstruct.fitting import FitSchedule, fit
from pyfaid.reconstruct.io import load_image
from pyfaid.reconstruct.result import Reconstruction
from pyfaid.reconstruct.video import reconstruct_video
from pyfaid.reconstruct.video_result import VideoReconstruction
from pyfaid.reconstruct.video_track import VideoReadError

__all__ = ["reconstruct", "Reconstruction", "ReconstructionError", "fit", "FitSchedule", "FaceNotFoundError",
           "ImageReadError", "NoCheckpointError", "NO_CHECKPOINT_MESSAGE", "DlibLandmarksUnavailable", "load_image",
           "load_model", "main", "reconstruct_video", "VideoReconstruction", "VideoReadError"]


class _CallableModule(types.ModuleType):
    """Lets ``pyfaid.reconstruct(...)`` call :func:`reconstruct` while ``pyfaid.reconstruct.X``
    and ``python -m pyfaid.reconstruct`` keep working."""

    def __call__(self, *args, **kwargs):
        return reconstruct(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
