// CPU rasterizer: two paths with bit-identical results (cpu_raster_path picks one).
//
// Direct path (images up to kDirectMaxPixels; rasterize_direct_impl): parallel over (image,
// triangle part). Per image, a vertex pass (rejection codes, screen positions) and then every
// triangle in id order is set up and depth-tested straight into the output image, whose depth
// channel doubles as the depth buffer; the edge values at a covered pixel centre give (u, v) at
// once. On AVX2 CPUs float32 goes through rasterize_cpu_avx2.cpp (eight triangles per step).
// Dense meshes, where most triangles cover zero to two pixel centres, spend no time on binning.
//
// Binned path (rasterize_cpu_impl): triangle setup once, binning into kTile x kTile screen
// tiles, then at::parallel_for over (image, tile), each tile testing only its triangles.
// Per group of images:
//   0. per vertex (shared by ~6 triangles each): rejection code and screen position;
//   1. setup + count: parallel over (image, triangle chunk); each triangle is set up once
//      (edge functions, depth plane, pixel bbox; culled triangles dropped) and counted into
//      the tiles its bbox overlaps (per-chunk counters, no atomics);
//   2. prefix sum of the counters (tile-major, chunk-minor) -> every tile's list is ordered by
//      triangle id;
//   3. fill the tile lists (parallel over the same chunks);
//   4. raster: parallel over (image, tile); a tile-local depth/id buffer, strict depth test in
//      id order (lower id wins ties), then (u, v, z/w, id + 1) for every pixel of the tile.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string_view>
#include <type_traits>
#include <vector>

#include "rasterize/rasterize.h"
#include "rasterize/rasterize_cpu.h"

