#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <algorithm>

#include "backend/cuda/pdl_launch.cuh"
#include "backend/cuda/rope_kv.cuh"

namespace loom::cuda {
namespace {

constexpr int kThreads = 256;
// Quantized path: one warp per row, each lane holds up to this many (value, partner) pairs of
// the row in registers, so head_dim <= 2 * 32 * 4 = 256.
constexpr int kMaxPairsPerLane = 4;

__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Most rotation pairs per head (head_dim / 2) the per-token sin / cos table holds.
constexpr int kMaxHalf = 128;

// Rotates pair i of head `head` of one token's QKV row (bias added first): values i0 and i1 of
// the head become y0 and y1. sin_cos[i] = (sin, cos) of the token's angle for pair i.
struct Rotated {
  int32_t i0, i1;
  float y0, y1;
};
__device__ __forceinline__ Rotated rotate_pair(const RopeKvArgs& a, const float* row, int32_t head,
                                               int32_t i, const float2* sin_cos) {
  const int32_t D = a.cache.head_dim, half = D / 2;
  const int32_t i0 = a.neox ? i : 2 * i;
  const int32_t i1 = a.neox ? i + half : 2 * i + 1;
  const int32_t base = head * D;
  float x0 = row[base + i0], x1 = row[base + i1];
  if (a.bias) x0 += a.bias[base + i0], x1 += a.bias[base + i1];
  const float s = sin_cos[i].x, c = sin_cos[i].y;
  return {i0, i1, x0 * c - x1 * s, x0 * s + x1 * c};
}

// One stored byte of a quantized row: x / scale rounded to the format (the scale was rounded up,
// so |x / scale| <= 448 or 127 up to f32 rounding, which satfinite / the clamp absorb).
template <KvCacheDtype kDtype>
__device__ __forceinline__ uint8_t quantize(float x, float scale) {
  const float y = scale > 0.0f ? x / scale : 0.0f;  // zero row: scale 0, values 0
  if constexpr (kDtype == KvCacheDtype::kFp8) {
    return __nv_cvt_float_to_fp8(y, __NV_SATFINITE, __NV_E4M3);
  } else {
    const int q = __float2int_rn(fminf(fmaxf(y, -127.0f), 127.0f));
    return static_cast<uint8_t>(static_cast<int8_t>(q));
  }
}

// blockIdx.x: the token; its work spread over gridDim.y blocks where the tokens are few
// (rope_kv_chunks), so that a thread takes one item or two rather than a dozen. bf16: work items
// are every rotation pair of the Q and K heads, then every V value. Quantized: the Q pairs
// likewise, then one warp per K or V row (the row's absmax needs all its values): the lanes rotate
// / load the row into registers, reduce the absmax, and store the row's bytes and its f16 scale.
template <KvCacheDtype kDtype>
__global__ void __launch_bounds__(kThreads) rope_kv_kernel(RopeKvArgs a) {
  constexpr bool kQuantized = kDtype != KvCacheDtype::kBf16;
  pdl_wait();
  pdl_launch_dependents();
  const int32_t t = blockIdx.x;
  // This thread among all the token's threads (its gridDim.y blocks).
  const int32_t first = blockIdx.y * blockDim.x + threadIdx.x, stride = gridDim.y * blockDim.x;
  const int32_t D = a.cache.head_dim, half = D / 2;
  const int32_t QH = a.num_heads, KH = a.cache.num_kv_heads;
  const int32_t width = (QH + 2 * KH) * D;
  const float* row = a.qkv + static_cast<int64_t>(t) * width;
  const int32_t pos = a.positions[t];
  // The angle depends on the pair, not the head: one sincos per pair for all Q and K heads.
  __shared__ float2 sin_cos[kMaxHalf];
  for (int32_t i = threadIdx.x; i < half; i += blockDim.x) {
    float s, c;
    sincosf(static_cast<float>(pos) * a.inv_freq[i], &s, &c);
    sin_cos[i] = make_float2(s, c);
  }
  __syncthreads();
  const int64_t slot = a.slot_mapping[t];
  const int64_t block = slot / a.cache.block_size;
  const int32_t in_block = static_cast<int32_t>(slot % a.cache.block_size);
  uint8_t* cache = static_cast<uint8_t*>(a.kv_cache);
  const int32_t v_base = (QH + KH) * D;

  const int32_t num_pairs = (QH + (kQuantized ? 0 : KH)) * half;
  for (int32_t p = first; p < num_pairs; p += stride) {
    const int32_t head = p / half, i = p % half;  // head < QH: query head, else key head
    const Rotated r = rotate_pair(a, row, head, i, sin_cos);
    if (head < QH) {
      float* q = a.q_out + (static_cast<int64_t>(t) * QH + head) * D;
      q[r.i0] = r.y0;
      q[r.i1] = r.y1;
    } else if constexpr (!kQuantized) {
      bf16* k = reinterpret_cast<bf16*>(
          cache + a.cache.value_byte_offset(block, a.layer, 0, head - QH, in_block));
      k[r.i0] = __float2bfloat16(r.y0);
      k[r.i1] = __float2bfloat16(r.y1);
    }
  }
  if constexpr (!kQuantized) {
    for (int32_t e = first; e < KH * D; e += stride) {
      const int32_t head = e / D, d = e % D;
      float v = row[v_base + e];
      if (a.bias) v += a.bias[v_base + e];
      bf16* vrow = reinterpret_cast<bf16*>(
          cache + a.cache.value_byte_offset(block, a.layer, 1, head, in_block));
      vrow[d] = __float2bfloat16(v);
    }
  } else {
    constexpr float kQmax = kDtype == KvCacheDtype::kFp8 ? 448.0f : 127.0f;
    const int32_t warp = first / 32, lane = threadIdx.x % 32;
    const int32_t num_warps = stride / 32;
    for (int32_t r = warp; r < 2 * KH; r += num_warps) {  // warp-uniform: r depends on warp only
      const int32_t kv = r / KH, head = r % KH;           // kv 0: K row, 1: V row
      int32_t idx[2 * kMaxPairsPerLane];
      float val[2 * kMaxPairsPerLane];
      float absmax = 0.0f;
#pragma unroll
      for (int j = 0; j < kMaxPairsPerLane; ++j) {
        const int32_t i = lane + 32 * j;
        idx[2 * j] = idx[2 * j + 1] = -1;
        val[2 * j] = val[2 * j + 1] = 0.0f;
        if (i < half) {
          if (kv == 0) {
            const Rotated rot = rotate_pair(a, row, QH + head, i, sin_cos);
            idx[2 * j] = rot.i0, idx[2 * j + 1] = rot.i1;
            val[2 * j] = rot.y0, val[2 * j + 1] = rot.y1;
          } else {  // V values i and i + half: any split of the row among the lanes will do
            const int32_t base = v_base + head * D;
            float v0 = row[base + i], v1 = row[base + i + half];
            if (a.bias) v0 += a.bias[base + i], v1 += a.bias[base + i + half];
            idx[2 * j] = i, idx[2 * j + 1] = i + half;
            val[2 * j] = v0, val[2 * j + 1] = v1;
          }
          absmax = fmaxf(absmax, fmaxf(fabsf(val[2 * j]), fabsf(val[2 * j + 1])));
        }
      }
      absmax = warp_max(absmax);
      // Rounded up twice (f32 quotient, then f16), so scale >= absmax / kQmax exactly. Capped at
      // f16's largest finite value: an absurd row saturates rather than turning into zeros.
      const __half scale_h = __float2half_ru(fminf(__fdiv_ru(absmax, kQmax), 65504.0f));
      const float scale = __half2float(scale_h);
      uint8_t* dst = cache + a.cache.value_byte_offset(block, a.layer, kv, head, in_block);
#pragma unroll
      for (int j = 0; j < 2 * kMaxPairsPerLane; ++j)
        if (idx[j] >= 0) dst[idx[j]] = quantize<kDtype>(val[j], scale);
      if (lane == 0)
        *reinterpret_cast<__half*>(
            cache + a.cache.scale_byte_offset(block, a.layer, kv, head, in_block)) = scale_h;
    }
  }
}

// Blocks a token (grid y). Few tokens (a decode step of 9 to ~100 sequences) leave most SMs idle
// with one block a token, each thread looping over a dozen items: then up to one rotation pair a
// thread (the most items of the kernel's loops: the V values and the quantized rows' warps are
// fewer), while the blocks stay within two a SM. Many tokens keep one block each: every SM is
// busy already, and more blocks, each computing its own sin / cos table, were slower (H100, 256
// sequences: 8B 10.91 -> 10.98 ms a step, prefill -2%).
int32_t rope_kv_chunks(const RopeKvArgs& a) {
  const int32_t half = a.cache.head_dim / 2;
  const int32_t pairs = (a.num_heads + (a.cache.quantized() ? 0 : a.cache.num_kv_heads)) * half;
  const int32_t needed = (pairs + kThreads - 1) / kThreads;
  const int32_t room = 2 * device_sms() / std::max(1, a.num_tokens);
  return std::max(1, std::min(needed, room));
}

}  // namespace

void launch_rope_kv_write(const RopeKvArgs& args, cudaStream_t stream) {
  LOOM_CHECK(args.cache.head_dim % 2 == 0 && args.cache.head_dim / 2 <= kMaxHalf, "head_dim %d",
             args.cache.head_dim);
  LOOM_CHECK(!args.cache.quantized() || args.cache.head_dim <= 64 * kMaxPairsPerLane,
             "head_dim %d too large for the quantized KV write", args.cache.head_dim);
  if (args.num_tokens == 0) return;
  const dim3 grid(static_cast<unsigned>(args.num_tokens),
                  static_cast<unsigned>(rope_kv_chunks(args)));
  switch (args.cache.dtype) {
    case KvCacheDtype::kBf16:
      launch_pdl(rope_kv_kernel<KvCacheDtype::kBf16>, grid, kThreads, 0, stream, args);
      break;
    case KvCacheDtype::kFp8:
      launch_pdl(rope_kv_kernel<KvCacheDtype::kFp8>, grid, kThreads, 0, stream, args);
      break;
    case KvCacheDtype::kInt8:
      launch_pdl(rope_kv_kernel<KvCacheDtype::kInt8>, grid, kThreads, 0, stream, args);
      break;
  }
  LOOM_CUDA_CHECK_LAUNCH();
}

}  // namespace loom::cuda
