// AVX2 kernels of the CPU bilinear texture lookup, float32 (texture_cpu.h). Per eight pixels: uv
// to texel coordinates, boundary handling, taps and weights in the vector (linear_taps' steps),
// then the taps' texels by one 8-float load per pixel and texel row (load_tap_pairs; loads per
// texel, or gathers for C > 4, where a row read does not fit) and the weighted sum in the scalar
// order; the backward's texel gradients are added pixel by pixel in pixel order, whole rows at a
// time where they can be.
#include "texture/texture_cpu.h"

#include <algorithm>
#include <cstdint>

#include "texture/texture.h"
#include "utils/avx2.h"

namespace pyfaid {
namespace tex_cpu {

#if PYFAID_HAVE_AVX2_KERNEL

namespace {

constexpr int kMaxChannels = 16;  // the SIMD kernels handle C <= 16 (scalar beyond)

// Bilinear taps of eight pixels: element offsets idx[k] * C of the four texels, their validity
// masks, fx / fy, and the lanes with anything to read (finite uv, and in zero mode inside).
struct Taps {
  __m256i off[4];
  __m256 valid[4];
  __m256 fx, fy, ok;
};

PYFAID_AVX2 void load_uv(const float* uv, __m256& u, __m256& v) {
  const __m256 a = _mm256_loadu_ps(uv), b = _mm256_loadu_ps(uv + 8);
  u = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0x88)), 0xD8));
  v = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0xDD)), 0xD8));
}

// The inverse of load_uv: eight (u, v) pairs to uv[0..16).
PYFAID_AVX2 void store_uv(__m256 u, __m256 v, float* uv) {
  const __m256 lo = _mm256_unpacklo_ps(u, v), hi = _mm256_unpackhi_ps(u, v);  // (0 1 | 4 5), (2 3 | 6 7)
  _mm256_storeu_ps(uv, _mm256_permute2f128_ps(lo, hi, 0x20));
  _mm256_storeu_ps(uv + 8, _mm256_permute2f128_ps(lo, hi, 0x31));
}

PYFAID_AVX2 __m256 floor8(__m256 x) { return _mm256_round_ps(x, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC); }

// One axis of linear_taps: coordinate c (texel units), extent n -> i0, i1, fraction, in-range
// masks of i0 and i1.
PYFAID_AVX2 void axis(__m256 t, int n, int boundary, __m256i& i0, __m256i& i1, __m256& f,
                      __m256& in0, __m256& in1, __m256& inside) {
  const __m256 zero = _mm256_setzero_ps(), fn = _mm256_set1_ps(float(n));
  if (boundary == tex::kWrap) t = _mm256_sub_ps(t, floor8(t));
  __m256 x = _mm256_sub_ps(_mm256_mul_ps(t, fn), _mm256_set1_ps(0.5f));
  __m256i step = _mm256_set1_epi32(1);
  inside = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
  if (boundary == tex::kClamp) {
    const __m256 hi = _mm256_set1_ps(float(n - 1));
    x = _mm256_min_ps(_mm256_max_ps(x, zero), hi);  // t_min(t_max(x, 0), n - 1) (x not NaN here)
    const __m256 clamped = _mm256_or_ps(_mm256_cmp_ps(x, zero, _CMP_EQ_OQ), _mm256_cmp_ps(x, hi, _CMP_EQ_OQ));
    step = _mm256_andnot_si256(_mm256_castps_si256(clamped), step);
  } else if (boundary == tex::kZero) {
    inside = _mm256_and_ps(_mm256_cmp_ps(x, _mm256_set1_ps(-1.0f), _CMP_GT_OQ), _mm256_cmp_ps(x, fn, _CMP_LT_OQ));
  }
  const __m256 x0f = floor8(x);
  f = _mm256_sub_ps(x, x0f);
  i0 = _mm256_cvttps_epi32(x0f);
  i1 = _mm256_add_epi32(i0, step);
  const __m256i vn = _mm256_set1_epi32(n), izero = _mm256_setzero_si256();
  if (boundary == tex::kWrap) {
    i0 = _mm256_add_epi32(i0, _mm256_and_si256(_mm256_cmpgt_epi32(izero, i0), vn));
    i1 = _mm256_sub_epi32(i1, _mm256_andnot_si256(_mm256_cmpgt_epi32(vn, i1), vn));
  }
  const __m256i m1 = _mm256_set1_epi32(-1);
  in0 = _mm256_castsi256_ps(_mm256_and_si256(_mm256_cmpgt_epi32(i0, m1), _mm256_cmpgt_epi32(vn, i0)));
  in1 = _mm256_castsi256_ps(_mm256_and_si256(_mm256_cmpgt_epi32(i1, m1), _mm256_cmpgt_epi32(vn, i1)));
}

