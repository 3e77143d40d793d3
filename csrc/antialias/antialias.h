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

// Where the pair's line (b = 0) leaves a triangle with corners (a[k], b[k]) (origin-relative,
// along / across the pair) towards the other pixel: among the edges k (joining corners k + 1 and
// k + 2) that straddle the line, other than `skip`, the one whose crossing ds * a is largest,
// as num / den with den > 0 (compared without dividing). -1 when no edge straddles.
template <typename T>
PYFAID_HD int exit_edge(const T a[3], const T b[3], T ds, int skip, T& num, T& den) {
  int edge = -1;
  for (int k = 0; k < 3; ++k) {
    const int i = (k + 1) % 3, j = (k + 2) % 3;
    if (k == skip || (b[i] < T(0)) == (b[j] < T(0))) continue;
    T n = ds * (a[i] * b[j] - a[j] * b[i]), d = b[j] - b[i];
    if (d < T(0)) {
      n = -n;
      d = -d;
    }
    if (edge < 0 || n * den > num * d) {
      edge = k;
      num = n;
      den = d;
    }
  }
  return edge;
}

// Side of point p relative to the line through corners i and j (twice the signed area).
template <typename T>
PYFAID_HD T side(const T a[3], const T b[3], int i, int j, T ap, T bp) {
  return (a[j] - a[i]) * (bp - b[i]) - (b[j] - b[i]) * (ap - a[i]);
}

// Analysis of one pair: pixel 0 at (x, y) with rast r0, pixel 1 its right (down = 0) or lower
// (down = 1) neighbour with rast r1; screen: [V, 2] vertex screen positions of the image;
// neighbors: [F, 3] triangle across each edge (-1: none). Returns the edge reference (-1: no
// blend) and alpha. An edge is a silhouette when no single triangle lies across it, or the one
// across has its far vertex on the same side of the edge as this triangle's third corner (or
// not on screen). The walk carries the corners' positions from triangle to triangle: each step
// reads only the next triangle's far vertex.
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
  if (f < 0 || f >= F) return -1;
  const T ox = raster::pixel_centre<T>(x + (second && !down), W);
  const T oy = raster::pixel_centre<T>(y + (second && down), H);
  const T ds = second ? T(-1) : T(1);  // direction from the origin to the other pixel
  const T slack = T(kCrossingSlack);
  int64_t v[3];  // the current triangle's corners, their positions along / across the pair
  T a[3], b[3];
  for (int k = 0; k < 3; ++k) {
    v[k] = tri[3 * f + k];
    const T px = screen[2 * v[k]] - ox, py = screen[2 * v[k] + 1] - oy;
    a[k] = down ? py : px;
    b[k] = down ? px : py;
  }
  int skip = -1;  // the edge the walk came in through
  for (int step = 0; step < kMaxWalk; ++step) {
    T num = T(0), den = T(1);
    const int edge = exit_edge(a, b, ds, skip, num, den);
    if (edge < 0 || !(num < (T(1) + slack) * den)) return -1;  // no exit, or past the other centre
    const int i = (edge + 1) % 3, j = (edge + 2) % 3;
    const int64_t n = neighbors[3 * f + edge];
    int64_t tn[3] = {-1, -1, -1};
    int far = -1;  // the corner of n across the edge
    if (n >= 0 && n < F) {
      for (int c = 0; c < 3; ++c) {
        tn[c] = tri[3 * n + c];
        if (tn[c] != v[i] && tn[c] != v[j]) far = c;
      }
    }
    T af = T(0), bf = T(0);
    bool silhouette = far < 0;
    if (!silhouette) {
      const T px = screen[2 * tn[far]] - ox, py = screen[2 * tn[far] + 1] - oy;
      af = down ? py : px;
      bf = down ? px : py;
      silhouette = !(side(a, b, i, j, af, bf) * side(a, b, i, j, a[edge], b[edge]) < T(0));
    }
    if (!silhouette) {
      if (n == other) return -1;  // the surface goes on to the other pixel's triangle
      T na[3], nb[3];
      for (int c = 0; c < 3; ++c) {
        const int from = tn[c] == v[i] ? i : j;
        na[c] = c == far ? af : a[from];
        nb[c] = c == far ? bf : b[from];
      }
      for (int c = 0; c < 3; ++c) {
        v[c] = tn[c];
        a[c] = na[c];
        b[c] = nb[c];
      }
      f = n;
      skip = far;
      continue;
    }
    if (!(raster::t_abs(b[j] - b[i]) >= raster::t_abs(a[j] - a[i]))) return -1;  // runs along
    if (!(num > -slack * den)) return -1;
    const T dc = raster::t_min(raster::t_max(num / den, T(0)), T(1));
    alpha = ds * (T(0.5) - dc);
    return static_cast<int32_t>((3 * f + edge) * 2 + second);
  }
  return -1;
}

