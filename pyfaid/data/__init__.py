"""Training and evaluation data: synthetic faces rendered from the morphable model and
occlusion synthesis.

    SyntheticFaces   random faces with ground-truth coefficients, vertices, albedo and masks
    occlude          random occluders (sunglasses, hands, hair, textured patches, noise)
"""

from pyfaid.data.occlusion import OCCLUDER_KINDS, occlude
from pyfaid.data.synthetic import SyntheticFaces

__all__ = ["SyntheticFaces", "occlude", "OCCLUDER_KINDS"]
