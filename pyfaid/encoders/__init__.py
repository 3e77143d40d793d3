"""Face encoders: identity (dlib ResNet port, FaceNet), attributes, and MTCNN face alignment.

* :class:`DlibFaceNet` - dlib's CC0 face-recognition ResNet read from its ``.dat`` file (default).
* :class:`FaceNet` - facenet-pytorch's InceptionResnetV1 with VGGFace2 weights from a local file.
* :func:`identity_encoder` - either of them behind ``embed(images_224)`` / ``features(images_224)``.
* :class:`AttributeEncoder`, :func:`load_attribute_encoder` - pyfaid's own attribute CNN ("FA" features).
* :func:`align_faces`, :func:`align_face` - MTCNN detection + similarity warp to :data:`TEMPLATE_224`.
* :func:`dlib_landmarks68` - dlib's 68-point shape predictor on an MTCNN detection (opt-in; its model
  is trained on iBUG 300-W, non-commercial licence, and 300-W includes AFW).
"""

from .align import (
    DLIB_TEMPLATE_150,
    TEMPLATE_224,
    AlignResult,
    FaceNotFoundError,
    align_face,
    align_faces,
)
from .attributes import (
    AttributeEncoder,
    AttributeWeightsNotFound,
    load_attribute_encoder,
)
from .dlib_landmarks import DlibLandmarksUnavailable, dlib_landmarks68
from .dlib_resnet import DlibFaceNet
from .facenet import FaceNet, FaceNetWeightsNotFound
from .identity import (
    DlibIdentityEncoder,
    FaceNetIdentityEncoder,
    IdentityEncoder,
    identity_encoder,
)

__all__ = [
    "DlibFaceNet",
    "FaceNet",
    "FaceNetWeightsNotFound",
    "IdentityEncoder",
    "DlibIdentityEncoder",
    "FaceNetIdentityEncoder",
    "identity_encoder",
    "AttributeEncoder",
    "AttributeWeightsNotFound",
    "load_attribute_encoder",
    "align_faces",
    "align_face",
    "AlignResult",
    "FaceNotFoundError",
    "TEMPLATE_224",
    "DLIB_TEMPLATE_150",
    "dlib_landmarks68",
    "DlibLandmarksUnavailable",
]
