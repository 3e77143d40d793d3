"""Differentiable rendering: nvdiffrast's primitives (rasterize, interpolate, texture, antialias),
normals, SH shading, MeshTopology; the face renderer's typed stages (FaceMesh -> Fragments ->
Render) and Renderer."""

from pyfaid.render.antialias import antialias  # noqa: F401
from pyfaid.render.camera import (  # noqa: F401
    apply_pose,
    clip_space,
    euler_rotation,
    project,
    random_angles,
    to_camera,
    to_pixels,
)
from pyfaid.render.mesh import (  # noqa: F401
    FaceMesh,
    Fragments,
    Render,
    RestShape,
    UVTexture,
    antialias_image,
    pose_mesh,
    rasterize_mesh,
    shade,
    shade_texture,
)
from pyfaid.render.rasterize import interpolate, rasterize, rasterize_db  # noqa: F401
from pyfaid.render.renderer import AMBIENT_OFFSET, Renderer  # noqa: F401
from pyfaid.render.shading import sh_shading, vertex_normals  # noqa: F401
from pyfaid.render.texture import TextureMips, texture, texture_mipmaps  # noqa: F401
from pyfaid.render.topology import MeshTopology  # noqa: F401
from pyfaid.render.unproject import photo_albedo, vertex_average  # noqa: F401
