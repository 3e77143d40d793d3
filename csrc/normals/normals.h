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

namespace pyfaid {

// Same threshold as torch.nn.functional.normalize's default eps, on the length of s_v.
constexpr double NORMAL_EPS = 1e-12;

// Shared argument checks (same messages on CPU and CUDA); returns (B, V, F). The index range
// of `tri` is checked by the kernels.
std::tuple<int64_t, int64_t, int64_t> check_vertex_normals_args(const at::Tensor& verts, const at::Tensor& tri,
                                                                const char* op);

at::Tensor vertex_normals_cpu(const at::Tensor& verts, const at::Tensor& tri);
at::Tensor vertex_normals_backward_cpu(const at::Tensor& grad_normals, const at::Tensor& verts,
                                       const at::Tensor& tri);

}  // namespace pyfaid
