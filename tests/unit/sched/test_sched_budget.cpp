// Token budget, sequence cap, chunked prefill on and off.
#include <gtest/gtest.h>

#include "sched_test_util.h"

namespace loom::testing {
namespace {

using Sched = std::vector<std::pair<SeqId, int32_t>>;

TEST(SchedBudget, ChunkedPrefillSplitsAPromptAcrossSteps) {
  SchedulerConfig c = small_config();
  c.max_num_batched_tokens = 8;
  Scheduler s(c);
  StepDriver d(s);
  d.add(1, make_request(10, 3));
  d.add(2, make_request(6, 2));
  d.run();
  // it1: 8 of A's 10; it2: A's last 2 (samples) + B whole; it3: both decode, B done; it4: A done.
  expect_phases(d, {{1, 1, {1}, {2}}, {2, 3, {1, 2}}, {4, 4, {1}}}, 4);
  EXPECT_EQ(scheduled_at(d, 1), (Sched{{1, 8}}));
  EXPECT_EQ(scheduled_at(d, 2), (Sched{{1, 2}, {2, 6}}));
  EXPECT_EQ(scheduled_at(d, 3), (Sched{{1, 1}, {2, 1}}));
  EXPECT_EQ(scheduled_at(d, 4), (Sched{{1, 1}}));
  for (const auto& rec : d.history()) EXPECT_LE(rec.num_tokens, 8);
  expect_drained(s, d);
}

TEST(SchedBudget, ChunkingOffSchedulesPromptsWholeAndTheFirstMayExceedTheBudget) {
  SchedulerConfig c = small_config();
  c.max_num_batched_tokens = 8;
  c.chunked_prefill = false;
  Scheduler s(c);
  StepDriver d(s);
  d.add(1, make_request(10, 3));
  d.add(2, make_request(6, 2));
  d.run();
  // it1: A's 10 tokens whole (over the budget of 8, alone); B does not fit what is left.
  // it2: A decodes (1), B's 6 fit in the remaining 7. it3: both decode; both finish.
  expect_phases(d, {{1, 1, {1}, {2}}, {2, 3, {1, 2}}}, 3);
  EXPECT_EQ(scheduled_at(d, 1), (Sched{{1, 10}}));
  EXPECT_EQ(scheduled_at(d, 2), (Sched{{1, 1}, {2, 6}}));
  EXPECT_EQ(scheduled_at(d, 3), (Sched{{1, 1}, {2, 1}}));
  expect_drained(s, d);
}

TEST(SchedBudget, DecodesGoBeforePrefillChunks) {
  SchedulerConfig c = small_config();
  c.max_num_batched_tokens = 6;
  Scheduler s(c);
  StepDriver d(s);
  d.add(1, make_request(2, 3));
  d.on_iteration([&](int64_t it) {
    if (it == 2) d.add(2, make_request(12, 1));
  });
  d.run();
  // it1: A prefill 2. it2: A decode (1) then B chunk 5. it3: A decode, B chunk 5; A done.
  // it4: B's last 2 tokens, samples, done.
  expect_phases(d, {{1, 1, {1}}, {2, 3, {1, 2}}, {4, 4, {2}}}, 4);
  EXPECT_EQ(scheduled_at(d, 2), (Sched{{1, 1}, {2, 5}}));
  EXPECT_EQ(scheduled_at(d, 3), (Sched{{1, 1}, {2, 5}}));
  EXPECT_EQ(scheduled_at(d, 4), (Sched{{2, 2}}));
  expect_drained(s, d);
}

TEST(SchedBudget, SequenceCapHoldsBackAdmissions) {
  SchedulerConfig c = small_config();
  c.max_num_seqs = 2;
  Scheduler s(c);
  StepDriver d(s);
  d.add(1, make_request(4, 2));
  d.add(2, make_request(4, 2));
  d.add(3, make_request(4, 2));
  d.run();
  expect_phases(d, {{1, 2, {1, 2}, {3}}, {3, 4, {3}}}, 4);
  expect_drained(s, d);
}

TEST(SchedBudget, StaticBatchAdmitsNothingUntilTheBatchIsEmpty) {
  for (BatchingMode mode : {BatchingMode::kStatic, BatchingMode::kContinuous}) {
    SchedulerConfig c = small_config();
    c.max_num_seqs = 2;
    c.batching = mode;
    Scheduler s(c);
    StepDriver d(s);
    d.add(1, make_request(4, 2));
    d.add(2, make_request(4, 4));
    d.add(3, make_request(4, 1));
    d.run();
    if (mode == BatchingMode::kStatic) {
      // C waits until B, the longest of the batch, is done.
      expect_phases(d, {{1, 2, {1, 2}, {3}}, {3, 4, {2}, {3}}, {5, 5, {3}}}, 5);
    } else {
      // C takes A's seat at once.
      expect_phases(d, {{1, 2, {1, 2}, {3}}, {3, 3, {2, 3}}, {4, 4, {2}}}, 4);
    }
    expect_drained(s, d);
  }
}

TEST(SchedBudget, StaticPaddingCountsFinishedMembersUntilTheBatchEnds) {
  for (BatchingMode mode : {BatchingMode::kStatic, BatchingMode::kContinuous}) {
    SchedulerConfig c = small_config();
    c.max_num_seqs = 2;
    c.batching = mode;
    c.static_padding = true;
    Scheduler s(c);
    StepDriver d(s);
    d.add(1, make_request(4, 2));
    d.add(2, make_request(4, 4));
    d.add(3, make_request(4, 1));
    d.run();
    std::vector<int32_t> padding;
    for (const auto& rec : d.history()) padding.push_back(rec.num_padding_rows);
    if (mode == BatchingMode::kStatic) {
      // A finishes at it2; its row is still paid for at it3 and it4 while B runs on. C's batch
      // (it5) starts unpadded.
      EXPECT_EQ(padding, (std::vector<int32_t>{0, 0, 1, 1, 0}));
    } else {
      EXPECT_EQ(padding, (std::vector<int32_t>{0, 0, 0, 0}));  // continuous never pads
    }
    expect_drained(s, d);
  }
}

TEST(SchedBudget, DynamicBatchFormsBySizeOrWindow) {
  SchedulerConfig c = small_config();
  c.max_num_seqs = 2;
  c.batching = BatchingMode::kDynamic;
  c.dynamic_window_us = 3000;  // the driver's iterations are 1000 us apart
  Scheduler s(c);
  StepDriver d(s);
  d.add(1, make_request(4, 1));
  EXPECT_EQ(s.next_event_us(), d.now_us() + 3000);
  d.on_iteration([&](int64_t it) {
    if (it == 5) {
      d.add(2, make_request(4, 1));
      d.add(3, make_request(4, 2));
    }
  });
  d.run();
  // it1-3: A alone waits for its window; it4: window expired, batch {A}. it5: two wait = a full
  // batch, formed at once; it6: C's second token.
  expect_phases(d, {{1, 3, {}, {1}}, {4, 4, {1}}, {5, 5, {2, 3}}, {6, 6, {3}}}, 6);
  for (int64_t it = 1; it <= 3; ++it) EXPECT_TRUE(scheduled_at(d, it).empty());
  expect_drained(s, d);
}

TEST(SchedBudget, StaticBatchRecomputeVictimRejoinsItsBatchFirst) {
  SchedulerConfig c = small_config();
  c.num_device_blocks = 4;
  c.max_num_seqs = 2;
  c.batching = BatchingMode::kStatic;
  Scheduler s(c);
  StepDriver d(s);
  d.add(1, make_request(4, 8));
  d.add(2, make_request(4, 8));
  d.add(3, make_request(4, 1));
  d.run();
  // As in the recompute scenario (SchedPreempt): B is preempted at it6 and re-admitted at it9,
  // ahead of C, which only runs once the batch {A, B} is done.
  expect_phases(d, {{1, 5, {1, 2}, {3}}, {6, 8, {1}, {2, 3}}, {9, 11, {2}, {3}}, {12, 12, {3}}},
                12);
  expect_drained(s, d);
}

}  // namespace
}  // namespace loom::testing
