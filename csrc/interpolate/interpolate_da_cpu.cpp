// CPU kernels of interpolate_da (image-space attribute derivatives, interpolate_da.h) and its
// backward: parallel over pixel rows; the attribute gradient is accumulated race-free
// (utils/accumulate_cpu.h), the rast_db gradient is written per pixel.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <atomic>
#include <tuple>
#include <vector>

#include "interpolate/interpolate_da.h"
#include "utils/accumulate_cpu.h"

namespace pyfaid {
namespace {

template <typename T>
void interpolate_da_cpu_impl(const T* attr, const T* rast, const int32_t* tri, const T* db,
                             const int32_t* diff, int64_t n, T* out, int64_t B, int64_t Ba,
                             int64_t V, int64_t C, int64_t P, int64_t F,
                             std::atomic<bool>& bad_id) {
  at::parallel_for(0, B * P, 8192, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      T* o = out + 2 * n * i;
      const int64_t f = raster::decode_id(rast[4 * i + 3]);
      if (f < 0 || f >= F) {
        if (f >= F) bad_id = true;
        for (int64_t k = 0; k < 2 * n; ++k) o[k] = T(0);
        continue;
      }
      const T* a = attr + (Ba == 1 ? 0 : i / P) * V * C;
      const int32_t* t = tri + 3 * f;
      interp::attr_da(a + C * t[0], a + C * t[1], a + C * t[2], db + 4 * i, diff, n, o);
    }
  });
}

template <typename T>
void interpolate_da_backward_cpu_impl(const T* grad_da, const T* attr, const T* rast,
                                      const int32_t* tri, const T* db, const int32_t* diff,
                                      int64_t n, T* grad_attr, T* grad_db, int64_t B, int64_t Ba,
                                      int64_t V, int64_t C, int64_t H, int64_t W, int64_t F,
                                      std::atomic<bool>& bad_id) {
  cpu::accumulate_rows<T>(B, H, W, V * C, Ba == 1, grad_attr,
                          [&](int64_t b, int64_t y0, int64_t y1, T* ga) {
    const T* a = attr + (Ba == 1 ? 0 : b) * V * C;
    for (int64_t i = (b * H + y0) * W; i < (b * H + y1) * W; ++i) {
      T* gd = grad_db + 4 * i;
      gd[0] = gd[1] = gd[2] = gd[3] = T(0);
      const int64_t f = raster::decode_id(rast[4 * i + 3]);
      if (f < 0 || f >= F) {
        if (f >= F) bad_id = true;
        continue;
      }
      const int32_t* t = tri + 3 * f;
      const T* a0 = a + C * t[0];
      const T* a1 = a + C * t[1];
      const T* a2 = a + C * t[2];
      const T* g = grad_da + 2 * n * i;
      const T* d = db + 4 * i;
      for (int64_t k = 0; k < n; ++k) {
        const int32_t c = diff[k];
        const T gx = g[2 * k], gy = g[2 * k + 1];
        const T d0 = a0[c] - a2[c], d1 = a1[c] - a2[c];
        gd[0] += gx * d0;
        gd[1] += gy * d0;
        gd[2] += gx * d1;
        gd[3] += gy * d1;
        const T t0 = gx * d[0] + gy * d[1], t1 = gx * d[2] + gy * d[3];
        ga[C * t[0] + c] += t0;
        ga[C * t[1] + c] += t1;
        ga[C * t[2] + c] -= t0 + t1;
      }
    }
  });
}

at::Tensor interpolate_da_cpu(const at::Tensor& attr, const at::Tensor& rast,
                              const at::Tensor& tri, const at::Tensor& rast_db,
                              at::IntArrayRef diff_attrs, bool check_indices) {
  const char* op = "pyfaid::interpolate_da";
  interp::check_interpolate_da_args(nullptr, attr, rast, tri, rast_db, diff_attrs, op);
  const int64_t B = rast.size(0), H = rast.size(1), W = rast.size(2);
  const int64_t Ba = attr.size(0), V = attr.size(1), C = attr.size(2), F = tri.size(0);
  if (check_indices) raster::check_tri_range(tri, V, op, "attr");
  const int64_t n = static_cast<int64_t>(diff_attrs.size());
  auto out = at::empty({B, H, W, 2 * n}, attr.options());
  if (out.numel() == 0) return out;
  const std::vector<int32_t> diff = interp::channel_list(diff_attrs);
  std::atomic<bool> bad_id{false};
  AT_DISPATCH_FLOATING_TYPES(attr.scalar_type(), "interpolate_da_cpu", [&] {
    interpolate_da_cpu_impl<scalar_t>(attr.data_ptr<scalar_t>(), rast.data_ptr<scalar_t>(),
                                      tri.data_ptr<int32_t>(), rast_db.data_ptr<scalar_t>(),
                                      diff.data(), n, out.data_ptr<scalar_t>(), B, Ba, V, C,
                                      H * W, F, bad_id);
  });
  TORCH_CHECK(!bad_id, op, ": `rast` holds triangle ids beyond the ", F, " rows of `tri`");
  return out;
}

std::tuple<at::Tensor, at::Tensor> interpolate_da_backward_cpu(
    const at::Tensor& grad_da, const at::Tensor& attr, const at::Tensor& rast,
    const at::Tensor& tri, const at::Tensor& rast_db, at::IntArrayRef diff_attrs,
    bool check_indices) {
  const char* op = "pyfaid::interpolate_da_backward";
  interp::check_interpolate_da_args(&grad_da, attr, rast, tri, rast_db, diff_attrs, op);
  const int64_t B = rast.size(0), H = rast.size(1), W = rast.size(2);
  const int64_t Ba = attr.size(0), V = attr.size(1), C = attr.size(2), F = tri.size(0);
  if (check_indices) raster::check_tri_range(tri, V, op, "attr");
  auto grad_attr = at::empty_like(attr);  // every entry is written
  auto grad_db = at::empty_like(rast_db);
  const int64_t n = static_cast<int64_t>(diff_attrs.size());
  if (rast.numel() == 0 || attr.numel() == 0) return {grad_attr.zero_(), grad_db.zero_()};
  const std::vector<int32_t> diff = interp::channel_list(diff_attrs);
  std::atomic<bool> bad_id{false};
  AT_DISPATCH_FLOATING_TYPES(attr.scalar_type(), "interpolate_da_backward_cpu", [&] {
    interpolate_da_backward_cpu_impl<scalar_t>(
        grad_da.data_ptr<scalar_t>(), attr.data_ptr<scalar_t>(), rast.data_ptr<scalar_t>(),
        tri.data_ptr<int32_t>(), rast_db.data_ptr<scalar_t>(), diff.data(), n,
        grad_attr.data_ptr<scalar_t>(), grad_db.data_ptr<scalar_t>(), B, Ba, V, C, H, W, F,
        bad_id);
  });
  TORCH_CHECK(!bad_id, op, ": `rast` holds triangle ids beyond the ", F, " rows of `tri`");
  return {grad_attr, grad_db};
}

}  // namespace

TORCH_LIBRARY_IMPL(pyfaid, CPU, m) {
  m.impl("interpolate_da", &interpolate_da_cpu);
  m.impl("interpolate_da_backward", &interpolate_da_backward_cpu);
}

}  // namespace pyfaid
