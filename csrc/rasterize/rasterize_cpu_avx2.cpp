// AVX2 kernels of the CPU rasterizer's direct path, float32: eight triangles (or vertices) per
// step. Every lane does the scalar path's arithmetic in the same order with the same IEEE
// single-precision operations (no FMA: the functions are compiled for "avx2" only), so the
// results are bit-identical to raster_cpu::vertex_pass / raster_triangle, which the tests check.
//
// Per block of eight triangles: load the three vertices' records (code, screen position, q, z;
// written once per image by the vertex pass) and transpose them to lanes, then pixel bounding
// boxes, the zero-area test, edge functions and their tie flags. Most triangles of a dense mesh
// hold at most two pixel centres in their box; for those the coverage test, depth plane, depth
// range and (u, v) are computed in the vector too, and only the depth test against the image
// runs per lane, in id order. Lanes whose box holds more centres go to the scalar routine.
#include "rasterize/rasterize_cpu.h"
#include "utils/avx2.h"

#include <cfloat>
#include <cstdlib>
#include <cstring>

namespace pyfaid {
namespace raster_cpu {

#if PYFAID_HAVE_AVX2_KERNEL

bool avx2_supported() {
  static const bool ok = __builtin_cpu_supports("avx2");
  return ok;
}

namespace {

using avx2::finite_mask;

// raster::t_min(a, b) = b < a ? b : a and t_max(a, b) = a < b ? b : a (inputs never NaN here).
PYFAID_AVX2 __m256 tmin(__m256 a, __m256 b) { return _mm256_min_ps(b, a); }
PYFAID_AVX2 __m256 tmax(__m256 a, __m256 b) { return _mm256_max_ps(b, a); }

// Edge-test rejection of one edge: a < 0 || (a == 0 && !flag), as raster_triangle.
PYFAID_AVX2 __m256 edge_reject(__m256 a, __m256 flag) {
  const __m256 z = _mm256_setzero_ps();
  return _mm256_or_ps(_mm256_cmp_ps(a, z, _CMP_LT_OQ),
                      _mm256_andnot_ps(flag, _mm256_cmp_ps(a, z, _CMP_EQ_OQ)));
}

// Pixel centre coordinate (2 i + 1 - n) * 0.5 of integer lanes i.
PYFAID_AVX2 __m256 centre(__m256i i, int n) {
  const __m256i k = _mm256_add_epi32(_mm256_slli_epi32(i, 1), _mm256_set1_epi32(1 - n));
  return _mm256_mul_ps(_mm256_cvtepi32_ps(k), _mm256_set1_ps(0.5f));
}

// Fields of the per-vertex records written by vertex_pass_avx2 (kRecord floats each).
enum Field { kQx = 0, kQy, kW, kZ, kSx, kSy, kCode };

// Loads the records of vertices idx[0..7] as columns: out[field] over the 8 lanes.
PYFAID_AVX2 void load_records(const float* rec, const int32_t* idx, __m256 out[8]) {
  for (int l = 0; l < 8; ++l) out[l] = _mm256_load_ps(rec + kRecord * int64_t(idx[l]));
  avx2::transpose8(out);
}

// c = a x b for homogeneous 2D points (x, y, w), as raster::cross3.
PYFAID_AVX2 void cross(__m256 ax, __m256 ay, __m256 aw, __m256 bx, __m256 by, __m256 bw,
                       __m256& cx, __m256& cy, __m256& cw) {
  cx = _mm256_sub_ps(_mm256_mul_ps(ay, bw), _mm256_mul_ps(aw, by));
  cy = _mm256_sub_ps(_mm256_mul_ps(aw, bx), _mm256_mul_ps(ax, bw));
  cw = _mm256_sub_ps(_mm256_mul_ps(ax, by), _mm256_mul_ps(ay, bx));
}

// Tie flag of an edge: its normal points to +x, or to +y when vertical.
PYFAID_AVX2 __m256 tie_flag(__m256 ex, __m256 ey) {
  const __m256 z = _mm256_setzero_ps();
  return _mm256_or_ps(_mm256_cmp_ps(ex, z, _CMP_GT_OQ),
                      _mm256_and_ps(_mm256_cmp_ps(ex, z, _CMP_EQ_OQ), _mm256_cmp_ps(ey, z, _CMP_GT_OQ)));
}

// (ex px + ey py) + ew, as raster::eval_linear.
PYFAID_AVX2 __m256 eval(__m256 ex, __m256 ey, __m256 ew, __m256 px, __m256 py) {
  return _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(ex, px), _mm256_mul_ps(ey, py)), ew);
}

// One component of the depth plane: (z0 ea + z1 eb + z2 ec) * (1 / det), as raster::depth_plane.
PYFAID_AVX2 __m256 plane(__m256 z0, __m256 z1, __m256 z2, __m256 ea, __m256 eb, __m256 ec,
                         __m256 inv_det) {
  const __m256 n = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(z0, ea), _mm256_mul_ps(z1, eb)),
                                 _mm256_mul_ps(z2, ec));
  return _mm256_mul_ps(n, inv_det);
}

