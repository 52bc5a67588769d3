// Greedy decoding and logprobs.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "sampler_test_util.h"

namespace loom {
namespace {

using test::sample_once;

SamplingParams greedy_params() {
  SamplingParams p;
  p.temperature = 0.0f;
  return p;
}

TEST(SamplerGreedy, PicksArgmaxOnLargeVocab) {
  std::mt19937 rng(7);
  std::normal_distribution<float> dist(0.0f, 3.0f);
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<float> logits(49152);
    for (float& l : logits) l = dist(rng);
    const auto expected = std::max_element(logits.begin(), logits.end()) - logits.begin();
    EXPECT_EQ(sample_once(logits, greedy_params()).token, expected);
  }
}

TEST(SamplerGreedy, TiesGoToLowestId) {
  std::vector<float> logits(1000, 0.0f);
  logits[700] = 5.0f;
  logits[123] = 5.0f;
  logits[999] = 5.0f;
  EXPECT_EQ(sample_once(logits, greedy_params()).token, 123);
  // Tail positions (not a multiple of the vector width) are covered too.
  std::vector<float> odd(13, 1.0f);
  odd[12] = 2.0f;
  EXPECT_EQ(sample_once(odd, greedy_params()).token, 12);
  odd[11] = 2.0f;
  EXPECT_EQ(sample_once(odd, greedy_params()).token, 11);
}

TEST(SamplerGreedy, IgnoresSeedAndStep) {
  std::vector<float> logits = {0.1f, 0.9f, 0.3f};
  for (uint64_t seed : {0ULL, 1ULL, 99ULL})
    for (int32_t step : {0, 5, 1000})
      EXPECT_EQ(sample_once(logits, greedy_params(), seed, step).token, 1);
}

TEST(SamplerGreedy, NanNeverWinsAndInfDoes) {
  std::vector<float> logits = {NAN, 1.0f, NAN, 0.5f};
  EXPECT_EQ(sample_once(logits, greedy_params()).token, 1);
  logits[3] = INFINITY;
  EXPECT_EQ(sample_once(logits, greedy_params()).token, 3);
  SamplingParams sampled;  // temperature 1
  logits = {NAN, 1.0f, NAN, 0.5f};
  for (int32_t step = 0; step < 200; ++step) {
    const TokenId t = sample_once(logits, sampled, 3, step).token;
    EXPECT_TRUE(t == 1 || t == 3) << t;
  }
}

TEST(SamplerGreedy, AllMaskedFallsBackToRawArgmax) {
  // Every token is an EOS id under min_tokens: the raw argmax is the only sane answer.
  std::vector<float> logits = {1.0f, 3.0f, 2.0f};
  SamplingParams p = greedy_params();
  p.min_tokens = 5;
  test::History h;
  h.eos = {0, 1, 2};
  EXPECT_EQ(sample_once(logits, p, 0, 0, h).token, 1);
  p.temperature = 1.0f;
  EXPECT_EQ(sample_once(logits, p, 0, 0, h).token, 1);
}

// log-softmax in double, independent of the sampler.
std::vector<double> log_softmax(const std::vector<float>& l) {
  double m = -INFINITY;
  for (float x : l) m = std::max<double>(m, x);
  double s = 0.0;
  for (float x : l) s += std::exp(x - m);
  std::vector<double> out;
  for (float x : l) out.push_back(x - m - std::log(s));
  return out;
}

TEST(SamplerLogprobs, MatchLogSoftmaxAndSumToOne) {
  std::mt19937 rng(11);
  std::normal_distribution<float> dist(0.0f, 2.0f);
  std::vector<float> logits(20);
  for (float& l : logits) l = dist(rng);
  SamplingParams p = greedy_params();
  p.logprobs = 20;  // the whole vocabulary
  const SampleOutput out = sample_once(logits, p);
  const auto ref = log_softmax(logits);
  ASSERT_EQ(out.logprobs.top.size(), 20u);
  double sum = 0.0;
  for (const auto& e : out.logprobs.top) {
    sum += std::exp(static_cast<double>(e.logprob));
    EXPECT_NEAR(e.logprob, ref[e.token], 1e-5);
  }
  EXPECT_NEAR(sum, 1.0, 1e-5);
  EXPECT_EQ(out.logprobs.sampled.token, out.token);
  EXPECT_NEAR(out.logprobs.sampled.logprob, ref[out.token], 1e-5);
  for (size_t i = 1; i < out.logprobs.top.size(); ++i)
    EXPECT_GE(out.logprobs.top[i - 1].logprob, out.logprobs.top[i].logprob);
}

TEST(SamplerLogprobs, TopNSortedWithTiesById) {
  std::vector<float> logits = {1.0f, 3.0f, 2.0f, 3.0f, 0.0f, 2.0f, 3.0f};
  SamplingParams p = greedy_params();
  p.logprobs = 5;
  const SampleOutput out = sample_once(logits, p);
  const std::vector<TokenId> expected = {1, 3, 6, 2, 5};
  ASSERT_EQ(out.logprobs.top.size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) EXPECT_EQ(out.logprobs.top[i].token, expected[i]);
  EXPECT_EQ(out.logprobs.top[0].logprob, out.logprobs.top[2].logprob);
}

TEST(SamplerLogprobs, TopNOnLargeVocabMatchesFullSort) {
  std::mt19937 rng(5);
  std::normal_distribution<float> dist(0.0f, 4.0f);
  std::vector<float> logits(49152);
  for (float& l : logits) l = dist(rng);
  SamplingParams p;  // sampled, temperature 1
  p.logprobs = 20;
  const SampleOutput out = sample_once(logits, p, 1, 2);
  std::vector<TokenId> ids(logits.size());
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<TokenId>(i);
  std::stable_sort(ids.begin(), ids.end(),
                   [&](TokenId a, TokenId b) { return logits[a] > logits[b]; });
  const auto ref = log_softmax(logits);
  ASSERT_EQ(out.logprobs.top.size(), 20u);
  for (size_t i = 0; i < 20; ++i) {
    EXPECT_EQ(out.logprobs.top[i].token, ids[i]);
    EXPECT_NEAR(out.logprobs.top[i].logprob, ref[ids[i]], 1e-4);
  }
  EXPECT_NEAR(out.logprobs.sampled.logprob, ref[out.token], 1e-4);
}

TEST(SamplerLogprobs, ZeroMeansSampledOnlyAndNegativeMeansNone) {
  std::vector<float> logits = {0.0f, 1.0f};
  SamplingParams p = greedy_params();
  p.logprobs = 0;
  SampleOutput out = sample_once(logits, p);
  EXPECT_TRUE(out.logprobs.top.empty());
  EXPECT_NEAR(out.logprobs.sampled.logprob, std::log(std::exp(1.0) / (1.0 + std::exp(1.0))), 1e-6);
  p.logprobs = -1;
  out = sample_once(logits, p);
  EXPECT_TRUE(out.logprobs.top.empty());
  EXPECT_EQ(out.logprobs.sampled.logprob, 0.0f);
}

TEST(SamplerLogprobs, TakenBeforeTemperatureAndFilters) {
  // The documented choice: logprobs describe the penalized model distribution, so temperature
  // and top-k do not change them, and a token outside top-k keeps its true logprob.
  std::vector<float> logits = {0.5f, 2.0f, 1.0f, -1.0f};
  SamplingParams p;
  p.temperature = 0.3f;
  p.top_k = 1;
  p.logprobs = 4;
  const SampleOutput out = sample_once(logits, p, 9, 0);
  EXPECT_EQ(out.token, 1);
  const auto ref = log_softmax(logits);
  for (const auto& e : out.logprobs.top) EXPECT_NEAR(e.logprob, ref[e.token], 1e-6);
}

}  // namespace
}  // namespace loom
