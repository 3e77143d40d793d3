// CUDA rasterizer: the same tiled algorithm as rasterize_cpu.cpp, with the same math
// (rasterize.h, round-to-nearest intrinsics so coverage and depth match the CPU bit for bit
// up to the final division).
//
//   1. setup_kernel   one thread per (image, triangle): set up, count the kTile x kTile tiles its
//                     bbox overlaps (atomicAdd per tile); a triangle with an index outside [0, V)
//                     is culled, so unchecked indices never read out of bounds;
//   2. exclusive scan of the tile counters, on the device: every tile's list start;
//   3. fill_kernel    one thread per (image, triangle): append the id to each overlapped tile's list
//                     inside one buffer of fixed capacity (list_capacity); entries past it are
//                     dropped;
//   4. raster_kernel  one 16x16 block per (image, tile): stage the tile's triangles in shared
//                     memory 256 at a time; each thread keeps its pixel's nearest (depth, id) with the
//                     lower id winning ties, so the result does not depend on the order in which
//                     triangles are tested. A tile whose list did not fit in the buffer stages instead
//                     every triangle of its image whose bbox overlaps the tile (same test, same
//                     result, slower).
//
// No host synchronisation: the list buffer's size comes from B, F and the tile count, known on
// the host, instead of from the counters (reading their total back would wait for the device
// on every call). With check_indices the index range is checked first (one reduction and copy,
// raster::check_tri_range): the caller asked for it; a MeshTopology's indices skip it.
#include <ATen/cuda/Atomic.cuh>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>
#include <climits>
#include <string_view>

#include "rasterize/rasterize.h"
#include "utils/cuda_launch.cuh"

