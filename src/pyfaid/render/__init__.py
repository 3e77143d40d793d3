"""Differentiable rendering: rasterize, interpolate, vertex_normals, sh_shading, Renderer."""

from pyfaid.render.rasterize import interpolate, rasterize  # noqa: F401
