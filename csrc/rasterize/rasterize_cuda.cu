// CUDA rasterizer: the same tiled algorithm as rasterize_cpu.cpp, with the same math
// (rasterize.h, round-to-nearest intrinsics so coverage and depth match the CPU bit for bit
// up to the final division).
//
//   1. setup_kernel   one thread per (image, triangle): set up, count the kTile x kTile tiles its
//                     bbox overlaps (atomicAdd per tile), flag out-of-range indices;
//   2. exclusive scan of the tile counters (one device -> host copy: list size + index flag);
//   3. fill_kernel    one thread per (image, triangle): append the id to each overlapped tile's list;
//   4. raster_kernel  one 16x16 block per (image, tile): stage the tile's triangles in shared
//                     memory 256 at a time; each thread keeps its pixel's nearest (depth, id) with the
//                     lower id winning ties, so the result does not depend on the list order.
#include <ATen/cuda/Atomic.cuh>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <climits>

#include "rasterize/rasterize.h"

namespace pyfaid {
namespace {

using raster::kTile;
using raster::TriSetup;

constexpr int kBlock = kTile * kTile;  // 256 threads: one per pixel of a tile
constexpr int kThreads = 256;

template <typename T>
__global__ void setup_kernel(const T* __restrict__ pos, const int32_t* __restrict__ tri, int64_t B,
                             int64_t V, int64_t F, int H, int W, int tiles_x, int64_t tiles,
                             TriSetup<T>* __restrict__ setup, int32_t* __restrict__ counts,
                             int32_t* __restrict__ bad_index) {
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= B * F) return;
  const int64_t b = idx / F, f = idx % F;
  const int32_t i0 = tri[3 * f], i1 = tri[3 * f + 1], i2 = tri[3 * f + 2];
  TriSetup<T> s;
  if (i0 < 0 || i0 >= V || i1 < 0 || i1 >= V || i2 < 0 || i2 >= V) {
    atomicOr(bad_index, 1);
    raster::mark_culled(s);
    setup[idx] = s;
    return;
  }
  const T* p = pos + b * V * 4;
  if (raster::setup_triangle(p + 4 * int64_t(i0), p + 4 * int64_t(i1), p + 4 * int64_t(i2), W, H,
                             s)) {
    int32_t* cnt = counts + b * tiles;
    for (int ty = s.y0 / kTile; ty <= s.y1 / kTile; ++ty)
      for (int tx = s.x0 / kTile; tx <= s.x1 / kTile; ++tx) atomicAdd(cnt + ty * tiles_x + tx, 1);
  }
  setup[idx] = s;
}

template <typename T>
__global__ void fill_kernel(const TriSetup<T>* __restrict__ setup, int64_t B, int64_t F,
                            int tiles_x, int64_t tiles, const int64_t* __restrict__ tile_begin,
                            int32_t* __restrict__ cursor, int32_t* __restrict__ list) {
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= B * F) return;
  const TriSetup<T>& s = setup[idx];
  if (raster::is_culled(s)) return;
  const int64_t b = idx / F;
  const int32_t f = static_cast<int32_t>(idx % F);
  for (int ty = s.y0 / kTile; ty <= s.y1 / kTile; ++ty)
    for (int tx = s.x0 / kTile; tx <= s.x1 / kTile; ++tx) {
      const int64_t tile = b * tiles + ty * tiles_x + tx;
      const int32_t slot = atomicAdd(cursor + tile, 1);
      list[tile_begin[tile] + slot] = f;
    }
}

