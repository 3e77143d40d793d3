"""pyfaid: robust monocular 3D face reconstruction (the FAID method) with its own
differentiable rendering and graph kernels for CPU and CUDA.

Subpackages:
    pyfaid.render     rasterize, interpolate, vertex_normals, sh_shading, Renderer
    pyfaid.graph      scaled_laplacian, cheb_conv, ChebConv, ChebResBlock
    pyfaid.facemodel  MorphableModel and loaders (default MakeHuman-derived model, BFM)
    pyfaid.encoders   identity (dlib ResNet port, FaceNet), attributes, face alignment
    pyfaid.data       synthetic faces, image datasets, occlusion synthesis
    pyfaid.models     CoarseModel, FineModel, FAID
"""

__version__ = "0.1.0"
