// Prefix caching through the scheduler: hits at admission, sharing between running sequences,
// LRU eviction of freed cached blocks, and the switch. The fake runner checks the K/V of every
// hit position against the sequence's own tokens.
#include <gtest/gtest.h>

#include "sched_test_util.h"

namespace loom::testing {
namespace {

SchedulerConfig cache_config() {
  SchedulerConfig c = small_config();
  c.prefix_caching = true;
  return c;
}

TEST(SchedPrefix, HitAfterTheFirstUserFinished) {
  Scheduler s(cache_config());
  StepDriver d(s);
  d.add(1, make_request(10, 2, 0, /*salt=*/7));
  d.on_iteration([&](int64_t it) {
    if (it == 3) {
      EXPECT_EQ(s.stats().num_cached_blocks, 2);  // A's 2 full blocks outlive it
      d.add(2, make_request(10, 2, 0, 7));
    }
    if (it == 5) d.add(3, make_request(8, 1, 0, 7));  // a whole-block prompt
  });
  d.run();
  // B finds 8 of its 10 tokens and computes 2; C's 8 tokens are two full blocks but its last
  // token must be computed for logits, so it reuses one block and computes 4.
  EXPECT_EQ(scheduled_at(d, 3), (std::vector<std::pair<SeqId, int32_t>>{{2, 2}}));
  EXPECT_EQ(scheduled_at(d, 5), (std::vector<std::pair<SeqId, int32_t>>{{3, 4}}));
  EXPECT_EQ(d.finished().at(1).num_cached_prompt_tokens, 0);
  EXPECT_EQ(d.finished().at(2).num_cached_prompt_tokens, 8);
  EXPECT_EQ(d.finished().at(3).num_cached_prompt_tokens, 4);
  EXPECT_EQ(s.stats().prefix_hit_tokens, 12);
  EXPECT_EQ(s.stats().prefix_query_tokens, 28);
  EXPECT_GT(d.runner().num_verified_slots(), 0);
  expect_drained(s, d);
}

TEST(SchedPrefix, RunningSequencesShareBlocks) {
  Scheduler s(cache_config());
  StepDriver d(s);
  d.add(1, make_request(12, 4, 0, 9));
  d.on_iteration([&](int64_t it) {
    if (it == 2) d.add(2, make_request(12, 4, 0, 9));
    if (it == 3) {
      const Sequence* a = s.find(1);
      const Sequence* b = s.find(2);
      EXPECT_EQ(a->block_table[0], b->block_table[0]);
      EXPECT_EQ(a->block_table[1], b->block_table[1]);
      EXPECT_NE(a->block_table[2], b->block_table[2]);
      EXPECT_EQ(s.blocks().device().ref_count(a->block_table[0]), 2);
    }
  });
  d.run();
  EXPECT_EQ(scheduled_at(d, 2), (std::vector<std::pair<SeqId, int32_t>>{{1, 1}, {2, 4}}));
  expect_phases(d, {{1, 1, {1}}, {2, 4, {1, 2}}, {5, 5, {2}}}, 5);
  expect_drained(s, d);
}

TEST(SchedPrefix, FreedCachedBlocksAreEvictedLeastRecentlyUsedFirst) {
  SchedulerConfig c = cache_config();
  c.num_device_blocks = 6;
  Scheduler s(c);
  StepDriver d(s);
  // One 8-token prompt (2 blocks) per iteration, 1 output token each. Salts name the prompts.
  const std::vector<std::pair<SeqId, int64_t>> arrivals = {{1, 1}, {2, 2}, {3, 3}, {4, 1}, {5, 4},
                                                           {6, 3}, {7, 2}, {8, 1}, {9, 3}};
  d.on_iteration([&](int64_t it) {
    if (it <= static_cast<int64_t>(arrivals.size())) {
      const auto& [id, salt] = arrivals[static_cast<size_t>(it - 1)];
      d.add(id, make_request(8, 1, 0, salt));
    }
  });
  d.run();
  EXPECT_EQ(d.history().size(), arrivals.size());
  // Hand trace of the LRU (head first) after each request:
  //  1,2,3 fill the pool: [1a1 1a0 | 2a1 2a0 | 3a1 3a0] (a sequence frees its tail first)
  //  4 (= prompt 1) hits 1a0 and evicts 1a1 for its second block, re-registering it.
  //  5 (new) evicts prompt 2's blocks.   6 (= prompt 3) hits 3a0.
  //  7 (= prompt 2) misses and evicts the oldest: prompt 1's blocks.
  //  8 (= prompt 1) misses.   9 (= prompt 3) hits 3a0 again.
  const std::vector<std::pair<SeqId, int32_t>> hits = {{1, 0}, {2, 0}, {3, 0}, {4, 4}, {5, 0},
                                                       {6, 4}, {7, 0}, {8, 0}, {9, 4}};
  for (const auto& [id, num_cached] : hits) {
    EXPECT_EQ(d.finished().at(id).num_cached_prompt_tokens, num_cached) << "request " << id;
  }
  expect_drained(s, d);
  EXPECT_EQ(s.stats().num_cached_blocks, 6);
}

TEST(SchedPrefix, TurnedOffNothingIsReused) {
  SchedulerConfig c = cache_config();
  c.prefix_caching = false;
  Scheduler s(c);
  StepDriver d(s);
  d.add(1, make_request(10, 1, 0, 7));
  d.on_iteration([&](int64_t it) {
    if (it == 2) d.add(2, make_request(10, 1, 0, 7));
  });
  d.run();
  EXPECT_EQ(scheduled_at(d, 2), (std::vector<std::pair<SeqId, int32_t>>{{2, 10}}));
  EXPECT_EQ(s.stats().prefix_hit_tokens, 0);
  EXPECT_EQ(s.stats().num_cached_blocks, 0);
  expect_drained(s, d);
}

}  // namespace
}  // namespace loom::testing
