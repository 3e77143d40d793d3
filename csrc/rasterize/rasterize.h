// Rasterizer math shared by the CPU (rasterize_cpu.cpp) and CUDA (rasterize_cuda.cu) kernels.
//
// Conventions (nvdiffrast's): pos is clip space (x, y, z, w); pixel (i, j) has its centre at
// NDC x = (2i + 1) / W - 1, y = (2j + 1) / H - 1 (row 0 at NDC y = -1). rast[b, j, i] =
// (u, v, z/w, triangle_id + 1), where u, v are the perspective-correct barycentric weights of the
// triangle's first and second vertex, and 0 in the last channel marks an empty pixel.
//
// Homogeneous rasterization (Olano & Greer): with q_k = (x_k W/2, y_k H/2, w_k) the vertices in
// centred pixel units and p = (px, py, 1) a pixel centre (px = i + 1/2 - W/2), the three "edge
// functions" A_k(p) = p . (q_{k+1} x q_{k+2}) are linear in p. For triangles with all w > 0 the
// pixel is inside iff all A_k have the sign of det[q0 q1 q2], and the perspective-correct
// barycentrics are A_k / (A_0 + A_1 + A_2). sum_k A_k w_k = det, so z/w = p . (sum_k z_k E_k) / det
// is a plane in screen space. Because E = q_a x q_b is exactly antisymmetric in floating point (no
// fused multiply-add: the device helpers below use round-to-nearest intrinsics), two triangles that
// share an edge get exactly opposite edge functions there, and the tie rule on A == 0 gives every
// pixel centre on a shared edge to exactly one of them (watertight, and identical on CPU and GPU).
#pragma once

#include <ATen/ATen.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string_view>

#include "utils/checks.h"

#if defined(__CUDACC__)
#define PYFAID_HD __host__ __device__ __forceinline__
#define PYFAID_UNROLL _Pragma("unroll")
#else
#define PYFAID_HD inline
#define PYFAID_UNROLL
#endif

