// Workload generators of `loom bench`: seeded, reproducible, and shaped as documented.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "cli/bench_workload.h"

namespace loom::bench {
namespace {

WorkloadOptions base(WorkloadKind kind) {
  WorkloadOptions o;
  o.kind = kind;
  o.vocab_size = 49152;
  o.num_requests = 32;
  o.seed = 7;
  return o;
}

void expect_same(const std::vector<BenchRequest>& a, const std::vector<BenchRequest>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].prompt, b[i].prompt) << i;
    EXPECT_EQ(a[i].max_tokens, b[i].max_tokens) << i;
    EXPECT_EQ(a[i].arrival_s, b[i].arrival_s) << i;
    EXPECT_EQ(a[i].group, b[i].group) << i;
    EXPECT_EQ(a[i].tier, b[i].tier) << i;
  }
}

TEST(BenchWorkload, SameSeedSameRequestsForEveryKind) {
  for (WorkloadKind k :
       {WorkloadKind::kFixed, WorkloadKind::kUniform, WorkloadKind::kAnyscale,
        WorkloadKind::kLongPromptMix, WorkloadKind::kTierMix, WorkloadKind::kSharedPrefix}) {
    WorkloadOptions o = base(k);
    o.input_len_max = 300;
    o.output_len = 10;
    o.output_len_max = 40;
    o.request_rate = 3.0;
    o.long_prompt_len = 600;
    o.prefix_len = 100;
    expect_same(make_workload(o), make_workload(o));
  }
}

TEST(BenchWorkload, SeedChangesPrompts) {
  WorkloadOptions a = base(WorkloadKind::kFixed), b = a;
  b.seed = 8;
  EXPECT_NE(make_workload(a)[0].prompt, make_workload(b)[0].prompt);
}

TEST(BenchWorkload, ArrivalRateLeavesPromptsAndLengthsAlone) {
  WorkloadOptions a = base(WorkloadKind::kAnyscale), b = a;
  b.request_rate = 2.5;
  const auto wa = make_workload(a), wb = make_workload(b);
  ASSERT_EQ(wa.size(), wb.size());
  for (size_t i = 0; i < wa.size(); ++i) {
    EXPECT_EQ(wa[i].prompt, wb[i].prompt);
    EXPECT_EQ(wa[i].max_tokens, wb[i].max_tokens);
    EXPECT_EQ(wa[i].arrival_s, 0.0);
  }
  EXPECT_GT(wb.back().arrival_s, 0.0);
}

TEST(BenchWorkload, FixedLengthsAndTokenRange) {
  WorkloadOptions o = base(WorkloadKind::kFixed);
  o.input_len = 50;
  o.output_len = 9;
  o.input_len_max = 500;  // ignored by the fixed workload
  o.min_token_id = 49000;
  const auto w = make_workload(o);
  ASSERT_EQ(w.size(), 32u);
  for (size_t i = 0; i < w.size(); ++i) {
    EXPECT_EQ(w[i].index, static_cast<int32_t>(i));
    EXPECT_EQ(w[i].prompt.size(), 50u);
    EXPECT_EQ(w[i].max_tokens, 9);
    EXPECT_TRUE(w[i].ignore_eos);
    for (TokenId t : w[i].prompt) {
      EXPECT_GE(t, 49000);
      EXPECT_LT(t, 49152);
    }
  }
}

TEST(BenchWorkload, UniformCoversItsRangeInclusive) {
  WorkloadOptions o = base(WorkloadKind::kUniform);
  o.num_requests = 400;
  o.input_len = 10;
  o.input_len_max = 13;
  o.output_len = 2;
  o.output_len_max = 3;
  std::set<size_t> inputs;
  std::set<int32_t> outputs;
  for (const auto& r : make_workload(o)) {
    inputs.insert(r.prompt.size());
    outputs.insert(r.max_tokens);
  }
  EXPECT_EQ(inputs, (std::set<size_t>{10, 11, 12, 13}));
  EXPECT_EQ(outputs, (std::set<int32_t>{2, 3}));
}

// The mean of an exponential(mean m) conditioned on X < c is m - c e^{-c/m} / (1 - e^{-c/m});
// rounding to whole tokens moves it by well under a token.
double truncated_mean(double m, double c) {
  const double e = std::exp(-c / m);
  return m - c * e / (1 - e);
}

TEST(BenchWorkload, AnyscaleShape) {
  for (int32_t cap : {32, 128, 512, 1536}) {
    WorkloadOptions o = base(WorkloadKind::kAnyscale);
    o.num_requests = 4000;
    o.output_cap = cap;
    const auto w = make_workload(o);
    double sum = 0;
    for (const auto& r : w) {
      ASSERT_EQ(r.prompt.size(), 512u);
      ASSERT_GE(r.max_tokens, 1);
      ASSERT_LE(r.max_tokens, cap);
      ASSERT_EQ(r.arrival_s, 0.0);
      ASSERT_TRUE(r.ignore_eos);
      sum += r.max_tokens;
    }
    const double mean = sum / static_cast<double>(w.size());
    const double expected = truncated_mean(128.0, cap + 0.5);
    // Standard error of the mean is below 128 / sqrt(4000) = 2 tokens.
    EXPECT_NEAR(mean, expected, 0.05 * expected + 1.0) << "cap " << cap;
  }
}

