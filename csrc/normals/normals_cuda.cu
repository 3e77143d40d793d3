// CUDA kernels of vertex_normals / vertex_normals_backward (formulas: normals.h).
//
// Scatter with atomics: one thread per (batch, triangle) adds the triangle's normal to its three
// vertex sums, then one thread per (batch, vertex) normalises. The backward pass mirrors it:
// per vertex the gradient of the unnormalised sum, per triangle the corner gradients, added
// atomically to the vertices. (The order of the atomic additions varies, so float results may
// differ from run to run in the last bits.) The index range of `tri` is checked on the host,
// which costs one synchronisation, unless the caller passes check_indices = false (indices
// checked once before, pyfaid.render.MeshTopology): then nothing here waits for the device.

#include "normals/normals.h"

#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <utils/checks.h>

#include <limits>

namespace pyfaid {

namespace {

constexpr int THREADS = 256;

inline unsigned blocks_for(int64_t n) { return static_cast<unsigned>((n + THREADS - 1) / THREADS); }

template <typename T>
__device__ __forceinline__ void cross3(const T a0, const T a1, const T a2, const T b0, const T b1, const T b2,
                                       T* out) {
  out[0] = a1 * b2 - a2 * b1;
  out[1] = a2 * b0 - a0 * b2;
  out[2] = a0 * b1 - a1 * b0;
}

// sums[b, v] += (p1 - p0) x (p2 - p0) for every triangle around v.
template <typename T>
__global__ void scatter_face_normals_kernel(const T* __restrict__ verts, const int32_t* __restrict__ tri,
                                            T* __restrict__ sums, int64_t B, int64_t V, int64_t F) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= B * F) return;
  const int64_t b = i / F, t = i % F;
  const int64_t i0 = tri[3 * t], i1 = tri[3 * t + 1], i2 = tri[3 * t + 2];
  const T* p = verts + b * V * 3;
  const T* p0 = p + 3 * i0;
  const T* p1 = p + 3 * i1;
  const T* p2 = p + 3 * i2;
  T f[3];
  cross3(p1[0] - p0[0], p1[1] - p0[1], p1[2] - p0[2], p2[0] - p0[0], p2[1] - p0[1], p2[2] - p0[2], f);
  T* s = sums + b * V * 3;
  const int64_t corner[3] = {i0, i1, i2};
#pragma unroll
  for (int k = 0; k < 3; ++k) {
    const int64_t v = corner[k];
    atomicAdd(s + 3 * v, f[0]);
    atomicAdd(s + 3 * v + 1, f[1]);
    atomicAdd(s + 3 * v + 2, f[2]);
  }
}

template <typename T>
__global__ void normalize_kernel(const T* __restrict__ sums, T* __restrict__ out, int64_t n, T eps2) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const T s0 = sums[3 * i], s1 = sums[3 * i + 1], s2 = sums[3 * i + 2];
  const T len2 = s0 * s0 + s1 * s1 + s2 * s2;
  if (len2 > eps2) {
    const T inv = T(1) / sqrt(len2);
    out[3 * i] = s0 * inv;
    out[3 * i + 1] = s1 * inv;
    out[3 * i + 2] = s2 * inv;
  } else {
    out[3 * i] = T(0);
    out[3 * i + 1] = T(0);
    out[3 * i + 2] = T(1);
  }
}

// In place: sums[i] <- gradient with respect to the unnormalised sum s_i.
template <typename T>
__global__ void grad_sum_kernel(const T* __restrict__ grad, T* __restrict__ sums, int64_t n, T eps2) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  T* s = sums + 3 * i;
  const T len2 = s[0] * s[0] + s[1] * s[1] + s[2] * s[2];
  if (len2 > eps2) {
    const T inv = T(1) / sqrt(len2);
    const T n0 = s[0] * inv, n1 = s[1] * inv, n2 = s[2] * inv;
    const T g0 = grad[3 * i], g1 = grad[3 * i + 1], g2 = grad[3 * i + 2];
    const T dot = n0 * g0 + n1 * g1 + n2 * g2;
    s[0] = (g0 - n0 * dot) * inv;
    s[1] = (g1 - n1 * dot) * inv;
    s[2] = (g2 - n2 * dot) * inv;
  } else {
    s[0] = s[1] = s[2] = T(0);
  }
}

// Corner k of triangle t receives (p_{k+1} - p_{k+2}) x G_t, G_t = sum of grad_s over its corners.
template <typename T>
__global__ void scatter_vertex_grad_kernel(const T* __restrict__ verts, const int32_t* __restrict__ tri,
                                           const T* __restrict__ grad_s, T* __restrict__ grad_verts,
                                           int64_t B, int64_t V, int64_t F) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= B * F) return;
  const int64_t b = i / F, t = i % F;
  const int64_t idx[3] = {tri[3 * t], tri[3 * t + 1], tri[3 * t + 2]};
  const T* gs = grad_s + b * V * 3;
  T G[3];
