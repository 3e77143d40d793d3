// AVX2 kernels of the CPU bilinear texture lookup (texture_cpu_avx2.cpp), float32, filter mode
// "linear": eight pixels per step, each lane doing the scalar path's arithmetic (texture.h,
// texture_sample.h) in the same order without FMA, so the results equal the scalar kernels'
// (the tests check it). Each call covers n pixels of one image (uv, out, guv and grad_out point at
// its first pixel; tex and gtex at its texture, w x h x C) and returns how many it did (a multiple
// of 8); the caller's scalar loop does the rest. Use only where raster_cpu::simd_enabled() and
// h * w * C < 2^31 (32-bit gather offsets).
#pragma once

#include <cstdint>

namespace pyfaid {
namespace tex_cpu {

int64_t linear_forward_avx2(const float* tex, int w, int h, int64_t C, const float* uv, int64_t n,
                            int boundary, float* out);
// Adds the texel gradients into gtex (lane by lane, in pixel order) and writes guv. gtex_len:
// the floats from gtex on that this thread alone writes (row adds read and write 8 at a time).
int64_t linear_backward_avx2(const float* tex, int w, int h, int64_t C, const float* uv,
                             const float* grad_out, int64_t n, int boundary, float* gtex,
                             int64_t gtex_len, float* guv);

}  // namespace tex_cpu
}  // namespace pyfaid
