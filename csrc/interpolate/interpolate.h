// Attribute interpolation over a rasterized image, shared by the CPU and CUDA kernels.
//
// out[b, y, x, :] = u * attr[b, t0] + v * attr[b, t1] + (1 - u - v) * attr[b, t2] for a covered
// pixel ((u, v, z/w, id + 1) = rast[b, y, x], (t0, t1, t2) = tri[id]) and 0 for an empty one.
// attr may have batch 1 (shared by every image; its gradient sums over the images) or rast's batch.
#pragma once

#include <ATen/ATen.h>

#include "rasterize/rasterize.h"

namespace pyfaid {
namespace interp {

// All argument checks of interpolate (CPU and CUDA): attr [Ba, V, C] (Ba == 1 or rast's B),
// rast [B, H, W, 4], tri [F, 3] int32, all on one device.
inline void check_interpolate_args(const at::Tensor& attr, const at::Tensor& rast,
                                   const at::Tensor& tri, const char* op) {
  check_floating(attr, "attr", op);
  TORCH_CHECK(attr.dim() == 3, op, ": `attr` must have shape [B, V, C] or [1, V, C], got ",
              attr.sizes());
  raster::check_rast(rast, attr, "rast", op);
  check_tensor(tri, "tri", at::kInt, 2, op);
  TORCH_CHECK(tri.size(1) == 3, op, ": `tri` must have shape [F, 3], got ", tri.sizes());
  check_same_device(attr, "attr", tri, "tri", op);
  TORCH_CHECK(attr.size(0) == 1 || attr.size(0) == rast.size(0), op, ": `attr` batch ",
              attr.size(0), " must be 1 or match `rast` batch ", rast.size(0));
}

// All argument checks of interpolate_backward (CPU and CUDA): those of interpolate, and
// grad_out [B, H, W, C] with attr's dtype and device.
inline void check_interpolate_backward_args(const at::Tensor& grad_out, const at::Tensor& attr,
                                            const at::Tensor& rast, const at::Tensor& tri,
                                            const char* op) {
  check_interpolate_args(attr, rast, tri, op);
  check_tensor(grad_out, "grad_out", attr.scalar_type(), 4, op);
  const int64_t B = rast.size(0), H = rast.size(1), W = rast.size(2), C = attr.size(2);
  TORCH_CHECK(grad_out.sizes() == at::IntArrayRef({B, H, W, C}), op,
              ": `grad_out` must have shape [", B, ", ", H, ", ", W, ", ", C, "], got ",
              grad_out.sizes());
  check_same_device(grad_out, "grad_out", attr, "attr", op);
}

}  // namespace interp
}  // namespace pyfaid
