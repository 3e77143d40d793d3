// AVX2 kernels of CPU interpolation for float32 and C = 3 (colours, normals, positions: the
// renderer's case), eight pixels per step. Per lane the arithmetic is the scalar kernel's, in the
// same order and without FMA, and the backward adds the lanes' gradients in pixel order, so the
// results are bit-identical to the scalar path (the tests check it).
#include "interpolate/interpolate_cpu.h"
#include "utils/avx2.h"

namespace pyfaid {
namespace interp_cpu {

#if PYFAID_HAVE_AVX2_KERNEL

namespace {

using avx2::load3;

// Columns x, y, z of eight 3-vectors at base + 3 * idx[l].
PYFAID_AVX2 void load_cols3(const float* base, const int32_t* idx, __m256& x, __m256& y,
                            __m256& z) {
  __m128 rows[8];
  for (int l = 0; l < 8; ++l) rows[l] = load3(base + 3 * int64_t(idx[l]));
  __m256 unused;
  avx2::cols_from_rows(rows, x, y, z, unused);
}

// One block of eight pixels: (u, v) and coverage from rast, and the attributes a[k][c] of each
// lane's triangle vertices (uncovered lanes read triangle 0). False when a lane holds an id
// beyond F (the caller's scalar path reports it); `any` is false when no lane is covered (a
// and tv are then not loaded).
PYFAID_AVX2 bool load_block(const float* rast, const float* attr, const int32_t* tri, int64_t F,
                            __m256& u, __m256& v, __m256& covered, bool& any, int32_t tv[3][8],
                            __m256 a[3][3]) {
  __m256 z, idf;
  avx2::load_cols4(rast, u, v, z, idf);
  const __m256i f = avx2::decode_ids(idf, covered);
  const __m256i cov = _mm256_castps_si256(covered);
  const __m256i beyond = _mm256_and_si256(cov, _mm256_cmpgt_epi32(f, _mm256_set1_epi32(int(F - 1))));
  if (!_mm256_testz_si256(beyond, beyond)) return false;
  any = _mm256_movemask_ps(covered) != 0;
  if (!any) return true;
  alignas(32) int32_t fl[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(fl), _mm256_and_si256(cov, f));
  avx2::triangle_rows(tri, fl, tv);
  for (int k = 0; k < 3; ++k) load_cols3(attr, tv[k], a[k][0], a[k][1], a[k][2]);
  return true;
}

}  // namespace

__attribute__((target("avx2"))) int64_t forward3_avx2(const float* rast, const float* attr,
                                                      const int32_t* tri, int64_t F, int64_t n,
                                                      float* out) {
  const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
  alignas(32) int32_t tv[3][8];
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 u, v, covered, a[3][3];
    bool any;
    if (!load_block(rast + 4 * i, attr, tri, F, u, v, covered, any, tv, a)) break;
    float* dst = out + 3 * i;
    if (!any) {
      _mm256_storeu_ps(dst, zero);
      _mm256_storeu_ps(dst + 8, zero);
      _mm256_storeu_ps(dst + 16, zero);
      continue;
    }
    const __m256 w = _mm256_sub_ps(_mm256_sub_ps(one, u), v);
    __m256 val[3];
    for (int c = 0; c < 3; ++c)
      val[c] = _mm256_and_ps(
          covered, _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(u, a[0][c]), _mm256_mul_ps(v, a[1][c])),
                                 _mm256_mul_ps(w, a[2][c])));
    // Columns to per-pixel rows (lanes l and l + 4 share a register), written 3 floats apart:
    // each 16-byte store's fourth float is overwritten by the next pixel, the last one is not
    // written past the run.
    const __m256 t0 = _mm256_unpacklo_ps(val[0], val[1]), t1 = _mm256_unpackhi_ps(val[0], val[1]);
    const __m256 t2 = _mm256_unpacklo_ps(val[2], zero), t3 = _mm256_unpackhi_ps(val[2], zero);
    const __m256 r[4] = {_mm256_shuffle_ps(t0, t2, 0x44), _mm256_shuffle_ps(t0, t2, 0xEE),
                         _mm256_shuffle_ps(t1, t3, 0x44), _mm256_shuffle_ps(t1, t3, 0xEE)};
    for (int l = 0; l < 4; ++l) _mm_storeu_ps(dst + 3 * l, _mm256_castps256_ps128(r[l]));
    for (int l = 0; l < 3; ++l) _mm_storeu_ps(dst + 3 * (l + 4), _mm256_extractf128_ps(r[l], 1));
    avx2::store3(dst + 21, _mm256_extractf128_ps(r[3], 1));
  }
  return i;
}