namespace pyfaid {
namespace {

using raster::kTile;
using raster::TriSetup;

template <typename T>
void rasterize_cpu_impl(const T* pos, const int32_t* tri, T* rast, int64_t B, int64_t V,
                        int64_t F, int H, int W) {
  const int tiles_x = (W + kTile - 1) / kTile, tiles_y = (H + kTile - 1) / kTile;
  const int64_t T_count = int64_t(tiles_x) * tiles_y;
  // Images per group: keeps the setup buffer near 2^16 triangles (cache-resident).
  const int64_t G = std::max<int64_t>(1, std::min<int64_t>(B, (int64_t(1) << 16) / std::max<int64_t>(F, 1)));
  // Triangle chunks per image (the result does not depend on the chunking, only the speed does).
  const int64_t K = std::max<int64_t>(1, std::min<int64_t>((F + 2047) / 2048, 4 * at::get_num_threads()));

  // Not value-initialised: setup_triangle writes every entry (culled ones too).
  std::unique_ptr<TriSetup<T>[]> setup(new TriSetup<T>[G * F]);
  // Compact tile range of every triangle for the fill pass (tx0 > tx1: culled).
  struct TileBox {
    int16_t tx0, ty0, tx1, ty1;
  };
  std::unique_ptr<TileBox[]> boxes(new TileBox[G * F]);
  // Per-vertex codes and screen positions, shared by the ~6 triangles around each vertex.
  std::unique_ptr<uint32_t[]> vcode(new uint32_t[G * V]);
  std::unique_ptr<T[]> vsx(new T[G * V]), vsy(new T[G * V]);
  const T half_w = T(0.5) * T(W), half_h = T(0.5) * T(H);
  std::vector<int32_t> counts(G * K * T_count);
  std::vector<int64_t> tile_begin(G * T_count + 1);
  std::vector<int32_t> list;
  // Small problems run on the calling thread: waking the pool costs more than the work.
  const bool small = B * F + B * int64_t(H) * W < (int64_t(1) << 15);
  const int64_t grain_setup = small ? G * K : 1;
  const int64_t grain_tiles = small ? G * T_count : 1;

  for (int64_t b0 = 0; b0 < B; b0 += G) {
    const int64_t g_n = std::min(G, B - b0);
    std::fill(counts.begin(), counts.begin() + g_n * K * T_count, 0);

    // 0. vertices: rejection codes and screen positions
    at::parallel_for(0, g_n * V, small ? g_n * V : 4096, [&](int64_t begin, int64_t end) {
      raster_cpu::vertex_pass(pos + b0 * V * 4, begin, end, half_w, half_h, vcode.get(), vsx.get(),
                              vsy.get());
    });

    // 1. setup + count
    at::parallel_for(0, g_n * K, grain_setup, [&](int64_t begin, int64_t end) {
      for (int64_t item = begin; item < end; ++item) {
        const int64_t g = item / K, k = item % K;
        const T* p = pos + (b0 + g) * V * 4;
        int32_t* cnt = counts.data() + (g * K + k) * T_count;
        const int64_t f_begin = F * k / K, f_end = F * (k + 1) / K;
        for (int64_t f = f_begin; f < f_end; ++f) {
          const int32_t* t = tri + 3 * f;
          TriSetup<T>& s = setup[g * F + f];
          TileBox& box = boxes[g * F + f];
          const int64_t i0 = g * V + t[0], i1 = g * V + t[1], i2 = g * V + t[2];
          if (raster::codes_reject(vcode[i0], vcode[i1], vcode[i2])) {
            raster::mark_culled(s);
            box = {1, 1, 0, 0};
            continue;
          }
          const T sx[3] = {vsx[i0], vsx[i1], vsx[i2]}, sy[3] = {vsy[i0], vsy[i1], vsy[i2]};
          if (!raster::setup_triangle_screen<T, true>(p + 4 * int64_t(t[0]), p + 4 * int64_t(t[1]),
                                             p + 4 * int64_t(t[2]), sx, sy, W, H, s)) {
            box = {1, 1, 0, 0};
            continue;
          }
          const int tx0 = s.x0 / kTile, tx1 = s.x1 / kTile, ty0 = s.y0 / kTile, ty1 = s.y1 / kTile;
          box = {int16_t(tx0), int16_t(ty0), int16_t(tx1), int16_t(ty1)};
          for (int ty = ty0; ty <= ty1; ++ty)
            for (int tx = tx0; tx <= tx1; ++tx) ++cnt[ty * tiles_x + tx];
        }
      }
    });

    // 2. prefix sum: counts become each chunk's write cursor inside its tile's list.
    int64_t total = 0;
    for (int64_t g = 0; g < g_n; ++g) {
      for (int64_t tile = 0; tile < T_count; ++tile) {
        tile_begin[g * T_count + tile] = total;
        for (int64_t k = 0; k < K; ++k) {
          int32_t& c = counts[(g * K + k) * T_count + tile];
          const int32_t n = c;
          c = static_cast<int32_t>(total - tile_begin[g * T_count + tile]);
          total += n;
        }
      }
    }
    tile_begin[g_n * T_count] = total;
    list.resize(std::max<int64_t>(total, 1));

    // 3. fill
    at::parallel_for(0, g_n * K, grain_setup, [&](int64_t begin, int64_t end) {
      for (int64_t item = begin; item < end; ++item) {
        const int64_t g = item / K, k = item % K;
        int32_t* cur = counts.data() + (g * K + k) * T_count;
        const int64_t* tb = tile_begin.data() + g * T_count;
        const int64_t f_begin = F * k / K, f_end = F * (k + 1) / K;
        for (int64_t f = f_begin; f < f_end; ++f) {
          const TileBox box = boxes[g * F + f];
          if (box.tx0 > box.tx1) continue;
          for (int ty = box.ty0; ty <= box.ty1; ++ty)
            for (int tx = box.tx0; tx <= box.tx1; ++tx) {
              const int tile = ty * tiles_x + tx;
              list[tb[tile] + cur[tile]++] = static_cast<int32_t>(f);
            }
        }
      }
    });

    // 4. raster, one tile at a time
    at::parallel_for(0, g_n * T_count, grain_tiles, [&](int64_t begin, int64_t end) {
      T zbuf[kTile * kTile];
      int32_t ibuf[kTile * kTile];
      T pxs[kTile], pys[kTile];
      for (int64_t item = begin; item < end; ++item) {
        const int64_t g = item / T_count, tile = item % T_count;
        const int tx = static_cast<int>(tile % tiles_x), ty = static_cast<int>(tile / tiles_x);
        const int x_begin = tx * kTile, y_begin = ty * kTile;
        const int x_end = std::min(x_begin + kTile, W), y_end = std::min(y_begin + kTile, H);
        for (int i = 0; i < kTile; ++i) {
          pxs[i] = raster::pixel_centre<T>(x_begin + i, W);
          pys[i] = raster::pixel_centre<T>(y_begin + i, H);
        }
        std::fill(zbuf, zbuf + kTile * kTile, T(2));
        std::fill(ibuf, ibuf + kTile * kTile, -1);
        const TriSetup<T>* st = setup.get() + g * F;
        for (int64_t e = tile_begin[g * T_count + tile]; e < tile_begin[g * T_count + tile + 1]; ++e) {
          const int32_t f = list[e];
          const TriSetup<T>& s = st[f];
          const int xa = std::max(s.x0, x_begin), xb = std::min(s.x1, x_end - 1);
          const int ya = std::max(s.y0, y_begin), yb = std::min(s.y1, y_end - 1);
          for (int y = ya; y <= yb; ++y) {
            const T py = pys[y - y_begin];
            for (int x = xa; x <= xb; ++x) {
              T depth;
              if (!raster::covers(s, pxs[x - x_begin], py, depth)) continue;
              const int local = (y - y_begin) * kTile + (x - x_begin);
              if (depth < zbuf[local]) {  // list is in id order: lower id wins ties
                zbuf[local] = depth;
                ibuf[local] = f;
              }
            }
          }
        }
        T* out = rast + (b0 + g) * int64_t(H) * W * 4;
        for (int y = y_begin; y < y_end; ++y) {
          for (int x = x_begin; x < x_end; ++x) {
            const int local = (y - y_begin) * kTile + (x - x_begin);
            T* o = out + (int64_t(y) * W + x) * 4;
            const int32_t f = ibuf[local];
            if (f < 0) {
              o[0] = o[1] = o[2] = o[3] = T(0);
              continue;
            }
            T u, v;
            raster::barycentrics(st[f], pxs[x - x_begin], pys[y - y_begin], u, v);
            o[0] = u;
            o[1] = v;
            o[2] = zbuf[local];
            o[3] = T(f + 1);
          }
        }
      }
    });
  }
}

// ---- Direct path: whole images per task, depth test straight into the output --------------

// Direct rasterization: every (image, triangle part) item depth-tests its triangles into a
// full-image buffer; parts = 1 when the batch alone keeps every thread busy, otherwise the
// triangles of an image are split into `parts` id ranges whose buffers are merged in id order.
// Best when triangles are small (dense meshes): there is no binning and no per-tile re-test.
template <typename T>
void rasterize_direct_impl(const T* pos, const int32_t* tri, T* rast, int64_t B, int64_t V,
                           int64_t F, int H, int W, int64_t parts, bool simd_ok) {
  const bool simd = simd_ok && std::is_same_v<T, float>;
  const int64_t P = int64_t(H) * W;
  const T half_w = T(0.5) * T(W), half_h = T(0.5) * T(H);
  // Scratch images for the parts after the first (which writes into rast itself).
  std::vector<T> scratch(B * (parts - 1) * P * 4);
  auto buffer = [&](int64_t b, int64_t part) {
    return part == 0 ? rast + b * P * 4 : scratch.data() + (b * (parts - 1) + part - 1) * P * 4;
  };
  // The SIMD kernel reads the triangle indices column by column. Scratch buffers are kept per
  // thread across calls (fresh multi-megabyte allocations cost a page fault per 4 KiB).
  static thread_local std::vector<int32_t> cols;
  if (simd) {
    if (cols.size() < size_t(3 * F)) cols.resize(3 * F);
    for (int64_t f = 0; f < F; ++f)
      for (int k = 0; k < 3; ++k) cols[k * F + f] = tri[3 * f + k];
  }
  const int32_t* col = cols.data();  // this thread's buffer, read by the workers
  const bool small = B * F + B * P < (int64_t(1) << 15);
  // With one part per image, empty pixels get depth 0 while the image is still in cache.
  auto finish = [&](T* out) {
    if (parts != 1) return;
    for (int64_t i = 0; i < P; ++i) out[4 * i + 2] = out[4 * i + 3] == T(0) ? T(0) : out[4 * i + 2];
  };
  at::parallel_for(0, B * parts, small ? B * parts : 1, [&](int64_t begin, int64_t end) {
    static thread_local std::vector<uint32_t> code;
    static thread_local std::vector<T> sx, sy;
    static thread_local std::vector<float> rec_store;
    if (!simd && code.size() < size_t(V)) {
      code.resize(V);
      sx.resize(V);
      sy.resize(V);
    }
    // 32-byte aligned per-vertex records for the SIMD kernel.
    if (simd && rec_store.size() < size_t(raster_cpu::kRecord * V + 8))
      rec_store.resize(raster_cpu::kRecord * V + 8);
    float* rec = reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(rec_store.data()) + 31) &
                                          ~uintptr_t(31));
    for (int64_t item = begin; item < end; ++item) {
      const int64_t b = item / parts, part = item % parts;
      const T* p = pos + b * V * 4;
      T* out = buffer(b, part);
      // (u, v, depth, id + 1) = (0, 0, 2, 0): empty, farther than any covered depth.
      for (int64_t i = 0; i < P; ++i) {
        out[4 * i] = out[4 * i + 1] = out[4 * i + 3] = T(0);
        out[4 * i + 2] = T(2);
      }
      const int64_t f_begin = F * part / parts, f_end = F * (part + 1) / parts;
      if constexpr (std::is_same_v<T, float>) {
        if (simd) {
          raster_cpu::vertex_pass_avx2(p, V, half_w, half_h, rec);
          raster_cpu::raster_triangles_avx2(p, tri, col, col + F, col + 2 * F,
                                            f_begin, f_end, rec, H, W, out);
          finish(out);
          continue;
        }
      }
      raster_cpu::vertex_pass(p, 0, V, half_w, half_h, code.data(), sx.data(), sy.data());
      for (int64_t f = f_begin; f < f_end; ++f)
        raster_cpu::raster_triangle(p, tri, f, code.data(), sx.data(), sy.data(), H, W, out);
      finish(out);
    }
  });
  if (parts == 1) return;
  // Merge the parts in id order (strict: a later part only wins on a nearer depth) and clear
  // the depth of empty pixels.
  at::parallel_for(0, B * P, small ? B * P : 4096, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t b = i / P, pix = i % P;
      T* o = rast + i * 4;
      for (int64_t part = 1; part < parts; ++part) {
        const T* s = buffer(b, part) + pix * 4;
        if (s[2] < o[2]) {
          o[0] = s[0];
          o[1] = s[1];
          o[2] = s[2];
          o[3] = s[3];
        }
      }
      if (o[3] == T(0)) o[2] = T(0);
    }
  });
}

