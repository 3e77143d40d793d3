// CPU kernels of the Chebyshev graph convolution: the CSR x dense product (at::parallel_for over
// rows, column tiles kept in a local accumulator, SIMD clones picked at load time) and the op
// entry points. The recurrences and dense GEMMs are shared with CUDA (cheb.cpp).
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>

#include "cheb/cheb.h"
#include "utils/checks.h"

namespace pyfaid::cheb {
namespace {

// GCC builds AVX-512 / AVX2 clones of the row kernel and picks one when the library is loaded
// (the extension itself is compiled for the baseline x86-64 ISA).
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define PYFAID_SIMD_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define PYFAID_SIMD_CLONES
#endif

template <typename T>
inline __attribute__((always_inline)) void spmm_rows_impl(
    int64_t r0, int64_t r1, const int64_t* crow, const int64_t* col, const T* val, const T* in,
    const T* prev, T* out, int64_t C, T alpha, T beta, bool accumulate) {
  constexpr int64_t kTile = 1024 / sizeof(T) * 2;  // 2 KiB of accumulators per row tile
  alignas(64) T acc[kTile];
  for (int64_t row = r0; row < r1; ++row) {
    const int64_t p0 = crow[row], p1 = crow[row + 1];
    for (int64_t c0 = 0; c0 < C; c0 += kTile) {
      const int64_t cw = std::min(kTile, C - c0);
      for (int64_t c = 0; c < cw; ++c) acc[c] = T(0);
      for (int64_t p = p0; p < p1; ++p) {
        const T v = val[p];
        const T* __restrict__ src = in + col[p] * C + c0;
        for (int64_t c = 0; c < cw; ++c) acc[c] += v * src[c];
      }
      T* dst = out + row * C + c0;
      if (prev != nullptr) {
        const T* pr = prev + row * C + c0;  // may alias dst (same index only)
        if (accumulate) {
          for (int64_t c = 0; c < cw; ++c) dst[c] += alpha * acc[c] + beta * pr[c];
        } else {
          for (int64_t c = 0; c < cw; ++c) dst[c] = alpha * acc[c] + beta * pr[c];
        }
      } else if (accumulate) {
        for (int64_t c = 0; c < cw; ++c) dst[c] += alpha * acc[c];
      } else {
        for (int64_t c = 0; c < cw; ++c) dst[c] = alpha * acc[c];
      }
    }
  }
}

PYFAID_SIMD_CLONES void spmm_rows_f32(int64_t r0, int64_t r1, const int64_t* crow,
                                      const int64_t* col, const float* val, const float* in,
                                      const float* prev, float* out, int64_t C, float alpha,
                                      float beta, bool accumulate) {
  spmm_rows_impl<float>(r0, r1, crow, col, val, in, prev, out, C, alpha, beta, accumulate);
}

PYFAID_SIMD_CLONES void spmm_rows_f64(int64_t r0, int64_t r1, const int64_t* crow,
                                      const int64_t* col, const double* val, const double* in,
                                      const double* prev, double* out, int64_t C, double alpha,
                                      double beta, bool accumulate) {
  spmm_rows_impl<double>(r0, r1, crow, col, val, in, prev, out, C, alpha, beta, accumulate);
}

inline void spmm_rows(int64_t r0, int64_t r1, const int64_t* crow, const int64_t* col,
                      const float* val, const float* in, const float* prev, float* out, int64_t C,
                      float alpha, float beta, bool accumulate) {
  spmm_rows_f32(r0, r1, crow, col, val, in, prev, out, C, alpha, beta, accumulate);
}
inline void spmm_rows(int64_t r0, int64_t r1, const int64_t* crow, const int64_t* col,
                      const double* val, const double* in, const double* prev, double* out,
                      int64_t C, double alpha, double beta, bool accumulate) {
  spmm_rows_f64(r0, r1, crow, col, val, in, prev, out, C, alpha, beta, accumulate);
}

void spmm_cpu(const at::Tensor& crow, const at::Tensor& col, const at::Tensor& val,
              const at::Tensor& in, const at::Tensor& prev, at::Tensor& out, double alpha,
              double beta, bool accumulate) {
  const int64_t n = in.size(0), C = in.size(1);
  if (n == 0 || C == 0) return;
  const int64_t nnz = col.numel();
  // Rows per task: about 64 Ki multiply-adds each.
  const int64_t work_per_row = std::max<int64_t>(1, (nnz / std::max<int64_t>(n, 1) + 1) * C);
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 16) / work_per_row);
  AT_DISPATCH_FLOATING_TYPES(in.scalar_type(), "cheb_spmm_cpu", [&] {
    const int64_t* crow_p = crow.data_ptr<int64_t>();
    const int64_t* col_p = col.data_ptr<int64_t>();
    const scalar_t* val_p = val.data_ptr<scalar_t>();
    const scalar_t* in_p = in.data_ptr<scalar_t>();
    const scalar_t* prev_p = prev.defined() ? prev.data_ptr<scalar_t>() : nullptr;
    scalar_t* out_p = out.data_ptr<scalar_t>();
    at::parallel_for(0, n, grain, [&](int64_t r0, int64_t r1) {
      spmm_rows(r0, r1, crow_p, col_p, val_p, in_p, prev_p, out_p, C, static_cast<scalar_t>(alpha),
                static_cast<scalar_t>(beta), accumulate);
    });
  });
}

