// CUDA interpolation: one thread per pixel (the CPU kernel's loop body); the backward adds into
// the per-vertex gradients with atomics. Pixels whose id exceeds tri's rows are treated as empty
// (the CPU kernel raises; a device-side error would need a sync on every call).
#include <ATen/cuda/Atomic.cuh>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <tuple>

#include "interpolate/interpolate.h"
#include "utils/cuda_launch.cuh"

namespace pyfaid {
namespace {

template <typename T>
__global__ void interpolate_kernel(const T* __restrict__ attr, const T* __restrict__ rast,
                                   const int32_t* __restrict__ tri, T* __restrict__ out, int64_t B,
                                   int64_t Ba, int64_t V, int64_t C, int64_t P, int64_t F) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= B * P) return;
  const T* r = rast + 4 * i;
  T* o = out + C * i;
  const int64_t f = raster::decode_id(r[3]);
  if (f < 0 || f >= F) {
    for (int64_t c = 0; c < C; ++c) o[c] = T(0);
    return;
  }
  const T* a = attr + (Ba == 1 ? 0 : i / P) * V * C;
  const T* a0 = a + C * tri[3 * f];
  const T* a1 = a + C * tri[3 * f + 1];
  const T* a2 = a + C * tri[3 * f + 2];
  const T u = r[0], v = r[1], w = T(1) - r[0] - r[1];
  for (int64_t c = 0; c < C; ++c) o[c] = u * a0[c] + v * a1[c] + w * a2[c];
}

template <typename T>
__global__ void interpolate_backward_kernel(const T* __restrict__ grad_out,
                                            const T* __restrict__ attr,
                                            const T* __restrict__ rast,
                                            const int32_t* __restrict__ tri,
                                            T* __restrict__ grad_attr, T* __restrict__ grad_rast,
                                            int64_t B, int64_t Ba, int64_t V, int64_t C, int64_t P,
                                            int64_t F) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= B * P) return;
  const T* r = rast + 4 * i;
  T* gr = grad_rast + 4 * i;
  gr[0] = gr[1] = gr[2] = gr[3] = T(0);
  const int64_t f = raster::decode_id(r[3]);
  if (f < 0 || f >= F) return;
  const int64_t ab = (Ba == 1 ? 0 : i / P) * V * C;
  const int64_t t0 = C * tri[3 * f], t1 = C * tri[3 * f + 1], t2 = C * tri[3 * f + 2];
  const T* a = attr + ab;
  T* ga = grad_attr + ab;
  const T* g = grad_out + C * i;
  const T u = r[0], v = r[1], w = T(1) - r[0] - r[1];
  T gu = T(0), gv = T(0);
  for (int64_t c = 0; c < C; ++c) {
    const T gc = g[c];
    gu += gc * (a[t0 + c] - a[t2 + c]);
    gv += gc * (a[t1 + c] - a[t2 + c]);
    gpuAtomicAdd(ga + t0 + c, u * gc);
    gpuAtomicAdd(ga + t1 + c, v * gc);
    gpuAtomicAdd(ga + t2 + c, w * gc);
  }
  gr[0] = gu;
  gr[1] = gv;
}

at::Tensor interpolate_cuda(const at::Tensor& attr, const at::Tensor& rast, const at::Tensor& tri,
                            bool check_indices, bool /*simd: CPU only*/) {
  const char* op = "pyfaid::interpolate";
  interp::check_interpolate_args(attr, rast, tri, op);
  c10::cuda::CUDAGuard guard(attr.device());
  const int64_t B = rast.size(0), H = rast.size(1), W = rast.size(2);
  const int64_t Ba = attr.size(0), V = attr.size(1), C = attr.size(2), F = tri.size(0);
  if (check_indices) raster::check_tri_range(tri, V, op, "attr");
  auto out = at::empty({B, H, W, C}, attr.options());
  if (out.numel() == 0) return out;
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(attr.scalar_type(), "interpolate_cuda", [&] {
    interpolate_kernel<scalar_t><<<blocks_for(B * H * W, kThreads), kThreads, 0, stream>>>(
        attr.data_ptr<scalar_t>(), rast.data_ptr<scalar_t>(), tri.data_ptr<int32_t>(),
        out.data_ptr<scalar_t>(), B, Ba, V, C, H * W, F);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> interpolate_backward_cuda(const at::Tensor& grad_out,
                                                             const at::Tensor& attr,
                                                             const at::Tensor& rast,
                                                             const at::Tensor& tri,
                                                             bool check_indices,
                                                             bool /*simd: CPU only*/) {
  const char* op = "pyfaid::interpolate_backward";
  interp::check_interpolate_backward_args(grad_out, attr, rast, tri, op);
  const int64_t B = rast.size(0), H = rast.size(1), W = rast.size(2);
  const int64_t Ba = attr.size(0), V = attr.size(1), C = attr.size(2), F = tri.size(0);
  c10::cuda::CUDAGuard guard(attr.device());
  if (check_indices) raster::check_tri_range(tri, V, op, "attr");
  auto grad_attr = at::zeros_like(attr);
  auto grad_rast = at::empty_like(rast);  // every pixel is written
  if (rast.numel() == 0 || C == 0) return {grad_attr, grad_rast.zero_()};
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(attr.scalar_type(), "interpolate_backward_cuda", [&] {
    interpolate_backward_kernel<scalar_t><<<blocks_for(B * H * W, kThreads), kThreads, 0, stream>>>(
        grad_out.data_ptr<scalar_t>(), attr.data_ptr<scalar_t>(), rast.data_ptr<scalar_t>(),
        tri.data_ptr<int32_t>(), grad_attr.data_ptr<scalar_t>(), grad_rast.data_ptr<scalar_t>(), B,
        Ba, V, C, H * W, F);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {grad_attr, grad_rast};
}

}  // namespace

TORCH_LIBRARY_IMPL(pyfaid, CUDA, m) {
  m.impl("interpolate", &interpolate_cuda);
  m.impl("interpolate_backward", &interpolate_backward_cuda);
}

}  // namespace pyfaid
