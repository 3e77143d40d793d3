// Input validation shared by all pyfaid kernels. Every message names the argument.
#pragma once

#include <ATen/ATen.h>

#include <string>

namespace pyfaid {

inline void check_tensor(const at::Tensor& t, const char* name, at::ScalarType dtype, int64_t dim,
                         const char* op) {
  TORCH_CHECK(t.defined(), op, ": `", name, "` is undefined");
  TORCH_CHECK(t.scalar_type() == dtype, op, ": `", name, "` must be ", c10::toString(dtype),
              ", got ", t.scalar_type());
  TORCH_CHECK(dim < 0 || t.dim() == dim, op, ": `", name, "` must have ", dim,
              " dimensions, got shape ", t.sizes());
  TORCH_CHECK(t.is_contiguous(), op, ": `", name, "` must be contiguous (call .contiguous())");
}

inline void check_same_device(const at::Tensor& a, const char* name_a, const at::Tensor& b,
                              const char* name_b, const char* op) {
  TORCH_CHECK(a.device() == b.device(), op, ": `", name_a, "` is on ", a.device(), " but `",
              name_b, "` is on ", b.device());
}

inline void check_floating(const at::Tensor& t, const char* name, const char* op) {
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, op, ": `", name,
              "` must be float32 or float64, got ", t.scalar_type());
  TORCH_CHECK(t.is_contiguous(), op, ": `", name, "` must be contiguous (call .contiguous())");
}

}  // namespace pyfaid
