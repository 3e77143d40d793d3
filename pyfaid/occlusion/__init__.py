"""Occluders and their masks: sunglasses, clear glasses, hands, hair locks, patches, noise and
medical masks pasted onto face pictures. The synthetic-face generator, the FAID objective
(self-augmentation, L_rob) and the occlusion protocol of ``pyfaid.evaluate`` all use them.

    occlude, occlude_arrays   paste random occluders (tensors / NumPy arrays), with their masks
    OCCLUDER_KINDS            the kinds (``occluders.py``); shapes in ``shapes.py``
"""

from pyfaid.occlusion.occlude import OCCLUDER_KINDS, occlude, occlude_arrays

__all__ = ["occlude", "occlude_arrays", "OCCLUDER_KINDS"]
