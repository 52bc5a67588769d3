// Device helpers shared by the small-batch product kernels (gemv.cu: CUDA cores, one warp a
// weight row; gemv_mma.cu: tensor cores, one CTA a tile of 16 weight rows).
#pragma once

#include "backend/cuda/gemv.cuh"

namespace loom::cuda::gemv_detail {

constexpr int kWarps = 8;  // per CTA, both kernels
constexpr int kThreads = kWarps * 32;
// kRmsNorm keeps x as bf16 in shared memory: rows x in x 2 bytes, at most this much (two CTAs
// of 8 warps still fit an SM).
constexpr int64_t kMaxNormSmemBytes = 96 * 1024;

__device__ __forceinline__ uint4 load_streaming(const uint4* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

__device__ __forceinline__ void prefetch_l2(const void* p) {
  asm volatile("prefetch.global.L2 [%0];" ::"l"(p));
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ void fma8(const uint4& w, const uint4& x, float& acc) {
  const __nv_bfloat162* w2 = reinterpret_cast<const __nv_bfloat162*>(&w);
  const __nv_bfloat162* x2 = reinterpret_cast<const __nv_bfloat162*>(&x);
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const float2 a = __bfloat1622float2(w2[j]), b = __bfloat1622float2(x2[j]);
    acc = fmaf(a.x, b.x, acc);
    acc = fmaf(a.y, b.y, acc);
  }
}

// x_smem[m][k] = bf16(x[m][k] * rsqrt(mean_k x[m][k]^2 + eps) * norm_w[k]) for the a.rows <= M
// rows: the same arithmetic as add_rmsnorm (rmsnorm.cu), by the whole CTA. Ends with a barrier.
template <int M>
__device__ __forceinline__ void rmsnorm_to_shared(const GemvArgs& a, uint4* x_smem) {
  __shared__ float partial[kWarps][M];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int32_t in4 = a.in / 4;
  const float4* x = reinterpret_cast<const float4*>(a.x_f32);
  float ss[M];
#pragma unroll
  for (int m = 0; m < M; ++m) ss[m] = 0.0f;
  for (int32_t i = threadIdx.x; i < in4; i += kThreads)
#pragma unroll
    for (int m = 0; m < M; ++m) {
      if (m < a.rows) {
        const float4 v = x[m * in4 + i];
        ss[m] += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
      }
    }
#pragma unroll
  for (int m = 0; m < M; ++m) {
    const float s = warp_sum(ss[m]);
    if (lane == 0) partial[warp][m] = s;
  }
  __syncthreads();
  float inv[M];
#pragma unroll
  for (int m = 0; m < M; ++m) {
    float total = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) total += partial[w][m];
    inv[m] = rsqrtf(total / static_cast<float>(a.in) + a.eps);
  }
  const float4* nw = reinterpret_cast<const float4*>(a.norm_w);
  __nv_bfloat162* out = reinterpret_cast<__nv_bfloat162*>(x_smem);
  for (int32_t i = threadIdx.x; i < in4; i += kThreads) {
    const float4 w = nw[i];
#pragma unroll
    for (int m = 0; m < M; ++m) {
      if (m >= a.rows) break;
      const float4 v = x[m * in4 + i];
      out[2 * (m * in4 + i)] = __floats2bfloat162_rn(v.x * inv[m] * w.x, v.y * inv[m] * w.y);
      out[2 * (m * in4 + i) + 1] = __floats2bfloat162_rn(v.z * inv[m] * w.z, v.w * inv[m] * w.w);
    }
  }
  __syncthreads();
}

// Paired outputs: whether output n needs two weight rows, and which.
template <GemvOut kOut>
constexpr bool kPaired = kOut == GemvOut::kSwiGlu || kOut == GemvOut::kRopeKv;

template <GemvOut kOut>
__device__ __forceinline__ void pair_rows(const GemvArgs& a, int32_t n, int64_t& lo, int64_t& hi) {
  if constexpr (kOut == GemvOut::kSwiGlu) {  // gate row n, up row out + n
    lo = n;
    hi = int64_t{a.out} + n;
  } else {  // rotation pair i of head `head`: rows i0, i1 of the head (rope_kv.cu's pairing)
    const int32_t D = a.rope.cache.head_dim, half = D / 2, head = n / half, i = n % half;
    lo = int64_t{head} * D + (a.rope.neox ? i : 2 * i);
    hi = int64_t{head} * D + (a.rope.neox ? i + half : 2 * i + 1);
  }
}

// kRopeKv's output for pair n of token `token`, the two products x0, x1: bias, rotation (Q and K
// heads), and the stores: Q to q_out (f32), K and V to the token's bf16 cache slot.
__device__ __forceinline__ void rope_store(const GemvArgs& a, int32_t n, int32_t token, float x0,
                                           float x1) {
  const RopeKvArgs& r = a.rope;
  const int32_t D = r.cache.head_dim, half = D / 2, head = n / half, i = n % half;
  const int32_t i0 = r.neox ? i : 2 * i, i1 = r.neox ? i + half : 2 * i + 1;
  const int32_t QH = r.num_heads, KH = r.cache.num_kv_heads;
  if (r.bias) x0 += r.bias[head * D + i0], x1 += r.bias[head * D + i1];
  const int64_t slot = r.slot_mapping[token];
  const int64_t block = slot / r.cache.block_size;
  const int32_t in_block = static_cast<int32_t>(slot % r.cache.block_size);
  uint8_t* cache = static_cast<uint8_t*>(r.kv_cache);
  if (head >= QH + KH) {  // V: stored as is
    bf16* v = reinterpret_cast<bf16*>(
        cache + r.cache.value_byte_offset(block, r.layer, 1, head - QH - KH, in_block));
    v[i0] = __float2bfloat16(x0);
    v[i1] = __float2bfloat16(x1);
    return;
  }
  float s, c;
  sincosf(static_cast<float>(r.positions[token]) * r.inv_freq[i], &s, &c);
  const float y0 = x0 * c - x1 * s, y1 = x0 * s + x1 * c;
  if (head < QH) {
    float* q = r.q_out + (static_cast<int64_t>(token) * QH + head) * D;
    q[i0] = y0;
    q[i1] = y1;
  } else {
    bf16* k = reinterpret_cast<bf16*>(
        cache + r.cache.value_byte_offset(block, r.layer, 0, head - QH, in_block));
    k[i0] = __float2bfloat16(y0);
    k[i1] = __float2bfloat16(y1);
  }
}

// The tensor-core kernel (gemv_mma.cu).
void launch_gemv_mma(const GemvArgs& args, cudaStream_t stream);

}  // namespace loom::cuda::gemv_detail