// ---- Pruning: most pairs of a dense mesh differ in id but lie on one smooth surface ----------
// A blend needs a silhouette edge crossing the segment between the two pixel centres, so the
// segment's ends (both centres) lie within 1 + slack pixels (max norm) of that edge. The
// kernels first mark, per image, the pixels within that distance of every edge that may be a
// silhouette, and analyse only the pairs with both pixels marked: the same result for a small
// part of the work. PYFAID_AA_ALL_PAIRS=1 analyses every pair (a debugging switch).

// True unless edge k of triangle f is clearly not a silhouette: a triangle across it whose far
// vertex lies clearly on the other side of the edge from f's third corner (the walk's test,
// with a margin so that its rounding cannot disagree). Each interior edge is looked at from the
// lower-numbered of its two triangles only (false from the other).
template <typename T>
PYFAID_HD bool maybe_silhouette(const T* screen, const int32_t* tri, const int32_t* neighbors,
                                int64_t F, int64_t f, int k) {
  const int64_t n = neighbors[3 * f + k];
  if (n >= 0 && n < f) return false;  // looked at from n
  if (n < 0 || n >= F) return true;
  const int64_t vi = tri[3 * f + (k + 1) % 3], vj = tri[3 * f + (k + 2) % 3], vk = tri[3 * f + k];
  int64_t o = -1;
  for (int c = 0; c < 3; ++c) {
    const int64_t t = tri[3 * n + c];
    if (t != vi && t != vj) o = t;
  }
  if (o < 0) return true;
  const T xi = screen[2 * vi], yi = screen[2 * vi + 1];
  const T ex = screen[2 * vj] - xi, ey = screen[2 * vj + 1] - yi;
  const T sk = ex * (screen[2 * vk + 1] - yi) - ey * (screen[2 * vk] - xi);
  const T so = ex * (screen[2 * o + 1] - yi) - ey * (screen[2 * o] - xi);
  const T tol = T(1e-4) * (ex * ex + ey * ey);
  return !((sk < -tol && so > tol) || (sk > tol && so < -tol));
}

// mark(x, y) for every pixel whose centre lies within 1 + slack pixels (max norm) of the
// segment from (x0, y0) to (x1, y1) (pixel index coordinates: pixel i's centre at i), marching
// along its longer axis. Nothing for non-finite ends.
template <typename T, typename Mark>
PYFAID_HD void mark_segment(T x0, T y0, T x1, T y1, int W, int H, Mark mark) {
  if (!raster::t_finite(x0) || !raster::t_finite(y0) || !raster::t_finite(x1) ||
      !raster::t_finite(y1))
    return;
  const T r = T(1) + T(kCrossingSlack) + T(1e-3);
  const bool steep = raster::t_abs(y1 - y0) > raster::t_abs(x1 - x0);
  T a0 = steep ? y0 : x0, b0 = steep ? x0 : y0, a1 = steep ? y1 : x1, b1 = steep ? x1 : y1;
  if (a1 < a0) {
    T t = a0;
    a0 = a1;
    a1 = t;
    t = b0;
    b0 = b1;
    b1 = t;
  }
  const int na = steep ? H : W, nb = steep ? W : H;
  const T lo_a = raster::t_max(a0 - r, T(0)), hi_a = raster::t_min(a1 + r, T(na - 1));
  if (lo_a > hi_a) return;
  const T slope = a1 > a0 ? (b1 - b0) / (a1 - a0) : T(0);
  for (int c = static_cast<int>(ceil(lo_a)); c <= static_cast<int>(floor(hi_a)); ++c) {
    const T s0 = raster::t_max(a0, T(c) - r), s1 = raster::t_min(a1, T(c) + r);
    const T bs = b0 + slope * (s0 - a0), be = b0 + slope * (s1 - a0);
    const T lo_b = raster::t_max(raster::t_min(bs, be) - r, T(0));
    const T hi_b = raster::t_min(raster::t_max(bs, be) + r, T(nb - 1));
    for (int d = static_cast<int>(ceil(lo_b)); d <= static_cast<int>(floor(hi_b)); ++d) {
      if (steep) mark(d, c);
      else mark(c, d);
    }
  }
}

// Marks the pixels near the possible silhouette edges of triangles [f_begin, f_end) of one
// image (screen: its [V, 2] vertex screen positions, centred pixel units).
template <typename T, typename Mark>
PYFAID_HD void mark_triangle_edges(const T* screen, const int32_t* tri, const int32_t* neighbors,
                                   int64_t F, int64_t f, int W, int H, Mark mark) {
  const T cx = T(0.5) * T(W) - T(0.5), cy = T(0.5) * T(H) - T(0.5);  // centred -> index
  for (int k = 0; k < 3; ++k) {
    if (!maybe_silhouette(screen, tri, neighbors, F, f, k)) continue;
    const int64_t vi = tri[3 * f + (k + 1) % 3], vj = tri[3 * f + (k + 2) % 3];
    mark_segment(screen[2 * vi] + cx, screen[2 * vi + 1] + cy, screen[2 * vj] + cx,
                 screen[2 * vj + 1] + cy, W, H, mark);
  }
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
