// Race-free, deterministic accumulation of per-pixel contributions into gradient buffers on the
// CPU (the backward kernels of rasterize_db, interpolate_da, texture and antialias).
//
// Each image b of a batch adds into a buffer of n entries: its own (grad + b * n) or, when the
// buffer is shared by every image (a texture or attribute set of batch 1), the one at grad. With
// enough images for every thread and one buffer per image, whole images run as tasks. Otherwise
// the B * H rows are split into chunks with private buffers that are summed in a fixed order, so
// the result does not depend on the thread count's timing (only on the chunking).
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <vector>

namespace pyfaid {
namespace cpu {

// Private buffers of all chunks together stay below this many bytes (fewer chunks otherwise).
constexpr int64_t kPrivateBufferBytes = int64_t(256) << 20;

// fn(b, y_begin, y_end, g) adds the contributions of rows [y_begin, y_end) of image b into g, the
// n-entry buffer of image b. grad: [B, n] (shared false) or [n] (shared true); every entry is
// written (callers may pass uninitialised memory).
template <typename T, typename Fn>
void accumulate_rows(int64_t B, int64_t H, int64_t W, int64_t n, bool shared, T* grad, Fn&& fn) {
  const int64_t nthreads = at::get_num_threads();
  const int64_t groups = shared ? 1 : B;
  const bool small = B * H * W < 16384;
  if (!shared && (B >= nthreads || small)) {
    at::parallel_for(0, B, small ? B : 1, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
        T* g = grad + b * n;
        std::fill(g, g + n, T(0));
        fn(b, int64_t(0), H, g);
      }
    });
    return;
  }
  const int64_t per_chunk = std::max<int64_t>(1, groups * n * int64_t(sizeof(T)));
  int64_t chunks = small ? 1 : std::min<int64_t>(nthreads, B * H);
  chunks = std::max<int64_t>(1, std::min<int64_t>(chunks, kPrivateBufferBytes / per_chunk));
  if (chunks == 1) {  // one buffer: accumulate straight into the output
    std::fill(grad, grad + groups * n, T(0));
    for (int64_t b = 0; b < B; ++b) fn(b, int64_t(0), H, grad + (shared ? 0 : b) * n);
    return;
  }
  std::vector<T> buf(chunks * groups * n, T(0));
  at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      const int64_t lo = B * H * c / chunks, hi = B * H * (c + 1) / chunks;
      T* mine = buf.data() + c * groups * n;
      for (int64_t r = lo; r < hi;) {  // image by image
        const int64_t b = r / H, stop = std::min(hi, (b + 1) * H);
        fn(b, r - b * H, stop - b * H, mine + (shared ? 0 : b) * n);
        r = stop;
      }
    }
  });
  const int64_t total = groups * n;
  at::parallel_for(0, total, 4096, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      T acc = T(0);
      for (int64_t c = 0; c < chunks; ++c) acc += buf[c * total + i];
      grad[i] = acc;
    }
  });
}

}  // namespace cpu
}  // namespace pyfaid
