#include "backend/cuda/rope_kv.cuh"

namespace loom::cuda {
namespace {

// One block per token. Work items: every rotation pair of the Q and K heads, then every V value.
__global__ void rope_kv_kernel(RopeKvArgs a) {
  const int32_t t = blockIdx.x;
  const int32_t D = a.cache.head_dim, half = D / 2;
  const int32_t QH = a.num_heads, KH = a.cache.num_kv_heads;
  const int32_t width = (QH + 2 * KH) * D;
  const float* row = a.qkv + static_cast<int64_t>(t) * width;
  const int32_t pos = a.positions[t];
  const int64_t slot = a.slot_mapping[t];
  const int64_t block = slot / a.cache.block_size;
  const int32_t in_block = static_cast<int32_t>(slot % a.cache.block_size);

  const int32_t num_pairs = (QH + KH) * half;
  for (int32_t p = threadIdx.x; p < num_pairs; p += blockDim.x) {
    const int32_t head = p / half, i = p % half;  // head < QH: query head, else key head
    const int32_t i0 = a.neox ? i : 2 * i;
    const int32_t i1 = a.neox ? i + half : 2 * i + 1;
    const int32_t base = head * D;
    float x0 = row[base + i0], x1 = row[base + i1];
    if (a.bias) x0 += a.bias[base + i0], x1 += a.bias[base + i1];
    float s, c;
    sincosf(static_cast<float>(pos) * a.inv_freq[i], &s, &c);
    const float y0 = x0 * c - x1 * s, y1 = x0 * s + x1 * c;
    if (head < QH) {
      float* q = a.q_out + (static_cast<int64_t>(t) * QH + head) * D;
      q[i0] = y0;
      q[i1] = y1;
    } else {
      bf16* k = a.kv_cache + a.cache.offset(block, a.layer, 0, head - QH, in_block);
      k[i0] = __float2bfloat16(y0);
      k[i1] = __float2bfloat16(y1);
    }
  }
  const int32_t v_base = (QH + KH) * D;
  for (int32_t e = threadIdx.x; e < KH * D; e += blockDim.x) {
    const int32_t head = e / D, d = e % D;
    float v = row[v_base + e];
    if (a.bias) v += a.bias[v_base + e];
    a.kv_cache[a.cache.offset(block, a.layer, 1, head, in_block) + d] = __float2bfloat16(v);
  }
}

}  // namespace

void launch_rope_kv_write(const RopeKvArgs& args, cudaStream_t stream) {
  LOOM_CHECK(args.cache.head_dim % 2 == 0);
  if (args.num_tokens == 0) return;
  rope_kv_kernel<<<args.num_tokens, 256, 0, stream>>>(args);
  LOOM_CUDA_CHECK_LAUNCH();
}

}  // namespace loom::cuda
