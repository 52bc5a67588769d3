// Causal grouped-query attention over the paged KV cache, for a flat ragged batch (prefill
// chunks and decodes mixed). One (sequence, KV head, query tile) is one task; each query row
// runs an online softmax over the sequence's blocks in order, so its result never depends on
// which other tokens or sequences share the step (batch invariance), nor on the tiling.
#pragma once

#include <cstdint>

#include "backend/cpu/attention_task.h"
#include "backend/cpu/kv_storage.h"
#include "backend/forward_batch.h"

namespace loom::cpu {

struct AttentionShape {
  int32_t num_heads = 0;
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;  // multiple of 16
  float scale = 0.0f;    // 1 / sqrt(head_dim)
};

// Stores the new tokens' K and V ([T][num_kv_heads][head_dim] floats) into their slots in the
// pool's format (f16, or int8 / int4 rows with their scales: kv_quant.h).
void write_kv(const ForwardBatch& batch, const float* k, const float* v, int32_t layer,
              const AttentionShape& shape, KvStorage& kv);

// q: [T][num_heads][head_dim] (after RoPE); out: [T][num_heads][head_dim]. Quantized rows are
// dequantized inside each task, block by block, as they are read.
// The K/V of this step's tokens must already be written (write_kv).
void paged_attention(const ForwardBatch& batch, const float* q, int32_t layer,
                     const AttentionShape& shape, KvStorage& kv, float* out);
}  // namespace loom::cpu
