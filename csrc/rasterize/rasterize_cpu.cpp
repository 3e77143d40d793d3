// CPU rasterizer: triangle setup once, binning into kTile x kTile screen tiles, then
// at::parallel_for over (image, tile), each tile testing only the triangles binned to it.
//
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
#include <memory>
#include <vector>

#include "rasterize/rasterize.h"

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
      for (int64_t i = begin; i < end; ++i) {
        const T* v = pos + (b0 * V + i) * 4;
        vcode[i] = raster::vertex_code(v);
        if (!(vcode[i] & raster::kVertInvalid)) {
          raster::vertex_screen(v, half_w, half_h, vsx[i], vsy[i]);
        } else {
          vsx[i] = vsy[i] = T(0);
        }
      }
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

template <typename T>
void rasterize_backward_cpu_impl(const T* grad_rast, const T* pos, const int32_t* tri,
                                 const T* rast, T* grad_pos, int64_t B, int64_t V, int64_t F,
                                 int H, int W) {
  const T half_w = T(0.5) * T(W), half_h = T(0.5) * T(H);
  const int64_t P = int64_t(H) * W;
  // One pixel's contribution to the gradient of its triangle's three vertices.
  auto pixel = [&](int64_t b, int64_t pix, T* gpos_b) {
    const T* r = rast + (b * P + pix) * 4;
    const int64_t f = raster::decode_id(r[3]);
    if (f < 0 || f >= F) return;
    const T* g = grad_rast + (b * P + pix) * 4;
    if (g[0] == T(0) && g[1] == T(0)) return;
    const int32_t* t = tri + 3 * f;
    const T* p = pos + b * V * 4;
    T q[3][3], gq[3][3];
    for (int k = 0; k < 3; ++k) raster::load_q(p + 4 * int64_t(t[k]), half_w, half_h, q[k]);
    const int x = static_cast<int>(pix % W), y = static_cast<int>(pix / W);
    raster::barycentrics_backward(q, raster::pixel_centre<T>(x, W), raster::pixel_centre<T>(y, H),
                                  g[0], g[1], gq);
    for (int k = 0; k < 3; ++k) {
      T* gp = gpos_b + 4 * int64_t(t[k]);
      gp[0] += gq[k][0] * half_w;
      gp[1] += gq[k][1] * half_h;
      gp[3] += gq[k][2];
    }
  };
  const int64_t nthreads = at::get_num_threads();
  if (B >= nthreads || B * P < 16384) {
    // Whole images per task: each writes only its own grad_pos[b].
    at::parallel_for(0, B, B * P < 16384 ? B : 1, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b)
        for (int64_t pix = 0; pix < P; ++pix) pixel(b, pix, grad_pos + b * V * 4);
    });
    return;
  }
  // Few images: split pixels into chunks with private gradient buffers, reduced in order.
  const int64_t chunks = B * P < 16384 ? 1 : nthreads;
  std::vector<T> buf(chunks * B * V * 4, T(0));
  at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      const int64_t lo = B * P * c / chunks, hi = B * P * (c + 1) / chunks;
      T* mine = buf.data() + c * B * V * 4;
      for (int64_t i = lo; i < hi; ++i) pixel(i / P, i % P, mine + (i / P) * V * 4);
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
                         int64_t width) {
  const char* op = "pyfaid::rasterize";
  raster::check_pos_tri(pos, tri, op);
  TORCH_CHECK(height >= 1 && width >= 1, op, ": `height` and `width` must be >= 1, got ", height,
              " x ", width);
  TORCH_CHECK(height <= (1 << 15) && width <= (1 << 15), op,
              ": resolution must be at most 32768 x 32768, got ", height, " x ", width);
  const int64_t B = pos.size(0), V = pos.size(1), F = tri.size(0);
  raster::check_tri_range(tri, V, op, "pos");
  auto rast = at::empty({B, height, width, 4}, pos.options());
  if (B == 0) return rast;
  if (F == 0) return rast.zero_();
  AT_DISPATCH_FLOATING_TYPES(pos.scalar_type(), "rasterize_cpu", [&] {
    rasterize_cpu_impl<scalar_t>(pos.data_ptr<scalar_t>(), tri.data_ptr<int32_t>(),
                                 rast.data_ptr<scalar_t>(), B, V, F, static_cast<int>(height),
                                 static_cast<int>(width));
  });
  return rast;
}

at::Tensor rasterize_backward_cpu(const at::Tensor& grad_rast, const at::Tensor& pos,
                                  const at::Tensor& tri, const at::Tensor& rast) {
  const char* op = "pyfaid::rasterize_backward";
  raster::check_pos_tri(pos, tri, op);
  raster::check_rast(rast, pos, "rast", op);
  raster::check_rast(grad_rast, pos, "grad_rast", op);
  TORCH_CHECK(rast.size(0) == pos.size(0), op, ": `rast` batch ", rast.size(0),
              " does not match `pos` batch ", pos.size(0));
  TORCH_CHECK(grad_rast.sizes() == rast.sizes(), op, ": `grad_rast` shape ", grad_rast.sizes(),
              " does not match `rast` shape ", rast.sizes());
  const int64_t B = pos.size(0), V = pos.size(1), F = tri.size(0);
  raster::check_tri_range(tri, V, op, "pos");
  auto grad_pos = at::zeros_like(pos);
  if (B == 0 || F == 0 || rast.numel() == 0) return grad_pos;
  AT_DISPATCH_FLOATING_TYPES(pos.scalar_type(), "rasterize_backward_cpu", [&] {
    rasterize_backward_cpu_impl<scalar_t>(
        grad_rast.data_ptr<scalar_t>(), pos.data_ptr<scalar_t>(), tri.data_ptr<int32_t>(),
        rast.data_ptr<scalar_t>(), grad_pos.data_ptr<scalar_t>(), B, V, F,
        static_cast<int>(rast.size(1)), static_cast<int>(rast.size(2)));
  });
  return grad_pos;
}

}  // namespace

TORCH_LIBRARY_IMPL(pyfaid, CPU, m) {
  m.impl("rasterize", &rasterize_cpu);
  m.impl("rasterize_backward", &rasterize_backward_cpu);
}

}  // namespace pyfaid
