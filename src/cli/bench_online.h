// `loom bench` online: drives any OpenAI-compatible server (loom, llama.cpp's server, vLLM)
// over HTTP with streaming completions whose prompts are token ids.
#pragma once

#include <string>

#include "cli/bench_run.h"

namespace loom::bench {

struct OnlineTarget {
  std::string base_url;                      // http://host:port
  std::string endpoint = "/v1/completions";  // takes token-id prompts
  std::string model_name;                    // sent as "model" when not empty
  std::string api_key;                       // sent as a bearer token when not empty
};

// The JSON body for one request: token-id prompt, greedy, streamed with usage.
std::string completion_body(const OnlineTarget& target, const BenchRequest& request);

// One "name{labels} value" sample from Prometheus text: the sum over every sample of `name`
// whose labels contain `label_part` (empty: any). NaN when none.
double prometheus_value(const std::string& text, const std::string& name,
                        const std::string& label_part = "");

// Checks the server answers at all (GET /v1/models), then runs the workload: a thread per
// client, each request sent at its arrival time when a concurrency slot is free. Server
// counters come from /metrics when it speaks loom's (or llama.cpp's) names.
Result<DriveResult> run_online(const OnlineTarget& target,
                               const std::vector<BenchRequest>& workload,
                               const DriveOptions& options);

}  // namespace loom::bench
