// CPU kernels of sh_shading / sh_shading_backward (convention: sh_shading.h).
//
// Points are processed in chunks of CHUNK points of one batch element; chunks run in parallel
// (at::parallel_for). The per-point loops are written for the auto-vectoriser (`omp simd`, the
// interleaved xyz layout becomes shuffles) and compiled three times, for AVX-512, AVX2+FMA and the
// baseline ISA, with the best one picked when the library loads (GCC/Clang target_clones): the
// wheel's default flags only assume SSE2. The backward pass reduces grad_gamma over the points
// without races: every chunk writes its 27 partial sums to its own row, and the rows are added in
// double precision in a fixed order (deterministic).

#include "sh_shading/sh_shading.h"

#include <ATen/Parallel.h>
#include <torch/library.h>

#include <utils/checks.h>

#include <vector>

#if defined(__x86_64__) && defined(__GNUC__) && defined(__has_attribute)
#if __has_attribute(target_clones) && !defined(__clang__)
#define PYFAID_SIMD_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#endif
#endif
#ifndef PYFAID_SIMD_CLONES
#define PYFAID_SIMD_CLONES
#endif

#if defined(__GNUC__)
#define PYFAID_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define PYFAID_ALWAYS_INLINE inline
#endif

namespace pyfaid {

namespace {

constexpr int64_t CHUNK = 4096;  // points per task (fits the three [CHUNK, 3] rows in L2)

// out[i, c] = albedo[i, c] * sum_j k[c][j] m_j(normal[i]) for `count` points.
template <typename T>
PYFAID_ALWAYS_INLINE void sh_forward_points(const T* __restrict n, const T* __restrict alb,
                                            const T* __restrict k, T* __restrict out, int64_t count) {
  const T r0 = k[0], r1 = k[1], r2 = k[2], r3 = k[3], r4 = k[4], r5 = k[5], r6 = k[6], r7 = k[7], r8 = k[8];
  const T g0 = k[9], g1 = k[10], g2 = k[11], g3 = k[12], g4 = k[13], g5 = k[14], g6 = k[15], g7 = k[16],
          g8 = k[17];
  const T b0 = k[18], b1 = k[19], b2 = k[20], b3 = k[21], b4 = k[22], b5 = k[23], b6 = k[24], b7 = k[25],
          b8 = k[26];
#pragma omp simd
  for (int64_t i = 0; i < count; ++i) {
    const T x = n[3 * i], y = n[3 * i + 1], z = n[3 * i + 2];
    const T xy = x * y, yz = y * z, zz = z * z, xz = x * z, d = x * x - y * y;
    const T lr = r0 + r1 * y + r2 * z + r3 * x + r4 * xy + r5 * yz + r6 * zz + r7 * xz + r8 * d;
    const T lg = g0 + g1 * y + g2 * z + g3 * x + g4 * xy + g5 * yz + g6 * zz + g7 * xz + g8 * d;
    const T lb = b0 + b1 * y + b2 * z + b3 * x + b4 * xy + b5 * yz + b6 * zz + b7 * xz + b8 * d;
    out[3 * i] = lr * alb[3 * i];
    out[3 * i + 1] = lg * alb[3 * i + 1];
    out[3 * i + 2] = lb * alb[3 * i + 2];
  }
}

// Gradients for `count` points; msum[c * 9 + j] receives sum_i grad_out[i, c] albedo[i, c] m_j.
template <typename T>
PYFAID_ALWAYS_INLINE void sh_backward_points(const T* __restrict go, const T* __restrict n,
                                             const T* __restrict alb, const T* __restrict k,
                                             T* __restrict grad_n, T* __restrict grad_alb,
                                             double* __restrict msum, int64_t count) {
  const T r0 = k[0], r1 = k[1], r2 = k[2], r3 = k[3], r4 = k[4], r5 = k[5], r6 = k[6], r7 = k[7], r8 = k[8];
  const T g0 = k[9], g1 = k[10], g2 = k[11], g3 = k[12], g4 = k[13], g5 = k[14], g6 = k[15], g7 = k[16],
          g8 = k[17];
  const T b0 = k[18], b1 = k[19], b2 = k[20], b3 = k[21], b4 = k[22], b5 = k[23], b6 = k[24], b7 = k[25],
          b8 = k[26];
  // Sums of s_c * m_j; s_c * 1 is sr, sg, sb.
  T sr = 0, sry = 0, srz = 0, srx = 0, srxy = 0, sryz = 0, srzz = 0, srxz = 0, srd = 0;
  T sg = 0, sgy = 0, sgz = 0, sgx = 0, sgxy = 0, sgyz = 0, sgzz = 0, sgxz = 0, sgd = 0;
  T sb = 0, sby = 0, sbz = 0, sbx = 0, sbxy = 0, sbyz = 0, sbzz = 0, sbxz = 0, sbd = 0;
#pragma omp simd reduction(+ : sr, sry, srz, srx, srxy, sryz, srzz, srxz, srd, sg, sgy, sgz, sgx, sgxy, \
                               sgyz, sgzz, sgxz, sgd, sb, sby, sbz, sbx, sbxy, sbyz, sbzz, sbxz, sbd)
  for (int64_t i = 0; i < count; ++i) {
    const T x = n[3 * i], y = n[3 * i + 1], z = n[3 * i + 2];
    const T xy = x * y, yz = y * z, zz = z * z, xz = x * z, d = x * x - y * y;
    const T lr = r0 + r1 * y + r2 * z + r3 * x + r4 * xy + r5 * yz + r6 * zz + r7 * xz + r8 * d;
    const T lg = g0 + g1 * y + g2 * z + g3 * x + g4 * xy + g5 * yz + g6 * zz + g7 * xz + g8 * d;
    const T lb = b0 + b1 * y + b2 * z + b3 * x + b4 * xy + b5 * yz + b6 * zz + b7 * xz + b8 * d;
    const T gor = go[3 * i], gog = go[3 * i + 1], gob = go[3 * i + 2];
    grad_alb[3 * i] = gor * lr;
    grad_alb[3 * i + 1] = gog * lg;
    grad_alb[3 * i + 2] = gob * lb;
    const T s0 = gor * alb[3 * i], s1 = gog * alb[3 * i + 1], s2 = gob * alb[3 * i + 2];
    sr += s0; sry += s0 * y; srz += s0 * z; srx += s0 * x; srxy += s0 * xy;
    sryz += s0 * yz; srzz += s0 * zz; srxz += s0 * xz; srd += s0 * d;
    sg += s1; sgy += s1 * y; sgz += s1 * z; sgx += s1 * x; sgxy += s1 * xy;
    sgyz += s1 * yz; sgzz += s1 * zz; sgxz += s1 * xz; sgd += s1 * d;
    sb += s2; sby += s2 * y; sbz += s2 * z; sbx += s2 * x; sbxy += s2 * xy;
    sbyz += s2 * yz; sbzz += s2 * zz; sbxz += s2 * xz; sbd += s2 * d;
    // d(irradiance)/d(normal), weighted by s_c and summed over the channels.
    const T w1 = s0 * r1 + s1 * g1 + s2 * b1, w2 = s0 * r2 + s1 * g2 + s2 * b2;
    const T w3 = s0 * r3 + s1 * g3 + s2 * b3, w4 = s0 * r4 + s1 * g4 + s2 * b4;
    const T w5 = s0 * r5 + s1 * g5 + s2 * b5, w6 = s0 * r6 + s1 * g6 + s2 * b6;
    const T w7 = s0 * r7 + s1 * g7 + s2 * b7, w8 = s0 * r8 + s1 * g8 + s2 * b8;
    grad_n[3 * i] = w3 + w4 * y + w7 * z + T(2) * w8 * x;
    grad_n[3 * i + 1] = w1 + w4 * x + w5 * z - T(2) * w8 * y;
    grad_n[3 * i + 2] = w2 + w5 * y + T(2) * w6 * z + w7 * x;
  }
  const T sums[27] = {sr, sry, srz, srx, srxy, sryz, srzz, srxz, srd, sg, sgy, sgz, sgx, sgxy,
                      sgyz, sgzz, sgxz, sgd, sb, sby, sbz, sbx, sbxy, sbyz, sbzz, sbxz, sbd};
  for (int j = 0; j < 27; ++j) msum[j] = static_cast<double>(sums[j]);
}

// Non-template entry points, so that target_clones can compile one copy per ISA.
PYFAID_SIMD_CLONES void sh_forward_f32(const float* n, const float* alb, const float* k, float* out,
                                       int64_t count) {
  sh_forward_points<float>(n, alb, k, out, count);
}
PYFAID_SIMD_CLONES void sh_forward_f64(const double* n, const double* alb, const double* k, double* out,
                                       int64_t count) {
  sh_forward_points<double>(n, alb, k, out, count);
}
PYFAID_SIMD_CLONES void sh_backward_f32(const float* go, const float* n, const float* alb, const float* k,
                                        float* grad_n, float* grad_alb, double* msum, int64_t count) {
  sh_backward_points<float>(go, n, alb, k, grad_n, grad_alb, msum, count);
}
PYFAID_SIMD_CLONES void sh_backward_f64(const double* go, const double* n, const double* alb,
                                        const double* k, double* grad_n, double* grad_alb, double* msum,
                                        int64_t count) {
  sh_backward_points<double>(go, n, alb, k, grad_n, grad_alb, msum, count);
}

inline void sh_forward(const float* n, const float* a, const float* k, float* o, int64_t c) {
  sh_forward_f32(n, a, k, o, c);
}
inline void sh_forward(const double* n, const double* a, const double* k, double* o, int64_t c) {
  sh_forward_f64(n, a, k, o, c);
}
inline void sh_backward(const float* go, const float* n, const float* a, const float* k, float* gn,
                        float* ga, double* s, int64_t c) {
  sh_backward_f32(go, n, a, k, gn, ga, s, c);
}
inline void sh_backward(const double* go, const double* n, const double* a, const double* k, double* gn,
                        double* ga, double* s, int64_t c) {
  sh_backward_f64(go, n, a, k, gn, ga, s, c);
}

// Folded coefficients for every batch element: [B, 27].
template <typename T>
std::vector<T> fold_all(const at::Tensor& gamma, int64_t B) {
  std::vector<T> kcoef(static_cast<size_t>(B) * 27);
  const T* g = gamma.data_ptr<T>();
  for (int64_t b = 0; b < B; ++b) sh::fold_sh_coefficients<T>(g + 27 * b, kcoef.data() + 27 * b);
  return kcoef;
}

}  // namespace

