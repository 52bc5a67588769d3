// The flat, ragged batch a backend runs one forward over. The runner builds it from a StepPlan.
// It is the varlen layout paged-attention kernels take; CPU and CUDA share it.
//
// T = total new tokens this step, S = sequences in the step, R = rows whose logits are wanted.
#pragma once

#include <cstdint>
#include <vector>

#include "core/ids.h"

namespace loom {

// A token the host does not know yet (overlapped steps, Backend::supports_overlap()):
// tokens[index] holds kPendingToken, and the backend uses the token it sampled for row
// `prev_row` of the step launched just before this one.
struct PendingToken {
  int32_t index = 0;     // into tokens, [0, T)
  int32_t prev_row = 0;  // sampled row of the previous step, [0, its R)
};

struct ForwardBatch {
  std::vector<TokenId> tokens;       // [T] new tokens, sequence after sequence
  std::vector<int32_t> positions;    // [T] absolute position of each token in its sequence
  std::vector<int32_t> query_start;  // [S+1] tokens of seq s are [query_start[s], query_start[s+1])
  std::vector<int32_t> context_lens;  // [S] tokens in the KV cache after this step (incl. new ones)
  std::vector<int32_t> block_tables;  // [S][max_blocks_per_seq], padded with -1
  int32_t max_blocks_per_seq = 0;
  std::vector<int64_t> slot_mapping;  // [T] KV slot = block_id * block_size + offset in block
  std::vector<int32_t> logits_rows;   // [R] token indexes in [0, T) whose logits are returned
  std::vector<PendingToken> pending_tokens;  // usually empty; see PendingToken

  int32_t num_tokens() const { return static_cast<int32_t>(tokens.size()); }
  int32_t num_seqs() const { return static_cast<int32_t>(context_lens.size()); }
};

// Aborts (LOOM_CHECK) unless `batch` is a well-formed batch for a pool of `num_device_blocks`
// blocks of `block_size` tokens and a `vocab_size` vocabulary: array sizes agree, every
// sequence's new tokens are the last of its context, block ids and slots lie in the pool, token
// ids in the vocabulary (or kPendingToken exactly where pending_tokens says), logits rows in
// [0, T). Every backend calls it before a forward.
void check_forward_batch(const ForwardBatch& batch, int32_t block_size, int32_t num_device_blocks,
                         int32_t vocab_size);

}  // namespace loom
