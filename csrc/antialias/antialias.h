// Analytic antialiasing (nvdiffrast's method, with a walk across sub-pixel triangles), shared by
// the CPU (antialias_cpu.cpp) and CUDA (antialias_cuda.cu) kernels.
//
// Every pair of horizontally or vertically adjacent pixels whose triangle ids differ is a
// possible discontinuity. The pixel in front (the nearer z/w, or the covered one next to an
// empty pixel) is the origin. Along the line from its centre to the other pixel's centre, the
// origin's triangle ends at the edge where the line leaves it. If that edge is a silhouette edge
// (no single triangle across it, or the one across lies on the same side of the edge in screen
// space: the surface folds away there), the front surface ends there. Otherwise the surface goes
// on into the triangle across, and the walk continues there (nvdiffrast stops at the first
// triangle: on a dense mesh the last triangle before a silhouette is often thinner than a pixel
// and covers no pixel centre, so that silhouette would be missed); it stops without a blend on
// reaching the other pixel's triangle (one smooth surface) or passing the other centre. A
// silhouette edge that runs closer to across the pair than along it, at distance dc from the
// origin towards the other centre (pixels, clamped to [0, 1]), means the front surface covers
// about that much of the pair: the pixel on the far side of the edge from its own surface is
// blended with its neighbour's colour by |0.5 - dc| (the origin by 0.5 - dc when dc < 0.5, the
// other pixel by dc - 0.5 when dc > 0.5). The result is linear in the colours, and the blend
// moves with the edge's screen position, which gives the gradient with respect to the positions
// of the edge's two vertices at silhouettes.
//
// Per pair (stored at its first pixel: right neighbour, then the one below) the forward keeps
// alpha (signed: > 0 blends the first pixel, < 0 the second, out[t] += alpha (c1 - c0)) and an
// edge reference (-1: no blend; else (3 t + k) * 2 + s for edge k (opposite corner k) of
// triangle t, s = 1 when the origin is the second pixel), which the backward reads instead of
// repeating the analysis.
#pragma once

#include <ATen/ATen.h>

#include <limits>
#include <vector>

#include "rasterize/rasterize.h"

