// CPU kernels of antialias and antialias_backward (antialias.h): parallel over pixel rows.
//   forward: vertex screen positions once per image; every pixel's right and lower pair
//            analysed into pair_alpha / pair_edge; then each pixel gathers the blends aimed at
//            it (from its own pairs and those of its left and upper neighbours), so no two tasks
//            write the same pixel.
//   backward: the colour gradient is gathered the same way; the position gradient is
//            accumulated race-free per image (utils/accumulate_cpu.h).
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <tuple>
#include <vector>

#include "antialias/antialias.h"
#include "utils/accumulate_cpu.h"

namespace pyfaid {
namespace {

struct AddPlain {
  template <typename T>
  void operator()(T* p, T v) const { *p += v; }
};

template <typename T>
void analyse_cpu(const T* rast, const T* pos, const int32_t* tri, const int32_t* neighbors,
                 T* alpha, int32_t* edge, int64_t B, int64_t V, int64_t F, int H, int W) {
  const T half_w = T(0.5) * T(W), half_h = T(0.5) * T(H);
  std::vector<T> screen(B * V * 2);
  at::parallel_for(0, B * V, 8192, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i)
      aa::vertex_screen(pos + 4 * i, half_w, half_h, screen[2 * i], screen[2 * i + 1]);
  });
  at::parallel_for(0, B * H, 4, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t b = row / H;
      const int y = static_cast<int>(row % H);
      const T* s = screen.data() + b * V * 2;
      for (int x = 0; x < W; ++x) {
        const int64_t i = row * W + x;
        const T* r = rast + 4 * i;
        alpha[2 * i] = alpha[2 * i + 1] = T(0);
        edge[2 * i] = edge[2 * i + 1] = -1;
        if (x + 1 < W)
          edge[2 * i] = aa::analyse_pair(r, r + 4, s, tri, neighbors, F, x, y, 0, W, H, alpha[2 * i]);
        if (y + 1 < H)
          edge[2 * i + 1] = aa::analyse_pair(r, r + 4 * W, s, tri, neighbors, F, x, y, 1, W, H,
                                             alpha[2 * i + 1]);
      }
    }
  });
}

// out = color + the blends aimed at each pixel.
template <typename T>
void gather_cpu(const T* color, const T* alpha, T* out, int64_t B, int H, int W, int64_t C) {
  at::parallel_for(0, B * H, 4, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int y = static_cast<int>(row % H);
      for (int x = 0; x < W; ++x) {
        const int64_t i = row * W + x;
        const T* c = color + C * i;
        T* o = out + C * i;
        for (int64_t k = 0; k < C; ++k) o[k] = c[k];
        const T right = alpha[2 * i], lower = alpha[2 * i + 1];
        const T left = x > 0 ? alpha[2 * (i - 1)] : T(0);
        const T upper = y > 0 ? alpha[2 * (i - W) + 1] : T(0);
        if (right > T(0))  // own right pair, blending this pixel
          for (int64_t k = 0; k < C; ++k) o[k] += right * (c[C + k] - c[k]);
        if (lower > T(0))  // own lower pair
          for (int64_t k = 0; k < C; ++k) o[k] += lower * (c[C * W + k] - c[k]);
        if (left < T(0))  // left neighbour's right pair, blending this (second) pixel
          for (int64_t k = 0; k < C; ++k) o[k] += left * (c[k] - c[k - C]);
        if (upper < T(0))  // upper neighbour's lower pair
          for (int64_t k = 0; k < C; ++k) o[k] += upper * (c[k] - c[k - C * W]);
      }
    }
  });
}

// grad_color = grad_out + the adjoint of the blends, gathered per pixel.
template <typename T>
void grad_color_cpu(const T* grad_out, const T* alpha, T* grad_color, int64_t B, int H, int W,
                    int64_t C) {
  at::parallel_for(0, B * H, 4, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int y = static_cast<int>(row % H);
      for (int x = 0; x < W; ++x) {
        const int64_t i = row * W + x;
        T* gc = grad_color + C * i;
        for (int64_t k = 0; k < C; ++k) gc[k] = grad_out[C * i + k];
        // Pairs touching this pixel: its own right / lower (it is the first pixel) and its left /
        // upper neighbour's (it is the second). The blend targets t (first if alpha > 0) and
        // d out[t] / d c = -alpha for the first pixel, +alpha for the second.
        const int64_t nb[4] = {i + 1, i + W, i - 1, i - W};
        const bool ok[4] = {x + 1 < W, y + 1 < H, x > 0, y > 0};
        for (int n = 0; n < 4; ++n) {
          if (!ok[n]) continue;
          const bool first = n < 2;
          const int64_t p = first ? i : nb[n];
          const T al = alpha[2 * p + (n & 1)];
          if (al == T(0)) continue;
          const int64_t t = al > T(0) ? p : (first ? nb[n] : i);
          const T s = first ? -al : al;
          for (int64_t k = 0; k < C; ++k) gc[k] += s * grad_out[C * t + k];
        }
      }
    }
  });
}

