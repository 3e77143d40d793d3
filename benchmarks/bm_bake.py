"""Benchmark: baking textures of one reconstructed face (pyfaid.render.bake).

Face: the default face model (34,521 vertices, 68,672 triangles, its MakeHuman UV layout) with
seeded identity coefficients, turned 0.35 rad, under SH light; its "photo" is its own 224 x 224
render. Texture 1024 x 1024 (and 2048 x 2048 in full runs).

Cases:
  * atlas: the once-per-model-and-size preparation (UV raster + seam-padding map), cached on the
    model by ``MorphableModel.uv_atlas``.
  * albedo: per-vertex albedo -> texture, seams padded (``bake_vertex_colors``).
  * photo: the photo texture (``bake_photo``: texel attributes, projection, depth test against a
    224 x 224 raster of the view, facing, shading division, feathered blend, padding).
  * photo cold: ``Reconstruction.texture("photo", size)`` on a model without a cached atlas
    (atlas + posing + bake: what the first face of a run costs).

Peers in the same run:
  * torch-reference: the same bake (this module's code, same output) with the tests'
    plain-PyTorch kernels (``rasterize_bbox``, ``interpolate_reference`` from
    ``tests/reference_render.py``) swapped in for pyfaid's rasterize and interpolate.
  * moderngl-llvmpipe (albedo, CPU only): OpenGL on Mesa's llvmpipe drawing the UV triangles with
    the albedo as a vertex attribute (seam-split vertices), read back; no seam padding.
Rows report ``ms`` (median wall time) and ``cpu_ms`` (median process CPU time of a call, all
threads: on a machine shared with other jobs, wall time far above ``cpu_ms / threads`` means the
threads were waiting for a core); peers add ``texels_differ``, the share of the texels both cover
whose colour differs from pyfaid's by more than half a grey level (``mask_agree`` for the atlas).
"""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
import time

import torch

from common import add_speedups, row, time_ms

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

from pyfaid.reconstruct.predict import crop_renderer, default_face_model  # noqa: E402
from pyfaid.facemodel.uv import split_seams  # noqa: E402
from pyfaid.reconstruct import export  # noqa: E402
from pyfaid.reconstruct.result import make_reconstruction  # noqa: E402
from pyfaid.render import bake  # noqa: E402
from pyfaid.render.topology import MeshTopology  # noqa: E402
from reference_render import interpolate_reference, rasterize_bbox  # noqa: E402

BENCH = "bake"


def _tri(t):
    return t.triangles if isinstance(t, MeshTopology) else t


@contextlib.contextmanager
def reference_kernels():
    """bake.py running on the plain-PyTorch twins of rasterize and interpolate."""
    old = bake.rasterize, bake.interpolate
    bake.rasterize = lambda pos, tri, res: rasterize_bbox(pos, _tri(tri), int(res[0]), int(res[1]))
    bake.interpolate = lambda attr, rast, tri: interpolate_reference(attr, rast, _tri(tri))
    try:
        yield
    finally:
        bake.rasterize, bake.interpolate = old


def face(device):
    fm = default_face_model(device)
    renderer = crop_renderer(device)
    g = torch.Generator().manual_seed(0)
    lay = fm.layout
    c = lay.zeros(1, device=device)
    c[0, lay.slice("id")] = 0.6 * torch.randn(fm.n_id, generator=g).to(device)
    c[0, lay.slice("tex")] = 0.6 * torch.randn(fm.n_tex, generator=g).to(device)
    c[0, lay.slice("angle")] = torch.tensor([0.1, -0.35, 0.05], device=device)
    gam = lay.slice("gamma").start
    c[0, gam] = 0.25
    c[0, gam + 1:gam + 4] = torch.tensor([0.1, 0.25, -0.1], device=device)
    with torch.no_grad():
        out = renderer(fm, c)
    image = (out.mask * out.image + (1 - out.mask) * 0.3)[0]
    return make_reconstruction(fm, renderer, image, c[0], None, None, "benchmark", None, [])


class ModernGLBaker:
    """UV-space triangles with a per-vertex colour, drawn by OpenGL (llvmpipe) into a float target."""

    VS = """
    #version 330
    in vec2 in_uv;
    in vec3 in_color;
    out vec3 v_color;
    void main() { gl_Position = vec4(2.0 * in_uv - 1.0, 0.0, 1.0); v_color = in_color; }
    """
    FS = """
    #version 330
    in vec3 v_color;
    out vec4 out_color;
    void main() { out_color = vec4(v_color, 1.0); }
    """

    def __init__(self, faces, size):
        import moderngl

        self.mgl = moderngl
        self.ctx = moderngl.create_standalone_context(backend="egl")
        self.prog = self.ctx.program(vertex_shader=self.VS, fragment_shader=self.FS)
        self.faces = faces
        self.size = size
        self.tex = self.ctx.texture((size, size), 4, dtype="f4")
        self.fbo = self.ctx.framebuffer(color_attachments=[self.tex])

    def __call__(self, uv, colors):
        """uv [N, 2], colors [N, 3] (seam-split vertices, CPU float32) -> [size, size, 3], row 0 at v = 1."""
        import numpy as np

        vbo = self.ctx.buffer(uv.numpy().astype("f4").tobytes())
        cbo = self.ctx.buffer(colors.numpy().astype("f4").tobytes())
        ibo = self.ctx.buffer(self.faces.numpy().astype("i4").tobytes())
        vao = self.ctx.vertex_array(self.prog, [(vbo, "2f", "in_uv"), (cbo, "3f", "in_color")], index_buffer=ibo,
                                    index_element_size=4)
        self.fbo.use()
        self.fbo.clear(0.0, 0.0, 0.0, 0.0)
        vao.render(self.mgl.TRIANGLES)
        a = np.frombuffer(self.fbo.read(components=4, dtype="f4"), dtype="f4").reshape(self.size, self.size, 4)
        for o in (vao, vbo, cbo, ibo):
            o.release()
        return torch.from_numpy(a[::-1, :, :3].copy())  # GL's row 0 is the bottom (v = 0)

    def release(self):
        self.ctx.release()


