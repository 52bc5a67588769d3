#include "server/prometheus_metrics.h"

#include <cmath>
#include <cstdio>

#include "core/request.h"

namespace loom {

void ServerCounters::count_error(int status) {
  for (size_t i = 0; i + 1 < kStatuses.size(); ++i) {
    if (kStatuses[i] == status) {
      errors_by_status[i].fetch_add(1, std::memory_order_relaxed);
      return;
    }
  }
  errors_by_status.back().fetch_add(1, std::memory_order_relaxed);
}

namespace {

// Prometheus float formatting: shortest round-trip form, +Inf / -Inf / NaN spelled its way.
std::string fmt_value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.17g", v);
  // Use the shorter %g form when it round-trips.
  char shorter[64];
  std::snprintf(shorter, sizeof(shorter), "%g", v);
  if (std::strtod(shorter, nullptr) == v) return shorter;
  return buf;
}

class Writer {
 public:
  void header(const char* name, const char* type, const char* help) {
    out_ += "# HELP ";
    out_ += name;
    out_ += ' ';
    out_ += help;
    out_ += "\n# TYPE ";
    out_ += name;
    out_ += ' ';
    out_ += type;
    out_ += '\n';
  }
  void sample(const std::string& name, const std::string& labels, double value) {
    out_ += name;
    if (!labels.empty()) {
      out_ += '{';
      out_ += labels;
      out_ += '}';
    }
    out_ += ' ';
    out_ += fmt_value(value);
    out_ += '\n';
  }
  void histogram(const char* name, const char* help, const Histogram::Snapshot& s,
                 const std::string& labels) {
    header(name, "histogram", help);
    std::string bucket = std::string(name) + "_bucket";
    std::string sep = labels.empty() ? "" : labels + ",";
    for (size_t i = 0; i < s.upper_bounds.size(); ++i)
      sample(bucket, sep + "le=\"" + fmt_value(s.upper_bounds[i]) + "\"",
             static_cast<double>(s.cumulative_counts[i]));
    sample(bucket, sep + "le=\"+Inf\"", static_cast<double>(s.count));
    sample(std::string(name) + "_sum", labels, s.sum);
    sample(std::string(name) + "_count", labels, static_cast<double>(s.count));
  }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

std::string escape_label(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

double load(const std::atomic<int64_t>& a) {
  return static_cast<double>(a.load());
}
double load(const std::atomic<int32_t>& a) {
  return static_cast<double>(a.load());
}

}  // namespace

std::string render_prometheus(const EngineMetrics& m, const ServerCounters& counters,
                              const MetricsContext& context) {
  Writer w;
  const std::string model = "model=\"" + escape_label(context.model_name) + "\"";

  w.histogram("loom_time_to_first_token_seconds",
              "Time from a request's arrival to its first generated token.", m.ttft_s.snapshot(),
              model);
  w.histogram("loom_inter_token_latency_seconds",
              "Time between consecutive generated tokens of one request.", m.itl_s.snapshot(),
              model);
  w.histogram("loom_e2e_request_latency_seconds",
              "Time from a request's arrival to its last token.", m.e2e_s.snapshot(), model);
  w.histogram("loom_request_queue_time_seconds",
              "Time a request waited before it was first scheduled.", m.queue_s.snapshot(), model);

  w.header("loom_prompt_tokens_total", "counter", "Prompt tokens of admitted requests.");
  w.sample("loom_prompt_tokens_total", model, load(m.prompt_tokens));
  w.header("loom_generation_tokens_total", "counter", "Tokens generated.");
  w.sample("loom_generation_tokens_total", model, load(m.generation_tokens));

  static constexpr Tier kTiers[] = {Tier::kInteractive, Tier::kStandard, Tier::kBatch};
  auto per_tier = [&](const char* name, const char* help,
                      const std::array<std::atomic<int32_t>, 3>& values) {
    w.header(name, "gauge", help);
    for (Tier t : kTiers)
      w.sample(name, model + ",tier=\"" + tier_name(t) + "\"",
               load(values[static_cast<size_t>(t)]));
  };
  per_tier("loom_requests_running", "Sequences in the running batch, by SLA tier.", m.running);
  per_tier("loom_requests_waiting", "Sequences waiting to be scheduled, by SLA tier.", m.waiting);
  per_tier("loom_requests_swapped", "Sequences swapped out to host memory, by SLA tier.",
           m.swapped);

  const double total = load(m.kv_blocks_total), used = load(m.kv_blocks_used),
               cached = load(m.kv_blocks_cached);
  w.header("loom_kv_cache_usage_ratio", "gauge",
           "Fraction of device KV blocks held by live sequences (0 to 1).");
  w.sample("loom_kv_cache_usage_ratio", model, total > 0 ? used / total : 0.0);
  w.header("loom_kv_cache_blocks", "gauge",
           "Device KV blocks by state: used by live sequences, cached (free, reusable prefix), "
           "free.");
  w.sample("loom_kv_cache_blocks", model + ",state=\"used\"", used);
  w.sample("loom_kv_cache_blocks", model + ",state=\"cached\"", cached);
  w.sample("loom_kv_cache_blocks", model + ",state=\"free\"", std::max(0.0, total - used - cached));
  w.header("loom_kv_cache_blocks_capacity", "gauge", "Device KV blocks in the pool.");
  w.sample("loom_kv_cache_blocks_capacity", model, total);
  w.header("loom_kv_cache_block_size_tokens", "gauge", "Tokens per KV block.");
  w.sample("loom_kv_cache_block_size_tokens", model, context.kv_block_size);
  w.header("loom_host_kv_cache_blocks", "gauge", "Host (swap) KV blocks by state.");
  w.sample("loom_host_kv_cache_blocks", model + ",state=\"used\"", load(m.host_blocks_used));
  w.sample("loom_host_kv_cache_blocks", model + ",state=\"free\"",
           std::max(0.0, load(m.host_blocks_total) - load(m.host_blocks_used)));

  w.header("loom_preemptions_total", "counter", "Sequences preempted, by mechanism.");
  w.sample("loom_preemptions_total", model + ",mechanism=\"swap\"", load(m.preemptions_swap));
  w.sample("loom_preemptions_total", model + ",mechanism=\"recompute\"",
           load(m.preemptions_recompute));

  const double queried = load(m.prefix_cache_query_tokens), hits = load(m.prefix_cache_hit_tokens);
  w.header("loom_prefix_cache_queried_tokens_total", "counter",
           "Prompt tokens looked up in the prefix cache.");
  w.sample("loom_prefix_cache_queried_tokens_total", model, queried);
  w.header("loom_prefix_cache_hit_tokens_total", "counter",
           "Prompt tokens found in the prefix cache.");
  w.sample("loom_prefix_cache_hit_tokens_total", model, hits);
  w.header("loom_prefix_cache_hit_ratio", "gauge",
           "Prompt tokens found in the prefix cache over those looked up, since start (0 to 1).");
  w.sample("loom_prefix_cache_hit_ratio", model, queried > 0 ? hits / queried : 0.0);

  static constexpr FinishReason kReasons[] = {FinishReason::kStop, FinishReason::kLength,
                                              FinishReason::kAbort, FinishReason::kError};
  w.header("loom_requests_finished_total", "counter", "Finished sequences, by finish reason.");
  for (FinishReason r : kReasons)
    w.sample("loom_requests_finished_total",
             model + ",finished_reason=\"" + finish_reason_name(r) + "\"",
             load(m.finished_by_reason[static_cast<size_t>(r)]));

  w.header("loom_requests_rejected_total", "counter",
           "Requests the engine refused at submission, by reason.");
  w.sample("loom_requests_rejected_total", model + ",reason=\"queue_full\"",
           load(m.rejected_queue_full));
  w.sample("loom_requests_rejected_total", model + ",reason=\"invalid\"", load(m.rejected_invalid));

  w.header("loom_http_request_errors_total", "counter",
           "HTTP requests answered with an error, by status code (\"other\" for the rest).");
  for (size_t i = 0; i < ServerCounters::kStatuses.size(); ++i) {
    int status = ServerCounters::kStatuses[i];
    std::string code = status == 0 ? "other" : std::to_string(status);
    w.sample("loom_http_request_errors_total", "code=\"" + code + "\"",
             load(counters.errors_by_status[i]));
  }
  w.header("loom_client_disconnects_total", "counter",
           "Requests aborted because the client closed its connection.");
  w.sample("loom_client_disconnects_total", "", load(counters.client_disconnects));
  w.header("loom_http_requests_total", "counter", "Generation requests received, by endpoint.");
  w.sample("loom_http_requests_total", "endpoint=\"/v1/completions\"",
           load(counters.requests_completions));
  w.sample("loom_http_requests_total", "endpoint=\"/v1/chat/completions\"",
           load(counters.requests_chat));
  w.header("loom_engine_iterations_total", "counter", "Engine iterations (scheduler steps).");
  w.sample("loom_engine_iterations_total", "", load(m.iterations));
  return w.take();
}

}  // namespace loom
