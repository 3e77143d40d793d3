// Shared pieces of the CPU rasterizer's direct path (rasterize_cpu.cpp) and its AVX2 kernel
// (rasterize_cpu_avx2.cpp): per-image vertex pass and the scalar per-triangle raster routine.
// Both produce exactly the results of the binned path (same setup arithmetic, same tie rules).
#pragma once

#include <cstdint>

#include "rasterize/rasterize.h"

namespace pyfaid {
namespace raster_cpu {

// Rejection codes and screen positions (centred pixel units) of vertices [begin, end) of one
// image; sx = sy = 0 for invalid vertices (their triangles are rejected by the codes).
template <typename T>
void vertex_pass(const T* p, int64_t begin, int64_t end, T half_w, T half_h, uint32_t* code,
                 T* sx, T* sy) {
  for (int64_t i = begin; i < end; ++i) {
    const T* v = p + 4 * i;
    code[i] = raster::vertex_code(v);
    if (!(code[i] & raster::kVertInvalid)) {
      raster::vertex_screen(v, half_w, half_h, sx[i], sy[i]);
    } else {
      sx[i] = sy[i] = T(0);
    }
  }
}

// Depth-test triangle f of one image into `out` ([H, W, 4] = (u, v, z/w, id + 1), initialised
// to depth 2 and id 0). Callers go in id order and the test is strict, so the lowest id wins
// ties. The edge values at a covered pixel centre give its (u, v) directly, with the
// arithmetic of raster::barycentrics.
// Vertex i's code and screen position are code[i * vstride], vsx[i * vstride], vsy[i * vstride].
template <typename T>
inline void raster_triangle(const T* p, const int32_t* tri, int64_t f, const uint32_t* code,
                            const T* vsx, const T* vsy, int H, int W, T* out,
                            int64_t vstride = 1) {
  const int32_t* t = tri + 3 * f;
  const int64_t i0 = t[0], i1 = t[1], i2 = t[2];
  const int64_t j0 = i0 * vstride, j1 = i1 * vstride, j2 = i2 * vstride;
  if (raster::codes_reject(code[j0], code[j1], code[j2])) return;
  const T sx[3] = {vsx[j0], vsx[j1], vsx[j2]}, sy[3] = {vsy[j0], vsy[j1], vsy[j2]};
  int x0, x1, y0, y1;
  if (!raster::pixel_box(sx, sy, W, H, x0, x1, y0, y1)) return;
  const T* v0 = p + 4 * i0;
  const T* v1 = p + 4 * i1;
  const T* v2 = p + 4 * i2;
  raster::TriSetup<T> s;
  s.d[0] = s.d[1] = s.d[2] = T(0);  // set by depth_plane before use
  T det;
  if (!raster::edge_setup(v0, v1, v2, sx, sy, W, H, s, det)) return;
  bool have_depth = false;
  const T id = T(f + 1);
  for (int y = y0; y <= y1; ++y) {
    const T py = raster::pixel_centre<T>(y, H);
    T* row = out + int64_t(y) * W * 4;
    for (int x = x0; x <= x1; ++x) {
      const T px = raster::pixel_centre<T>(x, W);
      const T a0 = raster::eval_linear(s.e[0], px, py);
      if (a0 < T(0) || (a0 == T(0) && !(s.flags & 1))) continue;
      const T a1 = raster::eval_linear(s.e[1], px, py);
      if (a1 < T(0) || (a1 == T(0) && !(s.flags & 2))) continue;
      const T a2 = raster::eval_linear(s.e[2], px, py);
      if (a2 < T(0) || (a2 == T(0) && !(s.flags & 4))) continue;
      if (!have_depth) {
        if (!raster::depth_plane(v0, v1, v2, det, s)) return;
        have_depth = true;
      }
      const T depth = raster::eval_linear(s.d, px, py);
      T* o = row + 4 * x;
      if (!(depth >= T(-1) && depth <= T(1) && depth < o[2])) continue;
      const T sum = raster::rn_add(raster::rn_add(a0, a1), a2);
      if (sum > T(0)) {
        const T inv = T(1) / sum;
        o[0] = a0 * inv;
        o[1] = a1 * inv;
      } else {  // unreachable for a covered centre of a non-degenerate triangle
        o[0] = o[1] = T(1) / T(3);
      }
      o[2] = depth;
      o[3] = id;
    }
  }
}

// Rasterize backward, pixels [x_begin, x_end) of row y of one image: each covered pixel with a
// non-zero (dL/du, dL/dv) adds its contribution to the gradient of its triangle's vertices in
// gpos ([V, 4]), in pixel order. r and g point at the row's first pixel of rast and grad_rast.
template <typename T>
inline void backward_pixels(const T* r, const T* g, const T* p, const int32_t* tri, int64_t F,
                            int y, int x_begin, int x_end, int H, int W, T* gpos) {
  const T half_w = T(0.5) * T(W), half_h = T(0.5) * T(H);
  const T py = raster::pixel_centre<T>(y, H);
  for (int x = x_begin; x < x_end; ++x) {
    const T* rx = r + 4 * x;
    const T* gx = g + 4 * x;
    const int64_t f = raster::decode_id(rx[3]);
    if (f < 0 || f >= F) continue;
    if (gx[0] == T(0) && gx[1] == T(0)) continue;
    const int32_t* t = tri + 3 * f;
    T q[3][3], gq[3][3];
    for (int k = 0; k < 3; ++k) raster::load_q(p + 4 * int64_t(t[k]), half_w, half_h, q[k]);
    raster::barycentrics_backward(q, raster::pixel_centre<T>(x, W), py, rx[0], rx[1], gx[0], gx[1],
                                  gq);
    for (int k = 0; k < 3; ++k) {
      T* gp = gpos + 4 * int64_t(t[k]);
      gp[0] += gq[k][0] * half_w;
      gp[1] += gq[k][1] * half_h;
      gp[3] += gq[k][2];
    }
  }
}

// AVX2 versions for float32 (rasterize_cpu_avx2.cpp); bit-identical to the scalar routines.
// avx2_supported() is false on CPUs (or builds) without AVX2; the callers fall back to scalar.
bool avx2_supported();
// avx2_supported() unless the environment sets PYFAID_CPU_SIMD=0 (a debugging switch). The ops
// use the AVX2 kernels where their `simd` argument (default true) and this are both true.
bool simd_enabled();
// Per-vertex records of kRecord floats, (q_x, q_y, w, z, sx, sy, code bits, 0), where
// q = (x W/2, y H/2): `rec` holds kRecord * V floats, 32-byte aligned.
constexpr int kRecord = 8;
void vertex_pass_avx2(const float* p, int64_t V, float half_w, float half_h, float* rec);
// Triangles [f_begin, f_end) of one image into `out` (as raster_triangle); t0/t1/t2 are the
// columns of tri ([F, 3]).
void raster_triangles_avx2(const float* p, const int32_t* tri, const int32_t* t0,
                           const int32_t* t1, const int32_t* t2, int64_t f_begin, int64_t f_end,
                           const float* rec, int H, int W, float* out);
// backward_pixels for a whole row, eight pixels per step.
void backward_row_avx2(const float* r, const float* g, const float* p, const int32_t* tri,
                       int64_t F, int y, int H, int W, float* gpos);

}  // namespace raster_cpu
}  // namespace pyfaid