PYFAID_AVX2 Taps taps8(const float* uv, int w, int h, int64_t C, int boundary) {
  __m256 u, v;
  load_uv(uv, u, v);
  Taps t;
  t.ok = _mm256_and_ps(avx2::finite_mask(u), avx2::finite_mask(v));
  __m256i x0, x1, y0, y1;
  __m256 inx0, inx1, iny0, iny1, insx, insy;
  axis(u, w, boundary, x0, x1, t.fx, inx0, inx1, insx);
  axis(v, h, boundary, y0, y1, t.fy, iny0, iny1, insy);
  t.ok = _mm256_and_ps(t.ok, _mm256_and_ps(insx, insy));
  const __m256i vw = _mm256_set1_epi32(w), vc = _mm256_set1_epi32(static_cast<int>(C));
  const __m256i r0 = _mm256_mullo_epi32(y0, vw), r1 = _mm256_mullo_epi32(y1, vw);
  t.off[0] = _mm256_mullo_epi32(_mm256_add_epi32(r0, x0), vc);
  t.off[1] = _mm256_mullo_epi32(_mm256_add_epi32(r0, x1), vc);
  t.off[2] = _mm256_mullo_epi32(_mm256_add_epi32(r1, x0), vc);
  t.off[3] = _mm256_mullo_epi32(_mm256_add_epi32(r1, x1), vc);
  t.valid[0] = _mm256_and_ps(t.ok, _mm256_and_ps(inx0, iny0));
  t.valid[1] = _mm256_and_ps(t.ok, _mm256_and_ps(inx1, iny0));
  t.valid[2] = _mm256_and_ps(t.ok, _mm256_and_ps(inx0, iny1));
  t.valid[3] = _mm256_and_ps(t.ok, _mm256_and_ps(inx1, iny1));
  // Lanes with nothing to read: fractions 0, as linear_taps leaves them.
  t.fx = _mm256_and_ps(t.ok, t.fx);
  t.fy = _mm256_and_ps(t.ok, t.fy);
  return t;
}

// Texel channel c of the four taps (0 where a tap is invalid).
PYFAID_AVX2 void gather4(const float* tex, const Taps& t, int64_t c, __m256 out[4]) {
  const __m256 zero = _mm256_setzero_ps();
  for (int k = 0; k < 4; ++k)
    out[k] = _mm256_mask_i32gather_ps(zero, tex + c, t.off[k], t.valid[k], 4);
}

// All channels of the four taps for C = 3 or 4, by one (or two, for 3 floats) loads per texel and
// a transpose: tap k's channel c in v[k][c] (0 where the tap is invalid). Independent loads keep
// more cache misses in flight than gathers, which wait for all their lanes: the lookup into a
// large texture is bound by them.
template <int kC>
PYFAID_AVX2 void load_taps(const float* tex, const Taps& t, __m256 v[4][4]) {
  alignas(32) int32_t off[8];
  for (int k = 0; k < 4; ++k) {
    // invalid taps read texel 0 (in bounds) and are zeroed below
    _mm256_store_si256(reinterpret_cast<__m256i*>(off),
                       _mm256_and_si256(t.off[k], _mm256_castps_si256(t.valid[k])));
    __m128 rows[8];
    for (int l = 0; l < 8; ++l)
      rows[l] = kC == 4 ? _mm_loadu_ps(tex + off[l]) : avx2::load3(tex + off[l]);
    avx2::cols_from_rows(rows, v[k][0], v[k][1], v[k][2], v[k][3]);
    for (int c = 0; c < kC; ++c) v[k][c] = _mm256_and_ps(t.valid[k], v[k][c]);
  }
}

