"""pyfaid: robust monocular 3D face reconstruction (the FAID method) with its own
differentiable rendering and graph kernels for CPU and CUDA.

    import pyfaid
    rec = pyfaid.reconstruct("photo.jpg")          # a Reconstruction (see pyfaid.reconstruct)
    clip = pyfaid.reconstruct_video("clip.mp4")    # a VideoReconstruction

Subpackages (each a subsystem; a package imports only those listed above it here):
    pyfaid.render       rasterize, interpolate, texture, antialias, vertex_normals, sh_shading,
                        MeshTopology, Camera; FaceMesh -> Fragments -> Render and the face Renderer
    pyfaid.graph        scaled_laplacian, Laplacian, cheb_conv, ChebConv, ChebResBlock
    pyfaid.facemodel    MorphableModel, CoeffLayout and loaders (default MakeHuman-derived model, BFM);
                        facemodel.builder: the default model's builder
    pyfaid.occlusion    occluders and their masks
    pyfaid.encoders     identity (dlib ResNet port, FaceNet), attributes, face detection and alignment
    pyfaid.synth        the synthetic-face generator
    pyfaid.data         image datasets, dataset registry, samplers, synthetic-face caches
    pyfaid.models       CoarseModel, FineModel, FeatureEncoder, FAID, training objectives
    pyfaid.reconstruct  the photo pipeline (detect -> predict -> fit -> result) and exports
    pyfaid.train / pyfaid.reconstruct / pyfaid.evaluate   the three entry points (python -m ...)

Running from a source checkout: the compiled operators (``pyfaid._C``) exist only where the package
was built. When this folder is a checkout without an in-place build (``pip install -e .`` or
``python setup.py build_ext --inplace`` make one) and an installed pyfaid is importable, the
installed package is used instead, so ``python -m pyfaid.train`` run from the repository root runs
the installed code with its own kernels, never a half-built mix.
"""

from __future__ import annotations

import glob as _glob
import os as _os
import sys as _sys

__version__ = "0.2.0"


def _installed_elsewhere():
    """Folder of an installed pyfaid with compiled ops, when this one is a checkout without them."""
    here = _os.path.dirname(_os.path.abspath(__file__))
    if _glob.glob(_os.path.join(here, "_C*.so")) or _glob.glob(_os.path.join(here, "_C*.pyd")):
        return None
    checkout = _os.path.dirname(here)
    for entry in _sys.path:
        root = _os.path.abspath(entry or _os.getcwd())
        if root == checkout:
            continue
        cand = _os.path.join(root, "pyfaid")
        if _os.path.isfile(_os.path.join(cand, "__init__.py")) and _glob.glob(_os.path.join(cand, "_C*.so")):
            return cand
    return None


_other = _installed_elsewhere()
if _other is not None:
    # Load every submodule (and the compiled ops) from the installed copy.
    __path__ = [_other]  # noqa: F811  (package search path of pyfaid.*)
    __file__ = _os.path.join(_other, "__init__.py")
del _other


def __getattr__(name):
    # ``pyfaid.reconstruct`` without an explicit import: the callable module pyfaid.reconstruct.
    if name == "reconstruct":
        import importlib

        return importlib.import_module("pyfaid.reconstruct")
    if name == "reconstruct_video":  # pyfaid.reconstruct_video(path_or_frames): one face through a clip
        import importlib

        return importlib.import_module("pyfaid.reconstruct").reconstruct_video
    raise AttributeError(f"module 'pyfaid' has no attribute {name!r}")