// kStride 3: grad_attr is the [V, 3] gradient, three scalar adds per vertex; kStride 4: a
// [V, 4] accumulator, one 16-byte add per vertex (the fourth entry gains +0).
template <int kStride>
__attribute__((target("avx2"))) int64_t backward3(const float* grad_out, const float* attr,
                                                  const float* rast, const int32_t* tri,
                                                  int64_t F, int64_t n, float* grad_attr,
                                                  float* grad_rast) {
  const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
  alignas(32) int32_t tv[3][8];
  alignas(32) float wk[3][8];  // [vertex][lane]: u, v, w
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 u, v, covered, a[3][3], g[3];
    bool any;
    if (!load_block(rast + 4 * i, attr, tri, F, u, v, covered, any, tv, a)) break;
    float* gr = grad_rast + 4 * i;
    if (!any) {
      for (int k = 0; k < 4; ++k) _mm256_storeu_ps(gr + 8 * k, zero);
      continue;
    }
    const int mask = _mm256_movemask_ps(covered);
    {
      // grad_out of the eight pixels: 24 contiguous floats, as three 3-vector columns.
      alignas(32) int32_t seq[8] = {0, 1, 2, 3, 4, 5, 6, 7};
      load_cols3(grad_out + 3 * i, seq, g[0], g[1], g[2]);
    }
    const __m256 w = _mm256_sub_ps(_mm256_sub_ps(one, u), v);
    // gu = sum_c g_c (a0_c - a2_c), gv = sum_c g_c (a1_c - a2_c), from 0 in channel order.
    __m256 gu = zero, gv = zero;
    for (int c = 0; c < 3; ++c) {
      gu = _mm256_add_ps(gu, _mm256_mul_ps(g[c], _mm256_sub_ps(a[0][c], a[2][c])));
      gv = _mm256_add_ps(gv, _mm256_mul_ps(g[c], _mm256_sub_ps(a[1][c], a[2][c])));
    }
    gu = _mm256_and_ps(covered, gu);
    gv = _mm256_and_ps(covered, gv);
    {
      // (gu, gv, 0, 0) rows of the eight pixels.
      const __m256 t0 = _mm256_unpacklo_ps(gu, gv), t1 = _mm256_unpackhi_ps(gu, gv);
      const __m256 r0 = _mm256_shuffle_ps(t0, zero, 0x44), r1 = _mm256_shuffle_ps(t0, zero, 0xEE);
      const __m256 r2 = _mm256_shuffle_ps(t1, zero, 0x44), r3 = _mm256_shuffle_ps(t1, zero, 0xEE);
      _mm256_storeu_ps(gr, _mm256_permute2f128_ps(r0, r1, 0x20));
      _mm256_storeu_ps(gr + 8, _mm256_permute2f128_ps(r2, r3, 0x20));
      _mm256_storeu_ps(gr + 16, _mm256_permute2f128_ps(r0, r1, 0x31));
      _mm256_storeu_ps(gr + 24, _mm256_permute2f128_ps(r2, r3, 0x31));
    }
    _mm256_store_ps(wk[0], u);
    _mm256_store_ps(wk[1], v);
    _mm256_store_ps(wk[2], w);
    for (int todo = mask; todo; todo &= todo - 1) {
      const int l = __builtin_ctz(todo);
      const float* gl = grad_out + 3 * (i + l);
      if constexpr (kStride == 4) {
        const __m128 grow = load3(gl);
        for (int k = 0; k < 3; ++k) {
          float* ga = grad_attr + 4 * int64_t(tv[k][l]);
          _mm_storeu_ps(ga, _mm_add_ps(_mm_loadu_ps(ga), _mm_mul_ps(_mm_set1_ps(wk[k][l]), grow)));
        }
      } else {
        for (int k = 0; k < 3; ++k) {
          float* ga = grad_attr + 3 * int64_t(tv[k][l]);
          ga[0] += wk[k][l] * gl[0];
          ga[1] += wk[k][l] * gl[1];
          ga[2] += wk[k][l] * gl[2];
        }
      }
    }
  }
  return i;
}

int64_t backward3_avx2(const float* grad_out, const float* attr, const float* rast,
                       const int32_t* tri, int64_t F, int64_t n, float* grad_attr,
                       float* grad_rast) {
  return backward3<3>(grad_out, attr, rast, tri, F, n, grad_attr, grad_rast);
}

int64_t backward3_acc4_avx2(const float* grad_out, const float* attr, const float* rast,
                            const int32_t* tri, int64_t F, int64_t n, float* acc,
                            float* grad_rast) {
  return backward3<4>(grad_out, attr, rast, tri, F, n, acc, grad_rast);
}

#else

int64_t forward3_avx2(const float*, const float*, const int32_t*, int64_t, int64_t, float*) {
  return 0;
}
int64_t backward3_avx2(const float*, const float*, const float*, const int32_t*, int64_t, int64_t,
                       float*, float*) {
  return 0;
}
int64_t backward3_acc4_avx2(const float*, const float*, const float*, const int32_t*, int64_t,
                            int64_t, float*, float*) {
  return 0;
}

#endif

}  // namespace interp_cpu
}  // namespace pyfaid
