"""Face encoders: identity (dlib ResNet port, FaceNet), attributes, and MTCNN face alignment.

* :class:`DlibFaceNet` - dlib's CC0 face-recognition ResNet read from its ``.dat`` file (default).
* :class:`FaceNet` - facenet-pytorch's InceptionResnetV1 with VGGFace2 weights from a local file.
* :func:`identity_encoder` - either of them behind ``embed(images_224)`` / ``features(images_224)``.
* :class:`AttributeEncoder`, :func:`load_attribute_encoder` - pyfaid's own attribute CNN ("FA" features).
* :func:`align_faces`, :func:`align_face` - MTCNN detection + similarity warp to :data:`TEMPLATE_224`.
"""

from .align import (
    DLIB_TEMPLATE_150,
    TEMPLATE_224,
    AlignResult,
    FaceNotFoundError,
    align_face,
    align_faces,
)
from .attributes import AttributeEncoder, AttributeWeightsNotFound, load_attribute_encoder
from .dlib_resnet import DlibFaceNet
from .facenet import FaceNet, FaceNetWeightsNotFound
from .identity import DlibIdentityEncoder, FaceNetIdentityEncoder, IdentityEncoder, identity_encoder

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
]
