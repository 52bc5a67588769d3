#include "backend/forward_batch.h"

#include "util/check.h"

namespace loom {

void check_forward_batch(const ForwardBatch& b, int32_t block_size, int32_t num_device_blocks,
                         int32_t vocab_size) {
  const int32_t T = b.num_tokens(), S = b.num_seqs();
  const int32_t bs = block_size;
  LOOM_CHECK(T > 0 && S > 0);
  LOOM_CHECK(static_cast<int32_t>(b.positions.size()) == T &&
             static_cast<int32_t>(b.slot_mapping.size()) == T);
  LOOM_CHECK(static_cast<int32_t>(b.query_start.size()) == S + 1 && b.query_start[0] == 0 &&
             b.query_start[S] == T);
  LOOM_CHECK(static_cast<int64_t>(b.block_tables.size()) ==
             static_cast<int64_t>(S) * b.max_blocks_per_seq);
  for (int32_t s = 0; s < S; ++s) {
    const int32_t n = b.query_start[s + 1] - b.query_start[s];
    LOOM_CHECK(n >= 1 && b.context_lens[s] >= n);
    const int32_t num_blocks = (b.context_lens[s] + bs - 1) / bs;
    LOOM_CHECK(num_blocks <= b.max_blocks_per_seq);
    // The new tokens are the last n of the context, at consecutive positions.
    LOOM_CHECK(b.positions[b.query_start[s + 1] - 1] == b.context_lens[s] - 1);
    for (int32_t i = 0; i < num_blocks; ++i) {
      const int32_t block = b.block_tables[static_cast<size_t>(s) * b.max_blocks_per_seq + i];
      LOOM_CHECK(block >= 0 && block < num_device_blocks, "block %d out of the pool", block);
    }
  }
  size_t pending = 0;  // pending_tokens are in token order
  for (int32_t t = 0; t < T; ++t) {
    if (pending < b.pending_tokens.size() && b.pending_tokens[pending].index == t) {
      LOOM_CHECK(b.tokens[t] == kPendingToken && b.pending_tokens[pending].prev_row >= 0,
                 "pending token %d: id %d, previous row %d", t, b.tokens[t],
                 b.pending_tokens[pending].prev_row);
      ++pending;
    } else {
      LOOM_CHECK(b.tokens[t] >= 0 && b.tokens[t] < vocab_size, "token %d out of range",
                 b.tokens[t]);
    }
    LOOM_CHECK(b.slot_mapping[t] >= 0 && b.slot_mapping[t] < int64_t{num_device_blocks} * bs);
  }
  LOOM_CHECK(pending == b.pending_tokens.size(), "pending tokens not in token order");
  for (int32_t r : b.logits_rows) LOOM_CHECK(r >= 0 && r < T);
}

}  // namespace loom
