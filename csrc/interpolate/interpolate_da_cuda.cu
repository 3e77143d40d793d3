// CUDA kernels of interpolate_da and its backward: one thread per pixel (the CPU kernel's loop
// body, interpolate_da.h); the backward adds into the attribute gradient with atomics. The
// channel list goes to the device through pinned memory, without a host synchronisation.
#include <ATen/cuda/Atomic.cuh>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <tuple>
#include <vector>

#include "interpolate/interpolate_da.h"
#include "utils/cuda_launch.cuh"

namespace pyfaid {
namespace {

// diff_attrs on attr's device (an asynchronous copy from pinned host memory).
at::Tensor channels_on_device(at::IntArrayRef diff_attrs, const at::Device& device) {
  const std::vector<int32_t> diff = interp::channel_list(diff_attrs);
  auto host = at::empty({static_cast<int64_t>(diff.size())},
                        at::TensorOptions().dtype(at::kInt).pinned_memory(true));
  std::copy(diff.begin(), diff.end(), host.data_ptr<int32_t>());
  return host.to(device, /*non_blocking=*/true);
}

template <typename T>
__global__ void interpolate_da_kernel(const T* __restrict__ attr, const T* __restrict__ rast,
                                      const int32_t* __restrict__ tri, const T* __restrict__ db,
                                      const int32_t* __restrict__ diff, int64_t n,
                                      T* __restrict__ out, int64_t B, int64_t Ba, int64_t V,
                                      int64_t C, int64_t P, int64_t F) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= B * P) return;
  T* o = out + 2 * n * i;
  const int64_t f = raster::decode_id(rast[4 * i + 3]);
  if (f < 0 || f >= F) {
    for (int64_t k = 0; k < 2 * n; ++k) o[k] = T(0);
    return;
  }
  const T* a = attr + (Ba == 1 ? 0 : i / P) * V * C;
  const T d[4] = {db[4 * i], db[4 * i + 1], db[4 * i + 2], db[4 * i + 3]};
  interp::attr_da(a + C * tri[3 * f], a + C * tri[3 * f + 1], a + C * tri[3 * f + 2], d, diff, n,
                  o);
}

template <typename T>
__global__ void interpolate_da_backward_kernel(
    const T* __restrict__ grad_da, const T* __restrict__ attr, const T* __restrict__ rast,
    const int32_t* __restrict__ tri, const T* __restrict__ db, const int32_t* __restrict__ diff,
    int64_t n, T* __restrict__ grad_attr, T* __restrict__ grad_db, int64_t B, int64_t Ba,
    int64_t V, int64_t C, int64_t P, int64_t F) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= B * P) return;
  T gd[4] = {T(0), T(0), T(0), T(0)};
  const int64_t f = raster::decode_id(rast[4 * i + 3]);
  if (f >= 0 && f < F) {
    const int64_t base = (Ba == 1 ? 0 : i / P) * V * C;
    const int64_t t0 = C * tri[3 * f], t1 = C * tri[3 * f + 1], t2 = C * tri[3 * f + 2];
    const T* a = attr + base;
    T* ga = grad_attr + base;
    const T* g = grad_da + 2 * n * i;
    const T d[4] = {db[4 * i], db[4 * i + 1], db[4 * i + 2], db[4 * i + 3]};
    for (int64_t k = 0; k < n; ++k) {
      const int32_t c = diff[k];
      const T gx = g[2 * k], gy = g[2 * k + 1];
      const T d0 = a[t0 + c] - a[t2 + c], d1 = a[t1 + c] - a[t2 + c];
      gd[0] += gx * d0;
      gd[1] += gy * d0;
      gd[2] += gx * d1;
      gd[3] += gy * d1;
      const T w0 = gx * d[0] + gy * d[1], w1 = gx * d[2] + gy * d[3];
      gpuAtomicAdd(ga + t0 + c, w0);
      gpuAtomicAdd(ga + t1 + c, w1);
      gpuAtomicAdd(ga + t2 + c, -(w0 + w1));
    }
  }
  for (int k = 0; k < 4; ++k) grad_db[4 * i + k] = gd[k];
}

at::Tensor interpolate_da_cuda(const at::Tensor& attr, const at::Tensor& rast,
                               const at::Tensor& tri, const at::Tensor& rast_db,
                               at::IntArrayRef diff_attrs, bool check_indices) {
  const char* op = "pyfaid::interpolate_da";
  interp::check_interpolate_da_args(nullptr, attr, rast, tri, rast_db, diff_attrs, op);
  c10::cuda::CUDAGuard guard(attr.device());
  const int64_t B = rast.size(0), H = rast.size(1), W = rast.size(2);
  const int64_t Ba = attr.size(0), V = attr.size(1), C = attr.size(2), F = tri.size(0);
  if (check_indices) raster::check_tri_range(tri, V, op, "attr");
  const int64_t n = static_cast<int64_t>(diff_attrs.size());
  auto out = at::empty({B, H, W, 2 * n}, attr.options());
  if (out.numel() == 0) return out;
  auto diff = channels_on_device(diff_attrs, attr.device());
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(attr.scalar_type(), "interpolate_da_cuda", [&] {
    interpolate_da_kernel<scalar_t><<<blocks_for(B * H * W, kThreads), kThreads, 0, stream>>>(
        attr.data_ptr<scalar_t>(), rast.data_ptr<scalar_t>(), tri.data_ptr<int32_t>(),
        rast_db.data_ptr<scalar_t>(), diff.data_ptr<int32_t>(), n, out.data_ptr<scalar_t>(), B,
        Ba, V, C, H * W, F);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> interpolate_da_backward_cuda(
    const at::Tensor& grad_da, const at::Tensor& attr, const at::Tensor& rast,
    const at::Tensor& tri, const at::Tensor& rast_db, at::IntArrayRef diff_attrs,
    bool check_indices) {
  const char* op = "pyfaid::interpolate_da_backward";
  interp::check_interpolate_da_args(&grad_da, attr, rast, tri, rast_db, diff_attrs, op);
  c10::cuda::CUDAGuard guard(attr.device());
  const int64_t B = rast.size(0), H = rast.size(1), W = rast.size(2);
  const int64_t Ba = attr.size(0), V = attr.size(1), C = attr.size(2), F = tri.size(0);
  if (check_indices) raster::check_tri_range(tri, V, op, "attr");
  auto grad_attr = at::zeros_like(attr);
  auto grad_db = at::empty_like(rast_db);  // every pixel is written
  const int64_t n = static_cast<int64_t>(diff_attrs.size());
  if (rast.numel() == 0) return {grad_attr, grad_db};
  auto diff = channels_on_device(diff_attrs, attr.device());
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(attr.scalar_type(), "interpolate_da_backward_cuda", [&] {
    interpolate_da_backward_kernel<scalar_t>
        <<<blocks_for(B * H * W, kThreads), kThreads, 0, stream>>>(
            grad_da.data_ptr<scalar_t>(), attr.data_ptr<scalar_t>(), rast.data_ptr<scalar_t>(),
            tri.data_ptr<int32_t>(), rast_db.data_ptr<scalar_t>(), diff.data_ptr<int32_t>(), n,
            grad_attr.data_ptr<scalar_t>(), grad_db.data_ptr<scalar_t>(), B, Ba, V, C, H * W, F);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {grad_attr, grad_db};
}

}  // namespace

TORCH_LIBRARY_IMPL(pyfaid, CUDA, m) {
  m.impl("interpolate_da", &interpolate_da_cuda);
  m.impl("interpolate_da_backward", &interpolate_da_backward_cuda);
}

}  // namespace pyfaid
