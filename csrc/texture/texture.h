// Texture sampling math shared by the CPU (texture_cpu.cpp) and CUDA (texture_cuda.cu) kernels,
// with nvdiffrast's conventions.
//
// tex [Bt, Ht, Wt, C] (Bt = 1: shared by every image), uv [B, H, W, 2]: u runs along a texture
// row (width), v down the rows; texel (i, j) covers [i, i + 1) / Wt x [j, j + 1) / Ht, so its
// centre is at ((i + 0.5) / Wt, (j + 0.5) / Ht) (grid_sample with align_corners=False).
// Boundaries: wrap (the fractional part of u, v), clamp (texel coordinates clamped to the centres
// of the border texels: no gradient to uv there), zero (texels outside read as 0).
// Mip levels: level i has max(Wt >> i, 1) x max(Ht >> i, 1) texels, each the mean of the 2 x 2
// (or 2 x 1 once an extent is 1) texels below it. The level of a pixel comes from the image-space
// derivatives of uv, uv_da = (du/dX, du/dY, dv/dX, dv/dY): with s = u Wt, t = v Ht, the footprint
// matrix [[A, C], [C, B]] (A = s_X^2 + t_X^2, B = s_Y^2 + t_Y^2, C = s_X s_Y + t_X t_Y) has major
// axis length^2 M = (A + B) / 2 + sqrt((A - B)^2 / 4 + C^2), and level = log2(M) / 2 (+ bias),
// clamped to [0, L]. linear-mipmap-nearest samples level floor(level); linear-mipmap-linear
// blends floor(level) and the next by its fractional part.
#pragma once

#include <ATen/ATen.h>

#include <cmath>
#include <cstdint>
#include <string_view>

#include "rasterize/rasterize.h"

