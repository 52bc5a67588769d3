// Counters, gauges and histograms the engine keeps for /metrics and for benchmarks.
// Written by the engine thread, read by any thread (atomics and a mutex per histogram).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <mutex>
#include <vector>

namespace loom {

class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);  // seconds, ascending; +Inf implied
  void observe(double value);
  struct Snapshot {
    std::vector<double> upper_bounds;
    std::vector<uint64_t> cumulative_counts;  // per bound, then +Inf last
    double sum = 0.0;
    uint64_t count = 0;
  };
  Snapshot snapshot() const;

 private:
  mutable std::mutex mu_;
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bucket (not cumulative), +Inf last
  double sum_ = 0.0;
  uint64_t count_ = 0;
};

struct EngineMetrics {
  EngineMetrics();
  Histogram ttft_s;   // arrival -> first token
  Histogram itl_s;    // between consecutive tokens of one request
  Histogram e2e_s;    // arrival -> finish
  Histogram queue_s;  // arrival -> first scheduled
  std::atomic<int64_t> prompt_tokens{0};
  std::atomic<int64_t> generation_tokens{0};
  std::atomic<int64_t> preemptions_swap{0};
  std::atomic<int64_t> preemptions_recompute{0};
  std::atomic<int64_t> prefix_cache_query_tokens{0};         // prompt tokens looked up
  std::atomic<int64_t> prefix_cache_hit_tokens{0};           // of those, found cached
  std::array<std::atomic<int64_t>, 4> finished_by_reason{};  // index = FinishReason
  std::atomic<int64_t> rejected_queue_full{0};
  std::atomic<int64_t> rejected_invalid{0};
  // Gauges, per tier (index = Tier).
  std::array<std::atomic<int32_t>, 3> running{};
  std::array<std::atomic<int32_t>, 3> waiting{};
  std::array<std::atomic<int32_t>, 3> swapped{};
  std::atomic<int32_t> kv_blocks_total{0};
  std::atomic<int32_t> kv_blocks_used{0};    // held by live sequences
  std::atomic<int32_t> kv_blocks_cached{0};  // free but holding reusable prefix-cache content
  std::atomic<int32_t> host_blocks_total{0};
  std::atomic<int32_t> host_blocks_used{0};
  std::atomic<int64_t> iterations{0};
};

}  // namespace loom