// A candidate write per lane at one pixel centre (x, y) = (px, py) with edge values a0..a2:
// narrows `write` by the depth range (and `ok`, the finite depth plane), stores depth, (u, v)
// (raster::barycentrics' arithmetic) and the pixel into c, and returns the writing lanes.
struct alignas(32) Centres {
  float depth[8], u[8], v[8];
  int32_t x[8], y[8];
};

PYFAID_AVX2 int centre_writes(__m256 write, __m256 ok, __m256 dx, __m256 dy, __m256 dw,
                              __m256 px, __m256 py, __m256 a0, __m256 a1, __m256 a2, __m256i x,
                              __m256i y, Centres& c) {
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256 depth = eval(dx, dy, dw, px, py);
  const __m256 in_range = _mm256_and_ps(_mm256_cmp_ps(depth, _mm256_set1_ps(-1.0f), _CMP_GE_OQ),
                                        _mm256_cmp_ps(depth, one, _CMP_LE_OQ));
  write = _mm256_and_ps(write, _mm256_and_ps(ok, in_range));
  const __m256 sum = _mm256_add_ps(_mm256_add_ps(a0, a1), a2);
  const __m256 pos = _mm256_cmp_ps(sum, _mm256_setzero_ps(), _CMP_GT_OQ);
  const __m256 inv = _mm256_div_ps(one, sum);
  const __m256 third = _mm256_set1_ps(1.0f / 3.0f);
  _mm256_store_ps(c.u, _mm256_blendv_ps(third, _mm256_mul_ps(a0, inv), pos));
  _mm256_store_ps(c.v, _mm256_blendv_ps(third, _mm256_mul_ps(a1, inv), pos));
  _mm256_store_ps(c.depth, depth);
  _mm256_store_si256(reinterpret_cast<__m256i*>(c.x), x);
  _mm256_store_si256(reinterpret_cast<__m256i*>(c.y), y);
  return _mm256_movemask_ps(write);
}

// Depth test of lane l's candidate against the image (strict: an earlier id keeps ties).
inline void depth_test(const Centres& c, int l, float id, int W, float* out) {
  float* o = out + (int64_t(c.y[l]) * W + c.x[l]) * 4;
  if (c.depth[l] < o[2]) {
    o[0] = c.u[l];
    o[1] = c.v[l];
    o[2] = c.depth[l];
    o[3] = id;
  }
}

}  // namespace