template <typename T>
__global__ void __launch_bounds__(kBlock) raster_kernel(const TriSetup<T>* __restrict__ setup,
                                                        int64_t F, int H, int W, int tiles_x,
                                                        int64_t tiles,
                                                        const int64_t* __restrict__ tile_begin,
                                                        const int32_t* __restrict__ counts,
                                                        const int32_t* __restrict__ list,
                                                        T* __restrict__ rast) {
  __shared__ TriSetup<T> sh[kBlock];
  __shared__ int32_t sh_id[kBlock];
  const int64_t item = blockIdx.x;  // b * tiles + tile
  const int64_t b = item / tiles;
  const int tile = static_cast<int>(item % tiles);
  const int x = (tile % tiles_x) * kTile + threadIdx.x % kTile;
  const int y = (tile / tiles_x) * kTile + threadIdx.x / kTile;
  const bool in_image = x < W && y < H;
  const T px = raster::pixel_centre<T>(x, W), py = raster::pixel_centre<T>(y, H);
  const TriSetup<T>* st = setup + b * F;

  T best_z = T(2);
  int32_t best_id = INT_MAX;
  const int64_t begin = tile_begin[item];
  const int32_t n_total = counts[item];
  for (int32_t base = 0; base < n_total; base += kBlock) {
    const int n = min(kBlock, n_total - base);
    if (threadIdx.x < n) {
      const int32_t f = list[begin + base + threadIdx.x];
      sh_id[threadIdx.x] = f;
      sh[threadIdx.x] = st[f];
    }
    __syncthreads();
    if (in_image) {
      for (int i = 0; i < n; ++i) {
        const TriSetup<T>& s = sh[i];
        if (x < s.x0 || x > s.x1 || y < s.y0 || y > s.y1) continue;
        T depth;
        if (!raster::covers(s, px, py, depth)) continue;
        const int32_t f = sh_id[i];
        if (depth < best_z || (depth == best_z && f < best_id)) {
          best_z = depth;
          best_id = f;
        }
      }
    }
    __syncthreads();
  }
  if (!in_image) return;
  T* o = rast + ((b * H + y) * int64_t(W) + x) * 4;
  if (best_id == INT_MAX) {
    o[0] = o[1] = o[2] = o[3] = T(0);
    return;
  }
  T u, v;
  raster::barycentrics(st[best_id], px, py, u, v);
  o[0] = u;
  o[1] = v;
  o[2] = best_z;
  o[3] = T(best_id + 1);
}

template <typename T>
__global__ void rasterize_backward_kernel(const T* __restrict__ grad_rast, const T* __restrict__ pos,
                                          const int32_t* __restrict__ tri,
                                          const T* __restrict__ rast, T* __restrict__ grad_pos,
                                          int64_t B, int64_t V, int64_t F, int H, int W) {
  const int64_t P = int64_t(H) * W;
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= B * P) return;
  const int64_t f = raster::decode_id(rast[4 * i + 3]);
  if (f < 0 || f >= F) return;
  const T gu = grad_rast[4 * i], gv = grad_rast[4 * i + 1];
  if (gu == T(0) && gv == T(0)) return;
  const int64_t b = i / P, pix = i % P;
  const T half_w = T(0.5) * T(W), half_h = T(0.5) * T(H);
  const T* p = pos + b * V * 4;
  T q[3][3], gq[3][3];
  int32_t t[3];
  for (int k = 0; k < 3; ++k) {
    t[k] = tri[3 * f + k];
    raster::load_q(p + 4 * int64_t(t[k]), half_w, half_h, q[k]);
  }
  const int x = static_cast<int>(pix % W), y = static_cast<int>(pix / W);
  raster::barycentrics_backward(q, raster::pixel_centre<T>(x, W), raster::pixel_centre<T>(y, H),
                                rast[4 * i], rast[4 * i + 1], gu, gv, gq);
  T* gp = grad_pos + b * V * 4;
  for (int k = 0; k < 3; ++k) {
    gpuAtomicAdd(gp + 4 * int64_t(t[k]) + 0, gq[k][0] * half_w);
    gpuAtomicAdd(gp + 4 * int64_t(t[k]) + 1, gq[k][1] * half_h);
    gpuAtomicAdd(gp + 4 * int64_t(t[k]) + 3, gq[k][2]);
  }
}

inline unsigned blocks_for(int64_t n, int threads) {
  return static_cast<unsigned>((n + threads - 1) / threads);
}

