// Chebyshev graph convolution: out = sum_k T_k(L~) x W_k + bias, in one op.
//
// L~ is the scaled Laplacian as CSR (crow [N+1] int64, col [nnz] int64, val [nnz]), which must be
// symmetric (pyfaid.graph.scaled_laplacian builds it so). Nothing N x N is ever dense.
//
// Layout. Inside the op every feature tensor is "node-major": [N, B, F], i.e. a matrix [N, B*F] for
// the sparse product (one CSR row touches the B*F contiguous values of each neighbour) and a matrix
// [N*B, F] for the dense products (at::addmm / at::mm: MKL on CPU, cuBLAS on CUDA, current stream).
//
// Algorithms (C = the feature width the sparse products run at):
//   forward,  Fin <= Fout: the recurrence T_0 x = x, T_1 x = L~ x, T_k x = 2 L~ T_{k-1} x - T_{k-2} x,
//             each T_k x multiplied into the output right after it is formed (C = Fin);
//   forward,  Fout < Fin: Clenshaw's recurrence on a_k = x W_k (C = Fout):
//             b_k = a_k + 2 L~ b_{k+1} - b_{k+2}, out = a_0 + L~ b_1 - b_2.
//   backward: T_k(L~) is symmetric, so with g = grad_out
//             grad_x = sum_k T_k(L~) g W_k^T  and  grad_W_k = (T_k x)^T g = x^T (T_k g).
//             When Fout <= 2 Fin one recurrence on g (C = Fout) gives both; otherwise the
//             recurrence on x (C = Fin) gives grad_W and Clenshaw on g W_k^T (C = Fin) gives grad_x.
//             Nothing is saved from the forward pass but x: T_k is recomputed (K-1 sparse products
//             of width C), which costs less memory than storing K feature-sized tensors.
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <tuple>

namespace pyfaid::cheb {

// out[i, :] = alpha * sum_j L~[i, j] in[j, :] + beta * prev[i, :] (+ out[i, :] when accumulate).
// in, prev, out are [N, C] contiguous; prev may be undefined (then beta is ignored) and may alias
// out (each output row reads only its own row of prev); in never aliases out.
using SpmmFn = void (*)(const at::Tensor& crow, const at::Tensor& col, const at::Tensor& val,
                        const at::Tensor& in, const at::Tensor& prev, at::Tensor& out, double alpha,
                        double beta, bool accumulate);

// Device-independent argument checks (shapes, dtypes, contiguity, devices). Range and finiteness
// checks of the CSR content are done by each backend (they need to read the data), unless the
// caller passes check_laplacian = false.
void check_inputs(const char* op, const at::Tensor& x, const char* x_name, const at::Tensor& crow,
                  const at::Tensor& col, const at::Tensor& val, const at::Tensor& weight,
                  bool x_is_grad_out);

// Checks of cheb_spmm's arguments: x [N, C] float32/float64 and the CSR triple for N vertices.
void check_spmm_inputs(const char* op, const at::Tensor& crow, const at::Tensor& col,
                       const at::Tensor& val, const at::Tensor& x);

// `bias` (when given) must be [Fout], x's dtype, contiguous, on x's device.
void check_bias(const char* op, const std::optional<at::Tensor>& bias, const at::Tensor& x,
                int64_t fout);

// All device-independent argument checks of cheb_conv (CPU and CUDA): x, the CSR triple, weight
// and bias.
void check_conv_args(const char* op, const at::Tensor& x, const at::Tensor& crow,
                     const at::Tensor& col, const at::Tensor& val, const at::Tensor& weight,
                     const std::optional<at::Tensor>& bias);

// All device-independent argument checks of cheb_conv_backward (CPU and CUDA): x, grad_out
// [B, N, Fout] of x's batch and vertices, the CSR triple and weight.
void check_conv_backward_args(const char* op, const at::Tensor& grad_out, const at::Tensor& x,
                              const at::Tensor& crow, const at::Tensor& col, const at::Tensor& val,
                              const at::Tensor& weight);

at::Tensor cheb_conv_forward(const at::Tensor& x, const at::Tensor& crow, const at::Tensor& col,
                             const at::Tensor& val, const at::Tensor& weight,
                             const std::optional<at::Tensor>& bias, SpmmFn spmm);

std::tuple<at::Tensor, at::Tensor, at::Tensor> cheb_conv_backward_impl(
    const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& crow, const at::Tensor& col,
    const at::Tensor& val, const at::Tensor& weight, bool has_bias, SpmmFn spmm);

}  // namespace pyfaid::cheb
