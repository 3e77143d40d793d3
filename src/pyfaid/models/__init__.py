"""FAID networks: CoarseModel (3DMM regressor), FineModel (MeshRefiner + FAIDDecoder), FAID."""

from pyfaid.models.coarse import CoarseModel
from pyfaid.models.faid import FAID, FAIDObjective, Reconstruction, build_faid

from pyfaid.models.fine import FAIDDecoder, FineModel, MeshRefiner

__all__ = ["CoarseModel", "FineModel", "MeshRefiner", "FAIDDecoder", "FAID", "FAIDObjective",
           "Reconstruction", "build_faid"]
