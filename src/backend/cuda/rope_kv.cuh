// RoPE on Q and K fused with the K/V write into the paged cache: the fused QKV product's output is
// read once; rotated K and V go straight to their cache slots (bf16), rotated Q to the attention
// input (f32). Optional Q/K/V biases (Qwen2) are added on the way.
//
// Paged cache layout (same block format as the CPU backend, bf16 instead of f16):
//   [num_blocks][num_layers][2 (K, V)][num_kv_heads][block_size][head_dim]
// so one block (all layers, K and V) is one contiguous range for swaps and copy-on-write.
#pragma once

#include "backend/cuda/cuda_common.cuh"

namespace loom::cuda {

struct KvCacheShape {
  int32_t num_layers = 0;
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;
  int32_t block_size = 16;

  __host__ __device__ int64_t head_elems() const { return int64_t{block_size} * head_dim; }
  __host__ __device__ int64_t block_elems() const {
    return int64_t{num_layers} * 2 * num_kv_heads * head_elems();
  }
  // Element offset of (block, layer, K=0 / V=1, kv head, token offset in block, dim 0).
  __host__ __device__ int64_t offset(int64_t block, int32_t layer, int32_t kv, int32_t head,
                                     int32_t slot_in_block) const {
    return block * block_elems() +
           ((int64_t{layer} * 2 + kv) * num_kv_heads + head) * head_elems() +
           int64_t{slot_in_block} * head_dim;
  }
};

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
  float* q_out = nullptr;  // [T][num_heads][head_dim]
  bf16* kv_cache = nullptr;
};

void launch_rope_kv_write(const RopeKvArgs& args, cudaStream_t stream);

}  // namespace loom::cuda