namespace pyfaid {
namespace {

using raster::kTile;
using raster::TriSetup;

constexpr int kBlock = kTile * kTile;  // 256 threads: one per pixel of a tile
// Capacity of the tile-list buffer, in entries (int32 ids). A triangle enters the list of every
// tile its bbox overlaps. Most triangles of a face-sized mesh are smaller than a tile: two entries
// per triangle leave room for those on tile borders, and 64 per tile for a few large triangles
// spanning many tiles (a full-screen quad puts 2 in every tile). Only scenes beyond that (many
// large, overlapping triangles) overflow, and only the tiles past the capacity take the raster
// kernel's fallback. E.g. 16 images of 70k triangles at 224 x 224: 2.45M entries, 9.3 MiB.
constexpr int64_t kListPerTriangle = 2;
constexpr int64_t kListPerTile = 64;
constexpr int64_t kListMax = int64_t(1) << 28;  // 1 GiB

int64_t list_capacity(int64_t B, int64_t F, int64_t tiles) {
  return std::min(kListPerTriangle * B * F + kListPerTile * B * tiles, kListMax);
}

template <typename T>
__global__ void setup_kernel(const T* __restrict__ pos, const int32_t* __restrict__ tri, int64_t B,
                             int64_t V, int64_t F, int H, int W, int tiles_x, int64_t tiles,
                             TriSetup<T>* __restrict__ setup, int32_t* __restrict__ counts) {
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= B * F) return;
  const int64_t b = idx / F, f = idx % F;
  const int32_t i0 = tri[3 * f], i1 = tri[3 * f + 1], i2 = tri[3 * f + 2];
  TriSetup<T> s;
  if (i0 < 0 || i0 >= V || i1 < 0 || i1 >= V || i2 < 0 || i2 >= V) {  // unchecked bad indices
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

// Appends every triangle to the lists of the tiles its bbox overlaps; list has `capacity`
// entries, and entries at or past it are dropped (their tile's list is then incomplete, and the
// raster kernel does not read it).
template <typename T>
__global__ void fill_kernel(const TriSetup<T>* __restrict__ setup, int64_t B, int64_t F,
                            int tiles_x, int64_t tiles, const int64_t* __restrict__ tile_begin,
                            int32_t* __restrict__ cursor, int32_t* __restrict__ list,
                            int64_t capacity) {
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= B * F) return;
  const TriSetup<T>& s = setup[idx];
  if (raster::is_culled(s)) return;
  const int64_t b = idx / F;
  const int32_t f = static_cast<int32_t>(idx % F);
  for (int ty = s.y0 / kTile; ty <= s.y1 / kTile; ++ty)
    for (int tx = s.x0 / kTile; tx <= s.x1 / kTile; ++tx) {
      const int64_t tile = b * tiles + ty * tiles_x + tx;
      const int64_t slot = tile_begin[tile] + atomicAdd(cursor + tile, 1);
      if (slot < capacity) list[slot] = f;
    }
}

// Depth test of pixel (x, y) (centre (px, py)) against the n staged triangles sh[i] (ids
// sh_id[i]): keeps the nearest depth, the lower id on ties, whatever the staging order.
template <typename T>
__device__ __forceinline__ void test_staged(const TriSetup<T>* sh, const int32_t* sh_id, int n,
                                            int x, int y, T px, T py, T& best_z,
                                            int32_t& best_id) {
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

template <typename T>
__global__ void __launch_bounds__(kBlock) raster_kernel(const TriSetup<T>* __restrict__ setup,
                                                        int64_t F, int H, int W, int tiles_x,
                                                        int64_t tiles,
                                                        const int64_t* __restrict__ tile_begin,
                                                        const int32_t* __restrict__ counts,
                                                        const int32_t* __restrict__ list,
                                                        int64_t capacity, T* __restrict__ rast) {
  __shared__ TriSetup<T> sh[kBlock];
  __shared__ int32_t sh_id[kBlock];
  __shared__ int sh_n;
  const int64_t item = blockIdx.x;  // b * tiles + tile
  const int64_t b = item / tiles;
  const int tile = static_cast<int>(item % tiles);
  const int tile_x0 = (tile % tiles_x) * kTile, tile_y0 = (tile / tiles_x) * kTile;
  const int x = tile_x0 + threadIdx.x % kTile;
  const int y = tile_y0 + threadIdx.x / kTile;
  const bool in_image = x < W && y < H;
  const T px = raster::pixel_centre<T>(x, W), py = raster::pixel_centre<T>(y, H);
  const TriSetup<T>* st = setup + b * F;

  T best_z = T(2);
  int32_t best_id = INT_MAX;
  const int64_t begin = tile_begin[item];
  const int32_t n_total = counts[item];
  if (begin + n_total <= capacity) {  // the whole list is in the buffer (the same for the block)
    for (int32_t base = 0; base < n_total; base += kBlock) {
      const int n = min(kBlock, n_total - base);
      if (threadIdx.x < n) {
        const int32_t f = list[begin + base + threadIdx.x];
        sh_id[threadIdx.x] = f;
        sh[threadIdx.x] = st[f];
      }
      __syncthreads();
      if (in_image) test_staged(sh, sh_id, n, x, y, px, py, best_z, best_id);
      __syncthreads();
    }
  } else {
    // Overflowed list: go through all F triangles of the image, 256 at a time, and stage those
    // whose bbox overlaps the tile (the tiles fill_kernel would have listed them in).
    const int tile_x1 = tile_x0 + kTile - 1, tile_y1 = tile_y0 + kTile - 1;
    for (int64_t base = 0; base < F; base += kBlock) {
      if (threadIdx.x == 0) sh_n = 0;
      __syncthreads();
      const int64_t f = base + threadIdx.x;
      if (f < F) {
        const TriSetup<T>& s = st[f];
        if (!raster::is_culled(s) && s.x0 <= tile_x1 && s.x1 >= tile_x0 && s.y0 <= tile_y1 &&
            s.y1 >= tile_y0) {
          const int slot = atomicAdd(&sh_n, 1);
          sh[slot] = s;
          sh_id[slot] = static_cast<int32_t>(f);
        }
      }
      __syncthreads();
      const int n = sh_n;
      if (in_image) test_staged(sh, sh_id, n, x, y, px, py, best_z, best_id);
      __syncthreads();
    }
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

// cpu_path and simd choose between CPU kernels: checked, then unused here.
at::Tensor rasterize_cuda(const at::Tensor& pos, const at::Tensor& tri, int64_t height,
                          int64_t width, bool check_indices, std::string_view cpu_path,
                          bool /*simd*/) {
  const char* op = "pyfaid::rasterize";
  raster::check_rasterize_args(pos, tri, height, width, cpu_path, op);
  c10::cuda::CUDAGuard guard(pos.device());
  const int64_t B = pos.size(0), V = pos.size(1), F = tri.size(0);
  if (check_indices) raster::check_tri_range(tri, V, op, "pos");
  const int H = static_cast<int>(height), W = static_cast<int>(width);
  auto rast = at::empty({B, height, width, 4}, pos.options());
  if (B == 0) return rast;
  if (F == 0) return rast.zero_();
  TORCH_CHECK(B * F < (int64_t(1) << 31), op, ": B * F must be below 2^31, got ", B * F);
  const int tiles_x = (W + kTile - 1) / kTile, tiles_y = (H + kTile - 1) / kTile;
  const int64_t tiles = int64_t(tiles_x) * tiles_y;
  const int64_t capacity = list_capacity(B, F, tiles);
  auto stream = at::cuda::getCurrentCUDAStream();
  auto iopt = pos.options().dtype(at::kInt);
  auto counts = at::zeros({B * tiles}, iopt);

  AT_DISPATCH_FLOATING_TYPES(pos.scalar_type(), "rasterize_cuda", [&] {
    using T = scalar_t;
    auto setup = at::empty({B * F * int64_t(sizeof(TriSetup<T>))}, pos.options().dtype(at::kByte));
    auto* setup_ptr = reinterpret_cast<TriSetup<T>*>(setup.data_ptr<uint8_t>());
    setup_kernel<T><<<blocks_for(B * F, kThreads), kThreads, 0, stream>>>(
        pos.data_ptr<T>(), tri.data_ptr<int32_t>(), B, V, F, H, W, tiles_x, tiles, setup_ptr,
        counts.data_ptr<int32_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();

    // List starts stay on the device: nothing is read back (no synchronisation).
    auto tile_begin = at::cumsum(counts, 0, at::kLong).sub_(counts);  // exclusive scan
    auto list = at::empty({capacity}, iopt);
    auto cursor = at::zeros({B * tiles}, iopt);
    fill_kernel<T><<<blocks_for(B * F, kThreads), kThreads, 0, stream>>>(
        setup_ptr, B, F, tiles_x, tiles, tile_begin.data_ptr<int64_t>(),
        cursor.data_ptr<int32_t>(), list.data_ptr<int32_t>(), capacity);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    raster_kernel<T><<<static_cast<unsigned>(B * tiles), kBlock, 0, stream>>>(
        setup_ptr, F, H, W, tiles_x, tiles, tile_begin.data_ptr<int64_t>(),
        counts.data_ptr<int32_t>(), list.data_ptr<int32_t>(), capacity, rast.data_ptr<T>());
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