// The four taps of eight pixels as load_taps gives them, C = 3 or 4, by two 8-float loads per
// pixel (taps 0, 1 and taps 2, 3 are horizontal neighbours: texels x0 and x0 + 1 of one row) and
// two transposes. Returns false, loading nothing, unless every lane's second tap of a pair is the
// neighbour or invalid, and every 8-float read stays inside the texture's texel_len floats.
template <int kC>
PYFAID_AVX2 bool load_tap_pairs(const float* tex, const Taps& t, int64_t texel_len, __m256 v[4][4]) {
  if (texel_len < 8) return false;
  const __m256i vc = _mm256_set1_epi32(kC);
  const __m256i lim = _mm256_set1_epi32(static_cast<int>(std::min<int64_t>(texel_len - 7, INT32_MAX)));
  const __m256 zero = _mm256_setzero_ps();
  const __m256i a = _mm256_and_si256(t.off[0], _mm256_castps_si256(t.valid[0]));
  const __m256i b = _mm256_and_si256(t.off[2], _mm256_castps_si256(t.valid[2]));
  // the neighbour, or a tap that reads nothing (a clamped tap repeats x0: its difference to tap
  // 0 must stay 0 in the gradient, so it is no neighbour and takes the general path)
  const __m256 all = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
  const __m256 pa = _mm256_or_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(t.off[1], _mm256_add_epi32(a, vc))),
                                 _mm256_andnot_ps(t.valid[1], all));
  const __m256 pb = _mm256_or_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(t.off[3], _mm256_add_epi32(b, vc))),
                                 _mm256_andnot_ps(t.valid[3], all));
  const __m256i inside = _mm256_and_si256(_mm256_cmpgt_epi32(lim, a), _mm256_cmpgt_epi32(lim, b));
  const __m256 ok = _mm256_and_ps(_mm256_and_ps(pa, pb), _mm256_castsi256_ps(inside));
  if (_mm256_movemask_ps(ok) != 0xFF) return false;
  alignas(32) int32_t oa[8], ob[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(oa), a);
  _mm256_store_si256(reinterpret_cast<__m256i*>(ob), b);
  __m256 cols[8];  // rows loaded, then transposed in place
  for (int l = 0; l < 8; ++l) cols[l] = _mm256_loadu_ps(tex + oa[l]);
  avx2::transpose8(cols);
  for (int c = 0; c < 4; ++c) {
    v[0][c] = c < kC ? _mm256_and_ps(t.valid[0], cols[c]) : zero;
    v[1][c] = c < kC ? _mm256_and_ps(t.valid[1], cols[kC + c]) : zero;
  }
  for (int l = 0; l < 8; ++l) cols[l] = _mm256_loadu_ps(tex + ob[l]);
  avx2::transpose8(cols);
  for (int c = 0; c < 4; ++c) {
    v[2][c] = c < kC ? _mm256_and_ps(t.valid[2], cols[c]) : zero;
    v[3][c] = c < kC ? _mm256_and_ps(t.valid[3], cols[kC + c]) : zero;
  }
  return true;
}

// wk = ((1 - fx) (1 - fy), fx (1 - fy), (1 - fx) fy, fx fy) times the level weight 1.
PYFAID_AVX2 void weights(const Taps& t, __m256 wk[4]) {
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256 gx = _mm256_sub_ps(one, t.fx), gy = _mm256_sub_ps(one, t.fy);
  wk[0] = _mm256_mul_ps(_mm256_mul_ps(gx, gy), one);
  wk[1] = _mm256_mul_ps(_mm256_mul_ps(t.fx, gy), one);
  wk[2] = _mm256_mul_ps(_mm256_mul_ps(gx, t.fy), one);
  wk[3] = _mm256_mul_ps(_mm256_mul_ps(t.fx, t.fy), one);
}