namespace pyfaid {
namespace raster {

// Tile edge in pixels (CPU and CUDA bin triangles into kTile x kTile screen tiles).
constexpr int kTile = 16;

// ---- Arithmetic without contraction into FMA (so CPU and GPU round identically) -----------
PYFAID_HD float rn_mul(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
PYFAID_HD double rn_mul(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}
PYFAID_HD float rn_add(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
PYFAID_HD double rn_add(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}
PYFAID_HD float rn_sub(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}
PYFAID_HD double rn_sub(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dsub_rn(a, b);
#else
  return a - b;
#endif
}
PYFAID_HD float rn_div(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}
PYFAID_HD double rn_div(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __ddiv_rn(a, b);
#else
  return a / b;
#endif
}

template <typename T>
PYFAID_HD T t_abs(T a) {
  return a < T(0) ? -a : a;
}
template <typename T>
PYFAID_HD T t_min(T a, T b) {
  return b < a ? b : a;
}
template <typename T>
PYFAID_HD T t_max(T a, T b) {
  return a < b ? b : a;
}
template <typename T>
PYFAID_HD bool t_finite(T a) {
  // NaN fails the comparison, +-inf exceed max().
  return a >= -std::numeric_limits<T>::max() && a <= std::numeric_limits<T>::max();
}

// Centred pixel coordinate of pixel index i in an image of n pixels: i + 1/2 - n/2 (exact).
template <typename T>
PYFAID_HD T pixel_centre(int i, int n) {
  return T(2 * i + 1 - n) * T(0.5);
}

// Cross product c = a x b of homogeneous 2D points (x, y, w).
template <typename T>
PYFAID_HD void cross3(const T a[3], const T b[3], T c[3]) {
  c[0] = rn_sub(rn_mul(a[1], b[2]), rn_mul(a[2], b[1]));
  c[1] = rn_sub(rn_mul(a[2], b[0]), rn_mul(a[0], b[2]));
  c[2] = rn_sub(rn_mul(a[0], b[1]), rn_mul(a[1], b[0]));
}

// Evaluate a screen-space linear function e . (px, py, 1).
template <typename T>
PYFAID_HD T eval_linear(const T e[3], T px, T py) {
  return rn_add(rn_add(rn_mul(e[0], px), rn_mul(e[1], py)), e[2]);
}

// Vertex k of a triangle in centred homogeneous pixel units: (x W/2, y H/2, w).
template <typename T>
PYFAID_HD void load_q(const T* v, T half_w, T half_h, T q[3]) {
  q[0] = rn_mul(v[0], half_w);
  q[1] = rn_mul(v[1], half_h);
  q[2] = v[3];
}

// Everything the pixel loop needs about one triangle.
template <typename T>
struct TriSetup {
  T e[3][3];      // edge functions A_k(p) = e[k] . p, all >= 0 inside (sign-normalised)
  T d[3];         // depth plane: z/w = d . p
  int32_t x0, y0;  // inclusive pixel bounding box (x0 > x1 or y0 > y1: triangle culled)
  int32_t x1, y1;
  int32_t flags;  // bit k set: edge k owns pixel centres with A_k == 0 (tie rule)
};

template <typename T>
PYFAID_HD void mark_culled(TriSetup<T>& s) {
  s.x0 = 1;
  s.x1 = 0;
  s.y0 = 1;
  s.y1 = 0;
  s.flags = 0;
}

template <typename T>
PYFAID_HD bool is_culled(const TriSetup<T>& s) {
  return s.x0 > s.x1 || s.y0 > s.y1;
}

// ---- Triangle setup, in pieces shared by the binned, direct and CUDA rasterizers -----------

// Per-vertex part of triangle setup, shared by the triangles around a vertex: the rejection
// code (kVertInvalid: w <= 0 or a non-finite coordinate; else bits 2c / 2c+1: coordinate c
// beyond +w / -w) and the screen position (centred pixel units).
constexpr uint32_t kVertInvalid = 1u << 6;

template <typename T>
PYFAID_HD uint32_t vertex_code(const T* v) {
  if (!(v[3] > T(0))) return kVertInvalid;  // w <= 0 or NaN
  if (!t_finite(v[0]) || !t_finite(v[1]) || !t_finite(v[2]) || !t_finite(v[3])) return kVertInvalid;
  uint32_t code = 0;
  for (int c = 0; c < 3; ++c) {
    if (v[c] > v[3]) code |= 1u << (2 * c);
    if (v[c] < -v[3]) code |= 1u << (2 * c + 1);
  }
  return code;
}

template <typename T>
PYFAID_HD void vertex_screen(const T* v, T half_w, T half_h, T& sx, T& sy) {
  T q[3];
  load_q(v, half_w, half_h, q);
  sx = rn_div(q[0], q[2]);
  sy = rn_div(q[1], q[2]);
}

// True when the triangle is rejected by its vertices' codes: a vertex behind the eye or not
// finite, or all three beyond the same clip plane.
PYFAID_HD bool codes_reject(uint32_t c0, uint32_t c1, uint32_t c2) {
  return ((c0 | c1 | c2) & kVertInvalid) || (c0 & c1 & c2);
}

// Edge part of the coverage test: the pixel centre (px, py) is inside or owned by the triangle.
template <typename T>
PYFAID_HD bool inside_edges(const TriSetup<T>& s, T px, T py) {
PYFAID_UNROLL
  for (int k = 0; k < 3; ++k) {
    const T a = eval_linear(s.e[k], px, py);
    if (a < T(0) || (a == T(0) && !((s.flags >> k) & 1))) return false;
  }
  return true;
}

// Pixel-centre bounding box [x0, x1] x [y0, y1] of a triangle with screen positions (sx, sy),
// clamped to the image; false when it holds no pixel centre. A small margin keeps it
// conservative with respect to the exact edge test, which alone decides coverage.
template <typename T>
PYFAID_HD bool pixel_box(const T sx[3], const T sy[3], int width, int height, int& x0, int& x1,
                         int& y0, int& y1) {
  const T eps = T(1.0 / 256.0);
  const T ox = T(0.5) * T(width - 1), oy = T(0.5) * T(height - 1);
  T lo_x = t_min(t_min(sx[0], sx[1]), sx[2]) + ox - eps;
  T hi_x = t_max(t_max(sx[0], sx[1]), sx[2]) + ox + eps;
  T lo_y = t_min(t_min(sy[0], sy[1]), sy[2]) + oy - eps;
  T hi_y = t_max(t_max(sy[0], sy[1]), sy[2]) + oy + eps;
  lo_x = t_min(t_max(lo_x, T(-1)), T(width));
  hi_x = t_min(t_max(hi_x, T(-1)), T(width));
  lo_y = t_min(t_max(lo_y, T(-1)), T(height));
  hi_y = t_min(t_max(hi_y, T(-1)), T(height));
  x0 = static_cast<int>(ceil(lo_x));
  x1 = static_cast<int>(floor(hi_x));
  y0 = static_cast<int>(ceil(lo_y));
  y1 = static_cast<int>(floor(hi_y));
  x0 = x0 < 0 ? 0 : x0;
  y0 = y0 < 0 ? 0 : y0;
  x1 = x1 > width - 1 ? width - 1 : x1;
  y1 = y1 > height - 1 ? height - 1 : y1;
  return x0 <= x1 && y0 <= y1;
}

// Edge functions (sign-normalised, s.e) and tie-rule flags (s.flags) of a triangle; `det` gets
// |det[q0 q1 q2]|. False for a degenerate (zero-area up to rounding) triangle. Leaves the
// bounding box of `s` alone.
template <typename T>
PYFAID_HD bool edge_setup(const T* v0, const T* v1, const T* v2, const T sx[3], const T sy[3],
                          int width, int height, TriSetup<T>& s, T& det) {
  const T ax = rn_sub(sx[1], sx[0]), ay = rn_sub(sy[1], sy[0]);
  const T bx = rn_sub(sx[2], sx[0]), by = rn_sub(sy[2], sy[0]);
  const T area2 = rn_sub(rn_mul(ax, by), rn_mul(ay, bx));
  const T scale = rn_mul(rn_add(t_abs(ax), t_abs(ay)), rn_add(t_abs(bx), t_abs(by)));
  // |sin(angle)| below ~16 ulp: zero area up to rounding.
  if (!(t_abs(area2) > T(16) * std::numeric_limits<T>::epsilon() * scale)) return false;

  const T half_w = T(0.5) * T(width), half_h = T(0.5) * T(height);
  T q[3][3];
  load_q(v0, half_w, half_h, q[0]);
  load_q(v1, half_w, half_h, q[1]);
  load_q(v2, half_w, half_h, q[2]);
  T e[3][3];
  cross3(q[1], q[2], e[0]);
  cross3(q[2], q[0], e[1]);
  cross3(q[0], q[1], e[2]);
  det = rn_add(rn_add(rn_mul(q[0][0], e[0][0]), rn_mul(q[0][1], e[0][1])), rn_mul(q[0][2], e[0][2]));
  if (!(det != T(0)) || !t_finite(det)) return false;
  const bool flip = det < T(0);
  if (flip) det = -det;
  int flags = 0;
  for (int k = 0; k < 3; ++k) {
    for (int c = 0; c < 3; ++c) s.e[k][c] = flip ? -e[k][c] : e[k][c];
    // Tie rule: an edge owns its own pixel centres when its normal points to +x, or to +y when
    // vertical. The neighbour across a shared edge has the exact negation, so one owner.
    if (s.e[k][0] > T(0) || (s.e[k][0] == T(0) && s.e[k][1] > T(0))) flags |= 1 << k;
  }
  s.flags = flags;
  return true;
}

// Depth plane z/w = p . (sum_k z_k E_k) / det (E unnormalised, det signed: same thing) into s.d,
// as one reciprocal and three products; false when it is not finite. Needs s.e and `det` from
// edge_setup.
template <typename T>
PYFAID_HD bool depth_plane(const T* v0, const T* v1, const T* v2, T det, TriSetup<T>& s) {
  const T inv = rn_div(T(1), det);
  for (int c = 0; c < 3; ++c) {
    const T n = rn_add(rn_add(rn_mul(v0[2], s.e[0][c]), rn_mul(v1[2], s.e[1][c])),
                       rn_mul(v2[2], s.e[2][c]));
    s.d[c] = rn_mul(n, inv);
    if (!t_finite(s.d[c])) return false;
  }
  return true;
}

// Triangle setup from the per-vertex results (see setup_triangle). Returns false (and marks s
// culled) when no pixel centre can be covered. With kDropEmpty, a triangle whose pixel box holds
// at most kDropEmptyMax centres is also dropped when none of them passes the edge test (the
// exact test of the raster pass), which skips its depth plane and binning; most triangles of a
// dense mesh are smaller than a pixel.
constexpr int kDropEmptyMax = 4;

template <typename T, bool kDropEmpty = false>
PYFAID_HD bool setup_triangle_screen(const T* v0, const T* v1, const T* v2, const T sx[3],
                                     const T sy[3], int width, int height, TriSetup<T>& s) {
  mark_culled(s);
  int x0, x1, y0, y1;
  if (!pixel_box(sx, sy, width, height, x0, x1, y0, y1)) return false;
  T det;
  if (!edge_setup(v0, v1, v2, sx, sy, width, height, s, det)) {
    mark_culled(s);
    return false;
  }
  if (kDropEmpty && (x1 - x0 + 1) * (y1 - y0 + 1) <= kDropEmptyMax) {
    bool any = false;
    for (int y = y0; y <= y1 && !any; ++y)
      for (int x = x0; x <= x1 && !any; ++x)
        any = inside_edges(s, pixel_centre<T>(x, width), pixel_centre<T>(y, height));
    if (!any) {
      mark_culled(s);
      return false;
    }
  }
  if (!depth_plane(v0, v1, v2, det, s)) {
    mark_culled(s);
    return false;
  }
  s.x0 = x0;
  s.x1 = x1;
  s.y0 = y0;
  s.y1 = y1;
  return true;
}

// Full triangle setup from three clip-space vertices (x, y, z, w): edge functions, depth plane,
// pixel bounding box and tie-rule flags. Returns false (s marked culled) for triangles that can
// cover no pixel centre: behind the eye, outside a clip plane, off screen, or degenerate.
template <typename T>
PYFAID_HD bool setup_triangle(const T* v0, const T* v1, const T* v2, int width, int height,
                              TriSetup<T>& s) {
  mark_culled(s);
  if (codes_reject(vertex_code(v0), vertex_code(v1), vertex_code(v2))) return false;
  const T half_w = T(0.5) * T(width), half_h = T(0.5) * T(height);
  T sx[3], sy[3];
  vertex_screen(v0, half_w, half_h, sx[0], sy[0]);
  vertex_screen(v1, half_w, half_h, sx[1], sy[1]);
  vertex_screen(v2, half_w, half_h, sx[2], sy[2]);
  return setup_triangle_screen(v0, v1, v2, sx, sy, width, height, s);
}

template <typename T>
PYFAID_HD bool covers(const TriSetup<T>& s, T px, T py, T& depth) {
  if (!inside_edges(s, px, py)) return false;
  depth = eval_linear(s.d, px, py);
  return depth >= T(-1) && depth <= T(1);
}

// Perspective-correct barycentrics (u, v) of a covered pixel centre.
template <typename T>
PYFAID_HD void barycentrics(const TriSetup<T>& s, T px, T py, T& u, T& v) {
  const T a0 = eval_linear(s.e[0], px, py);
  const T a1 = eval_linear(s.e[1], px, py);
  const T a2 = eval_linear(s.e[2], px, py);
  const T sum = rn_add(rn_add(a0, a1), a2);
  if (sum > T(0)) {
    const T inv = rn_div(T(1), sum);
    u = rn_mul(a0, inv);
    v = rn_mul(a1, inv);
  } else {  // unreachable for a covered pixel of a non-degenerate triangle; keeps NaN out
    u = T(1) / T(3);
    v = T(1) / T(3);
  }
}

// Backward of (u, v) = (A_0, A_1) / (A_0 + A_1 + A_2) with A_k = p . (q_{k+1} x q_{k+2}), at a
// pixel centre p = (px, py, 1) whose forward values (u, v) are given: accumulate dL/dq into
// gq[k][0..2] (q = (x W/2, y H/2, w)) from dL/du, dL/dv.
//   S = A_0 + A_1 + A_2 = p . ((q1 - q0) x (q2 - q0)), dL/dA_k = (g_k - g.uv) / S with
//   g = (gu, gv, 0); and since dA_k/dq_{k+1} = q_{k+2} x p, dA_k/dq_{k+2} = p x q_{k+1}:
//   dL/dq_m = (dL/dA_{m-1} q_{m+1} - dL/dA_{m+1} q_{m-1}) x p.
template <typename T>
PYFAID_HD void barycentrics_backward(const T q[3][3], T px, T py, T u, T v, T gu, T gv,
                                     T gq[3][3]) {
  for (int k = 0; k < 3; ++k)
    for (int c = 0; c < 3; ++c) gq[k][c] = T(0);
  const T a[3] = {q[1][0] - q[0][0], q[1][1] - q[0][1], q[1][2] - q[0][2]};
  const T b[3] = {q[2][0] - q[0][0], q[2][1] - q[0][1], q[2][2] - q[0][2]};
  const T s0 = a[1] * b[2] - a[2] * b[1];
  const T s1 = a[2] * b[0] - a[0] * b[2];
  const T s2 = a[0] * b[1] - a[1] * b[0];
  const T sum = s0 * px + s1 * py + s2;
  if (!(sum != T(0)) || !t_finite(sum)) return;
  const T inv = T(1) / sum;
  const T dot = gu * u + gv * v;
  const T ga[3] = {(gu - dot) * inv, (gv - dot) * inv, -dot * inv};
PYFAID_UNROLL
  for (int m = 0; m < 3; ++m) {
    const int prev = (m + 2) % 3, next = (m + 1) % 3;
    T c[3];
    for (int k = 0; k < 3; ++k) c[k] = ga[prev] * q[next][k] - ga[next] * q[prev][k];
    // c x (px, py, 1)
    gq[m][0] = c[1] - c[2] * py;
    gq[m][1] = c[2] * px - c[0];
    gq[m][2] = c[0] * py - c[1] * px;
  }
}

// Triangle id stored in rast[..., 3] (id + 1; 0 = empty) back to an index, -1 when empty.
template <typename T>
PYFAID_HD int64_t decode_id(T r3) {
  return r3 > T(0.5) ? static_cast<int64_t>(r3 + T(0.5)) - 1 : -1;
}

// ---- Host-side input checks shared by the CPU and CUDA entry points ------------------------

// pos [B, V, 4] float32/float64 contiguous; tri [F, 3] int32 contiguous on pos's device.
inline void check_pos_tri(const at::Tensor& pos, const at::Tensor& tri, const char* op) {
  check_floating(pos, "pos", op);
  TORCH_CHECK(pos.dim() == 3 && pos.size(2) == 4, op, ": `pos` must have shape [B, V, 4], got ",
              pos.sizes());
  check_tensor(tri, "tri", at::kInt, 2, op);
  TORCH_CHECK(tri.size(1) == 3, op, ": `tri` must have shape [F, 3], got ", tri.sizes());
  check_same_device(pos, "pos", tri, "tri", op);
  TORCH_CHECK(pos.scalar_type() != at::kFloat || tri.size(0) < (1 << 24), op,
              ": float32 rast can store at most 2^24 - 1 triangle ids, got ", tri.size(0),
              " triangles (use float64)");
}

// Every index of tri lies in [0, num_vertices). One reduction (a device sync on CUDA).
inline void check_tri_range(const at::Tensor& tri, int64_t num_vertices, const char* op,
                            const char* vert_name) {
  if (tri.numel() == 0) return;
  auto mm = at::aminmax(tri);
  const auto both = at::stack({std::get<0>(mm), std::get<1>(mm)}).to(at::kCPU, at::kLong);
  const int64_t lo = both.data_ptr<int64_t>()[0], hi = both.data_ptr<int64_t>()[1];
  TORCH_CHECK(lo >= 0 && hi < num_vertices, op, ": `tri` indices must lie in [0, ", num_vertices,
              ") (the rows of `", vert_name, "`), got values in [", lo, ", ", hi, "]");
}

// rast [B, H, W, 4] with pos's dtype and device.
inline void check_rast(const at::Tensor& rast, const at::Tensor& like, const char* name,
                       const char* op) {
  TORCH_CHECK(rast.defined(), op, ": `", name, "` is undefined");
  TORCH_CHECK(rast.scalar_type() == like.scalar_type(), op, ": `", name, "` (", rast.scalar_type(),
              ") and the other floating-point inputs (", like.scalar_type(),
              ") must have the same dtype");
  check_tensor(rast, name, like.scalar_type(), 4, op);
  TORCH_CHECK(rast.size(3) == 4, op, ": `", name, "` must have shape [B, H, W, 4], got ",
              rast.sizes());
  check_same_device(rast, name, like, "the other inputs", op);
}

// All argument checks of rasterize (CPU and CUDA): pos, tri, the output resolution and the name
// of the CPU path (checked on CUDA too, so a call is valid or not on both).
inline void check_rasterize_args(const at::Tensor& pos, const at::Tensor& tri, int64_t height,
                                 int64_t width, std::string_view cpu_path, const char* op) {
  check_pos_tri(pos, tri, op);
  TORCH_CHECK(cpu_path == "auto" || cpu_path == "binned" || cpu_path == "direct", op,
              ": `cpu_path` must be auto, binned or direct, got '", cpu_path, "'");
  TORCH_CHECK(height >= 1 && width >= 1, op, ": `height` and `width` must be >= 1, got ", height,
              " x ", width);
  TORCH_CHECK(height <= (1 << 15) && width <= (1 << 15), op,
              ": resolution must be at most 32768 x 32768, got ", height, " x ", width);
}

// All argument checks of rasterize_backward (CPU and CUDA): pos, tri, rast [B, H, W, 4] and
// grad_rast of rast's shape, all with pos's dtype and device.
inline void check_rasterize_backward_args(const at::Tensor& grad_rast, const at::Tensor& pos,
                                          const at::Tensor& tri, const at::Tensor& rast,
                                          const char* op) {
  check_pos_tri(pos, tri, op);
  check_rast(rast, pos, "rast", op);
  check_rast(grad_rast, pos, "grad_rast", op);
  TORCH_CHECK(rast.size(0) == pos.size(0), op, ": `rast` batch ", rast.size(0),
              " does not match `pos` batch ", pos.size(0));
  TORCH_CHECK(grad_rast.sizes() == rast.sizes(), op, ": `grad_rast` shape ", grad_rast.sizes(),
              " does not match `rast` shape ", rast.sizes());
}

}  // namespace raster
}  // namespace pyfaid