template <typename T>
void grad_pos_cpu(const T* grad_out, const T* color, const T* pos, const int32_t* tri,
                  const T* alpha, const int32_t* edge, T* grad_pos, int64_t B, int64_t V,
                  int64_t F, int H, int W, int64_t C) {
  cpu::accumulate_rows<T>(B, H, W, V * 4, false, grad_pos,
                          [&](int64_t b, int64_t y0, int64_t y1, T* gpos) {
    for (int64_t y = y0; y < y1; ++y) {
      for (int x = 0; x < W; ++x) {
        const int64_t i = (b * H + y) * W + x;
        for (int down = 0; down < 2; ++down) {
          const T al = alpha[2 * i + down];
          const int32_t ref = edge[2 * i + down];
          if (ref < 0 || (ref >> 1) / 3 >= F || !(raster::t_abs(al) < T(0.5))) continue;
          const int64_t j = i + (down ? W : 1);
          const int64_t t = al > T(0) ? i : j;
          T dd = T(0);
          for (int64_t k = 0; k < C; ++k)
            dd += grad_out[C * t + k] * (color[C * j + k] - color[C * i + k]);
          if (dd == T(0)) continue;
          aa::pair_pos_backward(pos + b * V * 4, tri, ref, x, static_cast<int>(y), down, W, H, dd,
                                gpos, AddPlain());
        }
      }
    }
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> antialias_cpu(
    const at::Tensor& color, const at::Tensor& rast, const at::Tensor& pos, const at::Tensor& tri,
    const at::Tensor& neighbors, bool check_indices) {
  const char* op = "pyfaid::antialias";
  aa::check_antialias_args(color, rast, pos, tri, op);
  aa::check_neighbors(neighbors, tri, pos.size(1), check_indices, op);
  const int64_t B = color.size(0), C = color.size(3), V = pos.size(1), F = tri.size(0);
  const int H = static_cast<int>(color.size(1)), W = static_cast<int>(color.size(2));
  auto out = at::empty_like(color);
  auto alpha = at::empty({B, H, W, 2}, color.options());
  auto edge = at::empty({B, H, W, 2}, color.options().dtype(at::kInt));
  if (rast.numel() == 0) return {out, alpha, edge};
  AT_DISPATCH_FLOATING_TYPES(color.scalar_type(), "antialias_cpu", [&] {
    using T = scalar_t;
    analyse_cpu<T>(rast.data_ptr<T>(), pos.data_ptr<T>(), tri.data_ptr<int32_t>(),
                   neighbors.data_ptr<int32_t>(), alpha.data_ptr<T>(), edge.data_ptr<int32_t>(), B,
                   V, F, H, W);
    gather_cpu<T>(color.data_ptr<T>(), alpha.data_ptr<T>(), out.data_ptr<T>(), B, H, W, C);
  });
  return {out, alpha, edge};
}

std::tuple<at::Tensor, at::Tensor> antialias_backward_cpu(
    const at::Tensor& grad_out, const at::Tensor& color, const at::Tensor& rast,
    const at::Tensor& pos, const at::Tensor& tri, const at::Tensor& pair_alpha,
    const at::Tensor& pair_edge, bool check_indices) {
  const char* op = "pyfaid::antialias_backward";
  aa::check_antialias_args(color, rast, pos, tri, op);
  aa::check_pairs(pair_alpha, pair_edge, rast, op);
  check_tensor(grad_out, "grad_out", color.scalar_type(), 4, op);
  TORCH_CHECK(grad_out.sizes() == color.sizes(), op, ": `grad_out` shape ", grad_out.sizes(),
              " does not match `color` shape ", color.sizes());
  const int64_t B = color.size(0), C = color.size(3), V = pos.size(1), F = tri.size(0);
  if (check_indices) raster::check_tri_range(tri, V, op, "pos");
  const int H = static_cast<int>(color.size(1)), W = static_cast<int>(color.size(2));
  auto grad_color = at::empty_like(color);
  auto grad_pos = at::empty_like(pos);
  if (rast.numel() == 0) return {grad_color, grad_pos.zero_()};
  AT_DISPATCH_FLOATING_TYPES(color.scalar_type(), "antialias_backward_cpu", [&] {
    using T = scalar_t;
    grad_color_cpu<T>(grad_out.data_ptr<T>(), pair_alpha.data_ptr<T>(), grad_color.data_ptr<T>(), B,
                      H, W, C);
    grad_pos_cpu<T>(grad_out.data_ptr<T>(), color.data_ptr<T>(), pos.data_ptr<T>(),
                    tri.data_ptr<int32_t>(), pair_alpha.data_ptr<T>(),
                    pair_edge.data_ptr<int32_t>(), grad_pos.data_ptr<T>(), B, V, F, H, W, C);
  });
  return {grad_color, grad_pos};
}

}  // namespace

TORCH_LIBRARY_IMPL(pyfaid, CPU, m) {
  m.impl("antialias", &antialias_cpu);
  m.impl("antialias_backward", &antialias_backward_cpu);
}

}  // namespace pyfaid
