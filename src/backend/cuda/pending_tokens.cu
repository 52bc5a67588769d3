#include "backend/cuda/pending_tokens.cuh"

namespace loom::cuda {
namespace {

constexpr int kThreads = 128;

// One thread per pending token (at most a step's tokens: a few thousand).
__global__ void fill_pending_tokens_kernel(int32_t* __restrict__ tokens,
                                           const int32_t* __restrict__ pairs, int32_t n,
                                           const int32_t* __restrict__ ids) {
  const int32_t i = blockIdx.x * kThreads + threadIdx.x;
  if (i >= n) return;
  tokens[pairs[2 * i]] = ids[pairs[2 * i + 1]];  // (index, prev_row)
}

}  // namespace

void launch_fill_pending_tokens(int32_t* tokens, const int32_t* pairs, int32_t num_pending,
                                const int32_t* ids, cudaStream_t stream) {
  if (num_pending == 0) return;
  LOOM_CHECK(tokens != nullptr && pairs != nullptr && ids != nullptr,
             "fill_pending_tokens: null buffer");
  fill_pending_tokens_kernel<<<static_cast<unsigned>(ceil_div(num_pending, kThreads)), kThreads, 0,
                               stream>>>(tokens, pairs, num_pending, ids);
  LOOM_CUDA_CHECK_LAUNCH();
}

}  // namespace loom::cuda
