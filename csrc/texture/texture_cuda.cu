// CUDA kernels of texture_mip, texture and texture_backward: one thread per texel (mip levels)
// or pixel (lookups, texture_sample.h); the backward adds texel gradients with atomics into a
// buffer holding every level, then pushes the coarser levels' gradients down the pyramid, one
// launch per level. No host synchronisation.
#include <ATen/cuda/Atomic.cuh>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <string_view>
#include <tuple>
#include <vector>

#include "texture/texture_sample.h"
#include "utils/cuda_launch.cuh"

namespace pyfaid {
namespace {

using tex::Levels;

template <typename T>
__global__ void downsample_kernel(const T* __restrict__ src, T* __restrict__ dst, int64_t G,
                                  int sh, int sw, int h, int w, int64_t C) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= G * h * w * C) return;
  const int64_t c = i % C, texel = i / C;
  const int x = static_cast<int>(texel % w), y = static_cast<int>((texel / w) % h);
  const int64_t g = texel / (int64_t(w) * h);
  const int fy = sh / h, fx = sw / w;
  T acc = T(0);
  for (int dy = 0; dy < fy; ++dy)
    for (int dx = 0; dx < fx; ++dx) acc += src[((g * sh + fy * y + dy) * sw + fx * x + dx) * C + c];
  dst[i] = acc * (T(1) / T(fy * fx));
}

// fine += coarse / children for every texel of one level (level l - 1) of the gradient buffer.
template <typename T>
__global__ void push_down_kernel(T* __restrict__ fine, const T* __restrict__ coarse, int64_t G,
                                 int h, int w, int ch, int cw, int64_t C) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= G * h * w * C) return;
  const int64_t c = i % C, texel = i / C;
  const int x = static_cast<int>(texel % w), y = static_cast<int>((texel / w) % h);
  const int64_t g = texel / (int64_t(w) * h);
  const int fy = h / ch, fx = w / cw;
  fine[i] += coarse[((g * ch + y / fy) * cw + x / fx) * C + c] * (T(1) / T(fy * fx));
}

template <typename T>
__global__ void texture_kernel(const Levels<const T*> lv, const T* __restrict__ uv,
                               const T* __restrict__ uv_da, const T* __restrict__ bias,
                               T* __restrict__ out, int64_t B, int64_t Bt, int64_t P, int64_t C,
                               int filter, int boundary) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= B * P) return;
  tex::texture_pixel<T, 0>(lv, Bt == 1 ? 0 : i / P, C, uv + 2 * i, uv_da ? uv_da + 4 * i : nullptr,
                           bias ? bias + i : nullptr, filter, boundary, out + C * i);
}

template <typename T>
__global__ void texture_backward_kernel(const T* __restrict__ grad_out, const Levels<const T*> lv,
                                        const Levels<T*> glv, const T* __restrict__ uv,
                                        const T* __restrict__ uv_da, const T* __restrict__ bias,
                                        T* __restrict__ guv, T* __restrict__ guv_da,
                                        T* __restrict__ gbias, int64_t B, int64_t Bt,
                                        int64_t P, int64_t C, int filter, int boundary) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= B * P) return;
  const int64_t g = Bt == 1 ? 0 : i / P;
  tex::texture_pixel_backward<T, 0>(lv, glv, g, g, C, uv + 2 * i, uv_da ? uv_da + 4 * i : nullptr,
                                    bias ? bias + i : nullptr, filter, boundary, grad_out + C * i,
                                    guv + 2 * i, guv_da ? guv_da + 4 * i : nullptr,
                                    gbias ? gbias + i : nullptr, AddAtomic());
}

