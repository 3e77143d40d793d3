// CPU interpolation: parallel over pixels. The backward scatters into per-vertex gradients
// race-free: whole images per task when every image has its own attributes and there are enough
// images, otherwise pixel chunks with private gradient buffers reduced in a fixed order.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <tuple>
#include <type_traits>
#include <vector>

#include "interpolate/interpolate.h"
#include "interpolate/interpolate_cpu.h"
#include "rasterize/rasterize_cpu.h"

namespace pyfaid {
namespace {

// Calls fn(std::integral_constant<int64_t, K>) with K = C for the common channel counts
// (compile-time loops) and K = 0 (C at run time) otherwise.
template <typename Fn>
void dispatch_channels(int64_t C, Fn&& fn) {
  switch (C) {
    case 1: return fn(std::integral_constant<int64_t, 1>());
    case 2: return fn(std::integral_constant<int64_t, 2>());
    case 3: return fn(std::integral_constant<int64_t, 3>());
    case 4: return fn(std::integral_constant<int64_t, 4>());
    default: return fn(std::integral_constant<int64_t, 0>());
  }
}

template <typename T, int64_t kC>
void interpolate_cpu_impl(const T* attr, const T* rast, const int32_t* tri, T* out, int64_t B,
                          int64_t Ba, int64_t V, int64_t C_, int64_t P, int64_t F, bool simd_ok,
                          std::atomic<bool>& bad_id) {
  const int64_t C = kC > 0 ? kC : C_;
  constexpr bool kSimdType = std::is_same_v<T, float> && kC == 3;
  const bool simd = kSimdType && simd_ok;
  at::parallel_for(0, B * P, 8192, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end;) {  // image by image
      const int64_t b = i / P, stop = std::min(end, (b + 1) * P);
      const T* a = attr + (Ba == 1 ? 0 : b) * V * C;
      if constexpr (kSimdType) {
        if (simd) i += interp_cpu::forward3_avx2(rast + 4 * i, a, tri, F, stop - i, out + C * i);
      }
      for (; i < stop; ++i) {
        const T* r = rast + 4 * i;
        T* o = out + C * i;
        const int64_t f = raster::decode_id(r[3]);
        if (f < 0 || f >= F) {
          if (f >= F) bad_id = true;
          for (int64_t c = 0; c < C; ++c) o[c] = T(0);
          continue;
        }
        const int32_t* t = tri + 3 * f;
        const T* a0 = a + C * t[0];
        const T* a1 = a + C * t[1];
        const T* a2 = a + C * t[2];
        const T u = r[0], v = r[1], w = T(1) - r[0] - r[1];
        for (int64_t c = 0; c < C; ++c) o[c] = u * a0[c] + v * a1[c] + w * a2[c];
      }
    }
  });
}

