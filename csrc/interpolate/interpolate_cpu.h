// AVX2 kernel of the CPU interpolation backward (interpolate_cpu_avx2.cpp), float32 with C = 3.
// It runs over the n pixels of one image's run (rast, grad_out and grad_rast point at its first
// pixel; attr and grad_attr at the image's [V, 3] block) in steps of eight and returns how many
// pixels it did: a multiple of 8, stopping early at a block holding a triangle id >= F. The
// caller's scalar loop does the rest (and reports bad ids). Bit-identical to the scalar path.
// Use only where raster_cpu::simd_enabled().
#pragma once

#include <cstdint>

namespace pyfaid {
namespace interp_cpu {

int64_t forward3_avx2(const float* rast, const float* attr, const int32_t* tri, int64_t F,
                      int64_t n, float* out);
int64_t backward3_avx2(const float* grad_out, const float* attr, const float* rast,
                       const int32_t* tri, int64_t F, int64_t n, float* grad_attr,
                       float* grad_rast);
// The same with the attribute gradient accumulated in `acc`, a [V, 4] buffer (one 16-byte add
// per vertex; the caller copies the first three columns out).
int64_t backward3_acc4_avx2(const float* grad_out, const float* attr, const float* rast,
                            const int32_t* tri, int64_t F, int64_t n, float* acc,
                            float* grad_rast);

}  // namespace interp_cpu
}  // namespace pyfaid
