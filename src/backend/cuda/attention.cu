#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <algorithm>
#include <cfloat>

#include "backend/cuda/attention.cuh"
#include "backend/cuda/attention_decode_mma.cuh"
#include "backend/cuda/pdl_launch.cuh"

namespace loom::cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;

__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// How the rows of one cache dtype are loaded and widened to f32 (the row's scale not applied):
// K rows in 16-byte chunks of kPerChunk values, V slices of N = head_dim / 32 (2 or 4) values.
template <KvCacheDtype kDtype>
struct KvLoad;

template <>
struct KvLoad<KvCacheDtype::kBf16> {
  static constexpr int kPerChunk = 8;
  __device__ __forceinline__ static void chunk(const uint4& raw, float* out) {
    const __nv_bfloat162* k2 = reinterpret_cast<const __nv_bfloat162*>(&raw);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const float2 f = __bfloat1622float2(k2[j]);
      out[2 * j] = f.x;
      out[2 * j + 1] = f.y;
    }
  }
  template <int N>
  __device__ __forceinline__ static void slice(const uint8_t* p, float* out) {
    if constexpr (N == 4) {
      const uint2 raw = *reinterpret_cast<const uint2*>(p);
      const __nv_bfloat162* v2 = reinterpret_cast<const __nv_bfloat162*>(&raw);
      const float2 f0 = __bfloat1622float2(v2[0]), f1 = __bfloat1622float2(v2[1]);
      out[0] = f0.x, out[1] = f0.y, out[2] = f1.x, out[3] = f1.y;
    } else {
      const float2 f = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(p));
      out[0] = f.x, out[1] = f.y;
    }
  }
};

template <>
struct KvLoad<KvCacheDtype::kFp8> {
  static constexpr int kPerChunk = 16;
  // Two e4m3 values, the lower-addressed byte in the low half (x).
  __device__ __forceinline__ static float2 pair(uint32_t bits) {
    const __half2_raw h =
        __nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>(bits & 0xffffu), __NV_E4M3);
    return __half22float2(__half2(h));
  }
  __device__ __forceinline__ static void word(uint32_t w, float* out) {
    const float2 f0 = pair(w), f1 = pair(w >> 16);
    out[0] = f0.x, out[1] = f0.y, out[2] = f1.x, out[3] = f1.y;
  }
  __device__ __forceinline__ static void chunk(const uint4& raw, float* out) {
    word(raw.x, out);
    word(raw.y, out + 4);
    word(raw.z, out + 8);
    word(raw.w, out + 12);
  }
  template <int N>
  __device__ __forceinline__ static void slice(const uint8_t* p, float* out) {
    if constexpr (N == 4) {
      word(*reinterpret_cast<const uint32_t*>(p), out);
    } else {
      const float2 f = pair(*reinterpret_cast<const uint16_t*>(p));
      out[0] = f.x, out[1] = f.y;
    }
  }
};

template <>
struct KvLoad<KvCacheDtype::kInt8> {
  static constexpr int kPerChunk = 16;
  // Four int8 values, the lower-addressed byte in the low bits.
  __device__ __forceinline__ static void word(uint32_t w, float* out) {
#pragma unroll
    for (int b = 0; b < 4; ++b) out[b] = static_cast<float>(static_cast<int8_t>(w >> (8 * b)));
  }
  __device__ __forceinline__ static void chunk(const uint4& raw, float* out) {
    word(raw.x, out);
    word(raw.y, out + 4);
    word(raw.z, out + 8);
    word(raw.w, out + 12);
  }
  template <int N>
  __device__ __forceinline__ static void slice(const uint8_t* p, float* out) {
    if constexpr (N == 4) {
      word(*reinterpret_cast<const uint32_t*>(p), out);
    } else {
      const uint32_t w = *reinterpret_cast<const uint16_t*>(p);
      out[0] = static_cast<float>(static_cast<int8_t>(w));
      out[1] = static_cast<float>(static_cast<int8_t>(w >> 8));
    }
  }
};

__device__ __forceinline__ float load_scale(const uint8_t* p) {
  return __half2float(*reinterpret_cast<const __half*>(p));
}