__attribute__((target("avx2"))) void vertex_pass_avx2(const float* p, int64_t V, float half_w,
                                                      float half_h, float* rec) {
  const __m256 hw = _mm256_set1_ps(half_w), hh = _mm256_set1_ps(half_h);
  const __m256 zero = _mm256_setzero_ps();
  const __m256 sign = _mm256_set1_ps(-0.0f);
  int64_t i = 0;
  for (; i + 8 <= V; i += 8) {
    __m256 x, y, z, w;  // eight xyzw vertices as columns
    avx2::load_cols4(p + 4 * i, x, y, z, w);
    // raster::vertex_code
    const __m256 valid = _mm256_and_ps(
        _mm256_cmp_ps(w, zero, _CMP_GT_OQ),
        _mm256_and_ps(_mm256_and_ps(finite_mask(x), finite_mask(y)),
                      _mm256_and_ps(finite_mask(z), finite_mask(w))));
    const __m256 nw = _mm256_xor_ps(w, sign);
    __m256i c = _mm256_setzero_si256();
    const __m256 coords[3] = {x, y, z};
    for (int k = 0; k < 3; ++k) {
      const __m256i hi = _mm256_castps_si256(_mm256_cmp_ps(coords[k], w, _CMP_GT_OQ));
      const __m256i lo = _mm256_castps_si256(_mm256_cmp_ps(coords[k], nw, _CMP_LT_OQ));
      c = _mm256_or_si256(c, _mm256_and_si256(hi, _mm256_set1_epi32(1 << (2 * k))));
      c = _mm256_or_si256(c, _mm256_and_si256(lo, _mm256_set1_epi32(1 << (2 * k + 1))));
    }
    const __m256i vi = _mm256_castps_si256(valid);
    c = _mm256_or_si256(_mm256_and_si256(vi, c),
                        _mm256_andnot_si256(vi, _mm256_set1_epi32(int(raster::kVertInvalid))));
    // raster::load_q and raster::vertex_screen
    const __m256 qx = _mm256_mul_ps(x, hw), qy = _mm256_mul_ps(y, hh);
    __m256 r[8] = {qx, qy, w, z,
                   _mm256_and_ps(valid, _mm256_div_ps(qx, w)),
                   _mm256_and_ps(valid, _mm256_div_ps(qy, w)),
                   _mm256_castsi256_ps(c), zero};
    avx2::transpose8(r);
    for (int l = 0; l < 8; ++l) _mm256_store_ps(rec + kRecord * (i + l), r[l]);
  }
  for (; i < V; ++i) {
    const float* v = p + 4 * i;
    float* o = rec + kRecord * i;
    const uint32_t c = raster::vertex_code(v);
    float q[3], sx = 0.0f, sy = 0.0f;
    raster::load_q(v, half_w, half_h, q);
    if (!(c & raster::kVertInvalid)) raster::vertex_screen(v, half_w, half_h, sx, sy);
    o[kQx] = q[0];
    o[kQy] = q[1];
    o[kW] = v[3];
    o[kZ] = v[2];
    o[kSx] = sx;
    o[kSy] = sy;
    std::memcpy(o + kCode, &c, sizeof(c));
    o[7] = 0.0f;
  }
}

