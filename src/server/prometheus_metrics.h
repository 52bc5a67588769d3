// Prometheus text exposition (format 0.0.4) of the engine's metrics and the server's own
// counters, for GET /metrics. Names follow Prometheus conventions (base units, _total counters)
// so that `promtool check metrics` passes.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string>

#include "engine/engine_metrics.h"

namespace loom {

// Requests the HTTP layer refused or failed, by status (engine refusals are counted there too).
struct ServerCounters {
  static constexpr std::array<int, 9> kStatuses = {400, 401, 404, 408, 413, 429, 500, 503, 0};
  std::array<std::atomic<int64_t>, kStatuses.size()> errors_by_status{};  // 0 = any other
  std::atomic<int64_t> client_disconnects{0};  // aborted because the client went away
  std::atomic<int64_t> requests_completions{0};
  std::atomic<int64_t> requests_chat{0};
  void count_error(int status);
};

struct MetricsContext {
  std::string model_name;
  int32_t kv_block_size = 0;  // tokens per block
};

std::string render_prometheus(const EngineMetrics& metrics, const ServerCounters& counters,
                              const MetricsContext& context);

}  // namespace loom