// Eight pixels' C = 3 or 4 channels, contiguous at p, as channel columns (cols[3] = 0 for 3).
PYFAID_AVX2 void load_rows(const float* p, int64_t C, __m256 cols[4]) {
  if (C == 4) {
    avx2::load_cols4(p, cols[0], cols[1], cols[2], cols[3]);
    return;
  }
  __m128 rows[8];
  for (int l = 0; l < 8; ++l) rows[l] = avx2::load3(p + 3 * l);
  avx2::cols_from_rows(rows, cols[0], cols[1], cols[2], cols[3]);
}

// The inverse: channel columns to eight pixels' C = 3 or 4 contiguous channels at p (for 3,
// each 16-byte store's fourth float is overwritten by the next pixel; none past the eighth).
PYFAID_AVX2 void store_rows(const __m256 cols[4], int64_t C, float* p) {
  const __m256 t0 = _mm256_unpacklo_ps(cols[0], cols[1]), t1 = _mm256_unpackhi_ps(cols[0], cols[1]);
  const __m256 t2 = _mm256_unpacklo_ps(cols[2], cols[3]), t3 = _mm256_unpackhi_ps(cols[2], cols[3]);
  const __m256 r[4] = {_mm256_shuffle_ps(t0, t2, 0x44), _mm256_shuffle_ps(t0, t2, 0xEE),
                       _mm256_shuffle_ps(t1, t3, 0x44), _mm256_shuffle_ps(t1, t3, 0xEE)};
  // r[l] holds pixel l in its low half and pixel l + 4 in its high half
  if (C == 4) {
    for (int l = 0; l < 4; ++l) {
      _mm_storeu_ps(p + 4 * l, _mm256_castps256_ps128(r[l]));
      _mm_storeu_ps(p + 4 * (l + 4), _mm256_extractf128_ps(r[l], 1));
    }
    return;
  }
  for (int l = 0; l < 4; ++l) _mm_storeu_ps(p + 3 * l, _mm256_castps256_ps128(r[l]));
  for (int l = 0; l < 3; ++l) _mm_storeu_ps(p + 3 * (l + 4), _mm256_extractf128_ps(r[l], 1));
  avx2::store3(p + 21, _mm256_extractf128_ps(r[3], 1));
}

// Per lane, the texel-gradient products of two horizontally adjacent taps a, b (C = 3 or 4):
// rows[l] = (wa g0, .., wa g(C-1), wb g0, .., wb g(C-1), 0...) of pixel l, a product the scalar
// loop skips (zero weight or gradient) as 0.
PYFAID_AVX2 void pair_rows(__m256 wa, __m256 wb, const __m256 gcols[4], int64_t C, __m256 rows[8]) {
  const __m256 zero = _mm256_setzero_ps();
  const __m256 w2[2] = {wa, wb};
  for (int j = 0; j < 8; ++j) rows[j] = zero;  // columns first, transposed in place below
  for (int k = 0; k < 2; ++k) {
    const __m256 wz = _mm256_cmp_ps(w2[k], zero, _CMP_EQ_OQ);
    for (int64_t c = 0; c < C; ++c) {
      const __m256 skip = _mm256_or_ps(wz, _mm256_cmp_ps(gcols[c], zero, _CMP_EQ_OQ));
      rows[k * C + c] = _mm256_andnot_ps(skip, _mm256_mul_ps(w2[k], gcols[c]));
    }
  }
  avx2::transpose8(rows);
}

// dst[0..8) += row where row != 0 (a skipped product keeps dst's bits, as the scalar loop does).
PYFAID_AVX2 void add_row(float* dst, __m256 row) {
  const __m256 old = _mm256_loadu_ps(dst);
  const __m256 keep = _mm256_cmp_ps(row, _mm256_setzero_ps(), _CMP_EQ_OQ);
  _mm256_storeu_ps(dst, _mm256_blendv_ps(_mm256_add_ps(old, row), old, keep));
}

}  // namespace

