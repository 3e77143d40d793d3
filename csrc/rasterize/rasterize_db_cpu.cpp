// CPU kernels of rasterize_db (the barycentrics' image-space derivatives, rasterize_db.h) and its
// backward: parallel over pixel rows; the backward accumulates into per-image (or per-chunk)
// gradient buffers, race-free and deterministic (utils/accumulate_cpu.h).
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "rasterize/rasterize_db.h"
#include "utils/accumulate_cpu.h"

namespace pyfaid {
namespace {

template <typename T>
void rasterize_db_cpu_impl(const T* pos, const int32_t* tri, const T* rast, T* db, int64_t B,
                           int64_t V, int64_t F, int H, int W) {
  const T half_w = T(0.5) * T(W), half_h = T(0.5) * T(H);
  at::parallel_for(0, B * H, B * H * W < 16384 ? B * H : 8, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t b = row / H;
      const int y = static_cast<int>(row % H);
      const T* p = pos + b * V * 4;
      const T py = raster::pixel_centre<T>(y, H);
      for (int x = 0; x < W; ++x) {
        const int64_t i = row * W + x;
        T* o = db + 4 * i;
        const int64_t f = raster::decode_id(rast[4 * i + 3]);
        if (f < 0 || f >= F) {
          o[0] = o[1] = o[2] = o[3] = T(0);
          continue;
        }
        T q[3][3];
        raster::triangle_q(p, tri, f, half_w, half_h, q);
        raster::barycentric_db(q, raster::pixel_centre<T>(x, W), py, o);
      }
    }
  });
}

template <typename T>
void rasterize_db_backward_cpu_impl(const T* grad_db, const T* pos, const int32_t* tri,
                                    const T* rast, T* grad_pos, int64_t B, int64_t V, int64_t F,
                                    int H, int W) {
  const T half_w = T(0.5) * T(W), half_h = T(0.5) * T(H);
  cpu::accumulate_rows<T>(B, H, W, V * 4, false, grad_pos,
                          [&](int64_t b, int64_t y0, int64_t y1, T* gpos) {
    const T* p = pos + b * V * 4;
    for (int64_t y = y0; y < y1; ++y) {
      const T py = raster::pixel_centre<T>(static_cast<int>(y), H);
      for (int x = 0; x < W; ++x) {
        const int64_t i = (b * H + y) * W + x;
        const T* g = grad_db + 4 * i;
        if (g[0] == T(0) && g[1] == T(0) && g[2] == T(0) && g[3] == T(0)) continue;
        const int64_t f = raster::decode_id(rast[4 * i + 3]);
        if (f < 0 || f >= F) continue;
        T q[3][3], gq[3][3];
        raster::triangle_q(p, tri, f, half_w, half_h, q);
        raster::barycentric_db_backward(q, raster::pixel_centre<T>(x, W), py, g, gq);
        for (int k = 0; k < 3; ++k) {
          T* gp = gpos + 4 * int64_t(tri[3 * f + k]);
          gp[0] += gq[k][0] * half_w;
          gp[1] += gq[k][1] * half_h;
          gp[3] += gq[k][2];
        }
      }
    }
  });
}

at::Tensor rasterize_db_cpu(const at::Tensor& pos, const at::Tensor& tri, const at::Tensor& rast,
                            bool check_indices) {
  const char* op = "pyfaid::rasterize_db";
  raster::check_rasterize_db_args(nullptr, pos, tri, rast, op);
  const int64_t B = pos.size(0), V = pos.size(1), F = tri.size(0);
  if (check_indices) raster::check_tri_range(tri, V, op, "pos");
  auto db = at::empty_like(rast);
  if (rast.numel() == 0) return db;
  AT_DISPATCH_FLOATING_TYPES(pos.scalar_type(), "rasterize_db_cpu", [&] {
    rasterize_db_cpu_impl<scalar_t>(pos.data_ptr<scalar_t>(), tri.data_ptr<int32_t>(),
                                    rast.data_ptr<scalar_t>(), db.data_ptr<scalar_t>(), B, V, F,
                                    static_cast<int>(rast.size(1)), static_cast<int>(rast.size(2)));
  });
  return db;
}

at::Tensor rasterize_db_backward_cpu(const at::Tensor& grad_db, const at::Tensor& pos,
                                     const at::Tensor& tri, const at::Tensor& rast,
                                     bool check_indices) {
  const char* op = "pyfaid::rasterize_db_backward";
  raster::check_rasterize_db_args(&grad_db, pos, tri, rast, op);
  const int64_t B = pos.size(0), V = pos.size(1), F = tri.size(0);
  if (check_indices) raster::check_tri_range(tri, V, op, "pos");
  auto grad_pos = at::empty_like(pos);  // every entry is written
  if (rast.numel() == 0 || pos.numel() == 0) return grad_pos.zero_();
  AT_DISPATCH_FLOATING_TYPES(pos.scalar_type(), "rasterize_db_backward_cpu", [&] {
    rasterize_db_backward_cpu_impl<scalar_t>(
        grad_db.data_ptr<scalar_t>(), pos.data_ptr<scalar_t>(), tri.data_ptr<int32_t>(),
        rast.data_ptr<scalar_t>(), grad_pos.data_ptr<scalar_t>(), B, V, F,
        static_cast<int>(rast.size(1)), static_cast<int>(rast.size(2)));
  });
  return grad_pos;
}

}  // namespace

TORCH_LIBRARY_IMPL(pyfaid, CPU, m) {
  m.impl("rasterize_db", &rasterize_db_cpu);
  m.impl("rasterize_db_backward", &rasterize_db_backward_cpu);
}

}  // namespace pyfaid
