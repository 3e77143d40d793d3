// CUDA kernels of sh_shading / sh_shading_backward (convention: sh_shading.h).
//
// Forward: one thread per point; every block folds its batch element's 27 coefficients into
// shared memory first. Backward: a fixed number of blocks per batch element walk the points
// (grid-stride); every thread keeps its 27 partial sums of grad_out * albedo * monomial in
// registers, the block reduces them (warp shuffles, then shared memory) and writes one row of a
// partial-sum buffer; a second small kernel adds the rows in double precision in a fixed order
// and maps them to grad_gamma. No atomics: results are deterministic.

#include "sh_shading/sh_shading.h"

#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <utils/checks.h>

namespace pyfaid {

namespace {

constexpr int THREADS = 256;
constexpr int MAX_BLOCKS_PER_BATCH = 64;  // backward: rows of partial sums per batch element

template <typename T>
__device__ __forceinline__ T irradiance(const T* k, T x, T y, T z, T xy, T yz, T zz, T xz, T d) {
  return k[0] + k[1] * y + k[2] * z + k[3] * x + k[4] * xy + k[5] * yz + k[6] * zz + k[7] * xz + k[8] * d;
}

template <typename T>
__global__ void sh_forward_kernel(const T* __restrict__ normals, const T* __restrict__ albedo,
                                  const T* __restrict__ gamma, T* __restrict__ out, int64_t N) {
  __shared__ T k[27];
  const int64_t b = blockIdx.y;
  if (threadIdx.x == 0) sh::fold_sh_coefficients<T>(gamma + 27 * b, k);
  __syncthreads();
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= N) return;
  const int64_t o = (b * N + i) * 3;
  const T x = normals[o], y = normals[o + 1], z = normals[o + 2];
  const T xy = x * y, yz = y * z, zz = z * z, xz = x * z, d = x * x - y * y;
  out[o] = irradiance(k, x, y, z, xy, yz, zz, xz, d) * albedo[o];
  out[o + 1] = irradiance(k + 9, x, y, z, xy, yz, zz, xz, d) * albedo[o + 1];
  out[o + 2] = irradiance(k + 18, x, y, z, xy, yz, zz, xz, d) * albedo[o + 2];
}

template <typename T>
__global__ void sh_backward_kernel(const T* __restrict__ grad_out, const T* __restrict__ normals,
                                   const T* __restrict__ albedo, const T* __restrict__ gamma,
                                   T* __restrict__ grad_normals, T* __restrict__ grad_albedo,
                                   double* __restrict__ partial, int64_t N) {
  __shared__ T k[27];
  __shared__ double warp_sums[THREADS / 32][27];
  const int64_t b = blockIdx.y;
  if (threadIdx.x == 0) sh::fold_sh_coefficients<T>(gamma + 27 * b, k);
  __syncthreads();
  T acc[27];
#pragma unroll
  for (int j = 0; j < 27; ++j) acc[j] = T(0);
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < N; i += stride) {
    const int64_t o = (b * N + i) * 3;
    const T x = normals[o], y = normals[o + 1], z = normals[o + 2];
    const T m[9] = {T(1), y, z, x, x * y, y * z, z * z, x * z, x * x - y * y};
    T w[9];
#pragma unroll
    for (int j = 0; j < 9; ++j) w[j] = T(0);
#pragma unroll
    for (int c = 0; c < 3; ++c) {
      const T* kc = k + 9 * c;
      T l = T(0);
#pragma unroll
      for (int j = 0; j < 9; ++j) l += kc[j] * m[j];
      const T g = grad_out[o + c];
      grad_albedo[o + c] = g * l;
      const T s = g * albedo[o + c];
#pragma unroll
      for (int j = 0; j < 9; ++j) {
        acc[9 * c + j] += s * m[j];
        w[j] += s * kc[j];
      }
    }
    grad_normals[o] = w[3] + w[4] * y + w[7] * z + T(2) * w[8] * x;
    grad_normals[o + 1] = w[1] + w[4] * x + w[5] * z - T(2) * w[8] * y;
    grad_normals[o + 2] = w[2] + w[5] * y + T(2) * w[6] * z + w[7] * x;
  }
  // Block reduction of the 27 sums: warp shuffles, then one row per warp in shared memory.
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
#pragma unroll
  for (int j = 0; j < 27; ++j) {
    double v = static_cast<double>(acc[j]);
    for (int off = 16; off > 0; off /= 2) v += __shfl_down_sync(0xffffffffu, v, off);
    if (lane == 0) warp_sums[warp][j] = v;
  }
  __syncthreads();
  if (threadIdx.x < 27) {
    double v = 0.0;
    for (int w = 0; w < THREADS / 32; ++w) v += warp_sums[w][threadIdx.x];
    partial[(b * gridDim.x + blockIdx.x) * 27 + threadIdx.x] = v;
  }
}

