// Spherical-harmonic (SH) shading in Deep3DFaceRecon's 27-coefficient convention.
//
//   colour[b, n, c] = albedo[b, n, c] * sum_k Y_k(normal[b, n]) * gamma[b, 9 c + k]
//
// with the 9 real SH basis functions of the normal (x, y, z), in this order and with these signs
// (a = (pi, 2 pi / sqrt 3, 2 pi / sqrt 8), c = (1 / sqrt(4 pi), sqrt 3 / sqrt(4 pi), 3 sqrt 5 / sqrt(12 pi))):
//
//   Y0 =  a0 c0                     Y3 = -a1 c1 x                 Y6 = a2 c2 / (2 sqrt 3) (3 z^2 - 1)
//   Y1 = -a1 c1 y                   Y4 =  a2 c2 x y               Y7 = -a2 c2 x z
//   Y2 =  a1 c1 z                   Y5 = -a2 c2 y z               Y8 = a2 c2 / 2 (x^2 - y^2)
//
// The kernels fold the constants into the coefficients once per batch element, so that per point
// the irradiance of channel c is a polynomial in the monomials
//   m = (1, y, z, x, x y, y z, z^2, x z, x^2 - y^2)
// with coefficients kcoef[c][j] (see fold_sh_coefficients). The backward pass accumulates the sums
// of grad_out * albedo * m_j over the points and maps them back to gamma (unfold_sh_gradient).
// Deep3DFaceRecon's 0.8 ambient offset on gamma[:, 9 c] is NOT applied here.
#pragma once

#include <ATen/ATen.h>

#include <utility>

#include "utils/checks.h"

#if defined(__CUDACC__)
#define PYFAID_HOST_DEVICE __host__ __device__
#else
#define PYFAID_HOST_DEVICE
#endif

namespace pyfaid {
namespace sh {

// Products a_k c_k of the constants above, and the two parts of Y6 = K6Q z^2 - K6C.
constexpr double K0 = 0.88622692545275801;   // a0 c0 = sqrt(pi) / 2
constexpr double K1 = 1.7724538509055160;    // a1 c1 = sqrt(pi)
constexpr double K2 = 2.4270323906946243;    // a2 c2
constexpr double K6C = 0.70062390204974120;  // a2 c2 / (2 sqrt 3)
constexpr double K6Q = 2.1018717061492236;   // 3 a2 c2 / (2 sqrt 3)

// Y_j = monomial_scale(j) * m_j, except Y6 = K6Q z^2 - K6C (a function, so device code can use it).
PYFAID_HOST_DEVICE constexpr double monomial_scale(int j) {
  return j == 0 ? K0 : j == 1 ? -K1 : j == 2 ? K1 : j == 3 ? -K1 : j == 4 ? K2 : j == 5 ? -K2 : j == 6 ? K6Q : j == 7 ? -K2 : 0.5 * K2;
}

// kcoef[c * 9 + j] = coefficient of monomial j for channel c, from gamma[c * 9 + k].
template <typename T>
PYFAID_HOST_DEVICE inline void fold_sh_coefficients(const T* gamma, T* kcoef) {
  for (int c = 0; c < 3; ++c) {
    const T* g = gamma + 9 * c;
    T* k = kcoef + 9 * c;
    k[0] = T(K0) * g[0] - T(K6C) * g[6];
    for (int j = 1; j < 9; ++j) k[j] = T(monomial_scale(j)) * g[j];
  }
}

// grad_gamma[c * 9 + k] from msum[c * 9 + j] = sum over points of grad_out_c * albedo_c * m_j.
template <typename Acc, typename T>
PYFAID_HOST_DEVICE inline void unfold_sh_gradient(const Acc* msum, T* grad_gamma) {
  for (int c = 0; c < 3; ++c) {
    const Acc* s = msum + 9 * c;
    T* g = grad_gamma + 9 * c;
    g[0] = static_cast<T>(K0 * s[0]);
    for (int j = 1; j < 9; ++j) g[j] = static_cast<T>(monomial_scale(j) * s[j]);
    g[6] = static_cast<T>(K6Q * s[6] - K6C * s[0]);
  }
}

}  // namespace sh

// All argument checks of sh_shading (CPU and CUDA, same messages). Returns (B, N).
inline std::pair<int64_t, int64_t> check_sh_shading_args(const at::Tensor& normals,
                                                         const at::Tensor& albedo,
                                                         const at::Tensor& gamma, const char* op) {
  check_floating(normals, "normals", op);
  TORCH_CHECK(normals.dim() == 3 && normals.size(2) == 3, op,
              ": `normals` must have shape [B, N, 3], got ", normals.sizes());
  TORCH_CHECK(albedo.defined() && albedo.sizes() == normals.sizes(), op,
              ": `albedo` must have the shape of `normals` ", normals.sizes(), ", got ",
              albedo.defined() ? albedo.sizes() : at::IntArrayRef{});
  check_tensor(albedo, "albedo", normals.scalar_type(), 3, op);
  check_tensor(gamma, "gamma", normals.scalar_type(), 2, op);
  TORCH_CHECK(gamma.size(0) == normals.size(0) && gamma.size(1) == 27, op,
              ": `gamma` must have shape [B, 27] = [", normals.size(0),
              ", 27] (3 colour channels x 9 SH coefficients), got ", gamma.sizes());
  check_same_device(albedo, "albedo", normals, "normals", op);
  check_same_device(gamma, "gamma", normals, "normals", op);
  return {normals.size(0), normals.size(1)};
}

// All argument checks of sh_shading_backward: those of sh_shading, and grad_out with the shape,
// dtype and device of normals. Returns (B, N).
inline std::pair<int64_t, int64_t> check_sh_shading_backward_args(const at::Tensor& grad_out,
                                                                  const at::Tensor& normals,
                                                                  const at::Tensor& albedo,
                                                                  const at::Tensor& gamma,
                                                                  const char* op) {
  const auto sizes = check_sh_shading_args(normals, albedo, gamma, op);
  TORCH_CHECK(grad_out.defined() && grad_out.sizes() == normals.sizes(), op,
              ": `grad_out` must have the shape of `normals` ", normals.sizes());
  check_tensor(grad_out, "grad_out", normals.scalar_type(), 3, op);
  check_same_device(grad_out, "grad_out", normals, "normals", op);
  return sizes;
}

at::Tensor sh_shading_cpu(const at::Tensor& normals, const at::Tensor& albedo, const at::Tensor& gamma);
std::tuple<at::Tensor, at::Tensor, at::Tensor> sh_shading_backward_cpu(const at::Tensor& grad_out,
                                                                       const at::Tensor& normals,
                                                                       const at::Tensor& albedo,
                                                                       const at::Tensor& gamma);

}  // namespace pyfaid
