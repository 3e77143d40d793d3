"""Differentiable rendering: rasterize, interpolate, vertex_normals, sh_shading, Renderer."""

from pyfaid.render.rasterize import interpolate, rasterize  # noqa: F401
from pyfaid.render.shading import sh_shading, vertex_normals  # noqa: F401
