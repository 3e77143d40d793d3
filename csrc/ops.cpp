// Operator schemas of the `pyfaid` namespace.
//
// Every op is declared here, once. The CPU kernels register themselves in
// `<op>/<op>_cpu.cpp` with TORCH_LIBRARY_IMPL(pyfaid, CPU, m) and the CUDA kernels in
// `<op>/<op>_cuda.cu` with TORCH_LIBRARY_IMPL(pyfaid, CUDA, m). Backward formulas are
// separate ops, attached in Python with torch.library.register_autograd; shapes for
// tracing come from torch.library.register_fake (pyfaid/render, pyfaid/graph).

#include <torch/library.h>

#include <ATen/core/dispatch/Dispatcher.h>

TORCH_LIBRARY(pyfaid, m) {
  // Keyword-only flags:
  //   check_indices  false skips the index-range check of `tri` (each index in [0, V)), which
  //                  on CUDA costs a device-to-host synchronisation. Only for indices checked
  //                  before (pyfaid.render.MeshTopology): out-of-range indices are then read out
  //                  of bounds (undefined behaviour), except by the CUDA rasterizer, which culls
  //                  their triangles. Shape, dtype and device checks always run.
  //   check_laplacian  the same for the CSR content of the Laplacian (crow monotone from 0 to
  //                  nnz, col in [0, N), finite values; pyfaid.graph.Laplacian checks it once).
  //   cpu_path       CPU rasterizer path: "auto" (default), "binned" or "direct" (bit-identical
  //                  results; the environment variable PYFAID_CPU_RASTER=binned|direct overrides
  //                  it, for debugging). Ignored by the CUDA kernels.
  //   simd           false keeps the CPU kernels off their AVX2 code (bit-identical results;
  //                  PYFAID_CPU_SIMD=0 turns it off whatever the argument). Ignored on CUDA.

  // ---- rasterize (csrc/rasterize) -------------------------------------------------------
  // pos [B, V, 4] float32 clip space, tri [F, 3] int32 -> rast [B, H, W, 4] = (u, v, z/w, id + 1)
  m.def("rasterize(Tensor pos, Tensor tri, int height, int width, *, bool check_indices=True, "
        "str cpu_path=\"auto\", bool simd=True) -> Tensor");
  // grad_rast [B, H, W, 4] (only u, v carry gradient) -> grad_pos [B, V, 4]
  m.def("rasterize_backward(Tensor grad_rast, Tensor pos, Tensor tri, Tensor rast, *, "
        "bool check_indices=True, bool simd=True) -> Tensor");
  // Image-space derivatives of the barycentrics (nvdiffrast's rast_db), from the positions and
  // rast's triangle ids: -> rast_db [B, H, W, 4] = (du/dX, du/dY, dv/dX, dv/dY), X, Y in pixels
  m.def("rasterize_db(Tensor pos, Tensor tri, Tensor rast, *, bool check_indices=True) -> Tensor");
  // grad_db [B, H, W, 4] -> grad_pos [B, V, 4]
  m.def("rasterize_db_backward(Tensor grad_db, Tensor pos, Tensor tri, Tensor rast, *, "
        "bool check_indices=True) -> Tensor");

  // ---- interpolate (csrc/interpolate) ---------------------------------------------------
  // attr [B, V, C], rast [B, H, W, 4], tri [F, 3] -> out [B, H, W, C]
  m.def("interpolate(Tensor attr, Tensor rast, Tensor tri, *, bool check_indices=True, "
        "bool simd=True) -> Tensor");
  // -> (grad_attr [B, V, C], grad_rast [B, H, W, 4])
  m.def("interpolate_backward(Tensor grad_out, Tensor attr, Tensor rast, Tensor tri, *, "
        "bool check_indices=True, bool simd=True) -> (Tensor, Tensor)");
  // Image-space derivatives of the attributes (nvdiffrast's out_da): attr [B, V, C], rast,
  // tri, rast_db [B, H, W, 4], channels diff_attrs [N] -> out_da [B, H, W, 2N] = (da/dX, da/dY)
  // per listed channel
  m.def("interpolate_da(Tensor attr, Tensor rast, Tensor tri, Tensor rast_db, int[] diff_attrs, *, "
        "bool check_indices=True) -> Tensor");
  // -> (grad_attr [B, V, C], grad_rast_db [B, H, W, 4]); out_da has no gradient to rast's (u, v)
  m.def("interpolate_da_backward(Tensor grad_da, Tensor attr, Tensor rast, Tensor tri, "
        "Tensor rast_db, int[] diff_attrs, *, bool check_indices=True) -> (Tensor, Tensor)");

  // ---- texture (csrc/texture) -----------------------------------------------------------
  // The coarser mip levels of tex [Bt, Ht, Wt, C] (2 x 2 box filter; max_mip_level -1: down to
  // 1 x 1) -> [level 1, level 2, ...], each [Bt, h_i, w_i, C]
  m.def("texture_mip(Tensor tex, int max_mip_level) -> Tensor[]");
  // tex [Bt, Ht, Wt, C] (Bt 1 or B), mip: its coarser levels (texture_mip; [] when unused),
  // uv [B, H, W, 2], uv_da [B, H, W, 4] or None, mip_level_bias [B, H, W] or None,
  // filter_mode nearest|linear|linear-mipmap-nearest|linear-mipmap-linear,
  // boundary_mode wrap|clamp|zero -> out [B, H, W, C]
  m.def("texture(Tensor tex, Tensor[] mip, Tensor uv, Tensor? uv_da, Tensor? mip_level_bias, "
        "str filter_mode, str boundary_mode) -> Tensor");
  // -> (grad_tex, grad_uv, grad_uv_da, grad_mip_level_bias); grad_tex holds the coarser levels'
  // gradients pushed down the pyramid; grad_uv_da / grad_mip_level_bias are empty ([0]) when
  // their input is None
  m.def("texture_backward(Tensor grad_out, Tensor tex, Tensor[] mip, Tensor uv, Tensor? uv_da, "
        "Tensor? mip_level_bias, str filter_mode, str boundary_mode) -> (Tensor, Tensor, Tensor, Tensor)");

  // ---- antialias (csrc/antialias) -------------------------------------------------------
  // color [B, H, W, C], rast [B, H, W, 4], pos [B, V, 4], tri [F, 3], neighbors [F, 3] (the
  // triangle across each edge, -1 for none; MeshTopology.triangle_neighbors) -> (out [B, H, W, C],
  // pair_alpha [B, H, W, 2], pair_edge [B, H, W, 2] int32: blend and silhouette edge of each
  // pixel's right and lower neighbour pair, which the backward reads)
  m.def("antialias(Tensor color, Tensor rast, Tensor pos, Tensor tri, Tensor neighbors, *, "
        "bool check_indices=True) -> (Tensor, Tensor, Tensor)");
  // -> (grad_color [B, H, W, C], grad_pos [B, V, 4])
  m.def("antialias_backward(Tensor grad_out, Tensor color, Tensor rast, Tensor pos, Tensor tri, "
        "Tensor pair_alpha, Tensor pair_edge, *, bool check_indices=True) -> (Tensor, Tensor)");

  // ---- vertex normals (csrc/normals) ----------------------------------------------------
  // verts [B, V, 3], tri [F, 3] -> normals [B, V, 3]
  m.def("vertex_normals(Tensor verts, Tensor tri, *, bool check_indices=True) -> Tensor");
  m.def("vertex_normals_backward(Tensor grad_normals, Tensor verts, Tensor tri, *, "
        "bool check_indices=True) -> Tensor");

  // ---- spherical-harmonic shading (csrc/sh_shading) -------------------------------------
  // normals [B, N, 3], albedo [B, N, 3], gamma [B, 27] -> colour [B, N, 3]
  m.def("sh_shading(Tensor normals, Tensor albedo, Tensor gamma) -> Tensor");
  // -> (grad_normals, grad_albedo, grad_gamma)
  m.def("sh_shading_backward(Tensor grad_out, Tensor normals, Tensor albedo, Tensor gamma) -> (Tensor, Tensor, Tensor)");

  // ---- Chebyshev graph convolution (csrc/cheb) ------------------------------------------
  // x [B, N, Fin], scaled Laplacian as CSR (crow [N+1], col [nnz], val [nnz]),
  // weight [K, Fin, Fout], bias [Fout] or None -> out [B, N, Fout]
  m.def("cheb_conv(Tensor x, Tensor crow, Tensor col, Tensor val, Tensor weight, Tensor? bias, *, "
        "bool check_laplacian=True) -> Tensor");
  // -> (grad_x, grad_weight, grad_bias)
  m.def("cheb_conv_backward(Tensor grad_out, Tensor x, Tensor crow, Tensor col, Tensor val, "
        "Tensor weight, bool has_bias, *, bool check_laplacian=True) -> (Tensor, Tensor, Tensor)");
  // One sparse product L~ x (x [N, C] -> [N, C]); its own adjoint because L~ is symmetric.
  m.def("cheb_spmm(Tensor crow, Tensor col, Tensor val, Tensor x, *, bool check_laplacian=True) -> Tensor");
}