__attribute__((target("avx2"))) int64_t linear_forward_avx2(const float* tex, int w, int h,
                                                            int64_t C, const float* uv, int64_t n,
                                                            int boundary, float* out) {
  if (C > kMaxChannels) return 0;
  const int64_t texel_len = int64_t(w) * h * C;
  alignas(32) float col[kMaxChannels][8];
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const Taps t = taps8(uv + 2 * i, w, h, C, boundary);
    __m256 wk[4];
    weights(t, wk);
    __m256 v4[4][4];
    if (C == 3 && !load_tap_pairs<3>(tex, t, texel_len, v4)) load_taps<3>(tex, t, v4);
    if (C == 4 && !load_tap_pairs<4>(tex, t, texel_len, v4)) load_taps<4>(tex, t, v4);
    float* o = out + C * i;
    if (C == 3 || C == 4) {
      __m256 acc[4];
      for (int c = 0; c < 4; ++c) {
        acc[c] = _mm256_setzero_ps();
        for (int k = 0; k < 4; ++k) acc[c] = _mm256_add_ps(acc[c], _mm256_mul_ps(wk[k], v4[k][c]));
      }
      store_rows(acc, C, o);
      continue;
    }
    for (int64_t c = 0; c < C; ++c) {
      __m256 v[4];
      gather4(tex, t, c, v);
      __m256 acc = _mm256_setzero_ps();
      for (int k = 0; k < 4; ++k) acc = _mm256_add_ps(acc, _mm256_mul_ps(wk[k], v[k]));
      _mm256_store_ps(col[c], acc);
    }
    for (int l = 0; l < 8; ++l)
      for (int64_t c = 0; c < C; ++c) o[C * l + c] = col[c][l];
  }
  return i;
}