constexpr int64_t kDirectMaxPixels = 512 * 512;

enum class RasterPath { kBinned, kDirect };

// Which CPU path rasterizes a call. Both give bit-identical results. The op's `cpu_path`
// argument ("auto", "binned" or "direct", checked by check_rasterize_args) picks one; the
// environment variable PYFAID_CPU_RASTER=binned|direct, a debugging switch, overrides it (unset,
// empty or auto: the argument decides). auto: the direct path unless the image is large (its
// full-image buffers then leave the cache, and the binned path's tiles keep every thread's
// working set small). The direct path uses the AVX2 kernel for float32 where the op's `simd`
// argument and raster_cpu::simd_enabled() allow it.
RasterPath cpu_raster_path(int64_t H, int64_t W, std::string_view cpu_path) {
  const char* env = std::getenv("PYFAID_CPU_RASTER");
  if (env != nullptr && *env != '\0' && std::strcmp(env, "auto") != 0) {
    if (std::strcmp(env, "binned") == 0) return RasterPath::kBinned;
    if (std::strcmp(env, "direct") == 0) return RasterPath::kDirect;
    TORCH_CHECK(false, "pyfaid::rasterize: PYFAID_CPU_RASTER must be auto, binned or direct, got '",
                env, "'");
  }
  if (cpu_path == "binned") return RasterPath::kBinned;
  if (cpu_path == "direct") return RasterPath::kDirect;
  return H * W <= kDirectMaxPixels ? RasterPath::kDirect : RasterPath::kBinned;
}

