// CUDA kernels of the Chebyshev graph convolution: a CSR x dense product with a group of G
// threads per row (G = 1..32 lanes, each lane holding 4 output columns in registers, reads of a
// neighbour's features coalesced across the group), on the current stream. The recurrences and the
// dense GEMMs (cuBLAS through at::mm / at::addmm) are shared with the CPU path (cheb.cpp).
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "cheb/cheb.h"
#include "utils/checks.h"
#include "utils/cuda_launch.cuh"

namespace pyfaid::cheb {
namespace {

constexpr int kColsPerLane = 4;
template <typename T>
__global__ void spmm_kernel(const int64_t* __restrict__ crow, const int64_t* __restrict__ col,
                            const T* __restrict__ val, const T* __restrict__ in, const T* prev,
                            T* out, int64_t n, int64_t C, int log2_group, T alpha, T beta,
                            bool accumulate) {
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int group = 1 << log2_group;
  const int64_t row = tid >> log2_group;
  const int lane = static_cast<int>(tid & (group - 1));
  if (row >= n) return;
  const int64_t c_base = static_cast<int64_t>(blockIdx.y) * group * kColsPerLane + lane;
  T acc[kColsPerLane];
#pragma unroll
  for (int j = 0; j < kColsPerLane; ++j) acc[j] = T(0);
  const int64_t p0 = crow[row], p1 = crow[row + 1];
  for (int64_t p = p0; p < p1; ++p) {
    const T v = val[p];
    const T* src = in + col[p] * C;
#pragma unroll
    for (int j = 0; j < kColsPerLane; ++j) {
      const int64_t c = c_base + static_cast<int64_t>(j) * group;
      if (c < C) acc[j] += v * __ldg(src + c);
    }
  }
#pragma unroll
  for (int j = 0; j < kColsPerLane; ++j) {
    const int64_t c = c_base + static_cast<int64_t>(j) * group;
    if (c >= C) continue;
    const int64_t o = row * C + c;
    T r = alpha * acc[j];
    if (prev != nullptr) r += beta * prev[o];  // prev may alias out: same element only
    if (accumulate) r += out[o];
    out[o] = r;
  }
}

void spmm_cuda(const at::Tensor& crow, const at::Tensor& col, const at::Tensor& val,
               const at::Tensor& in, const at::Tensor& prev, at::Tensor& out, double alpha,
               double beta, bool accumulate) {
  const int64_t n = in.size(0), C = in.size(1);
  if (n == 0 || C == 0) return;
  // Lanes per row: enough for C / 4 columns, a power of two up to a warp.
  int log2_group = 0;
  while (log2_group < 5 && (kColsPerLane << log2_group) < C) ++log2_group;
  const int64_t group = int64_t{1} << log2_group;
  const int64_t chunks = (C + group * kColsPerLane - 1) / (group * kColsPerLane);
  const int64_t blocks = (n * group + kThreads - 1) / kThreads;
  TORCH_CHECK(chunks <= 65535 && blocks <= 0x7fffffff, "cheb_conv: feature width ", C,
              " x vertices ", n, " is too large for one launch");
  const dim3 grid(static_cast<unsigned>(blocks), static_cast<unsigned>(chunks));
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(in.scalar_type(), "cheb_spmm_cuda", [&] {
    spmm_kernel<scalar_t><<<grid, kThreads, 0, stream>>>(
        crow.data_ptr<int64_t>(), col.data_ptr<int64_t>(), val.data_ptr<scalar_t>(),
        in.data_ptr<scalar_t>(), prev.defined() ? prev.data_ptr<scalar_t>() : nullptr,
        out.data_ptr<scalar_t>(), n, C, log2_group, static_cast<scalar_t>(alpha),
        static_cast<scalar_t>(beta), accumulate);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// CSR structure and value checks: a few reductions on the device and one small copy to the host
// (a synchronisation). Skipped when the caller passes check_laplacian = false (a Laplacian checked
// once before, pyfaid.graph.Laplacian): then nothing here waits for the device.
void check_csr_cuda(const char* op, const at::Tensor& crow, const at::Tensor& col,
                    const at::Tensor& val, int64_t n) {
  const int64_t nnz = col.numel();
  const at::Tensor flags =
      at::stack({crow.select(0, 0).ne(0), crow.select(0, n).ne(nnz),
                 crow.slice(0, 1).lt(crow.slice(0, 0, n)).any(),
                 col.lt(0).logical_or(col.ge(n)).any(), at::isfinite(val).logical_not().any()})
          .cpu();
  const bool* f = flags.data_ptr<bool>();
  TORCH_CHECK(!f[0] && !f[1], op, ": `crow` must start at 0 and end at nnz = ", nnz,
              " (the length of `col`)");
  TORCH_CHECK(!f[2], op, ": `crow` must be non-decreasing");
  TORCH_CHECK(!f[3], op, ": `col` has indices out of range for N = ", n, " vertices");
  TORCH_CHECK(!f[4], op, ": the Laplacian `val` has non-finite entries");
}

void check_cuda(const char* op, const at::Tensor& x, const char* name) {
  TORCH_CHECK(x.is_cuda(), op, ": `", name, "` must be a CUDA tensor here, got ", x.device());
}

at::Tensor cheb_conv_cuda(const at::Tensor& x, const at::Tensor& crow, const at::Tensor& col,
                          const at::Tensor& val, const at::Tensor& weight,
                          const std::optional<at::Tensor>& bias, bool check_laplacian) {
  const char* op = "cheb_conv";
  check_conv_args(op, x, crow, col, val, weight, bias);
  check_cuda(op, x, "x");
  const c10::cuda::CUDAGuard guard(x.device());
  if (check_laplacian) check_csr_cuda(op, crow, col, val, x.size(1));
  return cheb_conv_forward(x, crow, col, val, weight, bias, &spmm_cuda);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> cheb_conv_backward_cuda(
    const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& crow, const at::Tensor& col,
    const at::Tensor& val, const at::Tensor& weight, bool has_bias, bool check_laplacian) {
  const char* op = "cheb_conv_backward";
  check_conv_backward_args(op, grad_out, x, crow, col, val, weight);
  check_cuda(op, x, "x");
  const c10::cuda::CUDAGuard guard(x.device());
  if (check_laplacian) check_csr_cuda(op, crow, col, val, x.size(1));
  return cheb_conv_backward_impl(grad_out, x, crow, col, val, weight, has_bias, &spmm_cuda);
}

at::Tensor cheb_spmm_cuda(const at::Tensor& crow, const at::Tensor& col, const at::Tensor& val,
                          const at::Tensor& x, bool check_laplacian) {
  const char* op = "cheb_spmm";
  check_spmm_inputs(op, crow, col, val, x);
  check_cuda(op, x, "x");
  const c10::cuda::CUDAGuard guard(x.device());
  if (check_laplacian) check_csr_cuda(op, crow, col, val, x.size(0));
  at::Tensor out = at::empty_like(x);
  spmm_cuda(crow, col, val, x, at::Tensor(), out, 1.0, 0.0, false);
  return out;
}

}  // namespace
}  // namespace pyfaid::cheb

TORCH_LIBRARY_IMPL(pyfaid, CUDA, m) {
  m.impl("cheb_conv", &pyfaid::cheb::cheb_conv_cuda);
  m.impl("cheb_conv_backward", &pyfaid::cheb::cheb_conv_backward_cuda);
  m.impl("cheb_spmm", &pyfaid::cheb::cheb_spmm_cuda);
}
