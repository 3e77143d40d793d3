// CPU kernels of texture_mip, texture and texture_backward (texture.h, texture_sample.h).
//
// Forward: parallel over pixels, channel count fixed at compile time for 1-4 channels; float32
// bilinear lookups go through the AVX2 kernels (texture_cpu_avx2.cpp, equal results) where the
// CPU has them (PYFAID_CPU_SIMD=0 turns them off).
// Backward: texel gradients accumulate race-free into per-texture (or per-chunk, for a texture
// shared by the batch) buffers holding every level (utils/accumulate_cpu.h); the coarser levels'
// gradients are then pushed down the pyramid (the adjoint of the 2 x 2 box filter) into the
// texture's.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <string_view>
#include <algorithm>
#include <tuple>
#include <type_traits>
#include <vector>

#include "rasterize/rasterize_cpu.h"
#include "texture/texture_cpu.h"
#include "texture/texture_sample.h"
#include "utils/accumulate_cpu.h"

namespace pyfaid {
namespace {

using tex::Levels;

template <typename Fn>
void dispatch_channels(int64_t C, Fn&& fn) {
  switch (C) {
    case 1: return fn(std::integral_constant<int, 1>());
    case 2: return fn(std::integral_constant<int, 2>());
    case 3: return fn(std::integral_constant<int, 3>());
    case 4: return fn(std::integral_constant<int, 4>());
    default: return fn(std::integral_constant<int, 0>());
  }
}

struct AddPlain {
  template <typename T>
  void operator()(T* p, T v) const { *p += v; }
};

// One coarser level: dst [G, h, w, C] from src [G, sh, sw, C], each texel the mean of its
// (sh / h) x (sw / w) children.
template <typename T>
void downsample(const T* src, T* dst, int64_t G, int sh, int sw, int h, int w, int64_t C) {
  const int fy = sh / h, fx = sw / w;
  const T scale = T(1) / T(fy * fx);
  at::parallel_for(0, G * h, std::max<int64_t>(1, 16384 / (w * C + 1)), [&](int64_t b, int64_t e) {
    for (int64_t row = b; row < e; ++row) {
      const int64_t g = row / h;
      const int y = static_cast<int>(row % h);
      for (int x = 0; x < w; ++x) {
        T* o = dst + ((g * h + y) * w + x) * C;
        for (int64_t c = 0; c < C; ++c) {
          T acc = T(0);
          for (int dy = 0; dy < fy; ++dy)
            for (int dx = 0; dx < fx; ++dx)
              acc += src[((g * sh + fy * y + dy) * sw + fx * x + dx) * C + c];
          o[c] = acc * scale;
        }
      }
    }
  });
}

std::vector<at::Tensor> texture_mip_cpu(const at::Tensor& tex, int64_t max_mip_level) {
  const char* op = "pyfaid::texture_mip";
  check_floating(tex, "tex", op);
  TORCH_CHECK(tex.dim() == 4 && tex.size(1) >= 1 && tex.size(2) >= 1 && tex.size(3) >= 1, op,
              ": `tex` must have shape [B, H, W, C] with H, W, C >= 1, got ", tex.sizes());
  const int H = static_cast<int>(tex.size(1)), W = static_cast<int>(tex.size(2));
  const int L = tex::mip_count(H, W, max_mip_level, op);
  std::vector<at::Tensor> levels;
  at::Tensor prev = tex;
  for (int l = 1; l <= L; ++l) {
    const int h = tex::level_extent(H, l), w = tex::level_extent(W, l);
    auto lvl = at::empty({tex.size(0), h, w, tex.size(3)}, tex.options());
    AT_DISPATCH_FLOATING_TYPES(tex.scalar_type(), "texture_mip_cpu", [&] {
      downsample<scalar_t>(prev.data_ptr<scalar_t>(), lvl.data_ptr<scalar_t>(), tex.size(0),
                           static_cast<int>(prev.size(1)), static_cast<int>(prev.size(2)), h, w,
                           tex.size(3));
    });
    levels.push_back(lvl);
    prev = lvl;
  }
  return levels;
}

// True when the float32 AVX2 bilinear kernels can take this lookup.
template <typename T>
bool use_simd(const Levels<const T*>& lv, int64_t C, int filter) {
  return std::is_same_v<T, float> && filter == tex::kLinear && raster_cpu::simd_enabled() &&
         int64_t(lv.w[0]) * lv.h[0] * C < (int64_t(1) << 31);
}

template <typename T, int kC>
void texture_cpu_impl(const Levels<const T*>& lv, const T* uv, const T* uv_da, const T* bias,
                      T* out, int64_t B, int64_t Bt, int64_t P, int64_t C, int filter,
                      int boundary) {
  const bool simd = use_simd(lv, C, filter);
  at::parallel_for(0, B * P, 4096, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end;) {  // image by image
      const int64_t b = i / P, stop = std::min(end, (b + 1) * P);
      const int64_t g = Bt == 1 ? 0 : b;
      if constexpr (std::is_same_v<T, float>) {
        if (simd)
          i += tex_cpu::linear_forward_avx2(lv.ptr[0] + g * lv.stride[0], lv.w[0], lv.h[0], C,
                                            uv + 2 * i, stop - i, boundary, out + C * i);
      }
      for (; i < stop; ++i)
        tex::texture_pixel<T, kC>(lv, g, C, uv + 2 * i, uv_da ? uv_da + 4 * i : nullptr,
                                  bias ? bias + i : nullptr, filter, boundary, out + C * i);
    }
  });
}

