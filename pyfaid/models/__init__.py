"""FAID networks: CoarseModel (3DMM regressor), FineModel (MeshRefiner + FAIDDecoder), the frozen
FeatureEncoder, FAID, and the training objectives."""

from pyfaid.models.coarse import CoarseModel
from pyfaid.models.faid import FAID, FAIDOutput, build_faid, build_features
from pyfaid.models.features import FeatureEncoder
from pyfaid.models.fine import FAIDDecoder, FineModel, MeshRefiner
from pyfaid.models.objectives import (
           OBJECTIVES,
           CoarseObjective,
           FAIDObjective,
           PretrainObjective,
           StagedObjective,
)
from pyfaid.models.segmentation import FaceSegmenter

__all__ = ["CoarseModel", "FaceSegmenter", "FineModel", "MeshRefiner", "FAIDDecoder", "FeatureEncoder", "FAID", "FAIDOutput",
           "build_faid", "build_features", "CoarseObjective", "PretrainObjective", "FAIDObjective", "StagedObjective", "OBJECTIVES"]
