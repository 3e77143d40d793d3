// AVX2 helpers shared by the CPU kernels' SIMD paths (rasterize_cpu_avx2.cpp,
// interpolate_cpu_avx2.cpp). Everything here is compiled for the "avx2" target only (no FMA, so
// products and sums round as in the scalar code); callers check raster_cpu::simd_enabled() at
// run time. PYFAID_HAVE_AVX2_KERNEL is 0 where the compiler cannot target AVX2 (non-x86).
#pragma once

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define PYFAID_HAVE_AVX2_KERNEL 1
#include <immintrin.h>

#include <cfloat>
#include <cstdint>

#define PYFAID_AVX2 __attribute__((target("avx2"), always_inline)) inline

namespace pyfaid {
namespace avx2 {

// Eight rows of four floats to their four columns (row l in lane l).
PYFAID_AVX2 void cols_from_rows(const __m128 rows[8], __m256& x, __m256& y, __m256& z, __m256& w) {
  __m256 c[4];
  for (int l = 0; l < 4; ++l)
    c[l] = _mm256_insertf128_ps(_mm256_castps128_ps256(rows[l]), rows[l + 4], 1);
  const __m256 t0 = _mm256_unpacklo_ps(c[0], c[1]), t1 = _mm256_unpackhi_ps(c[0], c[1]);
  const __m256 t2 = _mm256_unpacklo_ps(c[2], c[3]), t3 = _mm256_unpackhi_ps(c[2], c[3]);
  x = _mm256_shuffle_ps(t0, t2, 0x44);
  y = _mm256_shuffle_ps(t0, t2, 0xEE);
  z = _mm256_shuffle_ps(t1, t3, 0x44);
  w = _mm256_shuffle_ps(t1, t3, 0xEE);
}

// Eight consecutive 4-vectors (32 floats at b) to their four columns.
PYFAID_AVX2 void load_cols4(const float* b, __m256& x, __m256& y, __m256& z, __m256& w) {
  const __m256 a0 = _mm256_loadu_ps(b), a1 = _mm256_loadu_ps(b + 8), a2 = _mm256_loadu_ps(b + 16),
               a3 = _mm256_loadu_ps(b + 24);
  const __m256 b0 = _mm256_permute2f128_ps(a0, a2, 0x20), b1 = _mm256_permute2f128_ps(a0, a2, 0x31);
  const __m256 b2 = _mm256_permute2f128_ps(a1, a3, 0x20), b3 = _mm256_permute2f128_ps(a1, a3, 0x31);
  const __m256 t0 = _mm256_unpacklo_ps(b0, b1), t1 = _mm256_unpackhi_ps(b0, b1);
  const __m256 t2 = _mm256_unpacklo_ps(b2, b3), t3 = _mm256_unpackhi_ps(b2, b3);
  x = _mm256_shuffle_ps(t0, t2, 0x44);
  y = _mm256_shuffle_ps(t0, t2, 0xEE);
  z = _mm256_shuffle_ps(t1, t3, 0x44);
  w = _mm256_shuffle_ps(t1, t3, 0xEE);
}

// Three floats at p as (p[0], p[1], p[2], 0), reading nothing past p[2].
PYFAID_AVX2 __m128 load3(const float* p) {
  const __m128 xy = _mm_castpd_ps(_mm_load_sd(reinterpret_cast<const double*>(p)));
  return _mm_insert_ps(xy, _mm_load_ss(p + 2), 0x20);
}

// The first three floats of x to p (8 + 4 bytes: nothing written past p[2]).
PYFAID_AVX2 void store3(float* p, __m128 x) {
  _mm_store_sd(reinterpret_cast<double*>(p), _mm_castps_pd(x));
  _mm_store_ss(p + 2, _mm_movehl_ps(x, x));
}

// a <= max && a >= -max (false for NaN and +-inf), as raster::t_finite.
PYFAID_AVX2 __m256 finite_mask(__m256 a) {
  const __m256 m = _mm256_set1_ps(FLT_MAX);
  return _mm256_and_ps(_mm256_cmp_ps(a, m, _CMP_LE_OQ),
                       _mm256_cmp_ps(a, _mm256_sub_ps(_mm256_setzero_ps(), m), _CMP_GE_OQ));
}

// Triangle ids of eight pixels from their rast channel 3 (raster::decode_id: id + 1 > 0.5 ->
// int(r3 + 0.5) - 1); `covered` marks the lanes holding one.
PYFAID_AVX2 __m256i decode_ids(__m256 idf, __m256& covered) {
  const __m256 half = _mm256_set1_ps(0.5f);
  covered = _mm256_cmp_ps(idf, half, _CMP_GT_OQ);
  return _mm256_sub_epi32(_mm256_cvttps_epi32(_mm256_add_ps(idf, half)), _mm256_set1_epi32(1));
}

// Vertex indices tv[k][l] = tri[fl[l], k] of eight triangles.
PYFAID_AVX2 void triangle_rows(const int32_t* tri, const int32_t fl[8], int32_t tv[3][8]) {
  for (int l = 0; l < 8; ++l) {
    const int32_t* t = tri + 3 * int64_t(fl[l]);
    tv[0][l] = t[0];
    tv[1][l] = t[1];
    tv[2][l] = t[2];
  }
}

// 8 x 8 transpose: r[l] holds row l; afterwards r[k] holds column k.
PYFAID_AVX2 void transpose8(__m256 r[8]) {
  __m256 t[8], u[8];
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 2; ++i) {
    u[4 * i + 0] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
    u[4 * i + 1] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
    u[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
    u[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
  }
  for (int k = 0; k < 4; ++k) {
    r[k] = _mm256_permute2f128_ps(u[k], u[k + 4], 0x20);
    r[k + 4] = _mm256_permute2f128_ps(u[k], u[k + 4], 0x31);
  }
}

}  // namespace avx2
}  // namespace pyfaid

#else
#define PYFAID_HAVE_AVX2_KERNEL 0
#endif