def cpu_ms(fn, iters: int = 3) -> float:
    """Median process CPU time (all threads) of ``fn()`` in milliseconds."""
    times = []
    for _ in range(iters):
        t0 = time.process_time()
        fn()
        times.append((time.process_time() - t0) * 1e3)
    return round(statistics.median(times), 1)


def _diff(a, b, mask):
    """Share of the texels both cover whose colour differs by more than half a grey level."""
    return round(float(((a - b).abs()[mask].max(-1).values > 0.5 / 255).float().mean()), 6)


def run(device: str = "cpu", quick: bool = False) -> list[dict]:
    dev = torch.device(device)
    rec = face(dev)
    fm = rec.face_model
    geo = export.posed_geometry(rec)
    iters = 3 if quick else 10
    rows = []
    for size in ((1024,) if quick else (1024, 2048)):
        tag = f"{size}x{size} V{fm.num_vertices} F{fm.triangles.shape[0]}"

        def atlas():
            return bake.UVAtlas(fm.uv, fm.uv_faces, fm.topology, size=size, device=dev)

        def photo(a):
            return bake.bake_photo(a, rec.input, geo["clip"], geo["world"], geo["normals"], geo["eye"], rec.albedo,
                                   geo["shading"])["texture"]

        ours = atlas()
        with reference_kernels():
            ref = atlas()
        both = ours.mask & ref.mask
        rows.append(row(BENCH, f"{tag} atlas", "pyfaid", time_ms(atlas, dev, warmup=1, iters=iters), cpu_ms=cpu_ms(atlas)))
        with reference_kernels():
            rows.append(row(BENCH, f"{tag} atlas", "torch-reference", time_ms(atlas, dev, warmup=0, iters=3),
                            mask_agree=round(float((ours.mask == ref.mask).float().mean()), 5)))

        alb = bake.bake_vertex_colors(ours, rec.albedo)
        fn = lambda: bake.bake_vertex_colors(ours, rec.albedo)  # noqa: E731
        rows.append(row(BENCH, f"{tag} albedo", "pyfaid", time_ms(fn, dev, warmup=2, iters=iters), cpu_ms=cpu_ms(fn)))
        with reference_kernels():
            alb_ref = bake.bake_vertex_colors(ref, rec.albedo)
            ms = time_ms(lambda: bake.bake_vertex_colors(ref, rec.albedo), dev, warmup=0, iters=3)
        rows.append(row(BENCH, f"{tag} albedo", "torch-reference", ms, texels_differ=_diff(alb, alb_ref, both)))
        if dev.type == "cpu":
            try:
                vertex_of, uv_of, faces = split_seams(fm.triangles.numpy(), fm.uv_faces.numpy(), fm.num_vertices)
                uv_split = fm.uv[torch.from_numpy(uv_of)]
                col = rec.albedo[torch.from_numpy(vertex_of)].float()
                gl = ModernGLBaker(torch.from_numpy(faces), size)
            except Exception as exc:  # no EGL / llvmpipe here
                print(f"moderngl peer unavailable: {exc}")
            else:
                got = gl(uv_split, col)
                ms = time_ms(lambda: gl(uv_split, col), dev, warmup=2, iters=iters)
                rows.append(row(BENCH, f"{tag} albedo", "moderngl-llvmpipe", ms, texels_differ=_diff(alb, got, ours.mask),
                                note="no seam padding"))
                gl.release()

        tex = photo(ours)
        fn = lambda: photo(ours)  # noqa: E731
        rows.append(row(BENCH, f"{tag} photo", "pyfaid", time_ms(fn, dev, warmup=2, iters=iters), cpu_ms=cpu_ms(fn)))
        with reference_kernels():
            tex_ref = photo(ref)
            ms = time_ms(lambda: photo(ref), dev, warmup=0, iters=3)
        rows.append(row(BENCH, f"{tag} photo", "torch-reference", ms, texels_differ=_diff(tex, tex_ref, both)))

        def cold():
            fm._uv_atlases.clear()  # as on the first face of a run
            return rec.texture("photo", size)

        rows.append(row(BENCH, f"{tag} photo cold", "pyfaid", time_ms(cold, dev, warmup=1, iters=iters), cpu_ms=cpu_ms(cold)))
    return add_speedups(rows)


if __name__ == "__main__":
    import common

    common.main(run)
