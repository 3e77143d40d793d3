// CUDA kernels of antialias and antialias_backward: the CPU kernels' loop bodies (antialias.h),
// one thread per vertex (screen positions), triangle (marking the pixels near possible
// silhouette edges) or pixel (pair analysis, gathers, position gradient, the last with atomics). No host synchronisation unless check_indices asks for it.
#include <ATen/cuda/Atomic.cuh>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <cstdlib>
#include <cstring>
#include <tuple>

#include "antialias/antialias.h"
#include "utils/cuda_launch.cuh"

namespace pyfaid {
namespace {

template <typename T>
__global__ void screen_kernel(const T* __restrict__ pos, T* __restrict__ screen, int64_t n,
                              int H, int W) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  aa::vertex_screen(pos + 4 * i, T(0.5) * T(W), T(0.5) * T(H), screen[2 * i], screen[2 * i + 1]);
}

struct MarkByte {
  uint8_t* m;
  int W;
  __device__ void operator()(int x, int y) const { m[int64_t(y) * W + x] = 1; }
};

// Marks the pixels near the possible silhouette edges, one thread per (image, triangle); the
// stores all write 1, so their order does not matter.
template <typename T>
__global__ void mark_kernel(const T* __restrict__ screen, const int32_t* __restrict__ tri,
                            const int32_t* __restrict__ neighbors, uint8_t* __restrict__ near,
                            int64_t B, int64_t V, int64_t F, int H, int W) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= B * F) return;
  const int64_t b = i / F;
  aa::mark_triangle_edges(screen + b * V * 2, tri, neighbors, F, i % F, W, H,
                          MarkByte{near + b * int64_t(H) * W, W});
}

template <typename T>
__global__ void analyse_kernel(const T* __restrict__ rast, const T* __restrict__ screen,
                               const int32_t* __restrict__ tri,
                               const int32_t* __restrict__ neighbors,
                               const uint8_t* __restrict__ near, T* __restrict__ alpha,
                               int32_t* __restrict__ edge, int64_t B, int64_t V, int64_t F, int H,
                               int W) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t P = int64_t(H) * W;
  if (i >= B * P) return;
  const int64_t b = i / P;
  const int x = static_cast<int>(i % W), y = static_cast<int>((i / W) % H);
  const T* r = rast + 4 * i;
  const T* s = screen + b * V * 2;
  T al[2] = {T(0), T(0)};
  int32_t ref[2] = {-1, -1};
  if (near[i]) {
    if (x + 1 < W && near[i + 1])
      ref[0] = aa::analyse_pair(r, r + 4, s, tri, neighbors, F, x, y, 0, W, H, al[0]);
    if (y + 1 < H && near[i + W])
      ref[1] = aa::analyse_pair(r, r + 4 * int64_t(W), s, tri, neighbors, F, x, y, 1, W, H, al[1]);
  }
  for (int k = 0; k < 2; ++k) {
    alpha[2 * i + k] = al[k];
    edge[2 * i + k] = ref[k];
  }
}

template <typename T>
__global__ void gather_kernel(const T* __restrict__ color, const T* __restrict__ alpha,
                              T* __restrict__ out, int64_t B, int H, int W, int64_t C) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= B * int64_t(H) * W) return;
  const int x = static_cast<int>(i % W), y = static_cast<int>((i / W) % H);
  const T* c = color + C * i;
  const T al_r = alpha[2 * i], al_d = alpha[2 * i + 1];
  const T al_l = x > 0 ? alpha[2 * (i - 1)] : T(0);
  const T al_u = y > 0 ? alpha[2 * (i - W) + 1] : T(0);
  for (int64_t k = 0; k < C; ++k) {
    T v = c[k];
    if (al_r > T(0)) v += al_r * (c[C + k] - c[k]);
    if (al_d > T(0)) v += al_d * (c[C * W + k] - c[k]);
    if (al_l < T(0)) v += al_l * (c[k] - c[k - C]);
    if (al_u < T(0)) v += al_u * (c[k] - c[k - C * W]);
    out[C * i + k] = v;
  }
}