__attribute__((target("avx2"))) void raster_triangles_avx2(
    const float* p, const int32_t* tri, const int32_t* t0, const int32_t* t1, const int32_t* t2,
    int64_t f_begin, int64_t f_end, const float* rec, int H, int W, float* out) {
  const uint32_t* code = reinterpret_cast<const uint32_t*>(rec + kCode);
  const float* vsx = rec + kSx;
  const float* vsy = rec + kSy;
  const __m256 zero = _mm256_setzero_ps();
  const __m256 sign = _mm256_set1_ps(-0.0f);
  const __m256 ox = _mm256_set1_ps(0.5f * float(W - 1)), oy = _mm256_set1_ps(0.5f * float(H - 1));
  const __m256 eps = _mm256_set1_ps(float(1.0 / 256.0));
  const __m256 minus1 = _mm256_set1_ps(-1.0f), one = _mm256_set1_ps(1.0f);
  const __m256 fw = _mm256_set1_ps(float(W)), fh = _mm256_set1_ps(float(H));
  const __m256 area_tol = _mm256_set1_ps(16.0f * FLT_EPSILON);
  const __m256i wmax = _mm256_set1_epi32(W - 1), hmax = _mm256_set1_epi32(H - 1);
  const __m256i izero = _mm256_setzero_si256();
  const __m256i invalid = _mm256_set1_epi32(int(raster::kVertInvalid));
  Centres cand_a, cand_b;

  int64_t f = f_begin;
  for (; f + 8 <= f_end; f += 8) {
    __m256 r0[8], r1[8], r2[8];
    load_records(rec, t0 + f, r0);
    load_records(rec, t1 + f, r1);
    load_records(rec, t2 + f, r2);
    // Vertex codes: a vertex invalid, or all three beyond one clip plane.
    const __m256i c0 = _mm256_castps_si256(r0[kCode]), c1 = _mm256_castps_si256(r1[kCode]),
                  c2 = _mm256_castps_si256(r2[kCode]);
    const __m256i rej = _mm256_or_si256(
        _mm256_and_si256(_mm256_or_si256(_mm256_or_si256(c0, c1), c2), invalid),
        _mm256_and_si256(_mm256_and_si256(c0, c1), c2));
    __m256 live = _mm256_castsi256_ps(_mm256_cmpeq_epi32(rej, izero));
    if (_mm256_movemask_ps(live) == 0) continue;

    // Pixel-centre bounding box (raster::pixel_box).
    const __m256 sx0 = r0[kSx], sx1 = r1[kSx], sx2 = r2[kSx];
    const __m256 sy0 = r0[kSy], sy1 = r1[kSy], sy2 = r2[kSy];
    __m256 lo_x = _mm256_sub_ps(_mm256_add_ps(tmin(tmin(sx0, sx1), sx2), ox), eps);
    __m256 hi_x = _mm256_add_ps(_mm256_add_ps(tmax(tmax(sx0, sx1), sx2), ox), eps);
    __m256 lo_y = _mm256_sub_ps(_mm256_add_ps(tmin(tmin(sy0, sy1), sy2), oy), eps);
    __m256 hi_y = _mm256_add_ps(_mm256_add_ps(tmax(tmax(sy0, sy1), sy2), oy), eps);
    lo_x = tmin(tmax(lo_x, minus1), fw);
    hi_x = tmin(tmax(hi_x, minus1), fw);
    lo_y = tmin(tmax(lo_y, minus1), fh);
    hi_y = tmin(tmax(hi_y, minus1), fh);
    const __m256i x0 = _mm256_max_epi32(_mm256_cvttps_epi32(_mm256_ceil_ps(lo_x)), izero);
    const __m256i x1 = _mm256_min_epi32(_mm256_cvttps_epi32(_mm256_floor_ps(hi_x)), wmax);
    const __m256i y0 = _mm256_max_epi32(_mm256_cvttps_epi32(_mm256_ceil_ps(lo_y)), izero);
    const __m256i y1 = _mm256_min_epi32(_mm256_cvttps_epi32(_mm256_floor_ps(hi_y)), hmax);
    const __m256i empty = _mm256_or_si256(_mm256_cmpgt_epi32(x0, x1), _mm256_cmpgt_epi32(y0, y1));
    live = _mm256_andnot_ps(_mm256_castsi256_ps(empty), live);
    if (_mm256_movemask_ps(live) == 0) continue;

    // Zero-area test in screen space (raster::edge_setup).
    const __m256 ax = _mm256_sub_ps(sx1, sx0), ay = _mm256_sub_ps(sy1, sy0);
    const __m256 bx = _mm256_sub_ps(sx2, sx0), by = _mm256_sub_ps(sy2, sy0);
    const __m256 area2 = _mm256_sub_ps(_mm256_mul_ps(ax, by), _mm256_mul_ps(ay, bx));
    const __m256 scale = _mm256_mul_ps(
        _mm256_add_ps(_mm256_andnot_ps(sign, ax), _mm256_andnot_ps(sign, ay)),
        _mm256_add_ps(_mm256_andnot_ps(sign, bx), _mm256_andnot_ps(sign, by)));
    live = _mm256_and_ps(live, _mm256_cmp_ps(_mm256_andnot_ps(sign, area2),
                                             _mm256_mul_ps(area_tol, scale), _CMP_GT_OQ));
    if (_mm256_movemask_ps(live) == 0) continue;

    // Homogeneous vertices q = (x W/2, y H/2, w) and edge functions e_k = q_{k+1} x q_{k+2}.
    const __m256 q0x = r0[kQx], q0y = r0[kQy], q0w = r0[kW];
    const __m256 q1x = r1[kQx], q1y = r1[kQy], q1w = r1[kW];
    const __m256 q2x = r2[kQx], q2y = r2[kQy], q2w = r2[kW];
    __m256 e0x, e0y, e0w, e1x, e1y, e1w, e2x, e2y, e2w;
    cross(q1x, q1y, q1w, q2x, q2y, q2w, e0x, e0y, e0w);
    cross(q2x, q2y, q2w, q0x, q0y, q0w, e1x, e1y, e1w);
    cross(q0x, q0y, q0w, q1x, q1y, q1w, e2x, e2y, e2w);
    __m256 det = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(q0x, e0x), _mm256_mul_ps(q0y, e0y)),
                               _mm256_mul_ps(q0w, e0w));
    // !(det != 0) || !finite(det) culls (C's != is true for NaN; the finite test catches it).
    live = _mm256_and_ps(live, _mm256_and_ps(_mm256_cmp_ps(det, zero, _CMP_NEQ_UQ), finite_mask(det)));
    if (_mm256_movemask_ps(live) == 0) continue;
    const __m256 flip = _mm256_and_ps(_mm256_cmp_ps(det, zero, _CMP_LT_OQ), sign);
    det = _mm256_xor_ps(det, flip);
    e0x = _mm256_xor_ps(e0x, flip);
    e0y = _mm256_xor_ps(e0y, flip);
    e0w = _mm256_xor_ps(e0w, flip);
    e1x = _mm256_xor_ps(e1x, flip);
    e1y = _mm256_xor_ps(e1y, flip);
    e1w = _mm256_xor_ps(e1w, flip);
    e2x = _mm256_xor_ps(e2x, flip);
    e2y = _mm256_xor_ps(e2y, flip);
    e2w = _mm256_xor_ps(e2w, flip);
    const __m256 fl0 = tie_flag(e0x, e0y), fl1 = tie_flag(e1x, e1y), fl2 = tie_flag(e2x, e2y);

    // Boxes with one or two pixel centres: coverage, depth and (u, v) here, at centre A =
    // (x0, y0) and, for two, centre B = (x1, y1). Larger boxes go to the scalar routine.
    const __m256i nx = _mm256_sub_epi32(x1, x0), ny = _mm256_sub_epi32(y1, y0);
    const __m256i nsum = _mm256_add_epi32(nx, ny);  // 0: one centre, 1: two
    const __m256 single = _mm256_castsi256_ps(_mm256_cmpeq_epi32(nsum, izero));
    const __m256 pair = _mm256_castsi256_ps(_mm256_cmpeq_epi32(nsum, _mm256_set1_epi32(1)));
    const __m256 pxa = centre(x0, W), pya = centre(y0, H);
    const __m256 a0 = eval(e0x, e0y, e0w, pxa, pya), a1 = eval(e1x, e1y, e1w, pxa, pya),
                 a2 = eval(e2x, e2y, e2w, pxa, pya);
    const __m256 out_a = _mm256_or_ps(_mm256_or_ps(edge_reject(a0, fl0), edge_reject(a1, fl1)),
                                      edge_reject(a2, fl2));
    const __m256 in_vec = _mm256_and_ps(live, _mm256_or_ps(single, pair));
    const int m_multi = _mm256_movemask_ps(_mm256_andnot_ps(in_vec, live));
    __m256 write_a = _mm256_andnot_ps(out_a, in_vec);
    __m256 write_b = _mm256_and_ps(live, pair);
    __m256 b0 = zero, b1 = zero, b2 = zero, pxb = zero, pyb = zero;
    if (_mm256_movemask_ps(write_b)) {
      pxb = centre(x1, W);
      pyb = centre(y1, H);
      b0 = eval(e0x, e0y, e0w, pxb, pyb);
      b1 = eval(e1x, e1y, e1w, pxb, pyb);
      b2 = eval(e2x, e2y, e2w, pxb, pyb);
      const __m256 out_b = _mm256_or_ps(_mm256_or_ps(edge_reject(b0, fl0), edge_reject(b1, fl1)),
                                        edge_reject(b2, fl2));
      write_b = _mm256_andnot_ps(out_b, write_b);
    }
    int m_a = _mm256_movemask_ps(write_a), m_b = _mm256_movemask_ps(write_b);
    if ((m_a | m_b | m_multi) == 0) continue;
    if (m_a | m_b) {
      const __m256 z0 = r0[kZ], z1 = r1[kZ], z2 = r2[kZ];
      const __m256 inv_det = _mm256_div_ps(one, det);
      const __m256 dx = plane(z0, z1, z2, e0x, e1x, e2x, inv_det);
      const __m256 dy = plane(z0, z1, z2, e0y, e1y, e2y, inv_det);
      const __m256 dw = plane(z0, z1, z2, e0w, e1w, e2w, inv_det);
      const __m256 ok = _mm256_and_ps(finite_mask(dx), _mm256_and_ps(finite_mask(dy), finite_mask(dw)));
      if (m_a) m_a = centre_writes(write_a, ok, dx, dy, dw, pxa, pya, a0, a1, a2, x0, y0, cand_a);
      if (m_b) m_b = centre_writes(write_b, ok, dx, dy, dw, pxb, pyb, b0, b1, b2, x1, y1, cand_b);
    }
    // Depth test in id order (within a lane, A precedes B in the scalar routine's row order).
    for (int todo = m_a | m_b | m_multi; todo; todo &= todo - 1) {
      const int l = __builtin_ctz(todo);
      if ((m_multi >> l) & 1) {
        raster_triangle<float>(p, tri, f + l, code, vsx, vsy, H, W, out, kRecord);
        continue;
      }
      const float id = float(f + l + 1);
      if ((m_a >> l) & 1) depth_test(cand_a, l, id, W, out);
      if ((m_b >> l) & 1) depth_test(cand_b, l, id, W, out);
    }
  }
  for (; f < f_end; ++f) raster_triangle<float>(p, tri, f, code, vsx, vsy, H, W, out, kRecord);
}