// Pushes the coarser levels' gradients down the pyramid (level l's texel gradient / children
// count to each child on level l - 1) in buf ([G, n]: every level of one texture per row).
template <typename T>
void push_down(const Levels<T*>& glv, int64_t G, int64_t C) {
  for (int l = glv.count - 1; l >= 1; --l) {
    const int h = glv.h[l - 1], w = glv.w[l - 1];
    const int fy = h / glv.h[l], fx = w / glv.w[l];
    const T scale = T(1) / T(fy * fx);
    at::parallel_for(0, G * h, std::max<int64_t>(1, 16384 / (w * C + 1)), [&](int64_t b, int64_t e) {
      for (int64_t row = b; row < e; ++row) {
        const int64_t g = row / h;
        const int y = static_cast<int>(row % h);
        T* fine = glv.ptr[l - 1] + g * glv.stride[l - 1] + int64_t(y) * w * C;
        const T* coarse = glv.ptr[l] + g * glv.stride[l] + int64_t(y / fy) * glv.w[l] * C;
        for (int x = 0; x < w; ++x)
          for (int64_t c = 0; c < C; ++c) fine[x * C + c] += coarse[(x / fx) * C + c] * scale;
      }
    });
  }
}

template <typename T, int kC>
void texture_backward_cpu_impl(const T* grad_out, const Levels<const T*>& lv, const T* uv,
                               const T* uv_da, const T* bias, T* grad_levels, int64_t n_all,
                               const int64_t* offset, T* guv, T* guv_da, T* gbias, int64_t B,
                               int64_t Bt, int64_t H, int64_t W, int64_t C, int filter,
                               int boundary) {
  const bool simd = use_simd(lv, C, filter);
  cpu::accumulate_rows<T>(B, H, W, n_all, Bt == 1, grad_levels,
                          [&](int64_t b, int64_t y0, int64_t y1, T* g) {
    Levels<T*> glv;
    glv.count = lv.count;
    for (int l = 0; l < lv.count; ++l) {
      glv.ptr[l] = g + offset[l];
      glv.w[l] = lv.w[l];
      glv.h[l] = lv.h[l];
      glv.stride[l] = 0;
    }
    const int64_t tg = Bt == 1 ? 0 : b;
    int64_t i = (b * H + y0) * W;
    const int64_t stop = (b * H + y1) * W;
    if constexpr (std::is_same_v<T, float>) {
      if (simd)
        i += tex_cpu::linear_backward_avx2(lv.ptr[0] + tg * lv.stride[0], lv.w[0], lv.h[0], C,
                                           uv + 2 * i, grad_out + C * i, stop - i, boundary,
                                           g + offset[0], n_all - offset[0], guv + 2 * i);
    }
    for (; i < stop; ++i) {
      tex::texture_pixel_backward<T, kC>(lv, glv, tg, 0, C, uv + 2 * i,
                                         uv_da ? uv_da + 4 * i : nullptr, bias ? bias + i : nullptr,
                                         filter, boundary, grad_out + C * i, guv + 2 * i,
                                         guv_da ? guv_da + 4 * i : nullptr,
                                         gbias ? gbias + i : nullptr, AddPlain());
    }
  });
}

