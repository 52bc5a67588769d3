// Percentiles, TPOT, goodput and per-group reports of `loom bench`. Expected percentiles are
// numpy.percentile(values, q) (method "linear"), worked out by hand in the comments.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "cli/bench_online.h"
#include "cli/bench_stats.h"

namespace loom::bench {
namespace {

TEST(BenchStats, PercentileLinearInterpolation) {
  const std::vector<double> v = {1, 2, 3, 4};
  EXPECT_DOUBLE_EQ(percentile_sorted(v, 0), 1.0);
  EXPECT_DOUBLE_EQ(percentile_sorted(v, 50), 2.5);   // rank 1.5
  EXPECT_DOUBLE_EQ(percentile_sorted(v, 90), 3.7);   // rank 2.7
  EXPECT_DOUBLE_EQ(percentile_sorted(v, 99), 3.97);  // rank 2.97
  EXPECT_DOUBLE_EQ(percentile_sorted(v, 100), 4.0);
  EXPECT_DOUBLE_EQ(percentile_sorted({5}, 99), 5.0);
  // numpy.percentile(range(1, 101), 99) == 99.01 (rank 98.01)
  std::vector<double> hundred;
  for (int i = 1; i <= 100; ++i) hundred.push_back(i);
  EXPECT_NEAR(percentile_sorted(hundred, 99), 99.01, 1e-9);
  EXPECT_NEAR(percentile_sorted(hundred, 90), 90.1, 1e-9);
}

TEST(BenchStats, SummarizeSortsAndDropsNaN) {
  Summary s = summarize({4, kNaN, 1, 3, 2});
  EXPECT_EQ(s.count, 4);
  EXPECT_DOUBLE_EQ(s.mean, 2.5);
  EXPECT_DOUBLE_EQ(s.p50, 2.5);
  EXPECT_DOUBLE_EQ(s.p90, 3.7);
  EXPECT_DOUBLE_EQ(s.max, 4.0);
  Summary empty = summarize({kNaN});
  EXPECT_EQ(empty.count, 0);
  EXPECT_TRUE(std::isnan(empty.mean));
  EXPECT_TRUE(std::isnan(empty.p99));
}

RequestRecord record(const char* group, bool ok, double ttft, double e2e, int32_t out,
                     int32_t prompt = 10) {
  RequestRecord r;
  r.group = group;
  r.ok = ok;
  r.ttft_s = ttft;
  r.e2e_s = e2e;
  r.output_tokens = out;
  r.prompt_tokens = prompt;
  return r;
}

TEST(BenchStats, TpotIsDecodeTimePerTokenAfterTheFirst) {
  EXPECT_DOUBLE_EQ(tpot_s(record("all", true, 0.1, 1.0, 10)), 0.1);
  EXPECT_TRUE(std::isnan(tpot_s(record("all", true, 0.1, 0.1, 1))));
  EXPECT_TRUE(std::isnan(tpot_s(record("all", false, kNaN, kNaN, 0))));
}

TEST(BenchStats, GoodputAppliesBothLimits) {
  GoodputLimits limits{0.5, 0.05};
  EXPECT_TRUE(meets_limits(record("all", true, 0.4, 0.85, 10), limits));   // tpot 0.05
  EXPECT_FALSE(meets_limits(record("all", true, 0.6, 0.7, 10), limits));   // ttft
  EXPECT_FALSE(meets_limits(record("all", true, 0.1, 1.0, 10), limits));   // tpot 0.1
  EXPECT_FALSE(meets_limits(record("all", false, 0.1, 0.2, 10), limits));  // failed
  EXPECT_TRUE(meets_limits(record("all", true, 0.5, 0.5, 1), limits));     // no tpot
  EXPECT_TRUE(meets_limits(record("all", true, 9.0, 99.0, 10), GoodputLimits{}));
  GoodputLimits ttft_only{0.5, 0};
  EXPECT_TRUE(meets_limits(record("all", true, 0.2, 50.0, 10), ttft_only));
}

TEST(BenchStats, ReportsPerGroupWithRates) {
  std::vector<RequestRecord> rs = {
      record("chat", true, 0.1, 1.0, 10, 100),  // good
      record("chat", true, 2.0, 3.0, 11, 100),  // ttft too long
      record("long", true, 0.3, 0.3, 1, 4000),  // good
      record("long", false, kNaN, kNaN, 0, 4000),
  };
  rs[0].itl_s = {0.1, 0.1};
  rs[1].itl_s = {0.3};
  const auto reports = make_reports(rs, 2.0, GoodputLimits{1.0, 0.2});
  ASSERT_EQ(reports.size(), 3u);
  const GroupReport& all = reports[0];
  EXPECT_EQ(all.group, "all");
  EXPECT_EQ(all.num_requests, 4);
  EXPECT_EQ(all.num_ok, 3);
  EXPECT_EQ(all.num_failed, 1);
  EXPECT_EQ(all.input_tokens, 4200);  // the failed one produced nothing
  EXPECT_EQ(all.output_tokens, 22);
  EXPECT_DOUBLE_EQ(all.requests_per_s, 1.5);
  EXPECT_DOUBLE_EQ(all.output_tokens_per_s, 11.0);
  EXPECT_DOUBLE_EQ(all.input_tokens_per_s, 2100.0);
  EXPECT_EQ(all.itl_s.count, 3);
  EXPECT_NEAR(all.itl_s.mean, 0.5 / 3, 1e-12);
  EXPECT_EQ(all.ttft_s.count, 3);
  EXPECT_EQ(all.tpot_s.count, 2);  // the one-token answer has none
  EXPECT_EQ(all.e2e_s.count, 3);
  EXPECT_EQ(all.num_good, 2);
  EXPECT_DOUBLE_EQ(all.goodput_share, 0.5);
  EXPECT_DOUBLE_EQ(all.goodput_requests_per_s, 1.0);
  EXPECT_EQ(reports[1].group, "chat");
  EXPECT_EQ(reports[1].num_requests, 2);
  EXPECT_DOUBLE_EQ(reports[1].goodput_share, 0.5);
  EXPECT_EQ(reports[2].group, "long");
  EXPECT_EQ(reports[2].num_ok, 1);
  EXPECT_DOUBLE_EQ(reports[2].ttft_s.p50, 0.3);
}

TEST(BenchStats, OneGroupGivesOneReportAndNoGoodputWithoutLimits) {
  const auto reports = make_reports({record("all", true, 0.1, 1.0, 10)}, 1.0, GoodputLimits{});
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_TRUE(std::isnan(reports[0].goodput_share));
}

TEST(BenchOnline, PrometheusValueSumsMatchingSamples) {
  const std::string text =
      "# HELP loom_preemptions_total Sequences preempted.\n"
      "# TYPE loom_preemptions_total counter\n"
      "loom_preemptions_total{model=\"m\",mechanism=\"swap\"} 3\n"
      "loom_preemptions_total{model=\"m\",mechanism=\"recompute\"} 4\n"
      "loom_preemptions_total_extra 100\n"
      "loom_kv_cache_usage_ratio{model=\"m\"} 0.25\n"
      "llamacpp:kv_cache_usage_ratio 0.5\n";
  EXPECT_DOUBLE_EQ(prometheus_value(text, "loom_preemptions_total", "mechanism=\"swap\""), 3);
  EXPECT_DOUBLE_EQ(prometheus_value(text, "loom_preemptions_total"), 7);
  EXPECT_DOUBLE_EQ(prometheus_value(text, "loom_kv_cache_usage_ratio"), 0.25);
  EXPECT_DOUBLE_EQ(prometheus_value(text, "llamacpp:kv_cache_usage_ratio"), 0.5);
  EXPECT_TRUE(std::isnan(prometheus_value(text, "loom_missing")));
  EXPECT_TRUE(std::isnan(prometheus_value("", "loom_preemptions_total")));
}

TEST(BenchOnline, CompletionBodySendsTokenIds) {
  BenchRequest b;
  b.prompt = {101, 202, 303};
  b.max_tokens = 7;
  b.tier = "interactive";
  OnlineTarget t;
  t.model_name = "m";
  const auto j = nlohmann::json::parse(completion_body(t, b));
  EXPECT_EQ(j["prompt"], nlohmann::json({101, 202, 303}));
  EXPECT_EQ(j["max_tokens"], 7);
  EXPECT_EQ(j["stream"], true);
  EXPECT_EQ(j["ignore_eos"], true);
  EXPECT_EQ(j["temperature"], 0.0);
  EXPECT_EQ(j["tier"], "interactive");
  EXPECT_EQ(j["model"], "m");
  EXPECT_EQ(j["stream_options"]["include_usage"], true);
  b.tier.clear();
  t.model_name.clear();
  const auto k = nlohmann::json::parse(completion_body(t, b));
  EXPECT_FALSE(k.contains("tier"));
  EXPECT_FALSE(k.contains("model"));
}

}  // namespace
}  // namespace loom::bench