std::vector<at::Tensor> texture_mip_cuda(const at::Tensor& tex, int64_t max_mip_level) {
  const char* op = "pyfaid::texture_mip";
  check_floating(tex, "tex", op);
  TORCH_CHECK(tex.dim() == 4 && tex.size(1) >= 1 && tex.size(2) >= 1 && tex.size(3) >= 1, op,
              ": `tex` must have shape [B, H, W, C] with H, W, C >= 1, got ", tex.sizes());
  c10::cuda::CUDAGuard guard(tex.device());
  const int H = static_cast<int>(tex.size(1)), W = static_cast<int>(tex.size(2));
  const int L = tex::mip_count(H, W, max_mip_level, op);
  auto stream = at::cuda::getCurrentCUDAStream();
  std::vector<at::Tensor> levels;
  at::Tensor prev = tex;
  for (int l = 1; l <= L; ++l) {
    const int h = tex::level_extent(H, l), w = tex::level_extent(W, l);
    auto lvl = at::empty({tex.size(0), h, w, tex.size(3)}, tex.options());
    if (lvl.numel() > 0) {
      AT_DISPATCH_FLOATING_TYPES(tex.scalar_type(), "texture_mip_cuda", [&] {
        downsample_kernel<scalar_t><<<blocks_for(lvl.numel(), kThreads), kThreads, 0, stream>>>(
            prev.data_ptr<scalar_t>(), lvl.data_ptr<scalar_t>(), tex.size(0),
            static_cast<int>(prev.size(1)), static_cast<int>(prev.size(2)), h, w, tex.size(3));
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
    }
    levels.push_back(lvl);
    prev = lvl;
  }
  return levels;
}

at::Tensor texture_cuda(const at::Tensor& tex, at::TensorList mip, const at::Tensor& uv,
                        const c10::optional<at::Tensor>& uv_da,
                        const c10::optional<at::Tensor>& bias, std::string_view filter_mode,
                        std::string_view boundary_mode) {
  const char* op = "pyfaid::texture";
  const tex::Filter filter = tex::parse_filter(filter_mode, op);
  const tex::Boundary boundary = tex::parse_boundary(boundary_mode, op);
  tex::check_texture_args(tex, mip, uv, uv_da, bias, filter, op);
  c10::cuda::CUDAGuard guard(tex.device());
  const int64_t B = uv.size(0), H = uv.size(1), W = uv.size(2), C = tex.size(3);
  auto out = at::empty({B, H, W, C}, tex.options());
  if (out.numel() == 0) return out;
  const bool use_mip = filter == tex::kMipNearest || filter == tex::kMipLinear;
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(tex.scalar_type(), "texture_cuda", [&] {
    using T = scalar_t;
    const auto lv = tex::input_levels<T>(tex, use_mip ? mip : at::TensorList());
    texture_kernel<T><<<blocks_for(B * H * W, kThreads), kThreads, 0, stream>>>(
        lv, uv.data_ptr<T>(), uv_da.has_value() ? uv_da->data_ptr<T>() : nullptr,
        bias.has_value() ? bias->data_ptr<T>() : nullptr, out.data_ptr<T>(), B, tex.size(0),
        H * W, C, filter, boundary);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> texture_backward_cuda(
    const at::Tensor& grad_out, const at::Tensor& tex, at::TensorList mip, const at::Tensor& uv,
    const c10::optional<at::Tensor>& uv_da, const c10::optional<at::Tensor>& bias,
    std::string_view filter_mode, std::string_view boundary_mode) {
  const char* op = "pyfaid::texture_backward";
  const tex::Filter filter = tex::parse_filter(filter_mode, op);
  const tex::Boundary boundary = tex::parse_boundary(boundary_mode, op);
  tex::check_texture_args(tex, mip, uv, uv_da, bias, filter, op);
  c10::cuda::CUDAGuard guard(tex.device());
  const int64_t B = uv.size(0), H = uv.size(1), W = uv.size(2), C = tex.size(3);
  const int64_t Bt = tex.size(0);
  check_tensor(grad_out, "grad_out", tex.scalar_type(), 4, op);
  TORCH_CHECK(grad_out.sizes() == at::IntArrayRef({B, H, W, C}), op, ": `grad_out` must have shape [",
              B, ", ", H, ", ", W, ", ", C, "], got ", grad_out.sizes());
  check_same_device(grad_out, "grad_out", tex, "tex", op);
  const bool use_mip = filter == tex::kMipNearest || filter == tex::kMipLinear;
  auto grad_uv = at::empty_like(uv);
  auto grad_uv_da = uv_da.has_value() ? at::empty_like(*uv_da) : at::empty({0}, tex.options());
  auto grad_bias = bias.has_value() ? at::empty_like(*bias) : at::empty({0}, tex.options());
  at::Tensor grad_tex;
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(tex.scalar_type(), "texture_backward_cuda", [&] {
    using T = scalar_t;
    const auto lv = tex::input_levels<T>(tex, use_mip ? mip : at::TensorList());
    // Gradient buffer, level-major: level l of texture g at offset[l] + g * (its texel count),
    // so level 0 is grad_tex's layout.
    int64_t offset[tex::kMaxLevels], n_all = 0;
    for (int l = 0; l < lv.count; ++l) {
      offset[l] = n_all;
      n_all += Bt * lv.stride[l];
    }
    auto buf = at::zeros({n_all}, tex.options());
    Levels<T*> glv;
    glv.count = lv.count;
    for (int l = 0; l < lv.count; ++l) {
      glv.ptr[l] = buf.data_ptr<T>() + offset[l];
      glv.w[l] = lv.w[l];
      glv.h[l] = lv.h[l];
      glv.stride[l] = lv.stride[l];
    }
    const int64_t n = B * H * W;
    if (n > 0) {
      texture_backward_kernel<T><<<blocks_for(n, kThreads), kThreads, 0, stream>>>(
          grad_out.data_ptr<T>(), lv, glv, uv.data_ptr<T>(),
          uv_da.has_value() ? uv_da->data_ptr<T>() : nullptr,
          bias.has_value() ? bias->data_ptr<T>() : nullptr, grad_uv.data_ptr<T>(),
          uv_da.has_value() ? grad_uv_da.data_ptr<T>() : nullptr,
          bias.has_value() ? grad_bias.data_ptr<T>() : nullptr, B, Bt, H * W, C, filter,
          boundary);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    for (int l = lv.count - 1; l >= 1; --l) {
      const int64_t m = Bt * lv.stride[l - 1];
      push_down_kernel<T><<<blocks_for(m, kThreads), kThreads, 0, stream>>>(
          glv.ptr[l - 1], glv.ptr[l], Bt, lv.h[l - 1], lv.w[l - 1], lv.h[l], lv.w[l], C);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    grad_tex = buf.narrow(0, 0, Bt * lv.stride[0]).view(tex.sizes());
  });
  return {grad_tex, grad_uv, grad_uv_da, grad_bias};
}

}  // namespace

TORCH_LIBRARY_IMPL(pyfaid, CUDA, m) {
  m.impl("texture_mip", &texture_mip_cuda);
  m.impl("texture", &texture_cuda);
  m.impl("texture_backward", &texture_backward_cuda);
}

}  // namespace pyfaid