#ifndef WITH_CUDA
// A CPU-only build answers CUDA tensors with an error that says how to get CUDA support,
// instead of the dispatcher's generic "could not run with arguments from the CUDA backend".
namespace {
void cuda_not_built(const c10::OperatorHandle& op, torch::jit::Stack* /*stack*/) {
  TORCH_CHECK(false, op.schema().name(),
              ": got CUDA tensors, but this pyfaid build has no CUDA kernels (built CPU-only). "
              "Reinstall with a CUDA-enabled torch and nvcc on PATH (or FORCE_CUDA=1): "
              "pip install --no-build-isolation .");
}
}  // namespace

TORCH_LIBRARY_IMPL(pyfaid, CUDA, m) {
  for (const char* name :
       {"rasterize", "rasterize_backward", "rasterize_db", "rasterize_db_backward", "interpolate",
        "interpolate_backward", "interpolate_da", "interpolate_da_backward", "texture_mip",
        "texture", "texture_backward", "antialias", "antialias_backward", "vertex_normals",
        "vertex_normals_backward", "sh_shading", "sh_shading_backward", "cheb_conv",
        "cheb_conv_backward", "cheb_spmm"}) {
    m.impl(name, torch::CppFunction::makeFromBoxedFunction<&cuda_not_built>());
  }
}
#endif
