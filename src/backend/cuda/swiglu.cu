#include <algorithm>

#include "backend/cuda/pdl_launch.cuh"
#include "backend/cuda/swiglu.cuh"

namespace loom::cuda {
namespace {

// Each thread handles 2 adjacent values (bf16x2 loads and stores); ffn is even (checked).
__global__ void swiglu_kernel(const __nv_bfloat162* __restrict__ gate_up, int32_t half_ffn,
                              int64_t total_pairs, __nv_bfloat162* __restrict__ out) {
  pdl_wait();
  pdl_launch_dependents();
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total_pairs;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t t = i / half_ffn, j = i % half_ffn;
    const float2 g = __bfloat1622float2(gate_up[t * 2 * half_ffn + j]);
    const float2 u = __bfloat1622float2(gate_up[t * 2 * half_ffn + half_ffn + j]);
    const float a = g.x / (1.0f + __expf(-g.x)) * u.x;
    const float b = g.y / (1.0f + __expf(-g.y)) * u.y;
    out[i] = __floats2bfloat162_rn(a, b);
  }
}

}  // namespace

void launch_swiglu(const bf16* gate_up, int32_t num_tokens, int32_t ffn, bf16* out,
                   cudaStream_t stream) {
  LOOM_CHECK(ffn % 2 == 0, "ffn %d must be even", ffn);
  const int64_t pairs = int64_t{num_tokens} * (ffn / 2);
  if (pairs == 0) return;
  const int blocks = static_cast<int>(std::min<int64_t>(ceil_div(pairs, 256), 132 * 16));
  launch_pdl(swiglu_kernel, blocks, 256, 0, stream,
             reinterpret_cast<const __nv_bfloat162*>(gate_up), ffn / 2, pairs,
             reinterpret_cast<__nv_bfloat162*>(out));
  LOOM_CUDA_CHECK_LAUNCH();
}

}  // namespace loom::cuda
