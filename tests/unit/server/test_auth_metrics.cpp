#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <map>
#include <set>
#include <sstream>

#include "core/request.h"
#include "server/auth.h"
#include "server/prometheus_metrics.h"

namespace loom {
namespace {

TEST(Auth, Bearer) {
  EXPECT_TRUE(bearer_authorized("", ""));  // no key configured: open
  EXPECT_TRUE(bearer_authorized("Bearer sk-1", "sk-1"));
  EXPECT_TRUE(bearer_authorized("bearer sk-1", "sk-1"));
  EXPECT_TRUE(bearer_authorized("Bearer  sk-1 ", "sk-1"));
  EXPECT_FALSE(bearer_authorized("", "sk-1"));
  EXPECT_FALSE(bearer_authorized("Bearer sk-2", "sk-1"));
  EXPECT_FALSE(bearer_authorized("Bearer sk-1x", "sk-1"));
  EXPECT_FALSE(bearer_authorized("Bearer sk-", "sk-1"));
  EXPECT_FALSE(bearer_authorized("Basic sk-1", "sk-1"));
  EXPECT_FALSE(bearer_authorized("sk-1", "sk-1"));
  EXPECT_FALSE(route_needs_auth("/health"));
  EXPECT_TRUE(route_needs_auth("/ready"));
  EXPECT_TRUE(route_needs_auth("/metrics"));
  EXPECT_TRUE(route_needs_auth("/v1/models"));
}

TEST(Auth, KeyFromEnvironment) {
  ::setenv("LOOM_API_KEY", "from-env", 1);
  EXPECT_EQ(resolve_api_key(""), "from-env");
  EXPECT_EQ(resolve_api_key("flag"), "flag");
  ::unsetenv("LOOM_API_KEY");
  EXPECT_EQ(resolve_api_key(""), "");
}

// Parses the exposition into {family -> type} and {sample line name -> value}, checking the
// text-format rules that promtool checks: every sample belongs to a family declared by HELP and
// TYPE before it, counters end in _total, histogram buckets are cumulative and end at +Inf
// equal to _count.
struct Parsed {
  std::map<std::string, std::string> types;
  std::map<std::string, double> samples;  // "name{labels}" -> value
};

Parsed parse_exposition(const std::string& text) {
  Parsed p;
  std::istringstream in(text);
  std::string line;
  std::set<std::string> helped;
  while (std::getline(in, line)) {
    EXPECT_FALSE(line.empty());
    if (line.rfind("# HELP ", 0) == 0) {
      helped.insert(line.substr(7, line.find(' ', 7) - 7));
      continue;
    }
    if (line.rfind("# TYPE ", 0) == 0) {
      std::string rest = line.substr(7);
      std::string name = rest.substr(0, rest.find(' '));
      EXPECT_TRUE(helped.count(name)) << "TYPE before HELP: " << name;
      EXPECT_EQ(p.types.count(name), 0u) << "family declared twice: " << name;
      p.types[name] = rest.substr(rest.find(' ') + 1);
      continue;
    }
    size_t space = line.rfind(' ');
    std::string key = line.substr(0, space);
    std::string name = key.substr(0, key.find('{'));
    std::string family = name;
    for (const char* suffix : {"_bucket", "_sum", "_count"}) {
      std::string s = suffix;
      if (name.size() > s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0 &&
          p.types.count(name.substr(0, name.size() - s.size())) &&
          p.types[name.substr(0, name.size() - s.size())] == "histogram")
        family = name.substr(0, name.size() - s.size());
    }
    EXPECT_TRUE(p.types.count(family)) << "sample without TYPE: " << line;
    if (p.types[family] == "counter") {
      EXPECT_TRUE(name.size() > 6 && name.compare(name.size() - 6, 6, "_total") == 0) << name;
    }
    std::string value = line.substr(space + 1);
    p.samples[key] = value == "+Inf" ? INFINITY : std::strtod(value.c_str(), nullptr);
  }
  return p;
}

TEST(PrometheusMetrics, ExpositionStructure) {
  EngineMetrics m;
  m.ttft_s.observe(0.003);
  m.ttft_s.observe(0.2);
  m.ttft_s.observe(500.0);  // beyond the last bound: only +Inf
  m.prompt_tokens = 120;
  m.generation_tokens = 45;
  m.running[0] = 2;
  m.waiting[2] = 7;
  m.kv_blocks_total = 100;
  m.kv_blocks_used = 25;
  m.kv_blocks_cached = 5;
  m.preemptions_swap = 3;
  m.prefix_cache_query_tokens = 200;
  m.prefix_cache_hit_tokens = 50;
  m.finished_by_reason[static_cast<size_t>(FinishReason::kLength)] = 9;
  ServerCounters counters;
  counters.count_error(429);
  counters.count_error(429);
  counters.count_error(418);
  std::string text = render_prometheus(m, counters, MetricsContext{"smol", 16});
  Parsed p = parse_exposition(text);

  const std::string lbl = "{model=\"smol\"";
  EXPECT_EQ(p.types["loom_time_to_first_token_seconds"], "histogram");
  EXPECT_EQ(p.types["loom_inter_token_latency_seconds"], "histogram");
  EXPECT_EQ(p.types["loom_e2e_request_latency_seconds"], "histogram");
  EXPECT_EQ(p.types["loom_request_queue_time_seconds"], "histogram");
  EXPECT_EQ(p.samples["loom_time_to_first_token_seconds_bucket" + lbl + ",le=\"0.0025\"}"], 0);
  EXPECT_EQ(p.samples["loom_time_to_first_token_seconds_bucket" + lbl + ",le=\"0.005\"}"], 1);
  EXPECT_EQ(p.samples["loom_time_to_first_token_seconds_bucket" + lbl + ",le=\"0.25\"}"], 2);
  EXPECT_EQ(p.samples["loom_time_to_first_token_seconds_bucket" + lbl + ",le=\"160\"}"], 2);
  EXPECT_EQ(p.samples["loom_time_to_first_token_seconds_bucket" + lbl + ",le=\"+Inf\"}"], 3);
  EXPECT_EQ(p.samples["loom_time_to_first_token_seconds_count" + lbl + "}"], 3);
  EXPECT_NEAR(p.samples["loom_time_to_first_token_seconds_sum" + lbl + "}"], 500.203, 1e-9);
  EXPECT_EQ(p.samples["loom_prompt_tokens_total" + lbl + "}"], 120);
  EXPECT_EQ(p.samples["loom_generation_tokens_total" + lbl + "}"], 45);
  EXPECT_EQ(p.samples["loom_requests_running" + lbl + ",tier=\"interactive\"}"], 2);
  EXPECT_EQ(p.samples["loom_requests_waiting" + lbl + ",tier=\"batch\"}"], 7);
  EXPECT_EQ(p.samples["loom_requests_swapped" + lbl + ",tier=\"standard\"}"], 0);
  EXPECT_EQ(p.samples["loom_kv_cache_usage_ratio" + lbl + "}"], 0.25);
  EXPECT_EQ(p.samples["loom_kv_cache_blocks" + lbl + ",state=\"used\"}"], 25);
  EXPECT_EQ(p.samples["loom_kv_cache_blocks" + lbl + ",state=\"free\"}"], 70);
  EXPECT_EQ(p.samples["loom_preemptions_total" + lbl + ",mechanism=\"swap\"}"], 3);
  EXPECT_EQ(p.samples["loom_prefix_cache_hit_ratio" + lbl + "}"], 0.25);
  EXPECT_EQ(p.samples["loom_requests_finished_total" + lbl + ",finished_reason=\"length\"}"], 9);
  EXPECT_EQ(p.samples["loom_http_request_errors_total{code=\"429\"}"], 2);
  EXPECT_EQ(p.samples["loom_http_request_errors_total{code=\"other\"}"], 1);
  EXPECT_EQ(text.back(), '\n');
}

}  // namespace
}  // namespace loom
