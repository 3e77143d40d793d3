"""Benchmark: the face renderer drawing a UV texture against today's per-vertex render.

Face: the default face model (34,521 vertices, 68,672 triangles, its MakeHuman UV layout) with
seeded identity and albedo coefficients, turned 0.35 rad, under SH light, at 224 x 224 (the
crop's framing). Texture: 1024 x 1024 RGB in that layout, prepared once
(``face_model.uv_texture``: its mip pyramid; the ``uv_texture`` row times that step alone).

Contestants of a case run interleaved in one loop (``time_ms_interleaved``):
  * ``per-vertex``: ``Renderer(224)(face_model, coeffs)``: face_model.mesh -> rasterize ->
    SH shading per vertex -> interpolate (the render the reconstructions are scored with today);
  * ``pyfaid``: the same mesh drawn with the texture (``Renderer(224)(..., texture=)``: rasterize
    with ``grad_db``, interpolate the UVs with their derivatives, trilinear ``texture``, times the
    interpolated light);
  * ``bilinear``: the textured render with ``filter_mode="linear"`` (no mip levels, no
    derivatives: what the turntable did before);
each with ``Renderer(antialias=False)`` and ``antialias=True`` (the outline and coverage
antialiased: one more ``antialias`` call). ``cost_vs_per_vertex`` is the ratio to the per-vertex
render with the same antialias setting (the issue's goal: <= 2). Batches 1 (a reconstruction's
render) and 8, forward; and forward+backward at batch 8 with gradients to the coefficients (and the
texture, for the textured renders), as fitting with a texture would run. Rows give ``ms`` (median
wall time) and ``cpu_ms`` (median process CPU time of a call, all threads: on a shared machine the
steadier of the two; ``cost_vs_per_vertex`` uses it).
"""

from __future__ import annotations

import statistics
import time

import torch

from common import row, sync, time_ms

from pyfaid.reconstruct.predict import default_face_model
from pyfaid.render import Renderer

BENCH = "face_texture"


def _coeffs(fm, batch, device):
    g = torch.Generator().manual_seed(0)
    lay = fm.layout
    c = lay.zeros(batch)
    c[:, lay.slice("id")] = 0.6 * torch.randn(batch, fm.n_id, generator=g)
    c[:, lay.slice("tex")] = 0.6 * torch.randn(batch, fm.n_tex, generator=g)
    c[:, lay.slice("angle")] = torch.tensor([0.1, -0.35, 0.05])
    gam = lay.slice("gamma").start
    c[:, gam] = 0.25
    c[:, gam + 1:gam + 4] = torch.tensor([0.1, 0.25, -0.1])
    return c.to(device)


def _cases(fm, renderer, texture_image, uv_tex):
    """name -> (coeffs, with gradients?) -> render function."""
    def per_vertex(c, grad):
        return renderer(fm, c).image

    def textured(c, grad, mode="linear-mipmap-linear"):
        tex = fm.uv_texture(texture_image.requires_grad_(True)) if grad else uv_tex  # grad: rebuilt per step
        return renderer.draw(fm.mesh(c), tex, filter_mode=mode).image

    return {"per-vertex": per_vertex, "pyfaid": textured,
            "bilinear": lambda c, grad: textured(c, grad, "linear")}


def interleaved(fns: dict, device, warmup: int, iters: int, max_seconds: float = 60.0) -> dict:
    """name -> ``(median wall ms, median process CPU ms)`` of ``fns[name]()``, called round by round."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times = {name: ([], []) for name in fns}
    start = time.perf_counter()
    for i in range(iters):
        for name, fn in fns.items():
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            sync(device)
            times[name][0].append((time.perf_counter() - t0) * 1e3)
            times[name][1].append((time.process_time() - c0) * 1e3)
        if i >= 2 and time.perf_counter() - start > max_seconds:
            break
    return {name: (statistics.median(w), statistics.median(c)) for name, (w, c) in times.items()}


def _rows(case: str, ms: dict, batch: int, extra) -> list:
    base = ms["per-vertex"][1]
    return [row(BENCH, case, k, w, cpu_ms=round(c, 2), per_image_ms=round(w / batch, 3),
                cost_vs_per_vertex=round(c / base, 2), **extra(k)) for k, (w, c) in ms.items()]


def run(device: str = "cpu", quick: bool = False) -> list[dict]:
    dev = torch.device(device)
    fm = default_face_model(dev)
    size, iters = 1024, (3 if quick else 10)
    g = torch.Generator().manual_seed(1)
    texture_image = (0.3 + 0.5 * torch.rand(size, size, 3, generator=g)).to(dev)
    uv_tex = fm.uv_texture(texture_image)
    rows = [row(BENCH, f"uv_texture {size}x{size}", "pyfaid",
                time_ms(lambda: fm.uv_texture(texture_image), dev, warmup=1, iters=iters),
                note="once per texture: the mip pyramid")]
    for aa in (False, True):
        renderer = Renderer(224, antialias=aa)
        cases = _cases(fm, renderer, texture_image.clone(), uv_tex)
        tag = "antialias" if aa else "no antialias"
        for batch in ((1,) if quick else (1, 8)):
            c = _coeffs(fm, batch, dev)
            with torch.no_grad():
                ms = interleaved({k: (lambda f=f: f(c, False)) for k, f in cases.items()}, dev, warmup=2, iters=iters)
            rows += _rows(f"224x224 B{batch} tex{size} {tag} fwd", ms, batch, extra=lambda k: {})
        batch = 4 if quick else 8
        c0 = _coeffs(fm, batch, dev)
        grad_out = torch.rand(batch, 3, 224, 224, generator=g).to(dev)

        def fwd_bwd(f):
            c = c0.clone().requires_grad_(True)
            (f(c, True) * grad_out).sum().backward()

        ms = interleaved({k: (lambda f=f: fwd_bwd(f)) for k, f in cases.items()}, dev, warmup=1, iters=iters)
        rows += _rows(f"224x224 B{batch} tex{size} {tag} fwd+bwd", ms, batch, extra=lambda k: {
            "note": "grad to coeffs" + (" and texture (pyramid rebuilt)" if k != "per-vertex" else "")})
    return rows


if __name__ == "__main__":
    from common import main

    main(run)
