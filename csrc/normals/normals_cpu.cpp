// CPU kernels of vertex_normals / vertex_normals_backward (formulas: normals.h).
//
// Race-free without atomics: every call builds the vertex -> triangle-corner adjacency of `tri`
// once, in CSR form (a counting sort, which also checks the index range unless the caller passes
// check_indices = false), and then
//   1. computes the face normals, parallel over (batch, triangle);
//   2. gathers them per vertex, parallel over (batch, vertex).
// The backward pass gathers the same way. Sums run in a fixed order: results are deterministic.

#include "normals/normals.h"

#include <ATen/Parallel.h>
#include <torch/library.h>

#include <utils/checks.h>

#include <cmath>
#include <limits>
#include <memory>
#include <vector>

namespace pyfaid {

namespace {

constexpr int64_t FACE_GRAIN = 2048;
constexpr int64_t VERTEX_GRAIN = 1024;

// Scratch buffer without the zero fill of std::vector (every element is written before use).
template <typename T>
std::unique_ptr<T[]> scratch(int64_t n) {
  return std::unique_ptr<T[]>(new T[static_cast<size_t>(n)]);
}

// fn(b, j, i) for every i = b * n + j in [0, B * n), in parallel; (b, j) are stepped, not divided.
template <typename Fn>
void parallel_batched(int64_t B, int64_t n, int64_t grain, const Fn& fn) {
  at::parallel_for(0, B * n, grain, [&](int64_t begin, int64_t end) {
    int64_t b = begin / n, j = begin % n;
    for (int64_t i = begin; i < end; ++i) {
      fn(b, j, i);
      if (++j == n) {
        j = 0;
        ++b;
      }
    }
  });
}

// Corners (3 * triangle + k) that use each vertex: corner[start[v] .. start[v + 1]).
struct Adjacency {
  std::vector<int64_t> start;
  std::vector<int32_t> corner;
};

Adjacency build_adjacency(const int32_t* tri, int64_t F, int64_t V, bool check_indices,
                          const char* op) {
  Adjacency adj;
  adj.start.assign(static_cast<size_t>(V) + 1, 0);
  for (int64_t i = 0; i < 3 * F; ++i) {
    const int32_t v = tri[i];
    TORCH_CHECK(!check_indices || (v >= 0 && v < V), op, ": `tri` holds vertex index ", v,
                " (triangle ", i / 3, ") outside [0, ", V, ") for ", V, " vertices");
    ++adj.start[v + 1];
  }
  for (int64_t v = 0; v < V; ++v) adj.start[v + 1] += adj.start[v];
  adj.corner.resize(static_cast<size_t>(3 * F));
  std::vector<int64_t> fill(adj.start.begin(), adj.start.end() - 1);
  for (int64_t i = 0; i < 3 * F; ++i) adj.corner[fill[tri[i]]++] = static_cast<int32_t>(i);
  return adj;
}

template <typename T>
inline void cross(const T* a, const T* b, T* out) {
  out[0] = a[1] * b[2] - a[2] * b[1];
  out[1] = a[2] * b[0] - a[0] * b[2];
  out[2] = a[0] * b[1] - a[1] * b[0];
}

// fn[b, t] = (p1 - p0) x (p2 - p0) for every batch element and triangle.
template <typename T>
std::unique_ptr<T[]> face_normals(const T* p, const int32_t* tri, int64_t B, int64_t V, int64_t F) {
  auto fn = scratch<T>(B * F * 3);
  parallel_batched(B, F, FACE_GRAIN, [&](int64_t b, int64_t t, int64_t i) {
    const T* pb = p + b * V * 3;
    const T* p0 = pb + 3 * static_cast<int64_t>(tri[3 * t]);
    const T* p1 = pb + 3 * static_cast<int64_t>(tri[3 * t + 1]);
    const T* p2 = pb + 3 * static_cast<int64_t>(tri[3 * t + 2]);
    const T e1[3] = {p1[0] - p0[0], p1[1] - p0[1], p1[2] - p0[2]};
    const T e2[3] = {p2[0] - p0[0], p2[1] - p0[1], p2[2] - p0[2]};
    cross(e1, e2, fn.get() + 3 * i);
  });
  return fn;
}

// s_v = sum of the normals of the triangles around v (batch element b).
template <typename T>
inline void gather_sum(const Adjacency& adj, const T* fn_b, int64_t v, T* s) {
  s[0] = s[1] = s[2] = T(0);
  for (int64_t j = adj.start[v]; j < adj.start[v + 1]; ++j) {
    const T* f = fn_b + 3 * static_cast<int64_t>(adj.corner[j] / 3);
    s[0] += f[0];
    s[1] += f[1];
    s[2] += f[2];
  }
}

}  // namespace

at::Tensor vertex_normals_cpu(const at::Tensor& verts, const at::Tensor& tri, bool check_indices) {
  const char* op = "vertex_normals";
  auto [B, V, F] = check_vertex_normals_args(verts, tri, op);
  TORCH_CHECK(verts.device().is_cpu(), op, ": `verts` must be a CPU tensor here");
  auto out = at::empty_like(verts);
  const Adjacency adj = build_adjacency(tri.data_ptr<int32_t>(), F, V, check_indices, op);
  if (B == 0 || V == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(verts.scalar_type(), "vertex_normals_cpu", [&] {
    using T = scalar_t;
    const T* p = verts.data_ptr<T>();
    const auto fn = face_normals<T>(p, tri.data_ptr<int32_t>(), B, V, F);
    T* o = out.data_ptr<T>();
    const T eps2 = static_cast<T>(NORMAL_EPS * NORMAL_EPS);
    parallel_batched(B, V, VERTEX_GRAIN, [&](int64_t b, int64_t v, int64_t i) {
      T s[3];
      gather_sum(adj, fn.get() + b * F * 3, v, s);
      const T len2 = s[0] * s[0] + s[1] * s[1] + s[2] * s[2];
      T* n = o + 3 * i;
      if (len2 > eps2) {
        const T inv = T(1) / std::sqrt(len2);
        n[0] = s[0] * inv;
        n[1] = s[1] * inv;
        n[2] = s[2] * inv;
      } else {
        n[0] = T(0);
        n[1] = T(0);
        n[2] = T(1);
      }
    });
  });
  return out;
}

at::Tensor vertex_normals_backward_cpu(const at::Tensor& grad_normals, const at::Tensor& verts,
                                       const at::Tensor& tri, bool check_indices) {
  const char* op = "vertex_normals_backward";
  auto [B, V, F] = check_vertex_normals_backward_args(grad_normals, verts, tri, op);
  TORCH_CHECK(verts.device().is_cpu(), op, ": `verts` must be a CPU tensor here");
  auto grad_verts = at::zeros_like(verts);
  const Adjacency adj = build_adjacency(tri.data_ptr<int32_t>(), F, V, check_indices, op);
  if (B == 0 || V == 0 || F == 0) return grad_verts;
  AT_DISPATCH_FLOATING_TYPES(verts.scalar_type(), "vertex_normals_backward_cpu", [&] {
    using T = scalar_t;
    const T* p = verts.data_ptr<T>();
    const int32_t* t3 = tri.data_ptr<int32_t>();
    const T* g = grad_normals.data_ptr<T>();
    const auto fn = face_normals<T>(p, t3, B, V, F);
    const T eps2 = static_cast<T>(NORMAL_EPS * NORMAL_EPS);
    // 1. gradient with respect to the unnormalised vertex sums s_v.
    auto grad_s = scratch<T>(B * V * 3);
    parallel_batched(B, V, VERTEX_GRAIN, [&](int64_t b, int64_t v, int64_t i) {
      T s[3];
      gather_sum(adj, fn.get() + b * F * 3, v, s);
      const T len2 = s[0] * s[0] + s[1] * s[1] + s[2] * s[2];
      T* gs = grad_s.get() + 3 * i;
      if (len2 > eps2) {
        const T inv = T(1) / std::sqrt(len2);
        const T n[3] = {s[0] * inv, s[1] * inv, s[2] * inv};
        const T* gi = g + 3 * i;
        const T dot = n[0] * gi[0] + n[1] * gi[1] + n[2] * gi[2];
        gs[0] = (gi[0] - n[0] * dot) * inv;
        gs[1] = (gi[1] - n[1] * dot) * inv;
        gs[2] = (gi[2] - n[2] * dot) * inv;
      } else {
        gs[0] = gs[1] = gs[2] = T(0);
      }
    });
    // 2. gradient with respect to every face normal: the sum over its three corners.
    auto grad_f = scratch<T>(B * F * 3);
    parallel_batched(B, F, FACE_GRAIN, [&](int64_t b, int64_t t, int64_t i) {
      const T* gs = grad_s.get() + b * V * 3;
      const T* a = gs + 3 * static_cast<int64_t>(t3[3 * t]);
      const T* c = gs + 3 * static_cast<int64_t>(t3[3 * t + 1]);
      const T* d = gs + 3 * static_cast<int64_t>(t3[3 * t + 2]);
      T* gf = grad_f.get() + 3 * i;
      gf[0] = a[0] + c[0] + d[0];
      gf[1] = a[1] + c[1] + d[1];
      gf[2] = a[2] + c[2] + d[2];
    });
    // 3. gather per vertex: corner k of triangle t receives (p_{k+1} - p_{k+2}) x G_t.
    T* gv = grad_verts.data_ptr<T>();
    parallel_batched(B, V, VERTEX_GRAIN, [&](int64_t b, int64_t v, int64_t i) {
      const T* pb = p + b * V * 3;
      const T* gfb = grad_f.get() + b * F * 3;
      T acc[3] = {T(0), T(0), T(0)};
      for (int64_t j = adj.start[v]; j < adj.start[v + 1]; ++j) {
        const int64_t corner = adj.corner[j], t = corner / 3, k = corner % 3;
        const T* q1 = pb + 3 * static_cast<int64_t>(t3[3 * t + (k + 1) % 3]);
        const T* q2 = pb + 3 * static_cast<int64_t>(t3[3 * t + (k + 2) % 3]);
        const T e[3] = {q1[0] - q2[0], q1[1] - q2[1], q1[2] - q2[2]};
        T c[3];
        cross(e, gfb + 3 * t, c);
        acc[0] += c[0];
        acc[1] += c[1];
        acc[2] += c[2];
      }
      T* out = gv + 3 * i;
      out[0] = acc[0];
      out[1] = acc[1];
      out[2] = acc[2];
    });
  });
  return grad_verts;
}

TORCH_LIBRARY_IMPL(pyfaid, CPU, m) {
  m.impl("vertex_normals", &vertex_normals_cpu);
  m.impl("vertex_normals_backward", &vertex_normals_backward_cpu);
}

}  // namespace pyfaid