// CSR structure and value checks (one pass over crow, col and val).
void check_csr_cpu(const char* op, const at::Tensor& crow, const at::Tensor& col,
                   const at::Tensor& val, int64_t n) {
  const int64_t nnz = col.numel();
  const int64_t* cr = crow.data_ptr<int64_t>();
  TORCH_CHECK(cr[0] == 0 && cr[n] == nnz, op, ": `crow` must start at 0 and end at nnz = ", nnz,
              " (the length of `col`), got ", cr[0], " and ", cr[n]);
  for (int64_t i = 0; i < n; ++i) {
    TORCH_CHECK(cr[i] <= cr[i + 1], op, ": `crow` must be non-decreasing, but crow[", i, "] = ",
                cr[i], " > crow[", i + 1, "] = ", cr[i + 1]);
  }
  const int64_t* c = col.data_ptr<int64_t>();
  for (int64_t p = 0; p < nnz; ++p) {
    TORCH_CHECK(c[p] >= 0 && c[p] < n, op, ": `col` index ", c[p], " at position ", p,
                " is out of range for N = ", n, " vertices");
  }
  AT_DISPATCH_FLOATING_TYPES(val.scalar_type(), "cheb_check_val", [&] {
    const scalar_t* v = val.data_ptr<scalar_t>();
    for (int64_t p = 0; p < nnz; ++p) {
      TORCH_CHECK(std::isfinite(v[p]), op, ": the Laplacian `val` has a non-finite entry (", v[p],
                  ") at position ", p);
    }
  });
}

void check_cpu(const char* op, const at::Tensor& x, const char* name) {
  TORCH_CHECK(x.device().is_cpu(), op, ": `", name, "` must be a CPU tensor here, got ", x.device());
}

at::Tensor cheb_conv_cpu(const at::Tensor& x, const at::Tensor& crow, const at::Tensor& col,
                         const at::Tensor& val, const at::Tensor& weight,
                         const std::optional<at::Tensor>& bias, bool check_laplacian) {
  const char* op = "cheb_conv";
  check_conv_args(op, x, crow, col, val, weight, bias);
  check_cpu(op, x, "x");
  if (check_laplacian) check_csr_cpu(op, crow, col, val, x.size(1));
  return cheb_conv_forward(x, crow, col, val, weight, bias, &spmm_cpu);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> cheb_conv_backward_cpu(
    const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& crow, const at::Tensor& col,
    const at::Tensor& val, const at::Tensor& weight, bool has_bias, bool check_laplacian) {
  const char* op = "cheb_conv_backward";
  check_conv_backward_args(op, grad_out, x, crow, col, val, weight);
  check_cpu(op, x, "x");
  if (check_laplacian) check_csr_cpu(op, crow, col, val, x.size(1));
  return cheb_conv_backward_impl(grad_out, x, crow, col, val, weight, has_bias, &spmm_cpu);
}

at::Tensor cheb_spmm_cpu(const at::Tensor& crow, const at::Tensor& col, const at::Tensor& val,
                          const at::Tensor& x, bool check_laplacian) {
  const char* op = "cheb_spmm";
  check_spmm_inputs(op, crow, col, val, x);
  check_cpu(op, x, "x");
  if (check_laplacian) check_csr_cpu(op, crow, col, val, x.size(0));
  at::Tensor out = at::empty_like(x);
  spmm_cpu(crow, col, val, x, at::Tensor(), out, 1.0, 0.0, false);
  return out;
}

}  // namespace
}  // namespace pyfaid::cheb

TORCH_LIBRARY_IMPL(pyfaid, CPU, m) {
  m.impl("cheb_conv", &pyfaid::cheb::cheb_conv_cpu);
  m.impl("cheb_conv_backward", &pyfaid::cheb::cheb_conv_backward_cpu);
  m.impl("cheb_spmm", &pyfaid::cheb::cheb_spmm_cpu);
}
