#include <algorithm>

#include "backend/cuda/random_fill.cuh"

namespace loom::cuda {
namespace {

__device__ __forceinline__ float uniform_pm1(uint64_t seed, uint64_t i) {
  // splitmix64 finaliser over seed and index.
  uint64_t z = seed * 0x9E3779B97F4A7C15ull + i + 0x632BE59BD9B4E019ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return static_cast<float>(z >> 40) * (2.0f / 16777216.0f) - 1.0f;
}

template <class T>
__global__ void fill_kernel(T* p, int64_t n, uint64_t seed, float scale, float offset) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    const float v = offset + scale * uniform_pm1(seed, static_cast<uint64_t>(i));
    if constexpr (sizeof(T) == 2)
      p[i] = __float2bfloat16(v);
    else
      p[i] = v;
  }
}

int grid_for(int64_t n) {
  return static_cast<int>(std::min<int64_t>(ceil_div(n, 256), 4096));
}

}  // namespace

void launch_fill_uniform_bf16(bf16* p, int64_t n, uint64_t seed, float scale, float offset,
                              cudaStream_t stream) {
  if (n == 0) return;
  fill_kernel<bf16><<<grid_for(n), 256, 0, stream>>>(p, n, seed, scale, offset);
  LOOM_CUDA_CHECK_LAUNCH();
}

void launch_fill_uniform_f32(float* p, int64_t n, uint64_t seed, float scale, float offset,
                             cudaStream_t stream) {
  if (n == 0) return;
  fill_kernel<float><<<grid_for(n), 256, 0, stream>>>(p, n, seed, scale, offset);
  LOOM_CUDA_CHECK_LAUNCH();
}

}  // namespace loom::cuda