TEST(BenchWorkload, PoissonArrivalsHaveTheRate) {
  BenchRng rng(3);
  const auto t = poisson_arrivals(rng, 20000, 4.0, 1.5);
  ASSERT_EQ(t.size(), 20000u);
  EXPECT_GT(t[0], 1.5);
  EXPECT_TRUE(std::is_sorted(t.begin(), t.end()));
  EXPECT_NEAR((t.back() - 1.5) / 20000.0, 0.25, 0.01);
  BenchRng rng2(3);
  const auto burst = poisson_arrivals(rng2, 5, 0.0, 2.0);
  EXPECT_EQ(burst, std::vector<double>(5, 2.0));
}

TEST(BenchWorkload, UniformIntIsInclusiveAndHitsBothEnds) {
  BenchRng rng(11);
  std::set<int64_t> seen;
  for (int i = 0; i < 1000; ++i) {
    const int64_t x = rng.uniform_int(-2, 2);
    ASSERT_GE(x, -2);
    ASSERT_LE(x, 2);
    seen.insert(x);
  }
  EXPECT_EQ(seen.size(), 5u);
  EXPECT_EQ(rng.uniform_int(7, 7), 7);
}

TEST(BenchWorkload, LongPromptMix) {
  WorkloadOptions o = base(WorkloadKind::kLongPromptMix);
  o.num_requests = 10;
  o.input_len = 20;
  o.output_len = 30;
  o.num_long = 3;
  o.long_prompt_len = 3000;
  o.long_output_len = 5;
  o.long_first_s = 1.0;
  o.long_every_s = 2.0;
  const auto w = make_workload(o);
  ASSERT_EQ(w.size(), 13u);
  std::vector<double> long_times;
  int chats = 0;
  for (const auto& r : w) {
    if (r.group == "long") {
      EXPECT_EQ(r.prompt.size(), 3000u);
      EXPECT_EQ(r.max_tokens, 5);
      long_times.push_back(r.arrival_s);
    } else {
      EXPECT_EQ(r.group, "chat");
      EXPECT_EQ(r.prompt.size(), 20u);
      EXPECT_EQ(r.arrival_s, 0.0);
      ++chats;
    }
  }
  EXPECT_EQ(chats, 10);
  EXPECT_EQ(long_times, (std::vector<double>{1.0, 3.0, 5.0}));
  EXPECT_TRUE(std::is_sorted(
      w.begin(), w.end(), [](const auto& a, const auto& b) { return a.arrival_s < b.arrival_s; }));
}

TEST(BenchWorkload, TierMixWithAndWithoutTiers) {
  WorkloadOptions o = base(WorkloadKind::kTierMix);
  o.num_requests = 6;
  o.num_batch = 4;
  o.batch_prompt_len = 100;
  o.batch_output_len = 200;
  o.interactive_start_s = 3.0;
  o.request_rate = 2.0;
  const auto w = make_workload(o);
  ASSERT_EQ(w.size(), 10u);
  for (size_t i = 0; i < 4; ++i) {  // batch jobs arrive first, at t = 0
    EXPECT_EQ(w[i].group, "batch");
    EXPECT_EQ(w[i].tier, "batch");
    EXPECT_EQ(w[i].arrival_s, 0.0);
    EXPECT_EQ(w[i].max_tokens, 200);
  }
  for (size_t i = 4; i < 10; ++i) {
    EXPECT_EQ(w[i].group, "interactive");
    EXPECT_EQ(w[i].tier, "interactive");
    EXPECT_GT(w[i].arrival_s, 3.0);
  }
  o.tiers = false;
  const auto flat = make_workload(o);
  for (size_t i = 0; i < flat.size(); ++i) {
    EXPECT_EQ(flat[i].tier, "");
    EXPECT_EQ(flat[i].group, w[i].group);
    EXPECT_EQ(flat[i].prompt, w[i].prompt);  // only the priority differs
  }
}

TEST(BenchWorkload, SharedPrefix) {
  WorkloadOptions o = base(WorkloadKind::kSharedPrefix);
  o.prefix_len = 64;
  o.input_len = 8;
  const auto w = make_workload(o);
  std::set<std::vector<TokenId>> suffixes;
  for (const auto& r : w) {
    ASSERT_EQ(r.prompt.size(), 72u);
    EXPECT_TRUE(std::equal(r.prompt.begin(), r.prompt.begin() + 64, w[0].prompt.begin()));
    suffixes.insert(std::vector<TokenId>(r.prompt.begin() + 64, r.prompt.end()));
  }
  EXPECT_EQ(suffixes.size(), w.size());
}

TEST(BenchWorkload, ValidateNamesTheProblem) {
  WorkloadOptions o = base(WorkloadKind::kUniform);
  o.input_len = 10;
  o.input_len_max = 5;
  Status s = o.validate();
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().find("input-len-max"), std::string::npos);
  o = base(WorkloadKind::kFixed);
  o.vocab_size = 50;
  EXPECT_FALSE(o.validate().ok());
  o = base(WorkloadKind::kAnyscale);
  o.output_cap = 0;
  EXPECT_FALSE(o.validate().ok());
  EXPECT_TRUE(base(WorkloadKind::kTierMix).validate().ok());
}

TEST(BenchWorkload, ParseNames) {
  EXPECT_EQ(parse_workload("anyscale").value(), WorkloadKind::kAnyscale);
  EXPECT_EQ(parse_workload("shared-prefix").value(), WorkloadKind::kSharedPrefix);
  EXPECT_FALSE(parse_workload("sharegpt").ok());
}

}  // namespace
}  // namespace loom::bench