// Scores: lane j of a warp owns key (tile + j) and reads its whole K row (16-byte loads).
// Values: lanes split head_dim (D / 32 contiguous values each) and walk the tile's keys in order,
// taking each key's probability by shuffle. Every warp keeps an online softmax per query head;
// the warps' states are merged through shared memory at the end.
// Quantized rows: the key's K scale multiplies its score once, and its V scale its softmax weight
// as the weight is handed to the lanes (the softmax sums use the unscaled weight).
// kG: the GQA group capacity the registers and shared arrays are sized for (>= the real group
// size G); sizing them for the group actually served keeps registers low and occupancy up.
template <int D, KvCacheDtype kDtype, int kG>
__global__ void __launch_bounds__(kThreads) paged_attention_kernel(AttentionArgs a) {
  using Load = KvLoad<kDtype>;
  constexpr bool kScaled = kDtype != KvCacheDtype::kBf16;
  constexpr int kValueBytes = kScaled ? 1 : 2;
  constexpr int kPerChunk = Load::kPerChunk;
  constexpr int kPerLane = D / 32;
  pdl_wait();  // q, the tables and the cache rows come from earlier kernels
  const int32_t t = blockIdx.y, kv_head = blockIdx.z, split = blockIdx.x;
  if (a.skip_token && a.skip_token[t]) return;  // the whole CTA: before any barrier
  const int32_t G = a.num_heads / a.cache.num_kv_heads;
  const int32_t warp = threadIdx.x / 32, lane = threadIdx.x % 32;

  __shared__ float q_s[kG][D];
  __shared__ float acc_s[kWarps][kG][D];
  __shared__ float m_s[kWarps][kG], l_s[kWarps][kG];

  const float* q_src = a.q + (static_cast<int64_t>(t) * a.num_heads + kv_head * G) * D;
  for (int i = threadIdx.x; i < G * D; i += kThreads) q_s[i / D][i % D] = q_src[i] * a.scale;
  __syncthreads();

  const int32_t seq = a.seq_of_token[t];
  const int32_t num_keys = a.positions[t] + 1;
  const int32_t k_begin = split * a.keys_per_split;
  const int32_t k_end = min(num_keys, k_begin + a.keys_per_split);
  const int32_t* table = a.block_tables + static_cast<int64_t>(seq) * a.max_blocks_per_seq;
  const int32_t bs = a.cache.block_size;
  const uint8_t* cache = static_cast<const uint8_t*>(a.kv_cache);

  float m[kG], l[kG], acc[kG][kPerLane];
#pragma unroll
  for (int g = 0; g < kG; ++g) {
    m[g] = -FLT_MAX;
    l[g] = 0.0f;
#pragma unroll
    for (int e = 0; e < kPerLane; ++e) acc[g][e] = 0.0f;
  }

  for (int32_t tile = k_begin + warp * 32; tile < k_end; tile += kWarps * 32) {
    const int32_t key = tile + lane;
    const bool valid = key < k_end;
    float s[kG];
#pragma unroll
    for (int g = 0; g < kG; ++g) s[g] = 0.0f;
    float v_scale = 1.0f;  // this lane's key's V scale (quantized dtypes)
    if (valid) {
      const int64_t block = table[key / bs];
      const int32_t slot = key % bs;
      const uint4* krow = reinterpret_cast<const uint4*>(
          cache + a.cache.value_byte_offset(block, a.layer, 0, kv_head, slot));
#pragma unroll
      for (int c = 0; c < D / kPerChunk; ++c) {
        const uint4 raw = krow[c];
        float kf[kPerChunk];
        Load::chunk(raw, kf);
#pragma unroll
        for (int g = 0; g < kG; ++g) {
          if (g < G) {
#pragma unroll
            for (int j = 0; j < kPerChunk; ++j) s[g] += q_s[g][c * kPerChunk + j] * kf[j];
          }
        }
      }
      if constexpr (kScaled) {
        const float k_scale =
            load_scale(cache + a.cache.scale_byte_offset(block, a.layer, 0, kv_head, slot));
        v_scale = load_scale(cache + a.cache.scale_byte_offset(block, a.layer, 1, kv_head, slot));
#pragma unroll
        for (int g = 0; g < kG; ++g) s[g] *= k_scale;
      }
    }
    float p[kG];
#pragma unroll
    for (int g = 0; g < kG; ++g) {
      if (g < G) {
        const float tile_max = warp_max(valid ? s[g] : -FLT_MAX);
        const float new_m = fmaxf(m[g], tile_max);
        const float correction = __expf(m[g] - new_m);
        p[g] = valid ? __expf(s[g] - new_m) : 0.0f;
        l[g] = l[g] * correction + warp_sum(p[g]);
        m[g] = new_m;
#pragma unroll
        for (int e = 0; e < kPerLane; ++e) acc[g][e] *= correction;
      } else {
        p[g] = 0.0f;
      }
      if constexpr (kScaled) p[g] *= v_scale;  // after the sums: only the V products see it
    }
    const int32_t n_valid = min(32, k_end - tile);
    for (int32_t j = 0; j < n_valid; ++j) {
      const int32_t vkey = tile + j;
      const int64_t block = table[vkey / bs];
      const uint8_t* vrow = cache +
                            a.cache.value_byte_offset(block, a.layer, 1, kv_head, vkey % bs) +
                            lane * kPerLane * kValueBytes;
      float vf[kPerLane];
      Load::template slice<kPerLane>(vrow, vf);
#pragma unroll
      for (int g = 0; g < kG; ++g) {
        if (g < G) {
          const float pj = __shfl_sync(0xffffffffu, p[g], j);
#pragma unroll
          for (int e = 0; e < kPerLane; ++e) acc[g][e] += pj * vf[e];
        }
      }
    }
  }

  // Merge the warps: M = max m_w, L = sum l_w e^(m_w - M), O = sum acc_w e^(m_w - M).
#pragma unroll
  for (int g = 0; g < kG; ++g) {
    if (g < G) {
#pragma unroll
      for (int e = 0; e < kPerLane; ++e) acc_s[warp][g][lane * kPerLane + e] = acc[g][e];
      if (lane == 0) m_s[warp][g] = m[g], l_s[warp][g] = l[g];
    }
  }
  __syncthreads();
  for (int i = threadIdx.x; i < G * D; i += kThreads) {
    const int g = i / D, d = i % D;
    float M = -FLT_MAX;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) M = fmaxf(M, m_s[w][g]);
    float L = 0.0f, O = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      const float f = l_s[w][g] > 0.0f ? __expf(m_s[w][g] - M) : 0.0f;
      L += l_s[w][g] * f;
      O += acc_s[w][g][d] * f;
    }
    const int32_t head = kv_head * G + g;
    const int64_t row = static_cast<int64_t>(t) * a.num_heads + head;
    if (a.num_splits == 1) {
      a.out[row * D + d] = __float2bfloat16(L > 0.0f ? O / L : 0.0f);
    } else {
      const int64_t prow = static_cast<int64_t>(split) * a.num_tokens * a.num_heads + row;
      a.partial_out[prow * D + d] = L > 0.0f ? O / L : 0.0f;
      if (d == 0) {
        a.partial_max_sum[prow * 2] = M;
        a.partial_max_sum[prow * 2 + 1] = L;
      }
    }
  }
}