template <typename T>
void rasterize_backward_cpu_impl(const T* grad_rast, const T* pos, const int32_t* tri,
                                 const T* rast, T* grad_pos, int64_t B, int64_t V, int64_t F,
                                 int H, int W, bool simd_ok) {
  const int64_t P = int64_t(H) * W;
  // Rows [y_begin, y_end) of image b into gpos_b (image b's [V, 4] gradient buffer).
  const bool simd = std::is_same_v<T, float> && simd_ok;
  auto rows = [&](int64_t b, int y_begin, int y_end, T* gpos_b) {
    const T* p = pos + b * V * 4;
    for (int y = y_begin; y < y_end; ++y) {
      const T* r = rast + (b * P + int64_t(y) * W) * 4;
      const T* g = grad_rast + (b * P + int64_t(y) * W) * 4;
      if constexpr (std::is_same_v<T, float>) {
        if (simd) {
          raster_cpu::backward_row_avx2(r, g, p, tri, F, y, H, W, gpos_b);
          continue;
        }
      }
      raster_cpu::backward_pixels(r, g, p, tri, F, y, 0, W, H, W, gpos_b);
    }
  };
  const int64_t nthreads = at::get_num_threads();
  if (B >= nthreads || B * P < 16384) {
    // Whole images per task: each writes only its own grad_pos[b].
    // grad_pos arrives uninitialised: each task zeroes its own images (in parallel, and the
    // image's buffer is then in cache for the accumulation).
    at::parallel_for(0, B, B * P < 16384 ? B : 1, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
        std::fill(grad_pos + b * V * 4, grad_pos + (b + 1) * V * 4, T(0));
        rows(b, 0, H, grad_pos + b * V * 4);
      }
    });
    return;
  }
  // Few images: split each image's rows into chunks with private gradient buffers, reduced in
  // a fixed order (deterministic).
  const int64_t chunks = std::min<int64_t>(H, (nthreads + B - 1) / B);
  std::vector<T> buf(chunks * B * V * 4, T(0));
  at::parallel_for(0, B * chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t item = begin; item < end; ++item) {
      const int64_t b = item / chunks, c = item % chunks;
      rows(b, static_cast<int>(H * c / chunks), static_cast<int>(H * (c + 1) / chunks),
           buf.data() + (c * B + b) * V * 4);
    }
  });
  const int64_t n = B * V * 4;
  at::parallel_for(0, n, 4096, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      T acc = T(0);
      for (int64_t c = 0; c < chunks; ++c) acc += buf[c * n + i];
      grad_pos[i] = acc;
    }
  });
}

