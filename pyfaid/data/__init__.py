"""Training and evaluation data: datasets of photos (CelebA, AFLW2000-3D, 300-W, folders), the
dataset registry, resumable samplers, the disk cache of synthetic faces, annotated photos.

    CachedFaces      a cache of synthetic faces written by ``python -m pyfaid.data cache`` (memory-mapped)
    SyntheticFaces   the generator's dataset (:mod:`pyfaid.synth`), re-exported for the registry's users

``python -m pyfaid.data`` previews synthetic faces, writes caches and measures MTCNN's framing.
"""

from pyfaid.data.cache import CachedFaces, write_cache
from pyfaid.synth import SyntheticFaces

__all__ = ["SyntheticFaces", "CachedFaces", "write_cache"]