// The kernel for the cache's dtype.
template <int D, int kG>
void launch_attention_kernel_g(const dim3& grid, const AttentionArgs& a, cudaStream_t stream) {
  switch (a.cache.dtype) {
    case KvCacheDtype::kBf16:
      launch_pdl(paged_attention_kernel<D, KvCacheDtype::kBf16, kG>, grid, kThreads, 0, stream, a);
      break;
    case KvCacheDtype::kFp8:
      launch_pdl(paged_attention_kernel<D, KvCacheDtype::kFp8, kG>, grid, kThreads, 0, stream, a);
      break;
    case KvCacheDtype::kInt8:
      launch_pdl(paged_attention_kernel<D, KvCacheDtype::kInt8, kG>, grid, kThreads, 0, stream, a);
      break;
  }
}

// The kernel for the cache's dtype and the smallest group capacity that holds the group.
template <int D>
void launch_attention_kernel(const dim3& grid, const AttentionArgs& a, cudaStream_t stream) {
  const int32_t G = a.num_heads / a.cache.num_kv_heads;
  if (G <= 1) {
    launch_attention_kernel_g<D, 1>(grid, a, stream);
  } else if (G <= 2) {
    launch_attention_kernel_g<D, 2>(grid, a, stream);
  } else if (G <= 4) {
    launch_attention_kernel_g<D, 4>(grid, a, stream);
  } else {
    launch_attention_kernel_g<D, kMaxGroupSize>(grid, a, stream);
  }
}