template <typename T, int64_t kC>
void interpolate_backward_cpu_impl(const T* grad_out, const T* attr, const T* rast,
                                   const int32_t* tri, T* grad_attr, T* grad_rast, int64_t B,
                                   int64_t Ba, int64_t V, int64_t C_, int64_t P, int64_t F,
                                   bool simd_ok, std::atomic<bool>& bad_id) {
  const int64_t C = kC > 0 ? kC : C_;
  // Pixel i: writes grad_rast[i] and adds into ga (the gradient buffer of its image's attr,
  // vertex k's entries at ga + gs * k).
  auto pixel = [&](int64_t i, const T* a, T* ga, int64_t gs) {
    const T* r = rast + 4 * i;
    T* gr = grad_rast + 4 * i;
    gr[0] = gr[1] = gr[2] = gr[3] = T(0);
    const int64_t f = raster::decode_id(r[3]);
    if (f < 0 || f >= F) {
      if (f >= F) bad_id = true;
      return;
    }
    const T* g = grad_out + C * i;
    const int32_t* t = tri + 3 * f;
    const T* a0 = a + C * t[0];
    const T* a1 = a + C * t[1];
    const T* a2 = a + C * t[2];
    T* g0 = ga + gs * t[0];
    T* g1 = ga + gs * t[1];
    T* g2 = ga + gs * t[2];
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
  // Pixels [i, stop) of one image (attr block a, gradient buffer ga), the AVX2 kernel first.
  constexpr bool kSimdType = std::is_same_v<T, float> && kC == 3;
  const bool simd = kSimdType && simd_ok;
  auto run = [&](int64_t i, int64_t stop, const T* a, T* ga) {
    if constexpr (kSimdType) {
      if (simd)
        i += interp_cpu::backward3_avx2(grad_out + C * i, a, rast + 4 * i, tri, F, stop - i, ga,
                                        grad_rast + 4 * i);
    }
    for (; i < stop; ++i) pixel(i, a, ga, C);
  };
  const int64_t nthreads = at::get_num_threads();
  if (Ba == B && (B >= nthreads || B * P < 16384)) {
    // Whole images per task; grad_attr arrives uninitialised and every entry is written here.
    at::parallel_for(0, B, B * P < 16384 ? B : 1, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
        const T* a = attr + b * V * C;
        T* ga = grad_attr + b * V * C;
        if constexpr (kSimdType) {
          if (simd) {
            // Accumulate in a [V, 4] buffer (one 16-byte add per vertex), kept per thread.
            static thread_local std::vector<float> acc;
            if (acc.size() < size_t(4 * V)) acc.resize(4 * V);
            std::fill(acc.begin(), acc.begin() + 4 * V, 0.0f);
            int64_t i = b * P;
            i += interp_cpu::backward3_acc4_avx2(grad_out + C * i, a, rast + 4 * i, tri, F,
                                                 (b + 1) * P - i, acc.data(), grad_rast + 4 * i);
            for (; i < (b + 1) * P; ++i) pixel(i, a, acc.data(), 4);
            for (int64_t k = 0; k < V; ++k)
              for (int c = 0; c < 3; ++c) ga[3 * k + c] = acc[4 * k + c];
            continue;
          }
        }
        std::fill(ga, ga + V * C, T(0));
        run(b * P, (b + 1) * P, a, ga);
      }
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
      for (int64_t i = lo; i < hi;) {  // image by image
        const int64_t b = i / P, stop = std::min(hi, (b + 1) * P);
        const int64_t ab = Ba == 1 ? 0 : b;
        run(i, stop, attr + ab * V * C, mine + ab * V * C);
        i = stop;
      }
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

at::Tensor interpolate_cpu(const at::Tensor& attr, const at::Tensor& rast, const at::Tensor& tri,
                           bool check_indices, bool simd) {
  const char* op = "pyfaid::interpolate";
  interp::check_interpolate_args(attr, rast, tri, op);
  const int64_t B = rast.size(0), H = rast.size(1), W = rast.size(2);
  const int64_t Ba = attr.size(0), V = attr.size(1), C = attr.size(2), F = tri.size(0);
  if (check_indices) raster::check_tri_range(tri, V, op, "attr");
  auto out = at::empty({B, H, W, C}, attr.options());
  if (out.numel() == 0) return out;
  std::atomic<bool> bad_id{false};
  AT_DISPATCH_FLOATING_TYPES(attr.scalar_type(), "interpolate_cpu", [&] {
    dispatch_channels(C, [&](auto kC) {
      interpolate_cpu_impl<scalar_t, decltype(kC)::value>(
          attr.data_ptr<scalar_t>(), rast.data_ptr<scalar_t>(), tri.data_ptr<int32_t>(),
          out.data_ptr<scalar_t>(), B, Ba, V, C, H * W, F, simd && raster_cpu::simd_enabled(),
          bad_id);
    });
  });
  TORCH_CHECK(!bad_id, op, ": `rast` holds triangle ids beyond the ", F, " rows of `tri`");
  return out;
}

std::tuple<at::Tensor, at::Tensor> interpolate_backward_cpu(const at::Tensor& grad_out,
                                                            const at::Tensor& attr,
                                                            const at::Tensor& rast,
                                                            const at::Tensor& tri,
                                                            bool check_indices, bool simd) {
  const char* op = "pyfaid::interpolate_backward";
  interp::check_interpolate_backward_args(grad_out, attr, rast, tri, op);
  const int64_t B = rast.size(0), H = rast.size(1), W = rast.size(2);
  const int64_t Ba = attr.size(0), V = attr.size(1), C = attr.size(2), F = tri.size(0);
  if (check_indices) raster::check_tri_range(tri, V, op, "attr");
  // Every entry of both is written by the kernel.
  auto grad_attr = at::empty_like(attr);
  auto grad_rast = at::empty_like(rast);
  if (rast.numel() == 0 || C == 0) return {grad_attr.zero_(), grad_rast.zero_()};
  std::atomic<bool> bad_id{false};
  AT_DISPATCH_FLOATING_TYPES(attr.scalar_type(), "interpolate_backward_cpu", [&] {
    dispatch_channels(C, [&](auto kC) {
      interpolate_backward_cpu_impl<scalar_t, decltype(kC)::value>(
          grad_out.data_ptr<scalar_t>(), attr.data_ptr<scalar_t>(), rast.data_ptr<scalar_t>(),
          tri.data_ptr<int32_t>(), grad_attr.data_ptr<scalar_t>(), grad_rast.data_ptr<scalar_t>(),
          B, Ba, V, C, H * W, F, simd && raster_cpu::simd_enabled(), bad_id);
    });
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