template <typename T>
__global__ void grad_color_kernel(const T* __restrict__ grad_out, const T* __restrict__ alpha,
                                  T* __restrict__ grad_color, int64_t B, int H, int W, int64_t C) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= B * int64_t(H) * W) return;
  const int x = static_cast<int>(i % W), y = static_cast<int>((i / W) % H);
  const int64_t nb[4] = {i + 1, i + W, i - 1, i - W};
  const bool ok[4] = {x + 1 < W, y + 1 < H, x > 0, y > 0};
  T* gc = grad_color + C * i;
  for (int64_t k = 0; k < C; ++k) gc[k] = grad_out[C * i + k];
  for (int n = 0; n < 4; ++n) {
    if (!ok[n]) continue;
    const bool first = n < 2;
    const int64_t p = first ? i : nb[n];
    const T al = alpha[2 * p + (n & 1)];
    if (al == T(0)) continue;
    const int64_t t = al > T(0) ? p : (first ? nb[n] : i);
    const T s = first ? -al : al;
    for (int64_t k = 0; k < C; ++k) gc[k] += s * grad_out[C * t + k];
  }
}

template <typename T>
__global__ void grad_pos_kernel(const T* __restrict__ grad_out, const T* __restrict__ color,
                                const T* __restrict__ pos, const int32_t* __restrict__ tri,
                                const T* __restrict__ alpha, const int32_t* __restrict__ edge,
                                T* __restrict__ grad_pos, int64_t B, int64_t V, int64_t F, int H,
                                int W, int64_t C) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t P = int64_t(H) * W;
  if (i >= B * P) return;
  const int64_t b = i / P;
  const int x = static_cast<int>(i % W), y = static_cast<int>((i / W) % H);
  for (int down = 0; down < 2; ++down) {
    const T al = alpha[2 * i + down];
    const int32_t ref = edge[2 * i + down];
    if (ref < 0 || (ref >> 1) / 3 >= F || !(raster::t_abs(al) < T(0.5))) continue;
    const int64_t j = i + (down ? W : 1);
    const int64_t t = al > T(0) ? i : j;
    T dd = T(0);
    for (int64_t k = 0; k < C; ++k) dd += grad_out[C * t + k] * (color[C * j + k] - color[C * i + k]);
    if (dd == T(0)) continue;
    aa::pair_pos_backward(pos + b * V * 4, tri, ref, x, y, down, W, H, dd, grad_pos + b * V * 4,
                          AddAtomic());
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> antialias_cuda(
    const at::Tensor& color, const at::Tensor& rast, const at::Tensor& pos, const at::Tensor& tri,
    const at::Tensor& neighbors, bool check_indices) {
  const char* op = "pyfaid::antialias";
  aa::check_antialias_args(color, rast, pos, tri, op);
  aa::check_neighbors(neighbors, tri, pos.size(1), check_indices, op);
  c10::cuda::CUDAGuard guard(color.device());
  const int64_t B = color.size(0), C = color.size(3), V = pos.size(1), F = tri.size(0);
  const int H = static_cast<int>(color.size(1)), W = static_cast<int>(color.size(2));
  auto out = at::empty_like(color);
  auto alpha = at::empty({B, H, W, 2}, color.options());
  auto edge = at::empty({B, H, W, 2}, color.options().dtype(at::kInt));
  const int64_t n = B * int64_t(H) * W;
  if (n == 0) return {out, alpha, edge};
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(color.scalar_type(), "antialias_cuda", [&] {
    using T = scalar_t;
    auto screen = at::empty({B, V, 2}, pos.options());
    if (B * V > 0) {
      screen_kernel<T><<<blocks_for(B * V, kThreads), kThreads, 0, stream>>>(
          pos.data_ptr<T>(), screen.data_ptr<T>(), B * V, H, W);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    // Pixels near possible silhouette edges (antialias.h); every pixel with PYFAID_AA_ALL_PAIRS=1.
    const char* env = std::getenv("PYFAID_AA_ALL_PAIRS");
    const bool all_pairs = env != nullptr && std::strcmp(env, "1") == 0;
    auto near = at::full({n}, all_pairs ? 1 : 0, color.options().dtype(at::kByte));
    if (!all_pairs && B * F > 0) {
      mark_kernel<T><<<blocks_for(B * F, kThreads), kThreads, 0, stream>>>(
          screen.data_ptr<T>(), tri.data_ptr<int32_t>(), neighbors.data_ptr<int32_t>(),
          near.data_ptr<uint8_t>(), B, V, F, H, W);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    analyse_kernel<T><<<blocks_for(n, kThreads), kThreads, 0, stream>>>(
        rast.data_ptr<T>(), screen.data_ptr<T>(), tri.data_ptr<int32_t>(),
        neighbors.data_ptr<int32_t>(), near.data_ptr<uint8_t>(), alpha.data_ptr<T>(),
        edge.data_ptr<int32_t>(), B, V, F, H, W);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    gather_kernel<T><<<blocks_for(n, kThreads), kThreads, 0, stream>>>(
        color.data_ptr<T>(), alpha.data_ptr<T>(), out.data_ptr<T>(), B, H, W, C);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {out, alpha, edge};
}

std::tuple<at::Tensor, at::Tensor> antialias_backward_cuda(
    const at::Tensor& grad_out, const at::Tensor& color, const at::Tensor& rast,
    const at::Tensor& pos, const at::Tensor& tri, const at::Tensor& pair_alpha,
    const at::Tensor& pair_edge, bool check_indices) {
  const char* op = "pyfaid::antialias_backward";
  aa::check_antialias_args(color, rast, pos, tri, op);
  aa::check_pairs(pair_alpha, pair_edge, rast, op);
  check_tensor(grad_out, "grad_out", color.scalar_type(), 4, op);
  TORCH_CHECK(grad_out.sizes() == color.sizes(), op, ": `grad_out` shape ", grad_out.sizes(),
              " does not match `color` shape ", color.sizes());
  check_same_device(grad_out, "grad_out", color, "color", op);
  c10::cuda::CUDAGuard guard(color.device());
  const int64_t B = color.size(0), C = color.size(3), V = pos.size(1), F = tri.size(0);
  if (check_indices) raster::check_tri_range(tri, V, op, "pos");
  const int H = static_cast<int>(color.size(1)), W = static_cast<int>(color.size(2));
  auto grad_color = at::empty_like(color);
  auto grad_pos = at::zeros_like(pos);
  const int64_t n = B * int64_t(H) * W;
  if (n == 0) return {grad_color, grad_pos};
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(color.scalar_type(), "antialias_backward_cuda", [&] {
    using T = scalar_t;
    grad_color_kernel<T><<<blocks_for(n, kThreads), kThreads, 0, stream>>>(
        grad_out.data_ptr<T>(), pair_alpha.data_ptr<T>(), grad_color.data_ptr<T>(), B, H, W, C);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    grad_pos_kernel<T><<<blocks_for(n, kThreads), kThreads, 0, stream>>>(
        grad_out.data_ptr<T>(), color.data_ptr<T>(), pos.data_ptr<T>(), tri.data_ptr<int32_t>(),
        pair_alpha.data_ptr<T>(), pair_edge.data_ptr<int32_t>(), grad_pos.data_ptr<T>(), B, V, F,
        H, W, C);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {grad_color, grad_pos};
}

}  // namespace

TORCH_LIBRARY_IMPL(pyfaid, CUDA, m) {
  m.impl("antialias", &antialias_cuda);
  m.impl("antialias_backward", &antialias_backward_cuda);
}

}  // namespace pyfaid
