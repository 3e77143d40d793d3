// Per-pixel texture lookup and its backward, shared by the CPU and CUDA kernels (texture.h has
// the conventions). kC > 0 fixes the channel count at compile time (0: C at run time).
#pragma once

#include "texture/texture.h"

namespace pyfaid {
namespace tex {

// out[c] += weight * bilinear lookup of level l of texture group g at (u, v).
template <typename T, int kC>
PYFAID_HD void bilinear_add(const Levels<const T*>& lv, int l, int64_t g, int64_t C_, T u, T v,
                            int boundary, T weight, T* out) {
  const int64_t C = kC > 0 ? kC : C_;
  int64_t idx[4];
  T fx, fy;
  if (!linear_taps(u, v, lv.w[l], lv.h[l], boundary, idx, fx, fy)) return;
  const T wk[4] = {(T(1) - fx) * (T(1) - fy) * weight, fx * (T(1) - fy) * weight,
                   (T(1) - fx) * fy * weight, fx * fy * weight};
  const T* base = lv.ptr[l] + g * lv.stride[l];
  for (int k = 0; k < 4; ++k) {
    if (idx[k] < 0) continue;
    const T* t = base + idx[k] * C;
    for (int64_t c = 0; c < C; ++c) out[c] += wk[k] * t[c];
  }
}

// One pixel: out[0..C) from uv (2 values), uv_da (4 or null), bias (1 or null).
template <typename T, int kC>
PYFAID_HD void texture_pixel(const Levels<const T*>& lv, int64_t g, int64_t C_, const T* uv,
                             const T* uv_da, const T* bias, int filter, int boundary, T* out) {
  const int64_t C = kC > 0 ? kC : C_;
  for (int64_t c = 0; c < C; ++c) out[c] = T(0);
  if (filter == kNearest) {
    const int64_t i = nearest_tap(uv[0], uv[1], lv.w[0], lv.h[0], boundary);
    if (i < 0) return;
    const T* t = lv.ptr[0] + g * lv.stride[0] + i * C;
    for (int64_t c = 0; c < C; ++c) out[c] = t[c];
    return;
  }
  const MipChoice<T> m = choose_level(uv_da, bias, filter, lv.count - 1, lv.w[0], lv.h[0]);
  bilinear_add<T, kC>(lv, m.level0, g, C, uv[0], uv[1], boundary, T(1) - m.frac, out);
  if (m.frac > T(0)) bilinear_add<T, kC>(lv, m.level1, g, C, uv[0], uv[1], boundary, m.frac, out);
}

// Backward of one bilinear lookup with weight `weight`: adds weight * grad_out into the texel
// gradients (through add(ptr, value)) and dL/d(u, v) into guv; returns grad_out . (the lookup's
// unweighted value), for the level gradient.
template <typename T, int kC, typename Add>
PYFAID_HD T bilinear_backward(const Levels<const T*>& lv, const Levels<T*>& glv, int l, int64_t g,
                              int64_t gg, int64_t C_, T u, T v, int boundary, T weight,
                              const T* gout, T guv[2], Add add) {
  const int64_t C = kC > 0 ? kC : C_;
  int64_t idx[4];
  T fx, fy;
  if (!linear_taps(u, v, lv.w[l], lv.h[l], boundary, idx, fx, fy)) return T(0);
  const T wk[4] = {(T(1) - fx) * (T(1) - fy), fx * (T(1) - fy), (T(1) - fx) * fy, fx * fy};
  const T* base = lv.ptr[l] + g * lv.stride[l];
  T* gbase = glv.ptr[l] + gg * glv.stride[l];
  T dfx = T(0), dfy = T(0), dot = T(0);
  for (int64_t c = 0; c < C; ++c) {
    T t[4];
    for (int k = 0; k < 4; ++k) t[k] = idx[k] < 0 ? T(0) : base[idx[k] * C + c];
    const T go = gout[c];
    dfx += go * ((T(1) - fy) * (t[1] - t[0]) + fy * (t[3] - t[2]));
    dfy += go * ((T(1) - fx) * (t[2] - t[0]) + fx * (t[3] - t[1]));
    dot += go * (wk[0] * t[0] + wk[1] * t[1] + wk[2] * t[2] + wk[3] * t[3]);
    const T gw = go * weight;
    if (gw == T(0)) continue;
    for (int k = 0; k < 4; ++k)
      if (idx[k] >= 0 && wk[k] != T(0)) add(gbase + idx[k] * C + c, wk[k] * gw);
  }
  guv[0] += weight * dfx * T(lv.w[l]);
  guv[1] += weight * dfy * T(lv.h[l]);
  return dot;
}

// Backward of texture_pixel: texel gradients (texture group g of lv, gradient group gg of glv)
// through add; dL/duv into guv (2), dL/d(uv_da) into guv_da (4, when uv_da is given) and
// dL/d(bias) into gbias (when bias is given), all overwritten.
template <typename T, int kC, typename Add>
PYFAID_HD void texture_pixel_backward(const Levels<const T*>& lv, const Levels<T*>& glv,
                                      int64_t g, int64_t gg, int64_t C_, const T* uv,
                                      const T* uv_da, const T* bias, int filter, int boundary,
                                      const T* gout, T* guv, T* guv_da, T* gbias, Add add) {
  const int64_t C = kC > 0 ? kC : C_;
  guv[0] = guv[1] = T(0);
  if (guv_da != nullptr) guv_da[0] = guv_da[1] = guv_da[2] = guv_da[3] = T(0);
  if (gbias != nullptr) *gbias = T(0);
  if (filter == kNearest) {
    const int64_t i = nearest_tap(uv[0], uv[1], lv.w[0], lv.h[0], boundary);
    if (i < 0) return;
    T* gt = glv.ptr[0] + gg * glv.stride[0] + i * C;
    for (int64_t c = 0; c < C; ++c)
      if (gout[c] != T(0)) add(gt + c, gout[c]);
    return;
  }
  const MipChoice<T> m = choose_level(uv_da, bias, filter, lv.count - 1, lv.w[0], lv.h[0]);
  const T dot0 = bilinear_backward<T, kC>(lv, glv, m.level0, g, gg, C, uv[0], uv[1], boundary,
                                          T(1) - m.frac, gout, guv, add);
  T dot1 = T(0);
  if (m.frac > T(0))
    dot1 = bilinear_backward<T, kC>(lv, glv, m.level1, g, gg, C, uv[0], uv[1], boundary, m.frac,
                                    gout, guv, add);
  if (!m.has_grad) return;
  const T glevel = dot1 - dot0;  // d(out)/d(level) = level1's lookup - level0's
  if (guv_da != nullptr)
    for (int k = 0; k < 4; ++k) guv_da[k] = glevel * m.dlevel_duvda[k];
  if (gbias != nullptr) *gbias = glevel;
}

}  // namespace tex
}  // namespace pyfaid