at::Tensor sh_shading_cpu(const at::Tensor& normals, const at::Tensor& albedo, const at::Tensor& gamma) {
  const char* op = "sh_shading";
  auto [B, N] = check_sh_shading_args(normals, albedo, gamma, op);
  TORCH_CHECK(normals.device().is_cpu(), op, ": `normals` must be a CPU tensor here");
  auto out = at::empty_like(normals);
  if (B == 0 || N == 0) return out;
  const int64_t chunks = (N + CHUNK - 1) / CHUNK;
  AT_DISPATCH_FLOATING_TYPES(normals.scalar_type(), "sh_shading_cpu", [&] {
    const std::vector<scalar_t> kcoef = fold_all<scalar_t>(gamma, B);
    const scalar_t* n = normals.data_ptr<scalar_t>();
    const scalar_t* a = albedo.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    at::parallel_for(0, B * chunks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t) {
        const int64_t b = t / chunks, start = (t % chunks) * CHUNK;
        const int64_t count = std::min(CHUNK, N - start);
        const int64_t off = (b * N + start) * 3;
        sh_forward(n + off, a + off, kcoef.data() + 27 * b, o + off, count);
      }
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> sh_shading_backward_cpu(const at::Tensor& grad_out,
                                                                       const at::Tensor& normals,
                                                                       const at::Tensor& albedo,
                                                                       const at::Tensor& gamma) {
  const char* op = "sh_shading_backward";
  auto [B, N] = check_sh_shading_backward_args(grad_out, normals, albedo, gamma, op);
  TORCH_CHECK(normals.device().is_cpu(), op, ": `normals` must be a CPU tensor here");
  auto grad_normals = at::empty_like(normals);
  auto grad_albedo = at::empty_like(albedo);
  auto grad_gamma = at::zeros_like(gamma);
  if (B == 0 || N == 0) return {grad_normals, grad_albedo, grad_gamma};
  const int64_t chunks = (N + CHUNK - 1) / CHUNK;
  // One row of 27 partial sums per task, reduced below in a fixed order.
  std::vector<double> partial(static_cast<size_t>(B * chunks) * 27);
  AT_DISPATCH_FLOATING_TYPES(normals.scalar_type(), "sh_shading_backward_cpu", [&] {
    const std::vector<scalar_t> kcoef = fold_all<scalar_t>(gamma, B);
    const scalar_t* go = grad_out.data_ptr<scalar_t>();
    const scalar_t* n = normals.data_ptr<scalar_t>();
    const scalar_t* a = albedo.data_ptr<scalar_t>();
    scalar_t* gn = grad_normals.data_ptr<scalar_t>();
    scalar_t* ga = grad_albedo.data_ptr<scalar_t>();
    at::parallel_for(0, B * chunks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t) {
        const int64_t b = t / chunks, start = (t % chunks) * CHUNK;
        const int64_t count = std::min(CHUNK, N - start);
        const int64_t off = (b * N + start) * 3;
        sh_backward(go + off, n + off, a + off, kcoef.data() + 27 * b, gn + off, ga + off,
                    partial.data() + 27 * t, count);
      }
    });
    scalar_t* gg = grad_gamma.data_ptr<scalar_t>();
    for (int64_t b = 0; b < B; ++b) {
      double msum[27] = {0};
      for (int64_t c = 0; c < chunks; ++c) {
        const double* p = partial.data() + 27 * (b * chunks + c);
        for (int j = 0; j < 27; ++j) msum[j] += p[j];
      }
      sh::unfold_sh_gradient<double, scalar_t>(msum, gg + 27 * b);
    }
  });
  return {grad_normals, grad_albedo, grad_gamma};
}

TORCH_LIBRARY_IMPL(pyfaid, CPU, m) {
  m.impl("sh_shading", &sh_shading_cpu);
  m.impl("sh_shading_backward", &sh_shading_backward_cpu);
}

}  // namespace pyfaid
