"""Benchmark: rasterize + interpolate (C=3), forward and forward+backward.

Mesh: a 188 x 189 regular grid bent into a face-sized cap (35,709 vertices with 177 unused,
70,312 triangles), seen through Deep3DFaceRecon's camera (focal 1015, 224 x 224, distance 10) so it
covers about 60% of a 224 x 224 image; 512 x 512 uses the same view scaled. Each image of a batch
has a slightly different rotation.

Peers in the same run:
  * torch-bruteforce (224 x 224, batch 1, full runs only): ``rasterize_bruteforce`` from
    ``tests/reference_render.py``, every pixel against every triangle in chunks with a running
    depth buffer; timed on 1/16 of the triangles and scaled (its cost is linear in F).
  * torch-reference: the vectorised pure-PyTorch rasterizer of ``tests/reference_render.py``
    (``rasterize_bbox``: per-triangle bounding-box candidates, ``scatter_reduce`` depth resolve,
    differentiable barycentrics) with ``interpolate_reference``; backward through autograd.
  * moderngl-llvmpipe: OpenGL through moderngl on Mesa's llvmpipe (EGL, headless), forward only:
    triangle id (gl_PrimitiveID) and depth (gl_FragCoord.z) into one RGBA32F target and the
    interpolated C=3 attribute into a second, read back to host memory. CPU runs only.
pyfaid gets the triangles as a ``MeshTopology`` (indices checked once: the library's recommended
input for a mesh drawn more than once). Rows report ``ms`` (median per call) and ``per_image_ms``;
``id_agree`` is the fraction of pixels where a peer's triangle id equals pyfaid's.
"""

from __future__ import annotations

import math
import os
import sys

import torch

from common import add_speedups, row, time_ms

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

from pyfaid.render import MeshTopology, interpolate, rasterize  # noqa: E402
from reference_render import interpolate_reference, rasterize_bbox, rasterize_bruteforce  # noqa: E402

BENCH = "rasterize"
NUM_VERTICES = 35709
ROWS, COLS = 188, 189
FOCAL, IMAGE, DISTANCE, NEAR, FAR = 1015.0, 224, 10.0, 5.0, 15.0


def face_grid():
    """Model-space vertices [35709, 3] (float64, head-sized, BFM's count) and triangles [70312, 3]
    of a grid bent into a face-sized patch; the last 177 vertices are an unused tail."""
    ys, xs = torch.meshgrid(torch.linspace(-0.92, 0.92, ROWS, dtype=torch.float64),
                            torch.linspace(-0.78, 0.78, COLS, dtype=torch.float64), indexing="ij")
    r2 = (xs / 0.78) ** 2 + (ys / 0.92) ** 2
    zs = 0.45 * (1 - 0.5 * r2) + 0.08 * torch.cos(3 * xs) * torch.cos(2 * ys)
    grid = torch.stack([xs, ys, zs], -1).reshape(-1, 3)
    verts = torch.cat([grid, grid[: NUM_VERTICES - grid.shape[0]] * 0.0], 0)  # unused tail
    r = torch.arange(ROWS - 1)[:, None] * COLS
    c = torch.arange(COLS - 1)[None, :]
    a = (r + c).reshape(-1)
    quads = torch.stack([a, a + 1, a + COLS, a + COLS + 1], -1)
    tri = torch.cat([quads[:, [0, 1, 2]], quads[:, [1, 3, 2]]], 0).to(torch.int32)
    return verts, tri


def face_patch(batch: int, dtype=torch.float32):
    """Clip-space positions [B, 35709, 4] and triangles [70312, 3] of :func:`face_grid` seen from
    a few directions."""
    verts, tri = face_grid()
    out = []
    for b in range(batch):
        ay, ax = 0.25 * math.sin(1.7 * b), 0.15 * math.cos(1.3 * b)
        cy, sy, cx, sx = math.cos(ay), math.sin(ay), math.cos(ax), math.sin(ax)
        rot = torch.tensor([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]], dtype=torch.float64)
        rot = torch.tensor([[1, 0, 0], [0, cx, -sx], [0, sx, cx]], dtype=torch.float64) @ rot
        v = verts @ rot.T
        depth = DISTANCE - v[:, 2]
        x = v[:, 0] * (2 * FOCAL / IMAGE)
        y = v[:, 1] * (2 * FOCAL / IMAGE)
        z = (FAR + NEAR) / (FAR - NEAR) * depth - 2 * FAR * NEAR / (FAR - NEAR)
        out.append(torch.stack([x, y, z, depth], -1))
    return torch.stack(out).to(dtype), tri


