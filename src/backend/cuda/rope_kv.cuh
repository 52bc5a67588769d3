// RoPE on Q and K fused with the K/V write into the paged cache: the fused QKV product's output is
// read once; rotated K and V go straight to their cache slots, rotated Q to the attention input
// (f32). Optional Q/K/V biases (Qwen2) are added on the way.
//
// Paged cache layout and formats (bf16, or fp8 / int8 with one f16 scale per row): see
// kv_cache_format.h. One block (all layers, K and V) is one contiguous byte range for swaps and
// copy-on-write. The quantized dtypes quantize each row here, as it is written, with its own scale.
#pragma once

#include "backend/cuda/cuda_common.cuh"
#include "backend/cuda/kv_cache_format.h"

namespace loom::cuda {

struct RopeKvArgs {
  const float* qkv = nullptr;             // [T][q_dim + 2 * kv_dim]: Q heads, K heads, V heads
  const float* bias = nullptr;            // [q_dim + 2 * kv_dim] or null
  const int32_t* positions = nullptr;     // [T]
  const int64_t* slot_mapping = nullptr;  // [T] block * block_size + offset
  const float* inv_freq = nullptr;        // [head_dim / 2] per-pair angular frequency
  int32_t num_tokens = 0;
  int32_t num_heads = 0;
  bool neox = true;  // pair i with i + head_dim/2 (HF); else 2i with 2i+1 (GGUF)
  int32_t layer = 0;
  KvCacheShape cache;
  float* q_out = nullptr;    // [T][num_heads][head_dim]
  void* kv_cache = nullptr;  // the pool: num_blocks x cache.block_bytes() bytes
};

void launch_rope_kv_write(const RopeKvArgs& args, cudaStream_t stream);

}  // namespace loom::cuda