// One block per (token, head), head_dim threads: out = sum_s w_s o_s / sum_s w_s with
// w_s = L_s e^(M_s - max M). Splits past the token's keys have L = 0 and weigh nothing.
__global__ void merge_splits_kernel(AttentionArgs a, int32_t D) {
  pdl_wait();                      // the partials come from the kernel before
  const int64_t row = blockIdx.x;  // t * num_heads + head
  if (a.skip_token && a.skip_token[row / a.num_heads]) return;
  const int32_t d = threadIdx.x;
  const int64_t stride = static_cast<int64_t>(a.num_tokens) * a.num_heads;
  float M = -FLT_MAX;
  for (int s = 0; s < a.num_splits; ++s) {
    const float* ms = a.partial_max_sum + (s * stride + row) * 2;
    if (ms[1] > 0.0f) M = fmaxf(M, ms[0]);
  }
  float W = 0.0f, O = 0.0f;
  for (int s = 0; s < a.num_splits; ++s) {
    const float* ms = a.partial_max_sum + (s * stride + row) * 2;
    if (ms[1] <= 0.0f) continue;
    const float w = ms[1] * __expf(ms[0] - M);
    W += w;
    O += w * a.partial_out[(s * stride + row) * D + d];
  }
  a.out[row * D + d] = __float2bfloat16(W > 0.0f ? O / W : 0.0f);
}

}  // namespace

void choose_attention_splits(int32_t num_tokens, int32_t num_kv_heads, int32_t max_keys,
                             int32_t num_sms, int32_t* num_splits, int32_t* keys_per_split) {
  const int64_t ctas = int64_t{num_tokens} * num_kv_heads;
  int64_t splits = ceil_div(2 * int64_t{num_sms}, std::max<int64_t>(ctas, 1));
  splits = std::clamp<int64_t>(splits, 1, std::max<int64_t>(1, ceil_div(max_keys, 128)));
  int64_t per = ceil_div(ceil_div(max_keys, splits), 32) * 32;
  per = std::max<int64_t>(per, 32);
  *keys_per_split = static_cast<int32_t>(per);
  *num_splits = static_cast<int32_t>(ceil_div(max_keys, per));
  if (*num_splits < 1) *num_splits = 1;
}

int64_t attention_workspace_floats(int32_t num_splits, int32_t num_tokens, int32_t num_heads,
                                   int32_t head_dim) {
  if (num_splits <= 1) return 0;
  return int64_t{num_splits} * num_tokens * num_heads * (head_dim + 2);
}

void launch_paged_attention(const AttentionArgs& a, cudaStream_t stream) {
  LOOM_CHECK(a.num_heads % a.cache.num_kv_heads == 0);
  const bool mma =
      a.decode_kernel == DecodeKernel::kAuto && decode_mma_supported(a.cache, a.num_heads);
  LOOM_CHECK(mma || a.num_heads / a.cache.num_kv_heads <= kMaxGroupSize, "GQA group %d > %d",
             a.num_heads / a.cache.num_kv_heads, kMaxGroupSize);
  LOOM_CHECK(a.keys_per_split % 32 == 0 && a.keys_per_split > 0 && a.num_splits >= 1);
  LOOM_CHECK(a.num_splits == 1 || (a.partial_out && a.partial_max_sum));
  if (a.num_tokens == 0) return;
  const dim3 grid(a.num_splits, a.num_tokens, a.cache.num_kv_heads);
  if (mma) {
    launch_decode_attention_mma(a, stream);
  } else {
    switch (a.cache.head_dim) {
      case 64:
        launch_attention_kernel<64>(grid, a, stream);
        break;
      case 128:
        launch_attention_kernel<128>(grid, a, stream);
        break;
      default:
        LOOM_CHECK(false, "head_dim %d not supported by the CUDA attention", a.cache.head_dim);
    }
  }
  LOOM_CUDA_CHECK_LAUNCH();
  if (a.num_splits > 1) {
    launch_pdl(merge_splits_kernel, a.num_tokens * a.num_heads, a.cache.head_dim, 0, stream, a,
               a.cache.head_dim);
    LOOM_CUDA_CHECK_LAUNCH();
  }
}

}  // namespace loom::cuda
