// Image-space derivatives of interpolated attributes (nvdiffrast's `out_da`), shared by the CPU
// (interpolate_da_cpu.cpp) and CUDA (interpolate_da_cuda.cu) kernels.
//
// With a = u a_0 + v a_1 + (1 - u - v) a_2 at a covered pixel and rast_db = (du/dX, du/dY,
// dv/dX, dv/dY) there, attribute c = diff_attrs[i] gets
//   out_da[..., 2i]     = da/dX = du/dX (a_0 - a_2) + dv/dX (a_1 - a_2),
//   out_da[..., 2i + 1] = da/dY = du/dY (a_0 - a_2) + dv/dY (a_1 - a_2);
// 0 at empty pixels. It depends on rast only through the triangle id, so it has no gradient
// with respect to rast's (u, v); its gradients go to attr and rast_db.
#pragma once

#include <ATen/ATen.h>

#include <vector>

#include "interpolate/interpolate.h"

namespace pyfaid {
namespace interp {

// All argument checks of interpolate_da (CPU and CUDA): those of interpolate, rast_db of rast's
// shape, dtype and device, and every diff_attrs entry in [0, C). grad_da (backward only, may be
// null) must be [B, H, W, 2 * len(diff_attrs)].
inline void check_interpolate_da_args(const at::Tensor* grad_da, const at::Tensor& attr,
                                      const at::Tensor& rast, const at::Tensor& tri,
                                      const at::Tensor& rast_db, at::IntArrayRef diff_attrs,
                                      const char* op) {
  check_interpolate_args(attr, rast, tri, op);
  raster::check_rast(rast_db, attr, "rast_db", op);
  TORCH_CHECK(rast_db.sizes() == rast.sizes(), op, ": `rast_db` shape ", rast_db.sizes(),
              " does not match `rast` shape ", rast.sizes());
  const int64_t C = attr.size(2);
  for (int64_t c : diff_attrs)
    TORCH_CHECK(c >= 0 && c < C, op, ": `diff_attrs` entries must lie in [0, ", C,
                ") (the channels of `attr`), got ", c);
  if (grad_da != nullptr) {
    check_tensor(*grad_da, "grad_da", attr.scalar_type(), 4, op);
    const int64_t n = 2 * int64_t(diff_attrs.size());
    TORCH_CHECK(grad_da->sizes() == at::IntArrayRef({rast.size(0), rast.size(1), rast.size(2), n}),
                op, ": `grad_da` must have shape [", rast.size(0), ", ", rast.size(1), ", ",
                rast.size(2), ", ", n, "], got ", grad_da->sizes());
    check_same_device(*grad_da, "grad_da", attr, "attr", op);
  }
}

// diff_attrs as int32 on the host (copied into kernel arguments or a small device tensor).
inline std::vector<int32_t> channel_list(at::IntArrayRef diff_attrs) {
  return std::vector<int32_t>(diff_attrs.begin(), diff_attrs.end());
}

// out_da of one covered pixel: n entries of diff (channels), vertex attributes a0, a1, a2.
template <typename T>
PYFAID_HD void attr_da(const T* a0, const T* a1, const T* a2, const T db[4], const int32_t* diff,
                       int64_t n, T* out) {
  for (int64_t i = 0; i < n; ++i) {
    const int32_t c = diff[i];
    const T d0 = a0[c] - a2[c], d1 = a1[c] - a2[c];
    out[2 * i] = db[0] * d0 + db[2] * d1;
    out[2 * i + 1] = db[1] * d0 + db[3] * d1;
  }
}

}  // namespace interp
}  // namespace pyfaid