def face_patch_case(dev, quick: bool, channels: int) -> tuple:
    """The face patch on ``dev`` for a benchmark case: ``(batch, res, iters, pos, tri, topo, attr)``,
    batch 16 (4 with ``quick``) at 224 x 224, ``attr [B, V, channels]`` uniform in [0, 1)."""
    batch, res = (4, 224) if quick else (16, 224)
    iters = 3 if quick else 10
    pos, tri = face_patch(batch)
    pos, tri = pos.to(dev), tri.to(dev)
    topo = MeshTopology(tri, pos.shape[1])
    attr = torch.rand(batch, pos.shape[1], channels, device=dev)
    return batch, res, iters, pos, tri, topo, attr


class ModernGLRenderer:
    """Forward-only OpenGL peer: ids + depth in one RGBA32F target, attributes in another."""

    VS = """
    #version 330
    in vec4 in_pos;
    in vec3 in_attr;
    out vec3 v_attr;
    void main() { gl_Position = in_pos; v_attr = in_attr; }
    """
    FS = """
    #version 330
    in vec3 v_attr;
    layout(location = 0) out vec4 out_id;
    layout(location = 1) out vec4 out_attr;
    void main() {
        out_id = vec4(float(gl_PrimitiveID + 1), gl_FragCoord.z, 0.0, 1.0);
        out_attr = vec4(v_attr, 1.0);
    }
    """

    def __init__(self, tri, num_vertices, height, width):
        import moderngl

        self.mgl = moderngl
        self.ctx = moderngl.create_standalone_context(backend="egl")
        self.prog = self.ctx.program(vertex_shader=self.VS, fragment_shader=self.FS)
        self.vbo = self.ctx.buffer(reserve=num_vertices * 4 * 4)
        self.abo = self.ctx.buffer(reserve=num_vertices * 3 * 4)
        self.ibo = self.ctx.buffer(tri.numpy().astype("i4").tobytes())
        self.vao = self.ctx.vertex_array(self.prog, [(self.vbo, "4f", "in_pos"), (self.abo, "3f", "in_attr")],
                                         index_buffer=self.ibo, index_element_size=4)
        self.size = (width, height)
        self.tex_id = self.ctx.texture(self.size, 4, dtype="f4")
        self.tex_attr = self.ctx.texture(self.size, 4, dtype="f4")
        self.fbo = self.ctx.framebuffer(color_attachments=[self.tex_id, self.tex_attr],
                                        depth_attachment=self.ctx.depth_renderbuffer(self.size))

    def __call__(self, pos, attr):
        """pos [B, V, 4], attr [B, V, 3] (CPU float32) -> (id+1 [B, H, W], attr [B, H, W, 3])."""
        import numpy as np

        ids, outs = [], []
        self.fbo.use()
        self.ctx.enable(self.mgl.DEPTH_TEST)
        w, h = self.size
        for b in range(pos.shape[0]):
            self.vbo.write(pos[b].numpy().tobytes())
            self.abo.write(attr[b].numpy().tobytes())
            self.fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
            self.vao.render(self.mgl.TRIANGLES)
            a = np.frombuffer(self.fbo.read(components=4, dtype="f4", attachment=0), dtype="f4")
            c = np.frombuffer(self.fbo.read(components=4, dtype="f4", attachment=1), dtype="f4")
            ids.append(torch.from_numpy(a.reshape(h, w, 4)[..., 0].copy()))
            outs.append(torch.from_numpy(c.reshape(h, w, 4)[..., :3].copy()))
        return torch.stack(ids), torch.stack(outs)

    def release(self):
        self.ctx.release()


