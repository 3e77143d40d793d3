// CPU interpolation: parallel over pixels. The backward scatters into per-vertex gradients
// race-free: whole images per task when every image has its own attributes and there are enough
// images, otherwise pixel chunks with private gradient buffers reduced in a fixed order.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <atomic>
#include <tuple>
#include <vector>

#include "interpolate/interpolate.h"

namespace pyfaid {
namespace {

template <typename T>
void interpolate_cpu_impl(const T* attr, const T* rast, const int32_t* tri, T* out, int64_t B,
                          int64_t Ba, int64_t V, int64_t C, int64_t P, int64_t F,
                          std::atomic<bool>& bad_id) {
  at::parallel_for(0, B * P, 8192, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const T* r = rast + 4 * i;
      T* o = out + C * i;
      const int64_t f = raster::decode_id(r[3]);
      if (f < 0 || f >= F) {
        if (f >= F) bad_id = true;
        for (int64_t c = 0; c < C; ++c) o[c] = T(0);
        continue;
      }
      const int64_t b = i / P;
      const T* a = attr + (Ba == 1 ? 0 : b) * V * C;
      const int32_t* t = tri + 3 * f;
      const T* a0 = a + C * t[0];
      const T* a1 = a + C * t[1];
      const T* a2 = a + C * t[2];
      const T u = r[0], v = r[1], w = T(1) - r[0] - r[1];
      for (int64_t c = 0; c < C; ++c) o[c] = u * a0[c] + v * a1[c] + w * a2[c];
    }
  });
}

template <typename T>
void interpolate_backward_cpu_impl(const T* grad_out, const T* attr, const T* rast,
                                   const int32_t* tri, T* grad_attr, T* grad_rast, int64_t B,
                                   int64_t Ba, int64_t V, int64_t C, int64_t P, int64_t F,
                                   std::atomic<bool>& bad_id) {
  // Pixel i: writes grad_rast[i] and adds into ga (the gradient buffer of its image's attr).
  auto pixel = [&](int64_t i, T* ga) {
    const T* r = rast + 4 * i;
    T* gr = grad_rast + 4 * i;
    gr[0] = gr[1] = gr[2] = gr[3] = T(0);
    const int64_t f = raster::decode_id(r[3]);
    if (f < 0 || f >= F) {
      if (f >= F) bad_id = true;
      return;
    }
    const T* g = grad_out + C * i;
    const T* a = attr + (Ba == 1 ? 0 : i / P) * V * C;
    const int32_t* t = tri + 3 * f;
    const T* a0 = a + C * t[0];
    const T* a1 = a + C * t[1];
    const T* a2 = a + C * t[2];
    T* g0 = ga + C * t[0];
    T* g1 = ga + C * t[1];
    T* g2 = ga + C * t[2];
    const T u = r[0], v = r[1], w = T(1) - r[0] - r[1];
    T gu = T(0), gv = T(0);
    for (int64_t c = 0; c < C; ++c) {
      const T gc = g[c];
      gu += gc * (a0[c] - a2[c]);
      gv += gc * (a1[c] - a2[c]);
      g0[c] += u * gc;
      g1[c] += v * gc;
      g2[c] += w * gc;
    }
    gr[0] = gu;
    gr[1] = gv;
  };
  const int64_t nthreads = at::get_num_threads();
  if (Ba == B && (B >= nthreads || B * P < 16384)) {
    at::parallel_for(0, B, B * P < 16384 ? B : 1, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b)
        for (int64_t p = 0; p < P; ++p) pixel(b * P + p, grad_attr + b * V * C);
    });
    return;
  }
  const int64_t chunks = B * P < 16384 ? 1 : nthreads;
  const int64_t n = Ba * V * C;
  std::vector<T> buf(chunks * n, T(0));
  at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      const int64_t lo = B * P * c / chunks, hi = B * P * (c + 1) / chunks;
      T* mine = buf.data() + c * n;
      for (int64_t i = lo; i < hi; ++i) pixel(i, mine + (Ba == 1 ? 0 : i / P) * V * C);
    }
  });
  at::parallel_for(0, n, 4096, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      T acc = T(0);
      for (int64_t c = 0; c < chunks; ++c) acc += buf[c * n + i];
      grad_attr[i] = acc;
    }
  });
}

at::Tensor interpolate_cpu(const at::Tensor& attr, const at::Tensor& rast, const at::Tensor& tri) {
  const char* op = "pyfaid::interpolate";
  interp::check_inputs(attr, rast, tri, op);
  const int64_t B = rast.size(0), H = rast.size(1), W = rast.size(2);
  const int64_t Ba = attr.size(0), V = attr.size(1), C = attr.size(2), F = tri.size(0);
  raster::check_tri_range(tri, V, op, "attr");
  auto out = at::empty({B, H, W, C}, attr.options());
  if (out.numel() == 0) return out;
  std::atomic<bool> bad_id{false};
  AT_DISPATCH_FLOATING_TYPES(attr.scalar_type(), "interpolate_cpu", [&] {
    interpolate_cpu_impl<scalar_t>(attr.data_ptr<scalar_t>(), rast.data_ptr<scalar_t>(),
                                   tri.data_ptr<int32_t>(), out.data_ptr<scalar_t>(), B, Ba, V,
                                   C, H * W, F, bad_id);
  });
  TORCH_CHECK(!bad_id, op, ": `rast` holds triangle ids beyond the ", F, " rows of `tri`");
  return out;
}

std::tuple<at::Tensor, at::Tensor> interpolate_backward_cpu(const at::Tensor& grad_out,
                                                            const at::Tensor& attr,
                                                            const at::Tensor& rast,
                                                            const at::Tensor& tri) {
  const char* op = "pyfaid::interpolate_backward";
  interp::check_inputs(attr, rast, tri, op);
  check_tensor(grad_out, "grad_out", attr.scalar_type(), 4, op);
  const int64_t B = rast.size(0), H = rast.size(1), W = rast.size(2);
  const int64_t Ba = attr.size(0), V = attr.size(1), C = attr.size(2), F = tri.size(0);
  TORCH_CHECK(grad_out.sizes() == at::IntArrayRef({B, H, W, C}), op, ": `grad_out` must have shape [",
              B, ", ", H, ", ", W, ", ", C, "], got ", grad_out.sizes());
  check_same_device(grad_out, "grad_out", attr, "attr", op);
  raster::check_tri_range(tri, V, op, "attr");
  auto grad_attr = at::zeros_like(attr);
  auto grad_rast = at::empty_like(rast);  // every pixel is written
  if (rast.numel() == 0 || C == 0) return {grad_attr, grad_rast.zero_()};
  std::atomic<bool> bad_id{false};
  AT_DISPATCH_FLOATING_TYPES(attr.scalar_type(), "interpolate_backward_cpu", [&] {
    interpolate_backward_cpu_impl<scalar_t>(
        grad_out.data_ptr<scalar_t>(), attr.data_ptr<scalar_t>(), rast.data_ptr<scalar_t>(),
        tri.data_ptr<int32_t>(), grad_attr.data_ptr<scalar_t>(), grad_rast.data_ptr<scalar_t>(),
        B, Ba, V, C, H * W, F, bad_id);
  });
  TORCH_CHECK(!bad_id, op, ": `rast` holds triangle ids beyond the ", F, " rows of `tri`");
  return {grad_attr, grad_rast};
}

}  // namespace

TORCH_LIBRARY_IMPL(pyfaid, CPU, m) {
  m.impl("interpolate", &interpolate_cpu);
  m.impl("interpolate_backward", &interpolate_backward_cpu);
}

}  // namespace pyfaid
