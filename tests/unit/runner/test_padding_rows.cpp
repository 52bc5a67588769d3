// Padded static batching: the runner's copies of decode rows must be well-formed batch rows that
// recompute exactly what their source row computes (same token, position, slot, context, table).
#include <gtest/gtest.h>

#include <vector>

#include "backend/forward_batch.h"
#include "runner/model_runner.h"

namespace loom::testing {
namespace {

// Block size 4. Seq 0: decode at position 5 (blocks 3, 7). Seq 1: prefill chunk of 3 tokens at
// positions 0-2 (block 2), not sampled. Seq 2: decode at position 0 (block 9).
ForwardBatch mixed_batch() {
  ForwardBatch b;
  b.tokens = {11, 21, 22, 23, 31};
  b.positions = {5, 0, 1, 2, 0};
  b.query_start = {0, 1, 4, 5};
  b.context_lens = {6, 3, 1};
  b.max_blocks_per_seq = 2;
  b.block_tables = {3, 7, 2, -1, 9, -1};
  b.slot_mapping = {7 * 4 + 1, 8, 9, 10, 36};
  b.logits_rows = {0, 4};
  return b;
}

TEST(PaddingRows, CopiesSampledDecodeRowsRoundRobin) {
  ForwardBatch b = mixed_batch();
  std::vector<int32_t> sources;
  ModelRunner::append_padding_rows(3, b, sources);
  EXPECT_EQ(sources, (std::vector<int32_t>{0, 1, 0}));  // logits rows of seq 0, seq 2, seq 0
  ASSERT_EQ(b.num_seqs(), 6);
  ASSERT_EQ(b.num_tokens(), 8);
  EXPECT_EQ(b.tokens, (std::vector<TokenId>{11, 21, 22, 23, 31, 11, 31, 11}));
  EXPECT_EQ(b.positions, (std::vector<int32_t>{5, 0, 1, 2, 0, 5, 0, 5}));
  EXPECT_EQ(b.slot_mapping, (std::vector<int64_t>{29, 8, 9, 10, 36, 29, 36, 29}));
  EXPECT_EQ(b.query_start, (std::vector<int32_t>{0, 1, 4, 5, 6, 7, 8}));
  EXPECT_EQ(b.context_lens, (std::vector<int32_t>{6, 3, 1, 6, 1, 6}));
  EXPECT_EQ(b.block_tables, (std::vector<int32_t>{3, 7, 2, -1, 9, -1, 3, 7, 9, -1, 3, 7}));
  EXPECT_EQ(b.logits_rows, (std::vector<int32_t>{0, 4, 5, 6, 7}));
  check_forward_batch(b, 4, 16, 100);  // aborts if malformed
}

TEST(PaddingRows, NothingToCopyWithoutADecodeRow) {
  ForwardBatch b = mixed_batch();
  b.logits_rows = {3};  // only the prefill chunk's last token is sampled: no decode row
  const ForwardBatch before = b;
  std::vector<int32_t> sources = {42};
  ModelRunner::append_padding_rows(2, b, sources);
  EXPECT_TRUE(sources.empty());
  EXPECT_EQ(b.tokens, before.tokens);
  EXPECT_EQ(b.logits_rows, before.logits_rows);
}

}  // namespace
}  // namespace loom::testing
