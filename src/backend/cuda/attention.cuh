// Causal grouped-query attention over the paged KV cache for a flat ragged batch: prefill chunks
// (with any cached prefix already in the cache) and decodes mixed in one launch.
//
// One CTA = one (query token, KV head, context split); it serves every query head of the KV
// head's group, so each K/V row read from memory is used G = num_heads / num_kv_heads times.
// Query token t attends to keys [0, positions[t]] of its sequence. Long contexts are split along
// the keys into `num_splits` pieces that run in parallel (decode at small batch would otherwise
// use a handful of SMs); a second kernel merges the pieces' (max, sum, output) triples.
//
// The cache may hold bf16 or fp8 / int8 rows with an f16 scale each (kv_cache_format.h, dtype in
// cache.dtype): the kernel dequantizes as it loads K and V rows, with no separate pass. A row's
// scale is applied once per key (to its score, and to its softmax weight before the V sum), not
// per value.
//
// The bf16 cache at head_dim 64 / 128 goes to the tensor-core kernel of attention_decode_mma.cuh
// instead (same grid, splits, outputs and merge); the CUDA-core kernel here takes the rest.
#pragma once

#include "backend/cuda/cuda_common.cuh"
#include "backend/cuda/rope_kv.cuh"

namespace loom::cuda {

constexpr int32_t kMaxGroupSize = 8;  // query heads per KV head (CUDA-core kernel)

// The kernel launch_paged_attention() runs: kAuto takes the tensor-core kernel
// (attention_decode_mma.cuh: bf16 cache, head_dim 64 / 128, groups up to 16 heads) where it
// applies and the CUDA-core kernel otherwise; kCudaCores forces the latter (tests compare them).
enum class DecodeKernel : int32_t { kAuto = 0, kCudaCores = 1 };

struct AttentionArgs {
  const float* q = nullptr;               // [T][num_heads][head_dim], RoPE applied
  const void* kv_cache = nullptr;         // the pool: num_blocks x cache.block_bytes() bytes
  const int32_t* seq_of_token = nullptr;  // [T]
  const int32_t* positions = nullptr;     // [T]
  const int32_t* block_tables = nullptr;  // [S][max_blocks_per_seq]
  int32_t max_blocks_per_seq = 0;
  int32_t num_tokens = 0;
  int32_t num_heads = 0;
  int32_t layer = 0;
  KvCacheShape cache;
  float scale = 0.0f;
  int32_t num_splits = 1;
  int32_t keys_per_split = 0;        // multiple of 32
  float* partial_out = nullptr;      // [num_splits][T][num_heads][head_dim] when num_splits > 1
  float* partial_max_sum = nullptr;  // [num_splits][T][num_heads][2]
  bf16* out = nullptr;               // [T][num_heads][head_dim]
  // [T] or null: tokens flagged 1 are left alone (neither out nor the workspace is written);
  // attention_prefill.cuh's kernel computes them.
  const uint8_t* skip_token = nullptr;
  DecodeKernel decode_kernel = DecodeKernel::kAuto;
};

// Picks the split of the context: enough CTAs to fill `num_sms` twice, pieces of >= 128 keys.
void choose_attention_splits(int32_t num_tokens, int32_t num_kv_heads, int32_t max_keys,
                             int32_t num_sms, int32_t* num_splits, int32_t* keys_per_split);

// Floats of workspace the split path needs (0 when num_splits == 1).
int64_t attention_workspace_floats(int32_t num_splits, int32_t num_tokens, int32_t num_heads,
                                   int32_t head_dim);

// head_dim 64 or 128; num_heads / num_kv_heads <= kMaxGroupSize, or <= kMaxMmaGroupSize where the
// tensor-core kernel runs (checked).
void launch_paged_attention(const AttentionArgs& args, cudaStream_t stream);

}  // namespace loom::cuda