// Rasterize backward of one row, eight pixels per step: the arithmetic of
// raster::barycentrics_backward per lane, then the lanes' gradients are added in pixel order
// (so the sums equal backward_pixels' bit for bit).
__attribute__((target("avx2"))) void backward_row_avx2(const float* r, const float* g,
                                                       const float* p, const int32_t* tri,
                                                       int64_t F, int y, int H, int W,
                                                       float* gpos) {
  const float half_w = 0.5f * float(W), half_h = 0.5f * float(H);
  const __m256 hw = _mm256_set1_ps(half_w), hh = _mm256_set1_ps(half_h);
  const __m256 zero = _mm256_setzero_ps();
  const __m256 py = _mm256_set1_ps(raster::pixel_centre<float>(y, H));
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  // Ids beyond F are skipped like empty pixels (F < 2^24 for float32 rast).
  const __m256i fmax = _mm256_set1_epi32(static_cast<int>(F));
  alignas(32) int32_t tv[3][8];
  __m256 rows[3][4];
  int x = 0;
  for (; x + 8 <= W; x += 8) {
    __m256 u, v, z, idf, gu, gv, gz, gw;
    avx2::load_cols4(r + 4 * x, u, v, z, idf);
    avx2::load_cols4(g + 4 * x, gu, gv, gz, gw);
    __m256 has;
    const __m256i f = avx2::decode_ids(idf, has);
    __m256 m = _mm256_and_ps(has, _mm256_castsi256_ps(_mm256_cmpgt_epi32(fmax, f)));
    m = _mm256_and_ps(m, _mm256_castsi256_ps(_mm256_cmpgt_epi32(f, _mm256_set1_epi32(-1))));
    m = _mm256_and_ps(m, _mm256_or_ps(_mm256_cmp_ps(gu, zero, _CMP_NEQ_UQ),
                                      _mm256_cmp_ps(gv, zero, _CMP_NEQ_UQ)));
    int mask = _mm256_movemask_ps(m);
    if (mask == 0) continue;
    // Triangle rows and vertices by scalar loads (cheaper than dependent gathers), then
    // transposed to lanes; masked-off lanes read triangle 0.
    alignas(32) int32_t fl[8];
    _mm256_store_si256(reinterpret_cast<__m256i*>(fl), _mm256_and_si256(_mm256_castps_si256(m), f));
    avx2::triangle_rows(tri, fl, tv);
    __m256 q[3][3];
    for (int k = 0; k < 3; ++k) {
      __m128 vrows[8];
      for (int l = 0; l < 8; ++l) vrows[l] = _mm_loadu_ps(p + 4 * int64_t(tv[k][l]));
      __m256 vz;
      avx2::cols_from_rows(vrows, q[k][0], q[k][1], vz, q[k][2]);
      q[k][0] = _mm256_mul_ps(q[k][0], hw);
      q[k][1] = _mm256_mul_ps(q[k][1], hh);
    }
    const __m256 px = centre(_mm256_add_epi32(_mm256_set1_epi32(x), lane), W);
    __m256 a[3], b[3];
    for (int c = 0; c < 3; ++c) {
      a[c] = _mm256_sub_ps(q[1][c], q[0][c]);
      b[c] = _mm256_sub_ps(q[2][c], q[0][c]);
    }
    const __m256 s0 = _mm256_sub_ps(_mm256_mul_ps(a[1], b[2]), _mm256_mul_ps(a[2], b[1]));
    const __m256 s1 = _mm256_sub_ps(_mm256_mul_ps(a[2], b[0]), _mm256_mul_ps(a[0], b[2]));
    const __m256 s2 = _mm256_sub_ps(_mm256_mul_ps(a[0], b[1]), _mm256_mul_ps(a[1], b[0]));
    const __m256 sum = eval(s0, s1, s2, px, py);
    m = _mm256_and_ps(m, _mm256_and_ps(_mm256_cmp_ps(sum, zero, _CMP_NEQ_UQ), finite_mask(sum)));
    mask = _mm256_movemask_ps(m);
    if (mask == 0) continue;
    const __m256 inv = _mm256_div_ps(_mm256_set1_ps(1.0f), sum);
    const __m256 dot = _mm256_add_ps(_mm256_mul_ps(gu, u), _mm256_mul_ps(gv, v));
    const __m256 ga[3] = {_mm256_mul_ps(_mm256_sub_ps(gu, dot), inv),
                          _mm256_mul_ps(_mm256_sub_ps(gv, dot), inv),
                          _mm256_mul_ps(_mm256_xor_ps(dot, _mm256_set1_ps(-0.0f)), inv)};
    for (int mm = 0; mm < 3; ++mm) {
      const int prev = (mm + 2) % 3, next = (mm + 1) % 3;
      __m256 c[3];
      for (int k = 0; k < 3; ++k)
        c[k] = _mm256_sub_ps(_mm256_mul_ps(ga[prev], q[next][k]), _mm256_mul_ps(ga[next], q[prev][k]));
      const __m256 gx = _mm256_mul_ps(_mm256_sub_ps(c[1], _mm256_mul_ps(c[2], py)), hw);
      const __m256 gy = _mm256_mul_ps(_mm256_sub_ps(_mm256_mul_ps(c[2], px), c[0]), hh);
      const __m256 gw = _mm256_sub_ps(_mm256_mul_ps(c[0], py), _mm256_mul_ps(c[1], px));
      // Per-lane rows (gx, gy, 0, gw): lanes l and l + 4 share a register.
      const __m256 t0 = _mm256_unpacklo_ps(gx, gy), t1 = _mm256_unpackhi_ps(gx, gy);
      const __m256 t2 = _mm256_unpacklo_ps(zero, gw), t3 = _mm256_unpackhi_ps(zero, gw);
      rows[mm][0] = _mm256_shuffle_ps(t0, t2, 0x44);
      rows[mm][1] = _mm256_shuffle_ps(t0, t2, 0xEE);
      rows[mm][2] = _mm256_shuffle_ps(t1, t3, 0x44);
      rows[mm][3] = _mm256_shuffle_ps(t1, t3, 0xEE);
    }
    // One 16-byte read-modify-write per vertex (the z entry gains +0).
    for (; mask; mask &= mask - 1) {
      const int l = __builtin_ctz(mask);
      for (int k = 0; k < 3; ++k) {
        const __m128 add = l < 4 ? _mm256_castps256_ps128(rows[k][l]) : _mm256_extractf128_ps(rows[k][l - 4], 1);
        float* gp = gpos + 4 * int64_t(tv[k][l]);
        _mm_storeu_ps(gp, _mm_add_ps(_mm_loadu_ps(gp), add));
      }
    }
  }
  backward_pixels<float>(r, g, p, tri, F, y, x, W, H, W, gpos);
}

#else  // no AVX2 kernel in this build

bool avx2_supported() { return false; }
void vertex_pass_avx2(const float*, int64_t, float, float, float*) {
  TORCH_CHECK(false, "pyfaid: the AVX2 rasterizer kernel is not part of this build");
}
void raster_triangles_avx2(const float*, const int32_t*, const int32_t*, const int32_t*,
                           const int32_t*, int64_t, int64_t, const float*, int, int, float*) {
  TORCH_CHECK(false, "pyfaid: the AVX2 rasterizer kernel is not part of this build");
}
void backward_row_avx2(const float*, const float*, const float*, const int32_t*, int64_t, int,
                       int, int, float*) {
  TORCH_CHECK(false, "pyfaid: the AVX2 rasterizer kernel is not part of this build");
}

#endif

bool simd_enabled() {
  if (!avx2_supported()) return false;
  const char* env = std::getenv("PYFAID_CPU_SIMD");
  return env == nullptr || std::strcmp(env, "0") != 0;
}

}  // namespace raster_cpu
}  // namespace pyfaid
