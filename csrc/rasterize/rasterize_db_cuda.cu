// CUDA kernels of rasterize_db and its backward: one thread per pixel (the CPU kernel's loop
// body, rasterize_db.h); the backward adds into grad_pos with atomics. No host synchronisation
// unless the caller asks for the index-range check.
#include <ATen/cuda/Atomic.cuh>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "rasterize/rasterize_db.h"
#include "utils/cuda_launch.cuh"

namespace pyfaid {
namespace {

template <typename T>
__global__ void rasterize_db_kernel(const T* __restrict__ pos, const int32_t* __restrict__ tri,
                                    const T* __restrict__ rast, T* __restrict__ db, int64_t B,
                                    int64_t V, int64_t F, int H, int W) {
  const int64_t P = int64_t(H) * W;
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= B * P) return;
  T* o = db + 4 * i;
  const int64_t f = raster::decode_id(rast[4 * i + 3]);
  if (f < 0 || f >= F) {
    o[0] = o[1] = o[2] = o[3] = T(0);
    return;
  }
  const int64_t b = i / P, pix = i % P;
  const T half_w = T(0.5) * T(W), half_h = T(0.5) * T(H);
  T q[3][3];
  raster::triangle_q(pos + b * V * 4, tri, f, half_w, half_h, q);
  T d[4];
  raster::barycentric_db(q, raster::pixel_centre<T>(static_cast<int>(pix % W), W),
                         raster::pixel_centre<T>(static_cast<int>(pix / W), H), d);
  o[0] = d[0];
  o[1] = d[1];
  o[2] = d[2];
  o[3] = d[3];
}

template <typename T>
__global__ void rasterize_db_backward_kernel(const T* __restrict__ grad_db,
                                             const T* __restrict__ pos,
                                             const int32_t* __restrict__ tri,
                                             const T* __restrict__ rast, T* __restrict__ grad_pos,
                                             int64_t B, int64_t V, int64_t F, int H, int W) {
  const int64_t P = int64_t(H) * W;
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= B * P) return;
  const T g[4] = {grad_db[4 * i], grad_db[4 * i + 1], grad_db[4 * i + 2], grad_db[4 * i + 3]};
  if (g[0] == T(0) && g[1] == T(0) && g[2] == T(0) && g[3] == T(0)) return;
  const int64_t f = raster::decode_id(rast[4 * i + 3]);
  if (f < 0 || f >= F) return;
  const int64_t b = i / P, pix = i % P;
  const T half_w = T(0.5) * T(W), half_h = T(0.5) * T(H);
  T q[3][3], gq[3][3];
  raster::triangle_q(pos + b * V * 4, tri, f, half_w, half_h, q);
  raster::barycentric_db_backward(q, raster::pixel_centre<T>(static_cast<int>(pix % W), W),
                                  raster::pixel_centre<T>(static_cast<int>(pix / W), H), g, gq);
  T* gp = grad_pos + b * V * 4;
  for (int k = 0; k < 3; ++k) {
    const int64_t v = tri[3 * f + k];
    gpuAtomicAdd(gp + 4 * v + 0, gq[k][0] * half_w);
    gpuAtomicAdd(gp + 4 * v + 1, gq[k][1] * half_h);
    gpuAtomicAdd(gp + 4 * v + 3, gq[k][2]);
  }
}

at::Tensor rasterize_db_cuda(const at::Tensor& pos, const at::Tensor& tri, const at::Tensor& rast,
                             bool check_indices) {
  const char* op = "pyfaid::rasterize_db";
  raster::check_rasterize_db_args(nullptr, pos, tri, rast, op);
  c10::cuda::CUDAGuard guard(pos.device());
  const int64_t B = pos.size(0), V = pos.size(1), F = tri.size(0);
  if (check_indices) raster::check_tri_range(tri, V, op, "pos");
  auto db = at::empty_like(rast);
  const int H = static_cast<int>(rast.size(1)), W = static_cast<int>(rast.size(2));
  const int64_t n = B * int64_t(H) * W;
  if (n == 0) return db;
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(pos.scalar_type(), "rasterize_db_cuda", [&] {
    rasterize_db_kernel<scalar_t><<<blocks_for(n, kThreads), kThreads, 0, stream>>>(
        pos.data_ptr<scalar_t>(), tri.data_ptr<int32_t>(), rast.data_ptr<scalar_t>(),
        db.data_ptr<scalar_t>(), B, V, F, H, W);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return db;
}

at::Tensor rasterize_db_backward_cuda(const at::Tensor& grad_db, const at::Tensor& pos,
                                      const at::Tensor& tri, const at::Tensor& rast,
                                      bool check_indices) {
  const char* op = "pyfaid::rasterize_db_backward";
  raster::check_rasterize_db_args(&grad_db, pos, tri, rast, op);
  c10::cuda::CUDAGuard guard(pos.device());
  const int64_t B = pos.size(0), V = pos.size(1), F = tri.size(0);
  if (check_indices) raster::check_tri_range(tri, V, op, "pos");
  auto grad_pos = at::zeros_like(pos);
  const int H = static_cast<int>(rast.size(1)), W = static_cast<int>(rast.size(2));
  const int64_t n = B * int64_t(H) * W;
  if (n == 0 || F == 0) return grad_pos;
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(pos.scalar_type(), "rasterize_db_backward_cuda", [&] {
    rasterize_db_backward_kernel<scalar_t><<<blocks_for(n, kThreads), kThreads, 0, stream>>>(
        grad_db.data_ptr<scalar_t>(), pos.data_ptr<scalar_t>(), tri.data_ptr<int32_t>(),
        rast.data_ptr<scalar_t>(), grad_pos.data_ptr<scalar_t>(), B, V, F, H, W);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return grad_pos;
}

}  // namespace

TORCH_LIBRARY_IMPL(pyfaid, CUDA, m) {
  m.impl("rasterize_db", &rasterize_db_cuda);
  m.impl("rasterize_db_backward", &rasterize_db_backward_cuda);
}

}  // namespace pyfaid
