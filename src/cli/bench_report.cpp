#include "cli/bench_report.h"

#include <cmath>

namespace loom::bench {
namespace {

using nlohmann::json;

// NaN is not JSON: absent values become null.
json number_or_null(double v) {
  return std::isnan(v) ? json(nullptr) : json(v);
}

json summary_ms_json(const Summary& s) {
  return {{"count", s.count},
          {"mean", number_or_null(s.mean * 1e3)},
          {"p50", number_or_null(s.p50 * 1e3)},
          {"p90", number_or_null(s.p90 * 1e3)},
          {"p99", number_or_null(s.p99 * 1e3)},
          {"max", number_or_null(s.max * 1e3)}};
}

json group_json(const GroupReport& g) {
  return {{"group", g.group},
          {"num_requests", g.num_requests},
          {"num_ok", g.num_ok},
          {"num_failed", g.num_failed},
          {"input_tokens", g.input_tokens},
          {"output_tokens", g.output_tokens},
          {"requests_per_s", g.requests_per_s},
          {"input_tokens_per_s", g.input_tokens_per_s},
          {"output_tokens_per_s", g.output_tokens_per_s},
          {"ttft_ms", summary_ms_json(g.ttft_s)},
          {"itl_ms", summary_ms_json(g.itl_s)},
          {"tpot_ms", summary_ms_json(g.tpot_s)},
          {"e2e_ms", summary_ms_json(g.e2e_s)},
          {"num_good", g.num_good},
          {"goodput_share", number_or_null(g.goodput_share)},
          {"goodput_requests_per_s", number_or_null(g.goodput_requests_per_s)}};
}

void print_row(std::FILE* out, const char* name, const Summary& s) {
  auto cell = [&](double v) {
    if (std::isnan(v)) {
      std::fprintf(out, " %10s", "-");
    } else {
      std::fprintf(out, " %10.1f", v * 1e3);
    }
  };
  std::fprintf(out, "  %-10s", name);
  cell(s.mean);
  cell(s.p50);
  cell(s.p90);
  cell(s.p99);
  cell(s.max);
  std::fprintf(out, " %8lld\n", static_cast<long long>(s.count));
}

std::string config_line(const json& j) {
  std::string line;
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (it->is_object()) {
      line += config_line(*it);
      continue;
    }
    if (!line.empty() && line.back() != ' ') line += ' ';
    line += it.key() + "=" + (it->is_string() ? it->get<std::string>() : it->dump()) + " ";
  }
  return line;
}

}  // namespace

void print_report(std::FILE* out, const json& config, const DriveResult& result,
                  const std::vector<GroupReport>& reports, const GoodputLimits& limits) {
  std::fprintf(out, "== loom bench: %s\n",
               config.value("label", std::string("(no label)")).c_str());
  std::fprintf(out, "   %s\n", config_line(config).c_str());
  const GroupReport& all = reports.front();
  std::fprintf(out, "duration %.2f s: %lld finished, %lld failed or cut off, %lld not sent\n",
               result.duration_s, static_cast<long long>(all.num_ok),
               static_cast<long long>(all.num_failed), static_cast<long long>(result.num_not_sent));
  const ServerStats& s = result.server;
  if (s.preemptions_swap >= 0 || !std::isnan(s.peak_kv_usage)) {
    std::fprintf(out, "engine: preemptions swap %lld, recompute %lld; peak KV usage %.1f%%",
                 static_cast<long long>(s.preemptions_swap),
                 static_cast<long long>(s.preemptions_recompute), s.peak_kv_usage * 100);
    if (s.prefix_cache_query_tokens > 0)
      std::fprintf(out, "; prefix cache hit %lld of %lld prompt tokens",
                   static_cast<long long>(s.prefix_cache_hit_tokens),
                   static_cast<long long>(s.prefix_cache_query_tokens));
    if (s.iterations >= 0) std::fprintf(out, "; %lld steps", static_cast<long long>(s.iterations));
    std::fputc('\n', out);
  }
  for (const GroupReport& g : reports) {
    std::fprintf(out,
                 "-- group %s: %lld requests (%lld ok), %.3f req/s, input %.1f tok/s, "
                 "output %.1f tok/s\n",
                 g.group.c_str(), static_cast<long long>(g.num_requests),
                 static_cast<long long>(g.num_ok), g.requests_per_s, g.input_tokens_per_s,
                 g.output_tokens_per_s);
    if (limits.any() && !std::isnan(g.goodput_share)) {
      std::fprintf(out,
                   "   goodput (TTFT <= %.0f ms, TPOT <= %.0f ms): %lld = %.1f%%, %.3f req/s\n",
                   limits.ttft_s * 1e3, limits.tpot_s * 1e3, static_cast<long long>(g.num_good),
                   g.goodput_share * 100, g.goodput_requests_per_s);
    }
    std::fprintf(out, "  %-10s %10s %10s %10s %10s %10s %8s\n", "ms", "mean", "p50", "p90", "p99",
                 "max", "samples");
    print_row(out, "TTFT", g.ttft_s);
    print_row(out, "ITL", g.itl_s);
    print_row(out, "TPOT", g.tpot_s);
    print_row(out, "E2E", g.e2e_s);
  }
  std::fflush(out);
}

json report_json(const json& config, const DriveResult& result,
                 const std::vector<GroupReport>& reports, const GoodputLimits& limits) {
  json groups = json::array();
  for (const GroupReport& g : reports) groups.push_back(group_json(g));
  const ServerStats& s = result.server;
  auto counter = [](int64_t v) { return v >= 0 ? json(v) : json(nullptr); };
  return {{"config", config},
          {"duration_s", result.duration_s},
          {"num_not_sent", result.num_not_sent},
          {"goodput_limits_ms",
           {{"ttft", number_or_null(limits.ttft_s > 0 ? limits.ttft_s * 1e3 : kNaN)},
            {"tpot", number_or_null(limits.tpot_s > 0 ? limits.tpot_s * 1e3 : kNaN)}}},
          {"server",
           {{"preemptions_swap", counter(s.preemptions_swap)},
            {"preemptions_recompute", counter(s.preemptions_recompute)},
            {"peak_kv_usage", number_or_null(s.peak_kv_usage)},
            {"prefix_cache_query_tokens", counter(s.prefix_cache_query_tokens)},
            {"prefix_cache_hit_tokens", counter(s.prefix_cache_hit_tokens)},
            {"iterations", counter(s.iterations)}}},
          {"groups", groups}};
}

void print_bench_progress(size_t done, size_t total, int64_t tokens, double elapsed_s) {
  const int width = 30;
  const int filled = total > 0 ? static_cast<int>(width * done / total) : width;
  std::fprintf(stderr, "\r[%.*s%*s] %zu/%zu requests, %.1f output tok/s, %.0f s   ", filled,
               "==============================", width - filled, "", done, total,
               elapsed_s > 0 ? tokens / elapsed_s : 0.0, elapsed_s);
  std::fflush(stderr);
}

}  // namespace loom::bench
