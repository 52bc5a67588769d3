// What both `loom bench` drivers (in-process engine, HTTP endpoint) take and give back.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "cli/bench_stats.h"
#include "cli/bench_workload.h"
#include "util/result.h"

namespace loom::bench {

struct DriveOptions {
  int32_t max_concurrency = 0;  // requests in flight at most; 0 = no bound (arrivals decide)
  double max_duration_s = 0.0;  // the run stops (aborting what is in flight) after this; 0 = none
  bool progress = true;         // a progress line on stderr
};

// What the serving side reports about the run: counters as differences over the run; -1 (or
// NaN) where the target does not expose them.
struct ServerStats {
  int64_t preemptions_swap = -1;
  int64_t preemptions_recompute = -1;
  double peak_kv_usage = kNaN;  // share of device KV blocks held by live sequences, 0..1
  int64_t prefix_cache_query_tokens = -1;
  int64_t prefix_cache_hit_tokens = -1;
  int64_t iterations = -1;  // engine steps
};

struct DriveResult {
  std::vector<RequestRecord> records;  // one per request sent, in workload order
  int64_t num_not_sent = 0;            // left unsent when the time bound hit
  double duration_s = 0.0;
  ServerStats server;
};

// Seconds a driver waits for a request's next delta before calling it stuck: far beyond any
// step time, so it only ends a run whose server hangs.
inline constexpr double kStallTimeoutS = 600.0;

}  // namespace loom::bench