// cpu_path and simd choose between CPU kernels: checked, then unused here.
at::Tensor rasterize_cuda(const at::Tensor& pos, const at::Tensor& tri, int64_t height,
                          int64_t width, bool check_indices, std::string_view cpu_path,
                          bool /*simd*/) {
  const char* op = "pyfaid::rasterize";
  raster::check_rasterize_args(pos, tri, height, width, cpu_path, op);
  c10::cuda::CUDAGuard guard(pos.device());
  const int64_t B = pos.size(0), V = pos.size(1), F = tri.size(0);
  const int H = static_cast<int>(height), W = static_cast<int>(width);
  auto rast = at::empty({B, height, width, 4}, pos.options());
  if (B == 0) return rast;
  if (F == 0) return rast.zero_();
  TORCH_CHECK(B * F < (int64_t(1) << 31), op, ": B * F must be below 2^31, got ", B * F);
  const int tiles_x = (W + kTile - 1) / kTile, tiles_y = (H + kTile - 1) / kTile;
  const int64_t tiles = int64_t(tiles_x) * tiles_y;
  auto stream = at::cuda::getCurrentCUDAStream();
  auto iopt = pos.options().dtype(at::kInt);
  auto counts = at::zeros({B * tiles}, iopt);
  auto bad = at::zeros({1}, iopt);

  AT_DISPATCH_FLOATING_TYPES(pos.scalar_type(), "rasterize_cuda", [&] {
    using T = scalar_t;
    auto setup = at::empty({B * F * int64_t(sizeof(TriSetup<T>))}, pos.options().dtype(at::kByte));
    auto* setup_ptr = reinterpret_cast<TriSetup<T>*>(setup.data_ptr<uint8_t>());
    setup_kernel<T><<<blocks_for(B * F, kThreads), kThreads, 0, stream>>>(
        pos.data_ptr<T>(), tri.data_ptr<int32_t>(), B, V, F, H, W, tiles_x, tiles, setup_ptr,
        counts.data_ptr<int32_t>(), bad.data_ptr<int32_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();

    auto inclusive = at::cumsum(counts, 0, at::kLong);
    auto tile_begin = inclusive - counts;
    // One synchronising copy: list length and the out-of-range index flag.
    auto host = at::cat({inclusive.narrow(0, B * tiles - 1, 1), bad.to(at::kLong)}).cpu();
    const int64_t total = host.data_ptr<int64_t>()[0];
    TORCH_CHECK(!check_indices || host.data_ptr<int64_t>()[1] == 0, op, ": `tri` indices must lie in [0, ", V,
                ") (the rows of `pos`)");
    if (total == 0) {
      rast.zero_();
      return;
    }
    auto list = at::empty({total}, iopt);
    auto cursor = at::zeros({B * tiles}, iopt);
    fill_kernel<T><<<blocks_for(B * F, kThreads), kThreads, 0, stream>>>(
        setup_ptr, B, F, tiles_x, tiles, tile_begin.data_ptr<int64_t>(),
        cursor.data_ptr<int32_t>(), list.data_ptr<int32_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    raster_kernel<T><<<static_cast<unsigned>(B * tiles), kBlock, 0, stream>>>(
        setup_ptr, F, H, W, tiles_x, tiles, tile_begin.data_ptr<int64_t>(),
        counts.data_ptr<int32_t>(), list.data_ptr<int32_t>(), rast.data_ptr<T>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return rast;
}

at::Tensor rasterize_backward_cuda(const at::Tensor& grad_rast, const at::Tensor& pos,
                                   const at::Tensor& tri, const at::Tensor& rast,
                                   bool check_indices, bool /*simd: CPU only*/) {
  const char* op = "pyfaid::rasterize_backward";
  raster::check_rasterize_backward_args(grad_rast, pos, tri, rast, op);
  c10::cuda::CUDAGuard guard(pos.device());
  const int64_t B = pos.size(0), V = pos.size(1), F = tri.size(0);
  if (check_indices) raster::check_tri_range(tri, V, op, "pos");
  auto grad_pos = at::zeros_like(pos);
  const int H = static_cast<int>(rast.size(1)), W = static_cast<int>(rast.size(2));
  const int64_t n = B * int64_t(H) * W;
  if (n == 0 || F == 0) return grad_pos;
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(pos.scalar_type(), "rasterize_backward_cuda", [&] {
    rasterize_backward_kernel<scalar_t><<<blocks_for(n, kThreads), kThreads, 0, stream>>>(
        grad_rast.data_ptr<scalar_t>(), pos.data_ptr<scalar_t>(), tri.data_ptr<int32_t>(),
        rast.data_ptr<scalar_t>(), grad_pos.data_ptr<scalar_t>(), B, V, F, H, W);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return grad_pos;
}

}  // namespace

TORCH_LIBRARY_IMPL(pyfaid, CUDA, m) {
  m.impl("rasterize", &rasterize_cuda);
  m.impl("rasterize_backward", &rasterize_backward_cuda);
}

}  // namespace pyfaid