at::Tensor rasterize_cpu(const at::Tensor& pos, const at::Tensor& tri, int64_t height,
                         int64_t width, bool check_indices, std::string_view cpu_path, bool simd) {
  const char* op = "pyfaid::rasterize";
  raster::check_rasterize_args(pos, tri, height, width, cpu_path, op);
  const int64_t B = pos.size(0), V = pos.size(1), F = tri.size(0);
  if (check_indices) raster::check_tri_range(tri, V, op, "pos");
  auto rast = at::empty({B, height, width, 4}, pos.options());
  if (B == 0) return rast;
  if (F == 0) return rast.zero_();
  AT_DISPATCH_FLOATING_TYPES(pos.scalar_type(), "rasterize_cpu", [&] {
    const RasterPath path = cpu_raster_path(height, width, cpu_path);
    if (path == RasterPath::kBinned) {
      rasterize_cpu_impl<scalar_t>(pos.data_ptr<scalar_t>(), tri.data_ptr<int32_t>(),
                                   rast.data_ptr<scalar_t>(), B, V, F, static_cast<int>(height),
                                   static_cast<int>(width));
    } else {
      const int64_t nt = at::get_num_threads();
      const int64_t parts = B >= nt ? 1 : (nt + B - 1) / B;
      rasterize_direct_impl<scalar_t>(pos.data_ptr<scalar_t>(), tri.data_ptr<int32_t>(),
                                      rast.data_ptr<scalar_t>(), B, V, F, static_cast<int>(height),
                                      static_cast<int>(width), parts,
                                      simd && raster_cpu::simd_enabled());
    }
  });
  return rast;
}

at::Tensor rasterize_backward_cpu(const at::Tensor& grad_rast, const at::Tensor& pos,
                                  const at::Tensor& tri, const at::Tensor& rast,
                                  bool check_indices, bool simd) {
  const char* op = "pyfaid::rasterize_backward";
  raster::check_rasterize_backward_args(grad_rast, pos, tri, rast, op);
  const int64_t B = pos.size(0), V = pos.size(1), F = tri.size(0);
  if (check_indices) raster::check_tri_range(tri, V, op, "pos");
  auto grad_pos = at::empty_like(pos);  // every entry is written by the kernel
  if (B == 0 || F == 0 || rast.numel() == 0) return grad_pos.zero_();
  AT_DISPATCH_FLOATING_TYPES(pos.scalar_type(), "rasterize_backward_cpu", [&] {
    rasterize_backward_cpu_impl<scalar_t>(
        grad_rast.data_ptr<scalar_t>(), pos.data_ptr<scalar_t>(), tri.data_ptr<int32_t>(),
        rast.data_ptr<scalar_t>(), grad_pos.data_ptr<scalar_t>(), B, V, F,
        static_cast<int>(rast.size(1)), static_cast<int>(rast.size(2)),
        simd && raster_cpu::simd_enabled());
  });
  return grad_pos;
}

}  // namespace

TORCH_LIBRARY_IMPL(pyfaid, CPU, m) {
  m.impl("rasterize", &rasterize_cpu);
  m.impl("rasterize_backward", &rasterize_backward_cpu);
}

}  // namespace pyfaid
