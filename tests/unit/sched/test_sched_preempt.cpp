// Preemption mechanisms (recompute, swap, auto both ways and its fallback) and admission
// policies. The pool holds 4 blocks of 4 tokens; two requests of 4 prompt + 8 output tokens
// each need 3 blocks at the end, so both cannot finish together.
#include <gtest/gtest.h>

#include "sched_test_util.h"

namespace loom::testing {
namespace {

SchedulerConfig tight_config(PreemptionMode mode, int32_t num_host_blocks) {
  SchedulerConfig c = small_config();
  c.num_device_blocks = 4;
  c.num_host_blocks = num_host_blocks;
  c.preemption = mode;
  return c;
}

void add_pair(StepDriver& d) {
  d.add(1, make_request(4, 8));
  d.add(2, make_request(4, 8));
}

// Hand trace: it1 both prefill (1 block each); it2 both grow to 2 blocks (pool full); at it6
// A's 9th position needs a 3rd block: the victim is B (same priority, later arrival).
// Recompute: B back to waiting with its 5 outputs kept; A finishes at it8; B re-prefills its
// 9 tokens at it9 and finishes at it11.
TEST(SchedPreempt, RecomputeSendsTheLatestArrivalBackToWaiting) {
  Scheduler s(tight_config(PreemptionMode::kRecompute, 0));
  StepDriver d(s);
  add_pair(d);
  d.run();
  expect_phases(d, {{1, 5, {1, 2}}, {6, 8, {1}, {2}}, {9, 11, {2}}}, 11);
  EXPECT_EQ(d.history()[5].preempted, std::vector<SeqId>{2});
  EXPECT_EQ(scheduled_at(d, 9), (std::vector<std::pair<SeqId, int32_t>>{{2, 9}}));
  EXPECT_EQ(s.stats().num_preemptions_recompute, 1);
  EXPECT_EQ(s.stats().num_preemptions_swap, 0);
  EXPECT_EQ(d.finished().at(2).num_preemptions, 1);
  EXPECT_EQ(d.finished().at(2).output.size(), 8u);
  expect_drained(s, d);
}

void expect_swap_trace(const Scheduler& s, const StepDriver& d) {
  // B's 8 computed tokens (2 blocks) go to the host at it6 and come back at it9, where it goes
  // straight on decoding (1 token), finishing at it11.
  expect_phases(d, {{1, 5, {1, 2}}, {6, 8, {1}, {}, {2}}, {9, 11, {2}}}, 11);
  EXPECT_EQ(d.history()[5].num_swap_out, 2u);
  EXPECT_EQ(d.history()[8].num_swap_in, 2u);
  EXPECT_EQ(scheduled_at(d, 9), (std::vector<std::pair<SeqId, int32_t>>{{2, 1}}));
  EXPECT_EQ(s.stats().num_preemptions_swap, 1);
  EXPECT_EQ(s.stats().num_preemptions_recompute, 0);
  expect_drained(s, d);
}

TEST(SchedPreempt, SwapMovesTheVictimToHostAndBack) {
  Scheduler s(tight_config(PreemptionMode::kSwap, 8));
  StepDriver d(s);
  add_pair(d);
  d.run();
  expect_swap_trace(s, d);
}

TEST(SchedPreempt, AutoSwapsWhenCopyingIsCheaper) {
  SchedulerConfig c = tight_config(PreemptionMode::kAuto, 8);
  c.kv_bytes_per_block = 1000;
  c.swap_bytes_per_us = 1000.0;     // 2 blocks out and back: 4 us
  c.recompute_tokens_per_us = 1.0;  // 8 tokens: 8 us
  Scheduler s(c);
  StepDriver d(s);
  add_pair(d);
  d.run();
  expect_swap_trace(s, d);
}

TEST(SchedPreempt, AutoRecomputesWhenPrefillIsCheaper) {
  SchedulerConfig c = tight_config(PreemptionMode::kAuto, 8);
  c.kv_bytes_per_block = 1000;
  c.swap_bytes_per_us = 1000.0;     // 4 us
  c.recompute_tokens_per_us = 4.0;  // 2 us
  Scheduler s(c);
  StepDriver d(s);
  add_pair(d);
  d.run();
  expect_phases(d, {{1, 5, {1, 2}}, {6, 8, {1}, {2}}, {9, 11, {2}}}, 11);
  EXPECT_EQ(s.stats().num_preemptions_recompute, 1);
  EXPECT_EQ(s.stats().num_swap_fallbacks, 0);
  expect_drained(s, d);
}

TEST(SchedPreempt, SwapFallsBackToRecomputeWhenTheHostPoolIsFull) {
  for (PreemptionMode mode : {PreemptionMode::kAuto, PreemptionMode::kSwap}) {
    Scheduler s(tight_config(mode, 1));  // B needs 2 host blocks
    StepDriver d(s);
    add_pair(d);
    d.run();
    expect_phases(d, {{1, 5, {1, 2}}, {6, 8, {1}, {2}}, {9, 11, {2}}}, 11);
    EXPECT_EQ(s.stats().num_preemptions_recompute, 1);
    EXPECT_EQ(s.stats().num_preemptions_swap, 0);
    EXPECT_EQ(s.stats().num_swap_fallbacks, 1);
    expect_drained(s, d);
  }
}

// Admission policies on the same pair. Conservative reserves 4 + 8 tokens = 3 blocks for A, so
// B waits and nobody is ever preempted: A it1-8, B it9-16.
TEST(SchedAdmission, ConservativeNeverPreempts) {
  SchedulerConfig c = tight_config(PreemptionMode::kRecompute, 0);
  c.admission = AdmissionPolicy::kConservative;
  Scheduler s(c);
  StepDriver d(s);
  add_pair(d);
  d.run();
  expect_phases(d, {{1, 8, {1}, {2}}, {9, 16, {2}}}, 16);
  EXPECT_EQ(s.stats().num_preemptions(), 0);
  // B waited 8 iterations of 1000 us.
  EXPECT_EQ(s.stats().admission_wait_max_us, 8000);
  expect_drained(s, d);
}

TEST(SchedAdmission, OptimisticAdmitsBothAndPreempts) {
  SchedulerConfig c = tight_config(PreemptionMode::kRecompute, 0);
  c.admission = AdmissionPolicy::kOptimistic;
  Scheduler s(c);
  StepDriver d(s);
  add_pair(d);
  d.run();
  EXPECT_EQ(d.history().size(), 11u);
  EXPECT_EQ(s.stats().num_preemptions(), 1);
  EXPECT_EQ(s.stats().admission_wait_max_us, 0);
  expect_drained(s, d);
}

TEST(SchedAdmission, OptimisticWatermarkKeepsBlocksFree) {
  SchedulerConfig c = tight_config(PreemptionMode::kRecompute, 0);
  c.watermark = 0.75f;  // 3 of 4 blocks stay free at admission: B (1 block) no longer fits
  Scheduler s(c);
  StepDriver d(s);
  add_pair(d);
  d.run();
  expect_phases(d, {{1, 8, {1}, {2}}, {9, 16, {2}}}, 16);
  EXPECT_EQ(s.stats().num_preemptions(), 0);
  expect_drained(s, d);
}

TEST(SchedAdmission, ProfiledIsConservativeUntilItLearnsThenReservesTheQuantile) {
  SchedulerConfig c = tight_config(PreemptionMode::kRecompute, 0);
  c.admission = AdmissionPolicy::kProfiled;
  c.profiled_min_samples = 2;
  c.profiled_quantile = 0.9f;
  Scheduler s(c);
  StepDriver d(s);
  // Two warm-up requests that stop after 2 tokens: admitted one at a time (conservative).
  d.add(1, make_request(4, 8));
  d.add(2, make_request(4, 8));
  d.stop_after(1, 2);
  d.stop_after(2, 2);
  d.on_iteration([&](int64_t it) {
    if (it == 5) {  // the profile now says 2 output tokens: reserve 4 + 2 = 6 tokens, 2 blocks
      d.add(3, make_request(4, 8));
      d.add(4, make_request(4, 8));
    }
  });
  d.run();
  // it1-2 request 1, it3-4 request 2; then 3 and 4 are admitted together and, running past
  // the learned length, replay the optimistic trace shifted by 4: preemption at it10.
  expect_phases(
      d, {{1, 2, {1}, {2}}, {3, 4, {2}}, {5, 9, {3, 4}}, {10, 12, {3}, {4}}, {13, 15, {4}}}, 15);
  EXPECT_EQ(s.stats().num_preemptions(), 1);
  expect_drained(s, d);
}

TEST(SchedPriority, WaitingQueueServesLowerPriorityValuesFirst) {
  SchedulerConfig c = small_config();
  c.max_num_seqs = 1;
  Scheduler s(c);
  StepDriver d(s);
  d.add(1, make_request(4, 2, kBatchPriority));
  d.add(2, make_request(4, 2, kStandardPriority));
  d.add(3, make_request(4, 2, kInteractivePriority));
  d.run();
  expect_phases(d, {{1, 2, {3}, {1, 2}}, {3, 4, {2}, {1}}, {5, 6, {1}}}, 6);
  EXPECT_EQ(s.stats().admitted_by_tier[static_cast<size_t>(Tier::kInteractive)], 1);
  expect_drained(s, d);
}

TEST(SchedPriority, HigherPriorityArrivalPreemptsRunning) {
  for (PreemptionMode mode : {PreemptionMode::kRecompute, PreemptionMode::kSwap}) {
    SchedulerConfig c = small_config();
    c.max_num_seqs = 1;
    c.num_host_blocks = 8;
    c.preemption = mode;
    Scheduler s(c);
    StepDriver d(s);
    d.add(1, make_request(4, 4, kBatchPriority));
    d.on_iteration([&](int64_t it) {
      if (it == 3) d.add(2, make_request(4, 2, kInteractivePriority));
    });
    d.run();
    if (mode == PreemptionMode::kRecompute) {
      expect_phases(d, {{1, 2, {1}}, {3, 4, {2}, {1}}, {5, 6, {1}}}, 6);
      // L re-prefills its 4 prompt + 2 output tokens.
      EXPECT_EQ(scheduled_at(d, 5), (std::vector<std::pair<SeqId, int32_t>>{{1, 6}}));
    } else {
      expect_phases(d, {{1, 2, {1}}, {3, 4, {2}, {}, {1}}, {5, 6, {1}}}, 6);
      EXPECT_EQ(scheduled_at(d, 5), (std::vector<std::pair<SeqId, int32_t>>{{1, 1}}));
    }
    EXPECT_EQ(d.history()[2].preempted, std::vector<SeqId>{1});
    EXPECT_EQ(s.stats().num_preemptions_for_priority, 1);
    expect_drained(s, d);
  }
}

TEST(SchedPriority, NoPriorityPreemptionWhenTurnedOffOrSamePriority) {
  for (int variant = 0; variant < 2; ++variant) {
    SchedulerConfig c = small_config();
    c.max_num_seqs = 1;
    c.priority_preemption = variant == 0 ? false : true;
    Scheduler s(c);
    StepDriver d(s);
    d.add(1, make_request(4, 4, kStandardPriority));
    const int32_t second = variant == 0 ? kInteractivePriority : kStandardPriority;
    d.on_iteration([&](int64_t it) {
      if (it == 3) d.add(2, make_request(4, 2, second));
    });
    d.run();
    expect_phases(d, {{1, 2, {1}}, {3, 4, {1}, {2}}, {5, 6, {2}}}, 6);
    EXPECT_EQ(s.stats().num_preemptions(), 0);
    expect_drained(s, d);
  }
}

TEST(SchedPriority, AgingLetsALongWaitingRequestOvertakeNewerUrgentOnes) {
  for (int64_t aging_us : {int64_t{1000}, int64_t{0}}) {
    SchedulerConfig c = small_config();
    c.max_num_seqs = 1;
    c.aging_us_per_level = aging_us;  // one level per driver iteration
    Scheduler s(c);
    StepDriver d(s);
    // B has priority 2; a priority-0 request arrives every iteration.
    d.add(1, make_request(4, 1, 2));
    d.add(2, make_request(4, 1, 0));
    d.on_iteration([&](int64_t it) {
      if (it == 2) d.add(3, make_request(4, 1, 0));
      if (it == 3) d.add(4, make_request(4, 1, 0));
    });
    d.run();
    if (aging_us > 0) {
      // At it3 B has waited 2 levels: it ties the newcomer at level 0 and arrived first.
      expect_phases(d, {{1, 1, {2}, {1}}, {2, 2, {3}, {1}}, {3, 3, {1}, {4}}, {4, 4, {4}}}, 4);
    } else {
      expect_phases(d, {{1, 1, {2}, {1}}, {2, 2, {3}, {1}}, {3, 3, {4}, {1}}, {4, 4, {1}}}, 4);
    }
    expect_drained(s, d);
  }
}

}  // namespace
}  // namespace loom::testing
