#include "backend/cuda/pdl_launch.cuh"
#include "backend/cuda/rmsnorm.cuh"

namespace loom::cuda {
namespace {

constexpr int kThreads = 256;

__device__ float block_sum(float v) {
  __shared__ float partial[kThreads / 32];
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  float total = 0.0f;
#pragma unroll
  for (int w = 0; w < kThreads / 32; ++w) total += partial[w];
  return total;
}

// One block per output row; the row is read twice (sum of squares, then scale), the second time
// from L1/L2. dim is a multiple of 4 (checked by the launcher), so f32 loads are 16 bytes wide.
__global__ void add_rmsnorm_kernel(float* __restrict__ x, const float* __restrict__ delta,
                                   const int32_t* __restrict__ rows,
                                   const float* __restrict__ weight, int32_t dim, float eps,
                                   bf16* __restrict__ out) {
  pdl_wait();
  pdl_launch_dependents();
  const int32_t r = blockIdx.x;
  const int64_t src = rows ? rows[r] : r;
  float4* xr = reinterpret_cast<float4*>(x + src * dim);
  const float4* dr = delta ? reinterpret_cast<const float4*>(delta + src * dim) : nullptr;
  const int32_t n4 = dim / 4;
  float sum = 0.0f;
  for (int32_t i = threadIdx.x; i < n4; i += kThreads) {
    float4 v = xr[i];
    if (dr) {
      const float4 d = dr[i];
      v.x += d.x, v.y += d.y, v.z += d.z, v.w += d.w;
      xr[i] = v;
    }
    sum += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
  }
  const float scale = rsqrtf(block_sum(sum) / static_cast<float>(dim) + eps);
  const float4* w4 = reinterpret_cast<const float4*>(weight);
  __nv_bfloat162* o2 = reinterpret_cast<__nv_bfloat162*>(out + static_cast<int64_t>(r) * dim);
  for (int32_t i = threadIdx.x; i < n4; i += kThreads) {
    const float4 v = xr[i];
    const float4 w = w4[i];
    o2[2 * i] = __floats2bfloat162_rn(v.x * scale * w.x, v.y * scale * w.y);
    o2[2 * i + 1] = __floats2bfloat162_rn(v.z * scale * w.z, v.w * scale * w.w);
  }
}

__global__ void embed_kernel(const bf16* __restrict__ table, const int32_t* __restrict__ tokens,
                             int32_t dim, float* __restrict__ x) {
  pdl_wait();
  pdl_launch_dependents();
  const int64_t t = blockIdx.x;
  const bf16* row = table + static_cast<int64_t>(tokens[t]) * dim;
  for (int32_t i = threadIdx.x; i < dim; i += blockDim.x) x[t * dim + i] = __bfloat162float(row[i]);
}

}  // namespace

void launch_add_rmsnorm(float* x, const float* delta, const int32_t* rows, const float* weight,
                        int32_t num_rows, int32_t dim, float eps, bf16* out, cudaStream_t stream) {
  LOOM_CHECK(dim % 4 == 0, "rmsnorm dim %d must be a multiple of 4", dim);
  if (num_rows == 0) return;
  launch_pdl(add_rmsnorm_kernel, num_rows, kThreads, 0, stream, x, delta, rows, weight, dim, eps,
             out);
  LOOM_CUDA_CHECK_LAUNCH();
}

void launch_embed(const bf16* table, const int32_t* tokens, int32_t num_tokens, int32_t dim,
                  float* x, cudaStream_t stream) {
  if (num_tokens == 0) return;
  launch_pdl(embed_kernel, num_tokens, 256, 0, stream, table, tokens, dim, x);
  LOOM_CUDA_CHECK_LAUNCH();
}

}  // namespace loom::cuda
