#include <cfloat>

#include "backend/cuda/sampling.cuh"

namespace loom::cuda {
namespace {

constexpr int kThreads = 512;

__device__ __forceinline__ void better(float& v, int32_t& i, float ov, int32_t oi) {
  if (ov > v || (ov == v && oi < i)) v = ov, i = oi;
}

__global__ void argmax_kernel(const float* __restrict__ logits, int32_t vocab,
                              int32_t* __restrict__ ids) {
  const float* row = logits + static_cast<int64_t>(blockIdx.x) * vocab;
  float v = -FLT_MAX;
  int32_t idx = vocab;
  for (int32_t i = threadIdx.x; i < vocab; i += kThreads) better(v, idx, row[i], i);
  for (int o = 16; o > 0; o >>= 1)
    better(v, idx, __shfl_xor_sync(0xffffffffu, v, o), __shfl_xor_sync(0xffffffffu, idx, o));
  __shared__ float vs[kThreads / 32];
  __shared__ int32_t is[kThreads / 32];
  if (threadIdx.x % 32 == 0) vs[threadIdx.x / 32] = v, is[threadIdx.x / 32] = idx;
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < kThreads / 32; ++w) better(v, idx, vs[w], is[w]);
    ids[blockIdx.x] = idx < vocab ? idx : 0;
  }
}

}  // namespace

void launch_argmax(const float* logits, int32_t num_rows, int32_t vocab, int32_t* ids,
                   cudaStream_t stream) {
  if (num_rows == 0) return;
  argmax_kernel<<<num_rows, kThreads, 0, stream>>>(logits, vocab, ids);
  LOOM_CUDA_CHECK_LAUNCH();
}

}  // namespace loom::cuda
