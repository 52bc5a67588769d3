// A snapshot of the scheduler's state and counters, for metrics and benchmarks.
#pragma once

#include <array>
#include <cstdint>

namespace loom {

inline constexpr int kNumTiers = 3;  // indexed by static_cast<int>(Tier)

struct SchedulerStats {
  int64_t iteration = 0;
  int32_t num_waiting = 0;
  int32_t num_running = 0;
  int32_t num_swapped = 0;
  int64_t num_waiting_tokens = 0;
  std::array<int32_t, kNumTiers> waiting_by_tier{};
  std::array<int32_t, kNumTiers> running_by_tier{};
  std::array<int32_t, kNumTiers> swapped_by_tier{};

  int32_t num_device_blocks = 0;
  int32_t num_free_blocks = 0;
  int32_t num_used_blocks = 0;
  int32_t num_cached_blocks = 0;  // unreferenced but holding reusable prefix K/V
  int32_t num_host_blocks = 0;
  int32_t num_host_blocks_used = 0;

  int64_t num_preemptions_recompute = 0;
  int64_t num_preemptions_swap = 0;
  int64_t num_preemptions_for_priority = 0;  // of the above, those made for a waiting request
  int64_t num_swap_fallbacks = 0;            // swap chosen but the host pool was full

  int64_t prefix_query_tokens = 0;  // tokens looked up at admission
  int64_t prefix_hit_tokens = 0;    // of those, found in the prefix cache

  int64_t num_admitted = 0;  // first admissions
  int64_t num_finished = 0;
  int64_t admission_wait_total_us = 0;  // arrival -> first admission, summed over num_admitted
  int64_t admission_wait_max_us = 0;
  std::array<int64_t, kNumTiers> admitted_by_tier{};
  std::array<int64_t, kNumTiers> admission_wait_total_us_by_tier{};

  int64_t num_preemptions() const { return num_preemptions_recompute + num_preemptions_swap; }
};

}  // namespace loom
