"""Training and evaluation data: synthetic faces rendered from the morphable model, their disk
cache, and occlusion synthesis.

    SyntheticFaces   random faces in photo-like pictures, with ground-truth coefficients, vertices,
                     albedo, masks, 300-W landmarks and appearance labels
    CachedFaces      a cache of them written by ``python -m pyfaid.data cache`` (memory-mapped)
    occlude          random occluders (sunglasses, glasses, hands, hair, patches, noise, masks)
"""

from pyfaid.data.cache import CachedFaces, write_cache
from pyfaid.data.occlusion import OCCLUDER_KINDS, occlude, occlude_arrays
from pyfaid.data.synthetic import SyntheticFaces

__all__ = ["SyntheticFaces", "CachedFaces", "write_cache", "occlude", "occlude_arrays", "OCCLUDER_KINDS"]