namespace pyfaid {
namespace tex {

constexpr int kMaxLevels = 16;  // level 0 and up to 15 coarser levels (textures up to 32768)

enum Filter : int { kNearest = 0, kLinear = 1, kMipNearest = 2, kMipLinear = 3 };
enum Boundary : int { kWrap = 0, kClamp = 1, kZero = 2 };

inline Filter parse_filter(std::string_view s, const char* op) {
  if (s == "nearest") return kNearest;
  if (s == "linear") return kLinear;
  if (s == "linear-mipmap-nearest") return kMipNearest;
  if (s == "linear-mipmap-linear") return kMipLinear;
  TORCH_CHECK(false, op, ": `filter_mode` must be nearest, linear, linear-mipmap-nearest or "
              "linear-mipmap-linear, got '", s, "'");
  return kLinear;
}

inline Boundary parse_boundary(std::string_view s, const char* op) {
  if (s == "wrap") return kWrap;
  if (s == "clamp") return kClamp;
  if (s == "zero") return kZero;
  TORCH_CHECK(false, op, ": `boundary_mode` must be wrap, clamp or zero, got '", s, "'");
  return kWrap;
}

// The texel array of every level: level l of texture group g starts at ptr[l] + g * stride[l].
template <typename P>
struct Levels {
  P ptr[kMaxLevels];
  int w[kMaxLevels], h[kMaxLevels];
  int64_t stride[kMaxLevels];
  int count;  // 1 + number of coarser levels
};

// Texel taps of a bilinear lookup at (u, v) in a w x h level: texel indices (y * w + x, -1 for a
// zero texel) of (x0, y0), (x1, y0), (x0, y1), (x1, y1) and the weights fx, fy. false: nothing
// to read (non-finite uv, or entirely outside in zero mode); every tap is then -1.
template <typename T>
PYFAID_HD bool linear_taps(T u, T v, int w, int h, int boundary, int64_t idx[4], T& fx, T& fy) {
  idx[0] = idx[1] = idx[2] = idx[3] = -1;
  fx = fy = T(0);
  if (!raster::t_finite(u) || !raster::t_finite(v)) return false;
  if (boundary == kWrap) {
    u = u - floor(u);
    v = v - floor(v);
  }
  T x = u * T(w) - T(0.5), y = v * T(h) - T(0.5);
  bool clamp_x = false, clamp_y = false;
  if (boundary == kClamp) {
    x = raster::t_min(raster::t_max(x, T(0)), T(w - 1));
    y = raster::t_min(raster::t_max(y, T(0)), T(h - 1));
    clamp_x = x == T(0) || x == T(w - 1);
    clamp_y = y == T(0) || y == T(h - 1);
  } else if (boundary == kZero && !(x > T(-1) && x < T(w) && y > T(-1) && y < T(h))) {
    return false;
  }
  int x0 = static_cast<int>(floor(x)), y0 = static_cast<int>(floor(y));
  fx = x - T(x0);
  fy = y - T(y0);
  int x1 = x0 + (clamp_x ? 0 : 1), y1 = y0 + (clamp_y ? 0 : 1);
  if (boundary == kWrap) {
    if (x0 < 0) x0 += w;
    if (y0 < 0) y0 += h;
    if (x1 >= w) x1 -= w;
    if (y1 >= h) y1 -= h;
  }
  const bool in_x0 = x0 >= 0 && x0 < w, in_x1 = x1 >= 0 && x1 < w;
  const bool in_y0 = y0 >= 0 && y0 < h, in_y1 = y1 >= 0 && y1 < h;
  if (in_x0 && in_y0) idx[0] = int64_t(y0) * w + x0;
  if (in_x1 && in_y0) idx[1] = int64_t(y0) * w + x1;
  if (in_x0 && in_y1) idx[2] = int64_t(y1) * w + x0;
  if (in_x1 && in_y1) idx[3] = int64_t(y1) * w + x1;
  return true;
}

// Texel index of a nearest lookup at (u, v) in a w x h texture, -1 for zero.
template <typename T>
PYFAID_HD int64_t nearest_tap(T u, T v, int w, int h, int boundary) {
  if (!raster::t_finite(u) || !raster::t_finite(v)) return -1;
  if (boundary == kWrap) {
    u = u - floor(u);
    v = v - floor(v);
  }
  T x = u * T(w), y = v * T(h);
  if (boundary == kZero && !(x >= T(0) && x < T(w) && y >= T(0) && y < T(h))) return -1;
  x = raster::t_min(raster::t_max(x, T(0)), T(w - 1));
  y = raster::t_min(raster::t_max(y, T(0)), T(h - 1));
  return int64_t(static_cast<int>(floor(y))) * w + static_cast<int>(floor(x));
}

// Mip level selection of one pixel. level0/level1 and frac: the levels to blend (frac of
// level1); dlevel_duvda: d(level)/d(uv_da) (when the level is not clamped and has a gradient);
// has_grad: the level moves with uv_da and the bias (linear-mipmap-linear, not clamped).
template <typename T>
struct MipChoice {
  int level0, level1;
  T frac;
  T dlevel_duvda[4];
  bool has_grad;
};

template <typename T>
PYFAID_HD MipChoice<T> choose_level(const T* uv_da, const T* bias, int filter, int max_level,
                                    int width0, int height0) {
  MipChoice<T> m;
  m.level0 = m.level1 = 0;
  m.frac = T(0);
  m.dlevel_duvda[0] = m.dlevel_duvda[1] = m.dlevel_duvda[2] = m.dlevel_duvda[3] = T(0);
  m.has_grad = false;
  if (filter != kMipNearest && filter != kMipLinear) return m;
  T level = T(0);
  if (uv_da != nullptr) {
    const T sx = uv_da[0] * T(width0), sy = uv_da[1] * T(width0);
    const T tx = uv_da[2] * T(height0), ty = uv_da[3] * T(height0);
    const T a = sx * sx + tx * tx, b = sy * sy + ty * ty, c = sx * sy + tx * ty;
    const T l2b = T(0.5) * (a + b);
    const T l2n = T(0.25) * (a - b) * (a - b) + c * c;
    const T l2a = sqrt(l2n);
    level = T(0.5) * log2(l2b + l2a);
    // d(level)/d(uv_da): level = log2(M) / 2 with M the footprint's major axis length^2.
    const T dw = T(0.72134752044448170) / (l2n + l2a * l2b);  // 0.5 / ln 2
    const T ab = dw * T(0.5) * (a - b), cw = dw * c, l2aw = dw * l2a;
    const T d[4] = {T(width0) * (sx * (l2aw + ab) + sy * cw), T(width0) * (sy * (l2aw - ab) + sx * cw),
                    T(height0) * (tx * (l2aw + ab) + ty * cw), T(height0) * (ty * (l2aw - ab) + tx * cw)};
    const bool finite = raster::t_finite(d[0]) && raster::t_finite(d[1]) &&
                        raster::t_finite(d[2]) && raster::t_finite(d[3]);
    for (int k = 0; k < 4; ++k) m.dlevel_duvda[k] = finite ? d[k] : T(0);
  }
  if (bias != nullptr) level += *bias;
  const bool inside = level > T(0) && level < T(max_level);  // false for NaN
  if (!(level > T(0))) level = T(0);
  if (level > T(max_level)) level = T(max_level);
  m.level0 = static_cast<int>(floor(level));
  if (filter == kMipLinear && level > T(0)) {
    m.level1 = m.level0 + 1 < max_level ? m.level0 + 1 : max_level;
    m.frac = level - T(m.level0);
    m.has_grad = inside;
  } else {
    m.level1 = m.level0;
  }
  return m;
}

// Sizes of level l of a w0 x h0 texture.
PYFAID_HD int level_extent(int n0, int l) { return (n0 >> l) > 1 ? (n0 >> l) : 1; }

// ---- Host-side checks shared by the CPU and CUDA entry points -----------------------------

// tex [Bt, Ht, Wt, C] (Bt 1 or uv's B), mip levels of the pyramid's sizes, uv [B, H, W, 2],
// uv_da [B, H, W, 4] and mip_level_bias [B, H, W] when given; one dtype and device. Mipmap
// filters need uv_da or mip_level_bias and at least one coarser level.
inline void check_texture_args(const at::Tensor& tex, at::TensorList mip, const at::Tensor& uv,
                               const c10::optional<at::Tensor>& uv_da,
                               const c10::optional<at::Tensor>& bias, Filter filter,
                               const char* op) {
  check_floating(tex, "tex", op);
  TORCH_CHECK(tex.dim() == 4 && tex.size(1) >= 1 && tex.size(2) >= 1 && tex.size(3) >= 1, op,
              ": `tex` must have shape [B, H, W, C] with H, W, C >= 1, got ", tex.sizes());
  TORCH_CHECK(tex.size(1) <= 32768 && tex.size(2) <= 32768, op,
              ": `tex` must be at most 32768 x 32768 texels, got ", tex.sizes());
  check_tensor(uv, "uv", tex.scalar_type(), 4, op);
  TORCH_CHECK(uv.size(3) == 2, op, ": `uv` must have shape [B, H, W, 2], got ", uv.sizes());
  check_same_device(uv, "uv", tex, "tex", op);
  TORCH_CHECK(tex.size(0) == 1 || tex.size(0) == uv.size(0), op, ": `tex` batch ", tex.size(0),
              " must be 1 or match `uv` batch ", uv.size(0));
  const auto px = uv.sizes().slice(0, 3);
  if (uv_da.has_value()) {
    check_tensor(*uv_da, "uv_da", tex.scalar_type(), 4, op);
    TORCH_CHECK(uv_da->sizes().slice(0, 3) == px && uv_da->size(3) == 4, op,
                ": `uv_da` must have shape [", uv.size(0), ", ", uv.size(1), ", ", uv.size(2),
                ", 4], got ", uv_da->sizes());
    check_same_device(*uv_da, "uv_da", tex, "tex", op);
  }
  if (bias.has_value()) {
    check_tensor(*bias, "mip_level_bias", tex.scalar_type(), 3, op);
    TORCH_CHECK(bias->sizes() == px, op, ": `mip_level_bias` must have shape [", uv.size(0), ", ",
                uv.size(1), ", ", uv.size(2), "], got ", bias->sizes());
    check_same_device(*bias, "mip_level_bias", tex, "tex", op);
  }
  TORCH_CHECK(static_cast<int>(mip.size()) < kMaxLevels, op, ": at most ", kMaxLevels - 1,
              " coarser mip levels, got ", mip.size());
  for (size_t l = 0; l < mip.size(); ++l) {
    const at::Tensor& m = mip[l];
    check_tensor(m, "mip", tex.scalar_type(), 4, op);
    check_same_device(m, "mip", tex, "tex", op);
    const int want_h = level_extent(static_cast<int>(tex.size(1)), static_cast<int>(l + 1));
    const int want_w = level_extent(static_cast<int>(tex.size(2)), static_cast<int>(l + 1));
    TORCH_CHECK(m.size(0) == tex.size(0) && m.size(1) == want_h && m.size(2) == want_w &&
                    m.size(3) == tex.size(3),
                op, ": `mip` level ", l + 1, " must have shape [", tex.size(0), ", ", want_h, ", ",
                want_w, ", ", tex.size(3), "] (the pyramid of `tex`; texture_mip builds it), got ",
                m.sizes());
  }
  if (filter == kMipNearest || filter == kMipLinear) {
    TORCH_CHECK(uv_da.has_value() || bias.has_value(), op,
                ": mipmap filtering needs `uv_da` or `mip_level_bias`");
    TORCH_CHECK(!mip.empty(), op, ": mipmap filtering needs the coarser levels in `mip`");
  }
}

// The levels of tex and mip as read-only texel arrays (group stride: one level of one texture).
template <typename T>
Levels<const T*> input_levels(const at::Tensor& tex, at::TensorList mip) {
  Levels<const T*> lv;
  lv.count = 1 + static_cast<int>(mip.size());
  lv.h[0] = static_cast<int>(tex.size(1));
  lv.w[0] = static_cast<int>(tex.size(2));
  for (int l = 0; l < lv.count; ++l) {
    lv.ptr[l] = l == 0 ? tex.data_ptr<T>() : mip[l - 1].data_ptr<T>();
    lv.h[l] = level_extent(lv.h[0], l);
    lv.w[l] = level_extent(lv.w[0], l);
    lv.stride[l] = int64_t(lv.h[l]) * lv.w[l] * tex.size(3);
  }
  return lv;
}

// Number of coarser levels of an h x w texture: down to 1 x 1, or max_mip_level (>= 0) levels.
// An odd extent above 1 cannot be halved: an error unless max_mip_level stops before it.
inline int mip_count(int h, int w, int64_t max_mip_level, const char* op) {
  int levels = 0;
  while ((h | w) > 1 && (max_mip_level < 0 || levels < max_mip_level)) {
    TORCH_CHECK(!((w > 1 && (w & 1)) || (h > 1 && (h & 1))), op, ": cannot build mip level ",
                levels + 1, " from a ", h, " x ", w, " level (an odd extent above 1 cannot be "
                "halved); use a texture whose sides are powers of two, or limit the pyramid with "
                "max_mip_level=", levels);
    h = h > 1 ? h >> 1 : 1;
    w = w > 1 ? w >> 1 : 1;
    ++levels;
  }
  return levels;
}

}  // namespace tex
}  // namespace pyfaid