#pragma unroll
  for (int c = 0; c < 3; ++c) G[c] = gs[3 * idx[0] + c] + gs[3 * idx[1] + c] + gs[3 * idx[2] + c];
  const T* p = verts + b * V * 3;
  T* gv = grad_verts + b * V * 3;
#pragma unroll
  for (int k = 0; k < 3; ++k) {
    const T* q1 = p + 3 * idx[(k + 1) % 3];
    const T* q2 = p + 3 * idx[(k + 2) % 3];
    T c[3];
    cross3(q1[0] - q2[0], q1[1] - q2[1], q1[2] - q2[2], G[0], G[1], G[2], c);
    atomicAdd(gv + 3 * idx[k], c[0]);
    atomicAdd(gv + 3 * idx[k] + 1, c[1]);
    atomicAdd(gv + 3 * idx[k] + 2, c[2]);
  }
}

// One reduction and one device-to-host copy (a synchronisation).
void check_index_range(const at::Tensor& tri, int64_t V, const char* op) {
  if (tri.numel() == 0) return;
  const auto [lo, hi] = at::aminmax(tri);
  const auto both = at::stack({lo, hi}).to(at::kCPU, at::kLong);
  const int64_t min_index = both.data_ptr<int64_t>()[0], max_index = both.data_ptr<int64_t>()[1];
  TORCH_CHECK(min_index >= 0 && max_index < V, op, ": `tri` holds vertex indices in [", min_index, ", ",
              max_index, "], outside [0, ", V, ") for ", V, " vertices");
}

}  // namespace

at::Tensor vertex_normals_cuda(const at::Tensor& verts, const at::Tensor& tri, bool check_indices) {
  const char* op = "vertex_normals";
  auto [B, V, F] = check_vertex_normals_args(verts, tri, op);
  TORCH_CHECK(verts.is_cuda(), op, ": `verts` must be a CUDA tensor here");
  const c10::cuda::CUDAGuard guard(verts.device());
  if (check_indices) check_index_range(tri, V, op);
  auto out = at::empty_like(verts);
  if (B == 0 || V == 0) return out;
  auto sums = at::zeros_like(verts);
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(verts.scalar_type(), "vertex_normals_cuda", [&] {
    if (F > 0) {
      scatter_face_normals_kernel<scalar_t><<<blocks_for(B * F), THREADS, 0, stream>>>(
          verts.data_ptr<scalar_t>(), tri.data_ptr<int32_t>(), sums.data_ptr<scalar_t>(), B, V, F);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    normalize_kernel<scalar_t><<<blocks_for(B * V), THREADS, 0, stream>>>(
        sums.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), B * V,
        static_cast<scalar_t>(NORMAL_EPS * NORMAL_EPS));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

at::Tensor vertex_normals_backward_cuda(const at::Tensor& grad_normals, const at::Tensor& verts,
                                        const at::Tensor& tri, bool check_indices) {
  const char* op = "vertex_normals_backward";
  auto [B, V, F] = check_vertex_normals_backward_args(grad_normals, verts, tri, op);
  TORCH_CHECK(verts.is_cuda(), op, ": `verts` must be a CUDA tensor here");
  const c10::cuda::CUDAGuard guard(verts.device());
  if (check_indices) check_index_range(tri, V, op);
  auto grad_verts = at::zeros_like(verts);
  if (B == 0 || V == 0 || F == 0) return grad_verts;
  auto sums = at::zeros_like(verts);
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(verts.scalar_type(), "vertex_normals_backward_cuda", [&] {
    scatter_face_normals_kernel<scalar_t><<<blocks_for(B * F), THREADS, 0, stream>>>(
        verts.data_ptr<scalar_t>(), tri.data_ptr<int32_t>(), sums.data_ptr<scalar_t>(), B, V, F);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    grad_sum_kernel<scalar_t><<<blocks_for(B * V), THREADS, 0, stream>>>(
        grad_normals.data_ptr<scalar_t>(), sums.data_ptr<scalar_t>(), B * V,
        static_cast<scalar_t>(NORMAL_EPS * NORMAL_EPS));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    scatter_vertex_grad_kernel<scalar_t><<<blocks_for(B * F), THREADS, 0, stream>>>(
        verts.data_ptr<scalar_t>(), tri.data_ptr<int32_t>(), sums.data_ptr<scalar_t>(),
        grad_verts.data_ptr<scalar_t>(), B, V, F);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return grad_verts;
}

TORCH_LIBRARY_IMPL(pyfaid, CUDA, m) {
  m.impl("vertex_normals", &vertex_normals_cuda);
  m.impl("vertex_normals_backward", &vertex_normals_backward_cuda);
}

}  // namespace pyfaid