namespace pyfaid {
namespace aa {

// Crossings farther than this outside [0, 1] pixels are not treated (nvdiffrast's tolerance).
constexpr double kCrossingSlack = 1.0 / 16.0;
// Triangles the walk from the origin's triangle towards a silhouette visits at most.
constexpr int kMaxWalk = 32;

// Screen position of a clip-space vertex in centred pixel units (as the rasterizer's), NaN when
// its w is not positive (such vertices are treated as off the surface).
template <typename T>
PYFAID_HD void vertex_screen(const T* v, T half_w, T half_h, T& sx, T& sy) {
  if (!(v[3] > T(0))) {
    sx = sy = std::numeric_limits<T>::quiet_NaN();
    return;
  }
  sx = raster::rn_div(raster::rn_mul(v[0], half_w), v[3]);
  sy = raster::rn_div(raster::rn_mul(v[1], half_h), v[3]);
}

// Where the line through (a_i, b_i) and (a_j, b_j) crosses b = 0: its a coordinate.
template <typename T>
PYFAID_HD T crossing(T ai, T bi, T aj, T bj) {
  return (ai * bj - aj * bi) / (bj - bi);
}

// True when the edge (vi, vj) of triangle f (third corner vk) is a silhouette: no triangle n
// across it, or n's far vertex on the same side of the edge as vk in screen space (or not on
// screen). s(v) = screen position of vertex v.
template <typename T>
PYFAID_HD bool is_silhouette(const T* screen, const int32_t* tri, int64_t n, int64_t vi,
                             int64_t vj, int64_t vk) {
  if (n < 0) return true;
  int64_t o = -1;
  for (int c = 0; c < 3; ++c) {
    const int64_t v = tri[3 * n + c];
    if (v != vi && v != vj) o = v;
  }
  if (o < 0) return true;
  const T xi = screen[2 * vi], yi = screen[2 * vi + 1], xj = screen[2 * vj], yj = screen[2 * vj + 1];
  const T xo = screen[2 * o] - xi, yo = screen[2 * o + 1] - yi;
  const T xk = screen[2 * vk] - xi, yk = screen[2 * vk + 1] - yi;
  const T ex = xj - xi, ey = yj - yi;
  const T side_o = ex * yo - ey * xo, side_k = ex * yk - ey * xk;
  return !(side_o * side_k < T(0));  // same side, on the edge, or NaN (behind the eye)
}

// Analysis of one pair: pixel 0 at (x, y) with rast r0, pixel 1 its right (down = 0) or lower
// (down = 1) neighbour with rast r1; screen: [V, 2] vertex screen positions of the image;
// neighbors: [F, 3] triangle across each edge (-1: none). Returns the edge reference (-1: no
// blend) and alpha.
template <typename T>
PYFAID_HD int32_t analyse_pair(const T* r0, const T* r1, const T* screen, const int32_t* tri,
                               const int32_t* neighbors, int64_t F, int x, int y, int down, int W,
                               int H, T& alpha) {
  alpha = T(0);
  if (r0[3] == r1[3]) return -1;
  const int64_t f0 = raster::decode_id(r0[3]), f1 = raster::decode_id(r1[3]);
  const int second = (f0 >= 0 && f1 >= 0) ? !(r0[2] < r1[2]) : (f0 < 0);
  int64_t f = second ? f1 : f0;
  const int64_t other = second ? f0 : f1;
  const T ox = raster::pixel_centre<T>(x + (second && !down), W);
  const T oy = raster::pixel_centre<T>(y + (second && down), H);
  const T ds = second ? T(-1) : T(1);  // direction from the origin to the other pixel
  const T slack = T(kCrossingSlack);
  for (int step = 0; step < kMaxWalk; ++step) {
    if (f < 0 || f >= F) return -1;
    T a[3], b[3];  // along / across the pair, origin-relative
    for (int k = 0; k < 3; ++k) {
      const int64_t v = tri[3 * f + k];
      const T px = screen[2 * v] - ox, py = screen[2 * v + 1] - oy;
      a[k] = down ? py : px;
      b[k] = down ? px : py;
    }
    // The edge where the pair's line leaves the triangle towards the other pixel.
    int edge = -1;
    T best = T(0);
    for (int k = 0; k < 3; ++k) {
      const int i = (k + 1) % 3, j = (k + 2) % 3;
      if ((b[i] < T(0)) == (b[j] < T(0))) continue;
      const T dc = ds * crossing(a[i], b[i], a[j], b[j]);
      if (edge < 0 || dc > best) {
        edge = k;
        best = dc;
      }
    }
    if (edge < 0 || !(best < T(1) + slack)) return -1;  // no exit, or past the other centre
    const int i = (edge + 1) % 3, j = (edge + 2) % 3;
    const int64_t n = neighbors[3 * f + edge];
    if (!is_silhouette(screen, tri, n, tri[3 * f + i], tri[3 * f + j], tri[3 * f + edge])) {
      if (n == other) return -1;  // the surface goes on to the other pixel's triangle
      f = n;
      continue;
    }
    if (!(raster::t_abs(b[j] - b[i]) >= raster::t_abs(a[j] - a[i]))) return -1;  // runs along
    if (!(best > -slack)) return -1;
    const T dc = raster::t_min(raster::t_max(best, T(0)), T(1));
    alpha = ds * (T(0.5) - dc);
    return static_cast<int32_t>((3 * f + edge) * 2 + second);
  }
  return -1;
}

// dL/dpos of the silhouette edge of one analysed pair (ref >= 0, |alpha| < 0.5) from
// dd = dL/dalpha: adds into gpos ([V, 4] of the image). pos: [V, 4] of the image.
//   alpha = ds / 2 - a_c with a_c the crossing (origin-relative, along the pair), so dL/da_c =
//   -dd; a_c = (a_i b_j - a_j b_i) / (b_j - b_i) and a = P_along s_along / w - origin.
template <typename T, typename Add>
PYFAID_HD void pair_pos_backward(const T* pos, const int32_t* tri, int32_t ref, int x, int y,
                                 int down, int W, int H, T dd, T* gpos, Add add) {
  const int second = ref & 1;
  const int64_t f = (ref >> 1) / 3;
  const int edge = (ref >> 1) % 3;
  const T half_w = T(0.5) * T(W), half_h = T(0.5) * T(H);
  const T ox = raster::pixel_centre<T>(x + (second && !down), W);
  const T oy = raster::pixel_centre<T>(y + (second && down), H);
  const int ca = down ? 1 : 0, cb = down ? 0 : 1;  // pos components along / across
  const T sa = down ? half_h : half_w, sb = down ? half_w : half_h;
  const T oa = down ? oy : ox, ob = down ? ox : oy;
  const int64_t vi = tri[3 * f + (edge + 1) % 3], vj = tri[3 * f + (edge + 2) % 3];
  const T* pi = pos + 4 * vi;
  const T* pj = pos + 4 * vj;
  const T ai = raster::rn_div(raster::rn_mul(pi[ca], sa), pi[3]) - oa;
  const T bi = raster::rn_div(raster::rn_mul(pi[cb], sb), pi[3]) - ob;
  const T aj = raster::rn_div(raster::rn_mul(pj[ca], sa), pj[3]) - oa;
  const T bj = raster::rn_div(raster::rn_mul(pj[cb], sb), pj[3]) - ob;
  const T den = bj - bi;
  if (!(den != T(0)) || !raster::t_finite(den)) return;
  const T ac = crossing(ai, bi, aj, bj);
  const T g = -dd / den;  // dL/da_c / (b_j - b_i)
  const T g_ai = g * bj, g_aj = -g * bi, g_bi = g * (ac - aj), g_bj = g * (ai - ac);
  const T wi = T(1) / pi[3], wj = T(1) / pj[3];
  T* gi = gpos + 4 * vi;
  T* gj = gpos + 4 * vj;
  add(gi + ca, g_ai * sa * wi);
  add(gi + cb, g_bi * sb * wi);
  add(gi + 3, -(g_ai * (ai + oa) + g_bi * (bi + ob)) * wi);
  add(gj + ca, g_aj * sa * wj);
  add(gj + cb, g_bj * sb * wj);
  add(gj + 3, -(g_aj * (aj + oa) + g_bj * (bj + ob)) * wj);
}

// ---- Host-side checks shared by the CPU and CUDA entry points ------------------------------

inline void check_antialias_args(const at::Tensor& color, const at::Tensor& rast,
                                 const at::Tensor& pos, const at::Tensor& tri, const char* op) {
  check_floating(color, "color", op);
  TORCH_CHECK(color.dim() == 4, op, ": `color` must have shape [B, H, W, C], got ", color.sizes());
  raster::check_rast(rast, color, "rast", op);
  TORCH_CHECK(rast.sizes().slice(0, 3) == color.sizes().slice(0, 3), op, ": `rast` shape ",
              rast.sizes(), " does not match `color` shape ", color.sizes(), " in [B, H, W]");
  raster::check_pos_tri(pos, tri, op);
  TORCH_CHECK(pos.scalar_type() == color.scalar_type(), op, ": `pos` (", pos.scalar_type(),
              ") and `color` (", color.scalar_type(), ") must have the same dtype");
  check_same_device(pos, "pos", color, "color", op);
  TORCH_CHECK(pos.size(0) == color.size(0), op, ": `pos` batch ", pos.size(0),
              " does not match `color` batch ", color.size(0));
}

// neighbors [F, 3] int32 on tri's device; with check_indices also every entry in [-1, F) and
// every tri index in [0, V) (a device sync on CUDA).
inline void check_neighbors(const at::Tensor& neighbors, const at::Tensor& tri, int64_t V,
                            bool check_indices, const char* op) {
  check_tensor(neighbors, "neighbors", at::kInt, 2, op);
  TORCH_CHECK(neighbors.sizes() == tri.sizes(), op, ": `neighbors` must have `tri`'s shape ",
              tri.sizes(), ", got ", neighbors.sizes());
  check_same_device(neighbors, "neighbors", tri, "tri", op);
  if (!check_indices) return;
  raster::check_tri_range(tri, V, op, "pos");
  if (neighbors.numel() == 0) return;
  auto mm = at::aminmax(neighbors);
  const auto both = at::stack({std::get<0>(mm), std::get<1>(mm)}).to(at::kCPU, at::kLong);
  const int64_t lo = both.data_ptr<int64_t>()[0], hi = both.data_ptr<int64_t>()[1];
  TORCH_CHECK(lo >= -1 && hi < tri.size(0), op, ": `neighbors` entries must lie in [-1, ",
              tri.size(0), ") (MeshTopology.triangle_neighbors builds them), got values in [", lo,
              ", ", hi, "]");
}

// pair_alpha [B, H, W, 2] with color's dtype and pair_edge [B, H, W, 2] int32, as the forward
// returned them for rast [B, H, W, 4].
inline void check_pairs(const at::Tensor& alpha, const at::Tensor& edge, const at::Tensor& rast,
                        const char* op) {
  check_tensor(alpha, "pair_alpha", rast.scalar_type(), 4, op);
  check_tensor(edge, "pair_edge", at::kInt, 4, op);
  const std::vector<int64_t> want = {rast.size(0), rast.size(1), rast.size(2), 2};
  TORCH_CHECK(alpha.sizes() == at::IntArrayRef(want) && edge.sizes() == at::IntArrayRef(want), op,
              ": `pair_alpha` and `pair_edge` must have shape ", want, ", got ", alpha.sizes(),
              " and ", edge.sizes());
  check_same_device(alpha, "pair_alpha", rast, "rast", op);
  check_same_device(edge, "pair_edge", rast, "rast", op);
}

}  // namespace aa
}  // namespace pyfaid