__attribute__((target("avx2"))) int64_t linear_backward_avx2(const float* tex, int w, int h,
                                                             int64_t C, const float* uv,
                                                             const float* grad_out, int64_t n,
                                                             int boundary, float* gtex,
                                                             int64_t gtex_len, float* guv) {
  if (C > kMaxChannels) return 0;
  const int64_t texel_len = int64_t(w) * h * C;
  alignas(32) float wl[4][8];
  alignas(32) int32_t off[4][8], valid[4][8];
  int64_t i = 0;
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256i goff = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                                          _mm256_set1_epi32(static_cast<int>(C)));
  for (; i + 8 <= n; i += 8) {
    const Taps t = taps8(uv + 2 * i, w, h, C, boundary);
    __m256 wk[4];
    weights(t, wk);
    const __m256 gx = _mm256_sub_ps(one, t.fx), gy = _mm256_sub_ps(one, t.fy);
    __m256 dfx = _mm256_setzero_ps(), dfy = _mm256_setzero_ps();
    const float* g = grad_out + C * i;
    __m256 v4[4][4], gcols[4];
    if (C == 3 && !load_tap_pairs<3>(tex, t, texel_len, v4)) load_taps<3>(tex, t, v4);
    if (C == 4 && !load_tap_pairs<4>(tex, t, texel_len, v4)) load_taps<4>(tex, t, v4);
    if (C == 3 || C == 4) load_rows(g, C, gcols);
    for (int64_t c = 0; c < C; ++c) {
      __m256 v[4];
      if (C == 3 || C == 4) {
        for (int k = 0; k < 4; ++k) v[k] = v4[k][c];
      } else {
        gather4(tex, t, c, v);
      }
      const __m256 go = (C == 3 || C == 4) ? gcols[c] : _mm256_i32gather_ps(g + c, goff, 4);
      dfx = _mm256_add_ps(dfx, _mm256_mul_ps(go, _mm256_add_ps(_mm256_mul_ps(gy, _mm256_sub_ps(v[1], v[0])),
                                                               _mm256_mul_ps(t.fy, _mm256_sub_ps(v[3], v[2])))));
      dfy = _mm256_add_ps(dfy, _mm256_mul_ps(go, _mm256_add_ps(_mm256_mul_ps(gx, _mm256_sub_ps(v[2], v[0])),
                                                               _mm256_mul_ps(t.fx, _mm256_sub_ps(v[3], v[1])))));
    }
    // guv = 0 + (1 * dfx) * w, as bilinear_backward's guv[0] += weight * dfx * w (0 where no tap)
    const __m256 gu8 = _mm256_add_ps(_mm256_and_ps(t.ok, _mm256_mul_ps(_mm256_mul_ps(one, dfx), _mm256_set1_ps(float(w)))),
                                     _mm256_setzero_ps());
    const __m256 gv8 = _mm256_add_ps(_mm256_and_ps(t.ok, _mm256_mul_ps(_mm256_mul_ps(one, dfy), _mm256_set1_ps(float(h)))),
                                     _mm256_setzero_ps());
    store_uv(gu8, gv8, guv + 2 * i);
    // Lanes whose four taps are valid, two horizontal pairs, with 8 floats of room at each pair
    // (this thread's buffer): their adds are whole rows, the rest go channel by channel.
    int fast = 0;
    __m256 rows_a[8], rows_b[8];
    if (C == 3 || C == 4) {
      const __m256i vc = _mm256_set1_epi32(static_cast<int>(C));
      const __m256i lim = _mm256_set1_epi32(static_cast<int>(std::min<int64_t>(gtex_len - 7, INT32_MAX)));
      __m256i ok = _mm256_and_si256(_mm256_cmpeq_epi32(t.off[1], _mm256_add_epi32(t.off[0], vc)),
                                    _mm256_cmpeq_epi32(t.off[3], _mm256_add_epi32(t.off[2], vc)));
      ok = _mm256_and_si256(ok, _mm256_and_si256(_mm256_cmpgt_epi32(lim, t.off[0]), _mm256_cmpgt_epi32(lim, t.off[2])));
      const __m256 all = _mm256_and_ps(_mm256_and_ps(t.valid[0], t.valid[1]), _mm256_and_ps(t.valid[2], t.valid[3]));
      fast = gtex_len < 8 ? 0 : _mm256_movemask_ps(_mm256_and_ps(all, _mm256_castsi256_ps(ok)));
      if (fast) {
        pair_rows(wk[0], wk[1], gcols, C, rows_a);
        pair_rows(wk[2], wk[3], gcols, C, rows_b);
      }
    }
    for (int k = 0; k < 4; ++k) _mm256_store_si256(reinterpret_cast<__m256i*>(off[k]), t.off[k]);
    if (fast != 0xFF) {
      for (int k = 0; k < 4; ++k) {
        _mm256_store_ps(wl[k], wk[k]);
        _mm256_store_si256(reinterpret_cast<__m256i*>(valid[k]), _mm256_castps_si256(t.valid[k]));
      }
    }
    for (int l = 0; l < 8; ++l) {
      if (fast & (1 << l)) {
        add_row(gtex + off[0][l], rows_a[l]);
        add_row(gtex + off[2][l], rows_b[l]);
        continue;
      }
      const float* gl = g + C * l;
      for (int64_t c = 0; c < C; ++c) {
        const float gw = gl[c] * 1.0f;
        if (gw == 0.0f) continue;
        for (int k = 0; k < 4; ++k)
          if (valid[k][l] && wl[k][l] != 0.0f) gtex[off[k][l] + c] += wl[k][l] * gw;
      }
    }
  }
  return i;
}

#else

int64_t linear_forward_avx2(const float*, int, int, int64_t, const float*, int64_t, int, float*) {
  return 0;
}
int64_t linear_backward_avx2(const float*, int, int, int64_t, const float*, const float*, int64_t,
                             int, float*, int64_t, float*) {
  return 0;
}

#endif

}  // namespace tex_cpu
}  // namespace pyfaid
