// Per-token attention over the bf16 paged KV cache on the tensor cores (mma.sync bf16 -> f32):
// the decode path of launch_paged_attention() (attention.cuh), which dispatches here when
// decode_mma_supported() holds and runs its CUDA-core kernel otherwise.
//
// Same grid, AttentionArgs contract and outputs as the CUDA-core kernel: one CTA of 4 warps per
// (context split, query token, KV head) serving the G query heads of the group; bf16 rows of
// a.out when num_splits == 1, else the split's partial output O / L (f32) and its (M, L) pair with
// M in natural-log units, for attention.cu's merge kernel; tokens flagged in skip_token are left
// alone.
//
// Why: the CUDA-core kernel gives each lane one key's whole K row and spends G x D FMAs and
// shared-memory broadcasts per key per lane, so at decode shapes it reaches a small fraction of
// the memory bandwidth. Here a warp takes 16 keys at a time and does
//   S[16 x 16 keys] = Q K^T   (rows = the group's heads, zero rows past G; D / 16 k-steps),
//   O^T[D x 8 heads] += V^T P^T   (P from S's accumulators without any shuffle),
// with K and V fragments loaded straight from global memory, 16 bytes per load, no shared-memory
// staging: a permutation of the head dimension makes each lane's fragment words contiguous in
// memory (attention_decode_mma.cu explains the layouts).
//
// Precision: Q (times scale) and the softmax weights are rounded to bf16 for the products, sums
// are f32, like the tensor-core prefill kernel: ~3e-3 relative error against float64.
#pragma once

#include "backend/cuda/attention.cuh"

namespace loom::cuda {

// Query heads per KV head the tensor-core kernel serves (two 8-head tiles).
constexpr int32_t kMaxMmaGroupSize = 16;

// bf16 cache, head_dim 64 or 128, num_heads a multiple of num_kv_heads with a group of <= 16.
bool decode_mma_supported(const KvCacheShape& cache, int32_t num_heads);

// Launches the kernel over grid (num_splits, num_tokens, num_kv_heads); the caller checks the
// arguments (attention.cu) and merges the splits. a.q must be 16-byte aligned.
void launch_decode_attention_mma(const AttentionArgs& a, cudaStream_t stream);

}  // namespace loom::cuda
