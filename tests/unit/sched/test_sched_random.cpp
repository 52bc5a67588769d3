// Randomized scenarios over every combination of policies: arrivals over time, shared
// prefixes, priorities, early stops and aborts in every state. The driver checks invariants
// after every step and the fake runner checks the K/V of every computed position; each run must
// finish (liveness) and end drained with every output exactly the runner's tokens.
#include <gtest/gtest.h>

#include <cstdio>
#include <random>

#include "sched_test_util.h"

namespace loom::testing {
namespace {

struct Variant {
  BatchingMode batching;
  AdmissionPolicy admission;
  PreemptionMode preemption;
  bool chunked;
  bool caching;
};

SchedulerStats run_random(const Variant& v, uint32_t seed, bool overlapped = false,
                          int64_t* pending_inputs = nullptr) {
  std::mt19937 rng(seed);
  SchedulerConfig c = small_config();
  c.num_device_blocks = 12 + static_cast<int32_t>(rng() % 12);
  c.num_host_blocks = static_cast<int32_t>(rng() % 10);
  c.max_num_batched_tokens = 8 + static_cast<int32_t>(rng() % 24);
  c.max_num_seqs = 2 + static_cast<int32_t>(rng() % 6);
  c.batching = v.batching;
  c.admission = v.admission;
  c.preemption = v.preemption;
  c.chunked_prefill = v.chunked;
  c.prefix_caching = v.caching;
  c.profiled_min_samples = 3;
  c.watermark = 0.05f;
  c.reservation_buffer = 0.05f;
  c.aging_us_per_level = (rng() % 2) ? 3000 : 0;
  c.dynamic_window_us = 2500;
  c.kv_bytes_per_block = 1000;
  c.recompute_tokens_per_us = 0.2 + (rng() % 4) * 0.5;
  Scheduler s(c);
  StepDriver d(s, /*verify=*/true, /*step_us=*/1000, overlapped);
  const int32_t capacity = c.num_device_blocks * c.block_size;
  SeqId next_id = 1;
  std::vector<SeqId> ids;
  d.on_iteration([&](int64_t it) {
    if (it <= 60) {
      const int n = static_cast<int>(rng() % 3);
      for (int k = 0; k < n; ++k) {
        const int32_t prompt = 1 + static_cast<int32_t>(rng() % 20);
        const int32_t max_tokens = 1 + static_cast<int32_t>(rng() % 16);
        const int32_t priority = static_cast<int32_t>(rng() % 3) * 10 - 10;
        const int64_t salt = (rng() % 2) ? static_cast<int64_t>(rng() % 3) : -1;
        Request r = make_request(prompt, max_tokens, priority, salt);
        if (prompt + max_tokens > capacity) continue;
        if (!s.check_queue_room(r).ok()) continue;
        const SeqId id = next_id++;
        d.add(id, std::move(r));
        ids.push_back(id);
        if (rng() % 4 == 0) d.stop_after(id, 1 + static_cast<int32_t>(rng() % max_tokens));
      }
    }
    if (!ids.empty() && rng() % 9 == 0) {
      const SeqId victim = ids[rng() % ids.size()];
      if (const Sequence* seq = s.find(victim); seq != nullptr && !seq->finished()) d.abort(victim);
    }
  });
  const int64_t n = d.run(20000);
  EXPECT_LT(n, 20000) << "did not drain (seed " << seed << ")";
  expect_drained(s, d);
  EXPECT_EQ(static_cast<size_t>(next_id - 1), d.finished().size());
  if (pending_inputs) *pending_inputs += d.num_pending_inputs();
  return s.stats();
}

void run_all_combinations(bool overlapped) {
  int runs = 0;
  int64_t pending_inputs = 0;
  SchedulerStats total;
  for (BatchingMode b : {BatchingMode::kContinuous, BatchingMode::kStatic, BatchingMode::kDynamic})
    for (AdmissionPolicy a :
         {AdmissionPolicy::kOptimistic, AdmissionPolicy::kConservative, AdmissionPolicy::kProfiled})
      for (PreemptionMode p :
           {PreemptionMode::kRecompute, PreemptionMode::kSwap, PreemptionMode::kAuto})
        for (bool chunked : {true, false})
          for (bool caching : {true, false})
            for (uint32_t seed = 1; seed <= 3; ++seed) {
              SCOPED_TRACE(::testing::Message()
                           << batching_mode_name(b) << " " << admission_policy_name(a) << " "
                           << preemption_mode_name(p) << " chunked=" << chunked
                           << " caching=" << caching << " seed=" << seed);
              const SchedulerStats st = run_random({b, a, p, chunked, caching}, seed * 7919u + runs,
                                                   overlapped, &pending_inputs);
              total.num_preemptions_recompute += st.num_preemptions_recompute;
              total.num_preemptions_swap += st.num_preemptions_swap;
              total.num_preemptions_for_priority += st.num_preemptions_for_priority;
              total.num_swap_fallbacks += st.num_swap_fallbacks;
              total.prefix_hit_tokens += st.prefix_hit_tokens;
              total.num_admitted += st.num_admitted;
              ++runs;
              if (::testing::Test::HasFailure()) return;
            }
  // The runs did exercise what they are meant to.
  EXPECT_GT(total.num_preemptions_recompute, 0);
  EXPECT_GT(total.num_preemptions_swap, 0);
  EXPECT_GT(total.num_preemptions_for_priority, 0);
  EXPECT_GT(total.num_swap_fallbacks, 0);
  EXPECT_GT(total.prefix_hit_tokens, 0);
  EXPECT_EQ(pending_inputs > 0, overlapped);
  std::printf(
      "random runs: %d, admitted %lld, preemptions recompute %lld swap %lld priority %lld, "
      "swap fallbacks %lld, prefix hit tokens %lld, decodes of pending tokens %lld\n",
      runs, (long long)total.num_admitted, (long long)total.num_preemptions_recompute,
      (long long)total.num_preemptions_swap, (long long)total.num_preemptions_for_priority,
      (long long)total.num_swap_fallbacks, (long long)total.prefix_hit_tokens,
      (long long)pending_inputs);
}

TEST(SchedRandom, EveryPolicyCombinationDrainsAndKeepsOutputs) {
  run_all_combinations(/*overlapped=*/false);
}

// The same with step N+1 planned and committed before step N resolves (Scheduler::commit /
// resolve): preemption, swaps, aborts and finishes hit sequences whose last token is pending,
// and outputs must still be exactly the runner's tokens, no more (the driver checks lengths).
TEST(SchedRandom, OverlappedStepsDrainAndKeepOutputs) {
  run_all_combinations(/*overlapped=*/true);
}

}  // namespace
}  // namespace loom::testing
