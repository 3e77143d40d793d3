// Launch helpers shared by the CUDA kernels: one thread per element in blocks of kThreads, and the
// atomic adder the scatter kernels are templated on (the CPU side passes a plain or striped adder).
#pragma once

#include <ATen/cuda/Atomic.cuh>

#include <cstdint>

namespace pyfaid {

constexpr int kThreads = 256;

inline unsigned blocks_for(int64_t n, int threads) {
  return static_cast<unsigned>((n + threads - 1) / threads);
}

struct AddAtomic {
  template <typename T>
  __device__ void operator()(T* p, T v) const { gpuAtomicAdd(p, v); }
};

}  // namespace pyfaid
