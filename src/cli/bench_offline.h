// `loom bench` offline: drives an in-process engine with a workload and times every delta.
#pragma once

#include "cli/bench_run.h"
#include "engine/engine.h"

namespace loom::bench {

// Sends a few short requests and waits for them, so that one-time start-up costs (first-touch
// of the weights, the engine's cost-model measurement) stay out of the timed run.
// `engine` must be started.
Status warm_up(Engine& engine, int32_t num_requests, int32_t vocab_size);

// Runs `workload` through `engine` (started, idle): each request is submitted at its arrival
// time (and when a concurrency slot is free), its deltas are timed as they arrive. Counters and
// the peak KV usage come from the engine's metrics.
DriveResult run_offline(Engine& engine, const std::vector<BenchRequest>& workload,
                        const DriveOptions& options);

}  // namespace loom::bench
