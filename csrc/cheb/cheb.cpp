// Device-independent part of the Chebyshev graph convolution: argument checks and the K-term
// recurrences. The sparse product is the backend's SpmmFn (cheb_cpu.cpp, cheb_cuda.cu); the dense
// products are at::mm / at::addmm, which run on the tensors' device (current stream on CUDA).
#include "cheb/cheb.h"

#include <utility>

#include "utils/checks.h"

namespace pyfaid::cheb {

void check_inputs(const char* op, const at::Tensor& x, const char* x_name, const at::Tensor& crow,
                  const at::Tensor& col, const at::Tensor& val, const at::Tensor& weight,
                  bool x_is_grad_out) {
  TORCH_CHECK(x.defined(), op, ": `", x_name, "` is undefined");
  check_floating(x, x_name, op);
  TORCH_CHECK(x.dim() == 3, op, ": `", x_name, "` must be [B, N, ", x_is_grad_out ? "Fout" : "Fin",
              "], got shape ", x.sizes());
  const auto dtype = x.scalar_type();
  check_tensor(weight, "weight", dtype, 3, op);
  TORCH_CHECK(weight.size(0) >= 1, op, ": `weight` must be [K, Fin, Fout] with K >= 1 (K = number ",
              "of Chebyshev terms), got shape ", weight.sizes());
  const int64_t feat = x_is_grad_out ? weight.size(2) : weight.size(1);
  TORCH_CHECK(x.size(2) == feat, op, ": `", x_name, "` has ", x.size(2), " features but `weight` ",
              weight.sizes(), " expects ", feat);
  check_tensor(crow, "crow", at::kLong, 1, op);
  check_tensor(col, "col", at::kLong, 1, op);
  check_tensor(val, "val", dtype, 1, op);
  const int64_t n = x.size(1);
  TORCH_CHECK(crow.numel() == n + 1, op, ": `crow` must have N + 1 = ", n + 1,
              " entries for `", x_name, "` with N = ", n, " vertices, got ", crow.numel());
  TORCH_CHECK(col.numel() == val.numel(), op, ": `col` and `val` must have the same length, got ",
              col.numel(), " and ", val.numel());
  check_same_device(crow, "crow", x, x_name, op);
  check_same_device(col, "col", x, x_name, op);
  check_same_device(val, "val", x, x_name, op);
  check_same_device(weight, "weight", x, x_name, op);
}

void check_spmm_inputs(const char* op, const at::Tensor& crow, const at::Tensor& col,
                       const at::Tensor& val, const at::Tensor& x) {
  TORCH_CHECK(x.defined(), op, ": `x` is undefined");
  check_floating(x, "x", op);
  TORCH_CHECK(x.dim() == 2, op, ": `x` must be [N, C], got shape ", x.sizes());
  check_tensor(crow, "crow", at::kLong, 1, op);
  check_tensor(col, "col", at::kLong, 1, op);
  check_tensor(val, "val", x.scalar_type(), 1, op);
  TORCH_CHECK(crow.numel() == x.size(0) + 1, op, ": `crow` must have N + 1 = ", x.size(0) + 1,
              " entries for `x` with N = ", x.size(0), " rows, got ", crow.numel());
  TORCH_CHECK(col.numel() == val.numel(), op, ": `col` and `val` must have the same length, got ",
              col.numel(), " and ", val.numel());
  check_same_device(crow, "crow", x, "x", op);
  check_same_device(col, "col", x, "x", op);
  check_same_device(val, "val", x, "x", op);
}

void check_bias(const char* op, const std::optional<at::Tensor>& bias, const at::Tensor& x,
                int64_t fout) {
  if (!bias.has_value() || !bias->defined()) return;
  check_tensor(*bias, "bias", x.scalar_type(), 1, op);
  TORCH_CHECK(bias->numel() == fout, op, ": `bias` must be [Fout] = [", fout, "], got shape ",
              bias->sizes());
  check_same_device(*bias, "bias", x, "x", op);
}

void check_conv_args(const char* op, const at::Tensor& x, const at::Tensor& crow,
                     const at::Tensor& col, const at::Tensor& val, const at::Tensor& weight,
                     const std::optional<at::Tensor>& bias) {
  check_inputs(op, x, "x", crow, col, val, weight, false);
  check_bias(op, bias, x, weight.size(2));
}

void check_conv_backward_args(const char* op, const at::Tensor& grad_out, const at::Tensor& x,
                              const at::Tensor& crow, const at::Tensor& col, const at::Tensor& val,
                              const at::Tensor& weight) {
  check_inputs(op, x, "x", crow, col, val, weight, false);
  check_inputs(op, grad_out, "grad_out", crow, col, val, weight, true);
  TORCH_CHECK(grad_out.size(0) == x.size(0) && grad_out.size(1) == x.size(1), op,
              ": `grad_out` ", grad_out.sizes(), " does not match `x` ", x.sizes());
}

namespace {

// [B, N, F] -> node-major [N * B, F] (a view when B == 1).
at::Tensor to_node_major(const at::Tensor& t) {
  const int64_t b = t.size(0), n = t.size(1), f = t.size(2);
  if (b == 1) return t.view({n, f});
  return t.transpose(0, 1).contiguous().view({n * b, f});
}

// node-major [N * B, F] -> [B, N, F] contiguous.
at::Tensor from_node_major(const at::Tensor& t, int64_t b, int64_t n) {
  const int64_t f = t.size(1);
  if (b == 1) return t.view({1, n, f});
  return t.view({n, b, f}).transpose(0, 1).contiguous();
}

struct Laplacian {
  const at::Tensor& crow;
  const at::Tensor& col;
  const at::Tensor& val;
  SpmmFn spmm;
  // out = alpha L~ in + beta prev   (in, prev, out: [N, C]; prev may be undefined or alias out)
  void apply(const at::Tensor& in, const at::Tensor& prev, at::Tensor& out, double alpha,
             double beta) const {
    spmm(crow, col, val, in, prev, out, alpha, beta, /*accumulate=*/false);
  }
};

// Calls use(k, T_k(L~) x0) for k = 0..K-1 (x0: [N, C], read only). Two work buffers of x0's size.
template <class Use>
void chebyshev_basis(const Laplacian& lap, const at::Tensor& x0, int64_t K, Use&& use) {
  use(0, x0);
  if (K == 1) return;
  at::Tensor t_prev = x0;
  at::Tensor t_cur = at::empty_like(x0);
  lap.apply(x0, at::Tensor(), t_cur, 1.0, 0.0);
  use(1, t_cur);
  for (int64_t k = 2; k < K; ++k) {
    // T_k = 2 L~ T_{k-1} - T_{k-2}, written over T_{k-2} once that buffer is ours.
    at::Tensor t_next = (k == 2) ? at::empty_like(x0) : t_prev;
    lap.apply(t_cur, t_prev, t_next, 2.0, -1.0);
    use(k, t_next);
    t_prev = std::move(t_cur);
    t_cur = std::move(t_next);
  }
}

// Returns sum_k T_k(L~) a_k by Clenshaw's recurrence, where add_a(k, buf, init) writes
// (init) or adds a_k into buf [N, C]. Shape/options of the result come from `like`.
template <class AddA>
at::Tensor chebyshev_clenshaw(const Laplacian& lap, const at::Tensor& like, int64_t K,
                              AddA&& add_a) {
  at::Tensor b1 = at::empty_like(like);  // b_{k+1}
  add_a(K - 1, b1, true);
  if (K == 1) return b1;
  at::Tensor b2;  // b_{k+2}; undefined means zero
  for (int64_t k = K - 2; k >= 1; --k) {
    // b_k = a_k + 2 L~ b_{k+1} - b_{k+2}
    at::Tensor bk = b2.defined() ? b2 : at::empty_like(like);
    lap.apply(b1, b2, bk, 2.0, -1.0);
    add_a(k, bk, false);
    b2 = std::move(b1);
    b1 = std::move(bk);
  }
  // result = a_0 + L~ b_1 - b_2
  at::Tensor r = b2.defined() ? b2 : at::empty_like(like);
  lap.apply(b1, b2, r, 1.0, -1.0);
  add_a(0, r, false);
  return r;
}

// out = a^T b for tall a [M, P], b [M, Q] (M vertices x batch; P, Q a few channels): a weight
// gradient. CPU BLAS is up to ten times slower on a^T b than on (b^T a)^T when P > Q (and sums
// with more rounding), so the narrower operand goes first; the same product up to summation order.
void mm_tn_into(at::Tensor& out, const at::Tensor& a, const at::Tensor& b) {
  if (a.size(1) > b.size(1)) {
    out.copy_(at::mm(b.t(), a).t());
  } else {
    at::mm_out(out, a.t(), b);
  }
}

// out = a @ b (init) or out += a @ b, all 2-D.
void mm_into(at::Tensor& out, const at::Tensor& a, const at::Tensor& b, bool init) {
  if (init) {
    at::mm_out(out, a, b);
  } else {
    out.addmm_(a, b);
  }
}

}  // namespace

at::Tensor cheb_conv_forward(const at::Tensor& x, const at::Tensor& crow, const at::Tensor& col,
                             const at::Tensor& val, const at::Tensor& weight,
                             const std::optional<at::Tensor>& bias, SpmmFn spmm) {
  const int64_t B = x.size(0), N = x.size(1), Fin = x.size(2);
  const int64_t K = weight.size(0), Fout = weight.size(2);
  const Laplacian lap{crow, col, val, spmm};
  const at::Tensor X = to_node_major(x);  // [N*B, Fin]
  at::Tensor out;                         // [N*B, Fout]
  if (Fin <= Fout) {
    // Sparse products at width B*Fin; each T_k x goes straight into the output GEMM.
    out = at::empty({N * B, Fout}, x.options());
    chebyshev_basis(lap, X.view({N, B * Fin}), K, [&](int64_t k, const at::Tensor& tk) {
      mm_into(out, tk.view({N * B, Fin}), weight[k], k == 0);
    });
  } else {
    // Sparse products at width B*Fout: Clenshaw on a_k = x W_k.
    const at::Tensor like = at::empty({N, B * Fout}, x.options());
    out = chebyshev_clenshaw(lap, like, K, [&](int64_t k, at::Tensor& buf, bool init) {
      at::Tensor b2d = buf.view({N * B, Fout});
      mm_into(b2d, X, weight[k], init);
    }).view({N * B, Fout});
  }
  if (bias.has_value() && bias->defined()) out.add_(*bias);
  return from_node_major(out, B, N);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> cheb_conv_backward_impl(
    const at::Tensor& grad_out, const at::Tensor& x, const at::Tensor& crow, const at::Tensor& col,
    const at::Tensor& val, const at::Tensor& weight, bool has_bias, SpmmFn spmm) {
  const int64_t B = x.size(0), N = x.size(1), Fin = x.size(2);
  const int64_t K = weight.size(0), Fout = weight.size(2);
  const Laplacian lap{crow, col, val, spmm};
  const at::Tensor X = to_node_major(x);         // [N*B, Fin]
  const at::Tensor G = to_node_major(grad_out);  // [N*B, Fout]
  at::Tensor grad_w = at::empty_like(weight);    // [K, Fin, Fout]
  at::Tensor grad_x;                             // [N*B, Fin]
  if (Fout <= 2 * Fin) {
    // One recurrence on g: grad_x = sum_k (T_k g) W_k^T, grad_W_k = x^T (T_k g).
    grad_x = at::empty({N * B, Fin}, x.options());
    chebyshev_basis(lap, G.view({N, B * Fout}), K, [&](int64_t k, const at::Tensor& tk) {
      const at::Tensor tg = tk.view({N * B, Fout});
      mm_into(grad_x, tg, weight[k].t(), k == 0);
      at::Tensor gw = grad_w[k];
      mm_tn_into(gw, X, tg);
    });
  } else {
    // Width Fin: the recurrence on x gives grad_W_k = (T_k x)^T g; Clenshaw on g W_k^T gives grad_x.
    chebyshev_basis(lap, X.view({N, B * Fin}), K, [&](int64_t k, const at::Tensor& tk) {
      at::Tensor gw = grad_w[k];
      mm_tn_into(gw, tk.view({N * B, Fin}), G);
    });
    const at::Tensor like = at::empty({N, B * Fin}, x.options());
    grad_x = chebyshev_clenshaw(lap, like, K, [&](int64_t k, at::Tensor& buf, bool init) {
      at::Tensor b2d = buf.view({N * B, Fin});
      mm_into(b2d, G, weight[k].t(), init);
    }).view({N * B, Fin});
  }
  at::Tensor grad_b = has_bias ? grad_out.sum(at::IntArrayRef{0, 1}) : at::empty({0}, x.options());
  return {from_node_major(grad_x, B, N), grad_w, grad_b};
}

}  // namespace pyfaid::cheb
