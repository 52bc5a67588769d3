// Aborts in every state, waiting-queue bounds, requests that can never fit.
#include <gtest/gtest.h>

#include "sched_test_util.h"

namespace loom::testing {
namespace {

template <class T>
bool mentions(const Result<T>& s, const char* what) {
  return !s.ok() && s.error().find(what) != std::string::npos;
}

TEST(SchedAbort, WhileWaiting) {
  SchedulerConfig c = small_config();
  c.max_num_seqs = 1;
  Scheduler s(c);
  StepDriver d(s);
  d.add(1, make_request(4, 3));
  d.add(2, make_request(4, 2));
  d.on_iteration([&](int64_t it) {
    if (it == 2) d.abort(2);
  });
  d.run();
  expect_phases(d, {{1, 1, {1}, {2}}, {2, 3, {1}}}, 3);
  EXPECT_EQ(d.finished().at(2).reason, FinishReason::kAbort);
  EXPECT_TRUE(d.finished().at(2).output.empty());
  expect_drained(s, d);
}

TEST(SchedAbort, WhileRunningMidPrefill) {
  SchedulerConfig c = small_config();
  c.max_num_batched_tokens = 4;
  Scheduler s(c);
  StepDriver d(s);
  d.add(1, make_request(12, 2));
  d.add(2, make_request(4, 1));
  d.on_iteration([&](int64_t it) {
    if (it == 2) {
      EXPECT_EQ(s.find(1)->num_computed_tokens, 4);  // a third of its prompt
      d.abort(1);
    }
  });
  d.run();
  expect_phases(d, {{1, 1, {1}, {2}}, {2, 2, {2}}}, 2);
  EXPECT_EQ(d.finished().at(1).reason, FinishReason::kAbort);
  expect_drained(s, d);
}

TEST(SchedAbort, WhileRunningDecoding) {
  Scheduler s(small_config());
  StepDriver d(s);
  d.add(1, make_request(4, 10));
  d.add(2, make_request(4, 3));
  d.on_iteration([&](int64_t it) {
    if (it == 3) d.abort(1);
  });
  d.run();
  expect_phases(d, {{1, 2, {1, 2}}, {3, 3, {2}}}, 3);
  EXPECT_EQ(d.finished().at(1).reason, FinishReason::kAbort);
  EXPECT_EQ(d.finished().at(1).output.size(), 2u);
  expect_drained(s, d);
}

TEST(SchedAbort, WhileSwapped) {
  SchedulerConfig c = small_config();
  c.num_device_blocks = 4;
  c.num_host_blocks = 8;
  c.preemption = PreemptionMode::kSwap;
  Scheduler s(c);
  StepDriver d(s);
  d.add(1, make_request(4, 8));
  d.add(2, make_request(4, 8));
  d.on_iteration([&](int64_t it) {
    if (it == 7) {
      EXPECT_EQ(s.find(2)->status, SeqStatus::kSwapped);
      EXPECT_EQ(s.stats().num_host_blocks_used, 2);
      d.abort(2);
      EXPECT_EQ(s.stats().num_host_blocks_used, 0);
    }
  });
  d.run();
  // Swap trace of SchedPreempt until it6; B gone from it7; A finishes at it8.
  expect_phases(d, {{1, 5, {1, 2}}, {6, 6, {1}, {}, {2}}, {7, 8, {1}}}, 8);
  EXPECT_EQ(d.finished().at(2).reason, FinishReason::kAbort);
  expect_drained(s, d);
}

TEST(SchedAbort, UnknownAndFinishedIdsAreIgnored) {
  Scheduler s(small_config());
  StepDriver d(s);
  d.add(1, make_request(4, 1));
  d.run();
  s.finish(1, FinishReason::kAbort, 0);   // already finished
  s.finish(99, FinishReason::kAbort, 0);  // never existed
  expect_drained(s, d);
  EXPECT_EQ(d.finished().at(1).reason, FinishReason::kLength);
}

TEST(SchedLimits, QueueBoundByRequests) {
  SchedulerConfig c = small_config();
  c.max_num_seqs = 1;
  c.max_waiting_requests = 2;
  Scheduler s(c);
  StepDriver d(s);
  d.add(1, make_request(4, 2));
  d.add(2, make_request(4, 2));
  const Status full = s.check_queue_room(make_request(4, 2));
  EXPECT_TRUE(mentions(full, "waiting queue is full")) << (full.ok() ? "" : full.error());
  EXPECT_TRUE(mentions(full, "2 requests"));
  ASSERT_TRUE(d.step());  // one is admitted: room for one more
  EXPECT_TRUE(s.check_queue_room(make_request(4, 2)).ok());
  d.add(3, make_request(4, 2));
  d.run();
  expect_phases(d, {{1, 1, {1}, {2}}, {2, 2, {1}, {2, 3}}, {3, 4, {2}, {3}}, {5, 6, {3}}}, 6);
  expect_drained(s, d);
}

TEST(SchedLimits, QueueBoundByTokens) {
  SchedulerConfig c = small_config();
  c.max_waiting_tokens = 10;
  Scheduler s(c);
  StepDriver d(s);
  d.add(1, make_request(6, 1));
  EXPECT_TRUE(mentions(s.check_queue_room(make_request(6, 1)), "prompt tokens waiting"));
  EXPECT_TRUE(s.check_queue_room(make_request(4, 1)).ok());
  d.add(2, make_request(4, 1));
  EXPECT_EQ(s.stats().num_waiting_tokens, 10);
  d.run();
  expect_phases(d, {{1, 1, {1, 2}}}, 1);
  expect_drained(s, d);
}

TEST(SchedLimits, RequestsThatCanNeverFitAreRefused) {
  SchedulerConfig c = small_config();
  c.num_device_blocks = 4;  // 16 tokens of KV
  c.max_model_len = 12;
  Scheduler s(c);
  EXPECT_TRUE(s.check_request(make_request(6, 6)).ok());
  EXPECT_TRUE(mentions(s.check_request(make_request(8, 5)), "max_model_len 12"));
  EXPECT_TRUE(mentions(s.check_request(make_request(0, 5)), "empty"));
  EXPECT_TRUE(mentions(s.check_request(make_request(4, 0)), "max_tokens"));
  c.max_model_len = 64;
  Scheduler big_context(c);
  EXPECT_TRUE(big_context.check_request(make_request(10, 6)).ok());
  EXPECT_TRUE(mentions(big_context.check_request(make_request(16, 1)), "KV cache"));
  EXPECT_TRUE(mentions(big_context.check_request(make_request(10, 7)), "16 tokens"));
}

TEST(SchedConfig, ValidateNamesTheField) {
  SchedulerConfig c = small_config();
  EXPECT_TRUE(c.validate().ok());
  c.max_num_seqs = 0;
  EXPECT_TRUE(mentions(c.validate(), "max_num_seqs"));
  c = small_config();
  c.profiled_quantile = 1.5f;
  EXPECT_TRUE(mentions(c.validate(), "profiled_quantile"));
  EXPECT_TRUE(parse_batching_mode("dynamic").ok());
  EXPECT_TRUE(mentions(parse_admission_policy("greedy"), "greedy"));
  EXPECT_EQ(parse_preemption_mode("swap").value(), PreemptionMode::kSwap);
  EXPECT_STREQ(admission_policy_name(AdmissionPolicy::kProfiled), "profiled");
}

}  // namespace
}  // namespace loom::testing
