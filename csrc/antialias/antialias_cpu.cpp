// CPU kernels of antialias and antialias_backward (antialias.h): parallel over pixel rows.
//   forward: vertex screen positions once per image; the pixels near possible silhouette edges
//            marked (parallel over images); their right and lower pairs analysed into
//            pair_alpha / pair_edge; then each pixel gathers the blends aimed at
//            it (from its own pairs and those of its left and upper neighbours), so no two tasks
//            write the same pixel.
//   backward: in one pass over the rows, the colour gradient is gathered the same way and the
//            position gradient accumulated race-free per image (utils/accumulate_cpu.h).
// With an image for every thread, whole images are the tasks (one parallel region per call).
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cstdlib>
#include <cstring>
#include <algorithm>
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

// Every pixel near a possible silhouette edge of image b (screen: its [V, 2] screen positions)
// into near ([H * W] bytes, set to 1; all of them with PYFAID_AA_ALL_PAIRS=1).
template <typename T>
void mark_image(const T* screen, const int32_t* tri, const int32_t* neighbors, int64_t F, int H,
                int W, bool all_pairs, uint8_t* near) {
  const int64_t P = int64_t(H) * W;
  std::fill(near, near + P, uint8_t(all_pairs ? 1 : 0));
  if (all_pairs) return;
  for (int64_t f = 0; f < F; ++f)
    aa::mark_triangle_edges(screen, tri, neighbors, F, f, W, H,
                            [&](int x, int y) { near[int64_t(y) * W + x] = 1; });
}

// Pairs of rows [y0, y1) of image b (rast, alpha, edge, near: the image's own).
template <typename T>
void analyse_rows(const T* rast, const T* screen, const int32_t* tri, const int32_t* neighbors,
                  const uint8_t* near, int64_t F, int H, int W, int64_t y0, int64_t y1, T* alpha,
                  int32_t* edge) {
  for (int64_t y = y0; y < y1; ++y) {
    for (int x = 0; x < W; ++x) {
      const int64_t i = y * W + x;
      const T* r = rast + 4 * i;
      alpha[2 * i] = alpha[2 * i + 1] = T(0);
      edge[2 * i] = edge[2 * i + 1] = -1;
      if (!near[i]) continue;
      const int yi = static_cast<int>(y);
      if (x + 1 < W && near[i + 1])
        edge[2 * i] = aa::analyse_pair(r, r + 4, screen, tri, neighbors, F, x, yi, 0, W, H, alpha[2 * i]);
      if (y + 1 < H && near[i + W])
        edge[2 * i + 1] = aa::analyse_pair(r, r + 4 * W, screen, tri, neighbors, F, x, yi, 1, W, H,
                                           alpha[2 * i + 1]);
    }
  }
}

// out = color + the blends aimed at each pixel of rows [y0, y1) of one image (its own arrays).
template <typename T>
void gather_rows(const T* color, const T* alpha, T* out, int H, int W, int64_t C, int64_t y0,
                 int64_t y1) {
  for (int64_t y = y0; y < y1; ++y) {
    for (int x = 0; x < W; ++x) {
      const int64_t i = y * W + x;
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
}

// The forward of B images. With an image for every thread, whole images are the tasks (one
// parallel region); otherwise each stage runs in parallel within the images.
template <typename T>
void antialias_cpu_impl(const T* color, const T* rast, const T* pos, const int32_t* tri,
                        const int32_t* neighbors, T* out, T* alpha, int32_t* edge, int64_t B,
                        int64_t V, int64_t F, int H, int W, int64_t C) {
  const T half_w = T(0.5) * T(W), half_h = T(0.5) * T(H);
  const char* env = std::getenv("PYFAID_AA_ALL_PAIRS");
  const bool all_pairs = env != nullptr && std::strcmp(env, "1") == 0;
  const int64_t P = int64_t(H) * W;
  auto screen_of = [&](int64_t b, T* s) {
    for (int64_t v = 0; v < V; ++v)
      aa::vertex_screen(pos + (b * V + v) * 4, half_w, half_h, s[2 * v], s[2 * v + 1]);
  };
  if (B >= at::get_num_threads()) {
    at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
      std::vector<T> s(V * 2);
      std::vector<uint8_t> near(P);
      for (int64_t b = begin; b < end; ++b) {
        screen_of(b, s.data());
        mark_image(s.data(), tri, neighbors, F, H, W, all_pairs, near.data());
        analyse_rows(rast + b * P * 4, s.data(), tri, neighbors, near.data(), F, H, W, 0, H,
                     alpha + b * P * 2, edge + b * P * 2);
        gather_rows(color + b * P * C, alpha + b * P * 2, out + b * P * C, H, W, C, 0, H);
      }
    });
    return;
  }
  std::vector<T> s(B * V * 2);
  std::vector<uint8_t> near(B * P);
  at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      screen_of(b, s.data() + b * V * 2);
      mark_image(s.data() + b * V * 2, tri, neighbors, F, H, W, all_pairs, near.data() + b * P);
    }
  });
  for (int stage = 0; stage < 2; ++stage) {  // all pairs, then the gathers reading them
    at::parallel_for(0, B * H, 4, [&](int64_t begin, int64_t end) {
      for (int64_t row = begin; row < end;) {  // image by image
        const int64_t b = row / H, stop = std::min(end, (b + 1) * H);
        if (stage == 0)
          analyse_rows(rast + b * P * 4, s.data() + b * V * 2, tri, neighbors, near.data() + b * P,
                       F, H, W, row - b * H, stop - b * H, alpha + b * P * 2, edge + b * P * 2);
        else
          gather_rows(color + b * P * C, alpha + b * P * 2, out + b * P * C, H, W, C, row - b * H,
                      stop - b * H);
        row = stop;
      }
    });
  }
}

