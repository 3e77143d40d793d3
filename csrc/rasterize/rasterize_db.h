// Image-space derivatives of the barycentrics, nvdiffrast's `rast_db`, shared by the CPU
// (rasterize_db_cpu.cpp) and CUDA (rasterize_db_cuda.cu) kernels.
//
// rast_db[b, y, x] = (du/dX, du/dY, dv/dX, dv/dY) at the pixel centre, X and Y in pixels (X along
// a row, Y down the rows, so Y grows with NDC y as the rows do), for the perspective-correct
// (u, v) of rast; 0 at empty pixels. With the homogeneous edge functions of rasterize.h,
// A_k(p) = e_k . p (e_k = q_{k+1} x q_{k+2}, p = (px, py, 1)) and S = A_0 + A_1 + A_2,
//   u = A_0 / S,  du/dpx = (e_0x - u S_x) / S,  S_x = e_0x + e_1x + e_2x   (likewise for y, v).
// These are exact derivatives of the rasterizer's barycentrics (not screen-space estimates), so
// rast_db and its gradient with respect to pos are consistent with rast.
#pragma once

#include "rasterize/rasterize.h"

namespace pyfaid {
namespace raster {

// Unnormalised edge functions e_k = q_{k+1} x q_{k+2}.
template <typename T>
PYFAID_HD void edge_functions(const T q[3][3], T e[3][3]) {
  cross3(q[1], q[2], e[0]);
  cross3(q[2], q[0], e[1]);
  cross3(q[0], q[1], e[2]);
}

// Vertices of triangle f of one image in centred homogeneous pixel units (q = (x W/2, y H/2, w)).
template <typename T>
PYFAID_HD void triangle_q(const T* p, const int32_t* tri, int64_t f, T half_w, T half_h,
                          T q[3][3]) {
  for (int k = 0; k < 3; ++k) load_q(p + 4 * int64_t(tri[3 * f + k]), half_w, half_h, q[k]);
}

// (du/dX, du/dY, dv/dX, dv/dY) at the pixel centre (px, py) into db; all 0 (and false) where the
// barycentrics are undefined (S = 0 or not finite).
template <typename T>
PYFAID_HD bool barycentric_db(const T q[3][3], T px, T py, T db[4]) {
  T e[3][3];
  edge_functions(q, e);
  const T s = eval_linear(e[0], px, py) + eval_linear(e[1], px, py) + eval_linear(e[2], px, py);
  db[0] = db[1] = db[2] = db[3] = T(0);
  if (!(s != T(0)) || !t_finite(s)) return false;
  const T inv = T(1) / s;
  const T u = eval_linear(e[0], px, py) * inv, v = eval_linear(e[1], px, py) * inv;
  const T sx = e[0][0] + e[1][0] + e[2][0], sy = e[0][1] + e[1][1] + e[2][1];
  db[0] = (e[0][0] - u * sx) * inv;
  db[1] = (e[0][1] - u * sy) * inv;
  db[2] = (e[1][0] - v * sx) * inv;
  db[3] = (e[1][1] - v * sy) * inv;
  return true;
}

// Backward of barycentric_db: dL/dq (gq, overwritten) from dL/d(db) (g).
//   With D_ux = e_0x / S - A_0 S_x / S^2 (and D_uy, D_vx, D_vy alike), the partial derivatives
//   through e_0, e_1 (direct), S_x, S_y, A_0, A_1 and S give dL/de_k; then e_k = q_{k+1} x q_{k+2}
//   gives dL/dq_{k+1} += q_{k+2} x dL/de_k and dL/dq_{k+2} += dL/de_k x q_{k+1}.
template <typename T>
PYFAID_HD void barycentric_db_backward(const T q[3][3], T px, T py, const T g[4], T gq[3][3]) {
  for (int k = 0; k < 3; ++k)
    for (int c = 0; c < 3; ++c) gq[k][c] = T(0);
  T e[3][3];
  edge_functions(q, e);
  const T a0 = eval_linear(e[0], px, py), a1 = eval_linear(e[1], px, py);
  const T s = a0 + a1 + eval_linear(e[2], px, py);
  if (!(s != T(0)) || !t_finite(s)) return;
  const T inv = T(1) / s;
  const T u = a0 * inv, v = a1 * inv;
  const T sx = e[0][0] + e[1][0] + e[2][0], sy = e[0][1] + e[1][1] + e[2][1];
  const T g_sx = -(g[0] * u + g[2] * v) * inv;
  const T g_sy = -(g[1] * u + g[3] * v) * inv;
  const T gx_u = g[0] * sx + g[1] * sy, gx_v = g[2] * sx + g[3] * sy;
  const T g_a0 = -gx_u * inv * inv;
  const T g_a1 = -gx_v * inv * inv;
  const T direct = g[0] * e[0][0] + g[1] * e[0][1] + g[2] * e[1][0] + g[3] * e[1][1];
  const T g_s = -(direct - T(2) * (u * gx_u + v * gx_v)) * inv * inv;
  const T g_a[3] = {g_a0 + g_s, g_a1 + g_s, g_s};
  T ge[3][3];
  for (int k = 0; k < 3; ++k) {
    ge[k][0] = g_sx + g_a[k] * px;
    ge[k][1] = g_sy + g_a[k] * py;
    ge[k][2] = g_a[k];
  }
  ge[0][0] += g[0] * inv;
  ge[0][1] += g[1] * inv;
  ge[1][0] += g[2] * inv;
  ge[1][1] += g[3] * inv;
PYFAID_UNROLL
  for (int k = 0; k < 3; ++k) {
    const int a = (k + 1) % 3, b = (k + 2) % 3;  // e_k = q_a x q_b
    T t[3];
    cross3(q[b], ge[k], t);
    for (int c = 0; c < 3; ++c) gq[a][c] += t[c];
    cross3(ge[k], q[a], t);
    for (int c = 0; c < 3; ++c) gq[b][c] += t[c];
  }
}

// All argument checks of rasterize_db / rasterize_db_backward (CPU and CUDA): pos, tri and rast
// (and grad_db of rast's shape), all with pos's dtype and device.
inline void check_rasterize_db_args(const at::Tensor* grad_db, const at::Tensor& pos,
                                    const at::Tensor& tri, const at::Tensor& rast,
                                    const char* op) {
  check_pos_tri(pos, tri, op);
  check_rast(rast, pos, "rast", op);
  TORCH_CHECK(rast.size(0) == pos.size(0), op, ": `rast` batch ", rast.size(0),
              " does not match `pos` batch ", pos.size(0));
  if (grad_db != nullptr) {
    check_rast(*grad_db, pos, "grad_db", op);
    TORCH_CHECK(grad_db->sizes() == rast.sizes(), op, ": `grad_db` shape ", grad_db->sizes(),
                " does not match `rast` shape ", rast.sizes());
  }
}

}  // namespace raster
}  // namespace pyfaid