at::Tensor texture_cpu(const at::Tensor& tex, at::TensorList mip, const at::Tensor& uv,
                       const c10::optional<at::Tensor>& uv_da,
                       const c10::optional<at::Tensor>& bias, std::string_view filter_mode,
                       std::string_view boundary_mode) {
  const char* op = "pyfaid::texture";
  const tex::Filter filter = tex::parse_filter(filter_mode, op);
  const tex::Boundary boundary = tex::parse_boundary(boundary_mode, op);
  tex::check_texture_args(tex, mip, uv, uv_da, bias, filter, op);
  const int64_t B = uv.size(0), H = uv.size(1), W = uv.size(2), C = tex.size(3);
  auto out = at::empty({B, H, W, C}, tex.options());
  if (out.numel() == 0) return out;
  const bool use_mip = filter == tex::kMipNearest || filter == tex::kMipLinear;
  AT_DISPATCH_FLOATING_TYPES(tex.scalar_type(), "texture_cpu", [&] {
    using T = scalar_t;
    const auto lv = tex::input_levels<T>(tex, use_mip ? mip : at::TensorList());
    dispatch_channels(C, [&](auto kC) {
      texture_cpu_impl<T, decltype(kC)::value>(
          lv, uv.data_ptr<T>(), uv_da.has_value() ? uv_da->data_ptr<T>() : nullptr,
          bias.has_value() ? bias->data_ptr<T>() : nullptr, out.data_ptr<T>(), B, tex.size(0),
          H * W, C, filter, boundary);
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> texture_backward_cpu(
    const at::Tensor& grad_out, const at::Tensor& tex, at::TensorList mip, const at::Tensor& uv,
    const c10::optional<at::Tensor>& uv_da, const c10::optional<at::Tensor>& bias,
    std::string_view filter_mode, std::string_view boundary_mode) {
  const char* op = "pyfaid::texture_backward";
  const tex::Filter filter = tex::parse_filter(filter_mode, op);
  const tex::Boundary boundary = tex::parse_boundary(boundary_mode, op);
  tex::check_texture_args(tex, mip, uv, uv_da, bias, filter, op);
  const int64_t B = uv.size(0), H = uv.size(1), W = uv.size(2), C = tex.size(3);
  const int64_t Bt = tex.size(0);
  check_tensor(grad_out, "grad_out", tex.scalar_type(), 4, op);
  TORCH_CHECK(grad_out.sizes() == at::IntArrayRef({B, H, W, C}), op, ": `grad_out` must have shape [",
              B, ", ", H, ", ", W, ", ", C, "], got ", grad_out.sizes());
  const bool use_mip = filter == tex::kMipNearest || filter == tex::kMipLinear;
  auto grad_uv = at::empty_like(uv);
  auto grad_uv_da = uv_da.has_value() ? at::empty_like(*uv_da) : at::empty({0}, tex.options());
  auto grad_bias = bias.has_value() ? at::empty_like(*bias) : at::empty({0}, tex.options());
  at::Tensor grad_tex;
  AT_DISPATCH_FLOATING_TYPES(tex.scalar_type(), "texture_backward_cpu", [&] {
    using T = scalar_t;
    const auto lv = tex::input_levels<T>(tex, use_mip ? mip : at::TensorList());
    int64_t offset[tex::kMaxLevels], n_all = 0;
    for (int l = 0; l < lv.count; ++l) {
      offset[l] = n_all;
      n_all += lv.stride[l];
    }
    // Level 0 only: accumulate straight into grad_tex; with coarser levels, into a buffer of
    // every level per texture, pushed down afterwards.
    auto buf = lv.count == 1 ? at::empty_like(tex) : at::empty({Bt, n_all}, tex.options());
    if (uv.numel() == 0) buf.zero_();
    else
      dispatch_channels(C, [&](auto kC) {
        texture_backward_cpu_impl<T, decltype(kC)::value>(
            grad_out.data_ptr<T>(), lv, uv.data_ptr<T>(),
            uv_da.has_value() ? uv_da->data_ptr<T>() : nullptr,
            bias.has_value() ? bias->data_ptr<T>() : nullptr, buf.data_ptr<T>(), n_all, offset,
            grad_uv.data_ptr<T>(), uv_da.has_value() ? grad_uv_da.data_ptr<T>() : nullptr,
            bias.has_value() ? grad_bias.data_ptr<T>() : nullptr, B, Bt, H, W, C, filter,
            boundary);
      });
    if (lv.count == 1) {
      grad_tex = buf;
      return;
    }
    Levels<T*> glv;
    glv.count = lv.count;
    for (int l = 0; l < lv.count; ++l) {
      glv.ptr[l] = buf.data_ptr<T>() + offset[l];
      glv.w[l] = lv.w[l];
      glv.h[l] = lv.h[l];
      glv.stride[l] = n_all;
    }
    push_down<T>(glv, Bt, C);
    grad_tex = buf.narrow(1, 0, lv.stride[0]).reshape(tex.sizes()).contiguous();
  });
  return {grad_tex, grad_uv, grad_uv_da, grad_bias};
}

}  // namespace

TORCH_LIBRARY_IMPL(pyfaid, CPU, m) {
  m.impl("texture_mip", &texture_mip_cpu);
  m.impl("texture", &texture_cpu);
  m.impl("texture_backward", &texture_backward_cpu);
}

}  // namespace pyfaid