// grad_color = grad_out + the adjoint of the blends, gathered per pixel of rows [y0, y1) of one
// image (its own arrays).
template <typename T>
void grad_color_rows(const T* grad_out, const T* alpha, T* grad_color, int H, int W, int64_t C,
                     int64_t y0, int64_t y1) {
  for (int64_t y = y0; y < y1; ++y) {
    for (int x = 0; x < W; ++x) {
      const int64_t i = y * W + x;
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
}

// Position gradient of the pairs of rows [y0, y1) of one image (its own arrays) into gpos.
template <typename T>
void grad_pos_rows(const T* grad_out, const T* color, const T* pos, const int32_t* tri,
                   const T* alpha, const int32_t* edge, T* gpos, int64_t F, int H, int W,
                   int64_t C, int64_t y0, int64_t y1) {
  for (int64_t y = y0; y < y1; ++y) {
    for (int x = 0; x < W; ++x) {
      const int64_t i = y * W + x;
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
        aa::pair_pos_backward(pos, tri, ref, x, static_cast<int>(y), down, W, H, dd, gpos,
                              AddPlain());
      }
    }
  }
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
    antialias_cpu_impl<T>(color.data_ptr<T>(), rast.data_ptr<T>(), pos.data_ptr<T>(),
                          tri.data_ptr<int32_t>(), neighbors.data_ptr<int32_t>(),
                          out.data_ptr<T>(), alpha.data_ptr<T>(), edge.data_ptr<int32_t>(), B, V,
                          F, H, W, C);
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
    const int64_t P = int64_t(H) * W;
    const T* go = grad_out.data_ptr<T>();
    const T* c = color.data_ptr<T>();
    const T* al = pair_alpha.data_ptr<T>();
    const int32_t* ed = pair_edge.data_ptr<int32_t>();
    T* gc = grad_color.data_ptr<T>();
    // One pass over the rows: each writes its own colour gradient and adds its pairs' position
    // gradient into its image's (or its chunk's) buffer.
    cpu::accumulate_rows<T>(B, H, W, V * 4, false, grad_pos.data_ptr<T>(),
                            [&](int64_t b, int64_t y0, int64_t y1, T* gpos) {
      grad_color_rows(go + b * P * C, al + b * P * 2, gc + b * P * C, H, W, C, y0, y1);
      grad_pos_rows(go + b * P * C, c + b * P * C, pos.data_ptr<T>() + b * V * 4,
                    tri.data_ptr<int32_t>(), al + b * P * 2, ed + b * P * 2, gpos, F, H, W, C, y0,
                    y1);
    });
  });
  return {grad_color, grad_pos};
}

}  // namespace

TORCH_LIBRARY_IMPL(pyfaid, CPU, m) {
  m.impl("antialias", &antialias_cpu);
  m.impl("antialias_backward", &antialias_backward_cpu);
}

}  // namespace pyfaid
