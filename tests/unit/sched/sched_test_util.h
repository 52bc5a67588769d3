// Table-driven checks over a StepDriver's history: expected running / waiting / swapped sets
// over iteration ranges, an exact iteration count, and the end state every scenario must reach.
#pragma once

#include <gtest/gtest.h>

#include <vector>

#include "fakes/step_driver.h"
#include "sched/scheduler.h"

namespace loom::testing {

using fakes::make_request;
using fakes::StepDriver;

struct Phase {
  int64_t first = 0;  // iterations [first, last], 1-based
  int64_t last = 0;
  std::vector<SeqId> running;
  std::vector<SeqId> waiting = {};
  std::vector<SeqId> swapped = {};
};

// A small pool that makes hand-computed expectations easy: 4-token blocks.
inline SchedulerConfig small_config() {
  SchedulerConfig c;
  c.block_size = 4;
  c.num_device_blocks = 64;
  c.num_host_blocks = 0;
  c.max_num_batched_tokens = 16;
  c.max_num_seqs = 4;
  c.max_model_len = 256;
  c.chunked_prefill = true;
  c.prefix_caching = false;
  c.admission = AdmissionPolicy::kOptimistic;
  c.watermark = 0.0f;
  c.reservation_buffer = 0.0f;
  c.preemption = PreemptionMode::kRecompute;
  c.aging_us_per_level = 0;
  return c;
}

inline void expect_phases(const StepDriver& d, const std::vector<Phase>& phases,
                          int64_t num_iterations) {
  const auto& h = d.history();
  ASSERT_EQ(static_cast<int64_t>(h.size()), num_iterations) << "total iteration count";
  for (const Phase& p : phases) {
    for (int64_t it = p.first; it <= p.last; ++it) {
      ASSERT_GE(it, 1);
      ASSERT_LE(it, num_iterations);
      const auto& rec = h[static_cast<size_t>(it - 1)];
      EXPECT_EQ(rec.running, p.running) << "running set at iteration " << it;
      EXPECT_EQ(rec.waiting, p.waiting) << "waiting set at iteration " << it;
      EXPECT_EQ(rec.swapped, p.swapped) << "swapped set at iteration " << it;
    }
  }
}

// The end of every scenario: nothing queued, running or swapped; every device block free or
// only cached, every host block free; invariants hold; every finished output is exactly the
// fake runner's tokens (so preemption, chunking and batching never changed an output).
inline void expect_drained(const Scheduler& s, const StepDriver& d) {
  s.check_invariants();
  const SchedulerStats st = s.stats();
  EXPECT_FALSE(s.has_work());
  EXPECT_EQ(st.num_waiting, 0);
  EXPECT_EQ(st.num_running, 0);
  EXPECT_EQ(st.num_swapped, 0);
  EXPECT_EQ(st.num_waiting_tokens, 0);
  EXPECT_EQ(st.num_used_blocks, 0);
  EXPECT_EQ(st.num_free_blocks + st.num_cached_blocks, st.num_device_blocks);
  EXPECT_EQ(st.num_host_blocks_used, 0);
  for (const auto& [id, f] : d.finished()) {
    for (size_t k = 0; k < f.output.size(); ++k) {
      ASSERT_EQ(f.output[k], fakes::fake_token(id, f.num_prompt_tokens + static_cast<int32_t>(k)))
          << "seq " << id << " output token " << k;
    }
  }
}

inline std::vector<std::pair<SeqId, int32_t>> scheduled_at(const StepDriver& d, int64_t it) {
  return d.history().at(static_cast<size_t>(it - 1)).scheduled;
}

}  // namespace loom::testing
