// Area-weighted unit vertex normals of a triangle mesh.
//
//   face normal      f_t = (p1 - p0) x (p2 - p0)        (|f_t| = twice the triangle's area)
//   vertex sum       s_v = sum over the triangles t that use v of f_t
//   vertex normal    n_v = s_v / |s_v|                  if |s_v| > NORMAL_EPS
//                        = (0, 0, 1)                    otherwise (no triangle, only degenerate or
//                                                        cancelling ones); its gradient is 0.
//
// Orientation: a triangle whose corners run counter-clockwise seen from +z has a +z normal.
// The backward pass is exact wherever |s_v| > NORMAL_EPS:
//   grad_s_v = (g_v - n_v (n_v . g_v)) / |s_v|,   G_t = sum of grad_s over t's three corners,
//   grad_p (corner k of t) += (p_{k+1} - p_{k+2}) x G_t   (corner indices mod 3).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <limits>
#include <tuple>

#include "utils/checks.h"

namespace pyfaid {

// Same threshold as torch.nn.functional.normalize's default eps, on the length of s_v.
constexpr double NORMAL_EPS = 1e-12;

// All argument checks of vertex_normals (CPU and CUDA, same messages); returns (B, V, F).
// The index range of `tri` is checked by the kernels (it needs to read the data), unless the
// caller passes check_indices = false.
inline std::tuple<int64_t, int64_t, int64_t> check_vertex_normals_args(const at::Tensor& verts,
                                                                       const at::Tensor& tri,
                                                                       const char* op) {
  check_floating(verts, "verts", op);
  TORCH_CHECK(verts.dim() == 3 && verts.size(2) == 3, op,
              ": `verts` must have shape [B, V, 3], got ", verts.sizes());
  check_tensor(tri, "tri", at::kInt, 2, op);
  TORCH_CHECK(tri.size(1) == 3, op, ": `tri` must have shape [F, 3], got ", tri.sizes());
  check_same_device(tri, "tri", verts, "verts", op);
  TORCH_CHECK(verts.size(1) <= std::numeric_limits<int32_t>::max(), op,
              ": `verts` has too many vertices for int32 indices");
  TORCH_CHECK(tri.size(0) < std::numeric_limits<int32_t>::max() / 3, op,
              ": `tri` has too many triangles");
  return {verts.size(0), verts.size(1), tri.size(0)};
}

// All argument checks of vertex_normals_backward: those of vertex_normals, and grad_normals
// with the shape, dtype and device of verts. Returns (B, V, F).
inline std::tuple<int64_t, int64_t, int64_t> check_vertex_normals_backward_args(
    const at::Tensor& grad_normals, const at::Tensor& verts, const at::Tensor& tri,
    const char* op) {
  const auto sizes = check_vertex_normals_args(verts, tri, op);
  TORCH_CHECK(grad_normals.defined() && grad_normals.sizes() == verts.sizes(), op,
              ": `grad_normals` must have the shape of `verts` ", verts.sizes());
  check_tensor(grad_normals, "grad_normals", verts.scalar_type(), 3, op);
  check_same_device(grad_normals, "grad_normals", verts, "verts", op);
  return sizes;
}

at::Tensor vertex_normals_cpu(const at::Tensor& verts, const at::Tensor& tri, bool check_indices);
at::Tensor vertex_normals_backward_cpu(const at::Tensor& grad_normals, const at::Tensor& verts,
                                       const at::Tensor& tri, bool check_indices);

}  // namespace pyfaid