// grad_gamma[b] from the rows partial[b, 0 .. rows) (one block of 32 threads per batch element).
template <typename T>
__global__ void sh_gamma_grad_kernel(const double* __restrict__ partial, T* __restrict__ grad_gamma, int rows) {
  __shared__ double msum[27];
  const int64_t b = blockIdx.x;
  if (threadIdx.x < 27) {
    double v = 0.0;
    for (int r = 0; r < rows; ++r) v += partial[(b * rows + r) * 27 + threadIdx.x];
    msum[threadIdx.x] = v;
  }
  __syncthreads();
  if (threadIdx.x == 0) sh::unfold_sh_gradient<double, T>(msum, grad_gamma + 27 * b);
}

}  // namespace

at::Tensor sh_shading_cuda(const at::Tensor& normals, const at::Tensor& albedo, const at::Tensor& gamma) {
  const char* op = "sh_shading";
  auto [B, N] = check_sh_shading_args(normals, albedo, gamma, op);
  TORCH_CHECK(normals.is_cuda(), op, ": `normals` must be a CUDA tensor here");
  TORCH_CHECK(B <= 65535, op, ": batch size ", B, " exceeds the CUDA kernel's limit of 65535");
  const c10::cuda::CUDAGuard guard(normals.device());
  auto out = at::empty_like(normals);
  if (B == 0 || N == 0) return out;
  const dim3 grid(static_cast<unsigned>((N + THREADS - 1) / THREADS), static_cast<unsigned>(B));
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(normals.scalar_type(), "sh_shading_cuda", [&] {
    sh_forward_kernel<scalar_t><<<grid, THREADS, 0, stream>>>(
        normals.data_ptr<scalar_t>(), albedo.data_ptr<scalar_t>(), gamma.data_ptr<scalar_t>(),
        out.data_ptr<scalar_t>(), N);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> sh_shading_backward_cuda(const at::Tensor& grad_out,
                                                                        const at::Tensor& normals,
                                                                        const at::Tensor& albedo,
                                                                        const at::Tensor& gamma) {
  const char* op = "sh_shading_backward";
  auto [B, N] = check_sh_shading_backward_args(grad_out, normals, albedo, gamma, op);
  TORCH_CHECK(normals.is_cuda(), op, ": `normals` must be a CUDA tensor here");
  TORCH_CHECK(B <= 65535, op, ": batch size ", B, " exceeds the CUDA kernel's limit of 65535");
  const c10::cuda::CUDAGuard guard(normals.device());
  auto grad_normals = at::empty_like(normals);
  auto grad_albedo = at::empty_like(albedo);
  auto grad_gamma = at::zeros_like(gamma);
  if (B == 0 || N == 0) return {grad_normals, grad_albedo, grad_gamma};
  const int rows = static_cast<int>(
      std::min<int64_t>(MAX_BLOCKS_PER_BATCH, (N + 4 * THREADS - 1) / (4 * THREADS)));
  auto partial = at::empty({B, rows, 27}, normals.options().dtype(at::kDouble));
  const dim3 grid(static_cast<unsigned>(rows), static_cast<unsigned>(B));
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(normals.scalar_type(), "sh_shading_backward_cuda", [&] {
    sh_backward_kernel<scalar_t><<<grid, THREADS, 0, stream>>>(
        grad_out.data_ptr<scalar_t>(), normals.data_ptr<scalar_t>(), albedo.data_ptr<scalar_t>(),
        gamma.data_ptr<scalar_t>(), grad_normals.data_ptr<scalar_t>(), grad_albedo.data_ptr<scalar_t>(),
        partial.data_ptr<double>(), N);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    sh_gamma_grad_kernel<scalar_t><<<static_cast<unsigned>(B), 32, 0, stream>>>(
        partial.data_ptr<double>(), grad_gamma.data_ptr<scalar_t>(), rows);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {grad_normals, grad_albedo, grad_gamma};
}

TORCH_LIBRARY_IMPL(pyfaid, CUDA, m) {
  m.impl("sh_shading", &sh_shading_cuda);
  m.impl("sh_shading_backward", &sh_shading_backward_cuda);
}

}  // namespace pyfaid