def _cases(quick):
    if quick:
        return [(224, 1)]
    return [(224, 1), (224, 16), (512, 1)]


def run(device: str, quick: bool) -> list[dict]:
    rows = []
    dev = torch.device(device)
    iters = 3 if quick else 10
    for res, batch in _cases(quick):
        pos, tri = face_patch(batch)  # clip space: the same view at any resolution
        pos, tri = pos.to(dev), tri.to(dev)
        topo = MeshTopology(tri, pos.shape[1])
        attr = torch.rand(batch, pos.shape[1], 3, device=dev)
        grad = torch.randn(batch, res, res, 3, device=dev)

        def ours_fwd():
            return interpolate(attr, rasterize(pos, topo, (res, res)), topo)

        def ours_fwd_bwd():
            p = pos.detach().requires_grad_(True)
            a = attr.detach().requires_grad_(True)
            out = interpolate(a, rasterize(p, topo, (res, res)), topo)
            out.backward(grad)
            return p.grad, a.grad

        def ref_fwd():
            with torch.no_grad():
                return interpolate_reference(attr, rasterize_bbox(pos, tri, res, res), tri)

        def ref_fwd_bwd():
            p = pos.detach().requires_grad_(True)
            a = attr.detach().requires_grad_(True)
            out = interpolate_reference(a, rasterize_bbox(p, tri, res, res), tri)
            out.backward(grad)
            return p.grad, a.grad

        rast = rasterize(pos, tri, (res, res))
        coverage = round((rast[..., 3] > 0).float().mean().item(), 3)
        ref_ids = rasterize_bbox(pos, tri, res, res)[..., 3]
        ref_agree = round((ref_ids == rast[..., 3]).float().mean().item(), 4)
        case = f"{res}x{res} B{batch} F{tri.shape[0]}"
        for mode, fn, peer, agree in (("fwd", ours_fwd, ref_fwd, ref_agree),
                                      ("fwd+bwd", ours_fwd_bwd, ref_fwd_bwd, ref_agree)):
            ms = time_ms(fn, dev, warmup=2, iters=iters)
            rows.append(row(BENCH, f"{case} {mode}", "pyfaid", ms, per_image_ms=round(ms / batch, 4),
                            coverage=coverage))
            ms = time_ms(peer, dev, warmup=0 if quick else 1, iters=3 if quick else 5, max_seconds=30)
            rows.append(row(BENCH, f"{case} {mode}", "torch-reference", ms, per_image_ms=round(ms / batch, 4),
                            id_agree=agree))
        if not quick and batch == 1 and res == IMAGE:
            # The every-pixel-against-every-triangle reference (tests' twin) costs minutes per
            # image here; its cost is linear in the triangle count, so time 1/16 of them and scale.
            part = tri[: tri.shape[0] // 16]
            ms = 16 * time_ms(lambda: rasterize_bruteforce(pos, part, res, res, tol=None), dev,
                              warmup=0, iters=1)
            rows.append(row(BENCH, f"{case} fwd", "torch-bruteforce", ms, per_image_ms=round(ms / batch, 4),
                            note="rasterize only; 1/16 of the triangles, x16"))
        if dev.type == "cpu":
            try:
                gl = ModernGLRenderer(tri.cpu(), pos.shape[1], res, res)
            except Exception as exc:  # no EGL / llvmpipe on this machine
                print(f"moderngl peer unavailable: {exc}")
                continue
            ids, _ = gl(pos, attr)
            agree = round((ids == rast[..., 3]).float().mean().item(), 4)
            ms = time_ms(lambda: gl(pos, attr), dev, warmup=2, iters=iters)
            rows.append(row(BENCH, f"{case} fwd", "moderngl-llvmpipe", ms, per_image_ms=round(ms / batch, 4),
                            id_agree=agree))
            gl.release()
    return add_speedups(rows)


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    for r in run(args.device, args.quick):
        print(r)
