// Temperature, top-k, top-p and min-p, observed through the tokens that many draws produce:
// a filtered-out token must never appear, and every kept token (none rarer than a few percent)
// must appear in thousands of draws with its renormalized frequency.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <set>

#include "sampler_test_util.h"

namespace loom {
namespace {

using test::draw_counts;
using test::logits_of;

std::set<TokenId> drawn(const std::vector<int64_t>& counts) {
  std::set<TokenId> s;
  for (size_t i = 0; i < counts.size(); ++i)
    if (counts[i] > 0) s.insert(static_cast<TokenId>(i));
  return s;
}

// Checks empirical frequencies against `expected` probabilities (which sum to 1).
void expect_frequencies(const std::vector<int64_t>& counts, const std::vector<double>& expected) {
  const int64_t n = std::accumulate(counts.begin(), counts.end(), int64_t{0});
  ASSERT_EQ(counts.size(), expected.size());
  for (size_t i = 0; i < counts.size(); ++i) {
    EXPECT_NEAR(static_cast<double>(counts[i]), n * expected[i],
                test::binomial_tolerance(n, expected[i]))
        << "token " << i << " expected p=" << expected[i];
  }
}

TEST(SamplerTemperature, FrequenciesFollowSoftmaxOfScaledLogits) {
  const std::vector<float> logits = {1.0f, 2.0f, 0.0f, -1.0f, 1.5f};
  for (float t : {0.5f, 1.0f, 2.0f}) {
    SamplingParams p;
    p.temperature = t;
    const auto counts = draw_counts(logits, p, 40000, 1000 + static_cast<uint64_t>(t * 10));
    expect_frequencies(counts, test::softmax(logits, t));
  }
}

TEST(SamplerTemperature, TinyTemperatureIsNearlyGreedy) {
  const std::vector<float> logits = {1.0f, 1.1f, 0.9f};
  SamplingParams p;
  p.temperature = 1e-4f;
  const auto counts = draw_counts(logits, p, 2000);
  EXPECT_EQ(counts[1], 2000);
}

TEST(SamplerTopK, KeepsExactlyKWithRenormalizedFrequencies) {
  const std::vector<double> probs = {0.05, 0.3, 0.1, 0.25, 0.2, 0.1};
  SamplingParams p;
  p.top_k = 3;  // keeps ids 1, 3, 4 (0.3, 0.25, 0.2)
  const auto counts = draw_counts(logits_of(probs), p, 30000);
  EXPECT_EQ(drawn(counts), (std::set<TokenId>{1, 3, 4}));
  expect_frequencies(counts, {0.0, 0.3 / 0.75, 0.0, 0.25 / 0.75, 0.2 / 0.75, 0.0});
}

TEST(SamplerTopK, TiesAtTheBoundaryGoToLowerIds) {
  const std::vector<float> logits = {0.0f, 1.0f, 1.0f, 2.0f, 1.0f};
  SamplingParams p;
  p.top_k = 3;  // 3, then two of the three 1.0 ties: 1 and 2
  EXPECT_EQ(drawn(draw_counts(logits, p, 3000)), (std::set<TokenId>{1, 2, 3}));
  p.top_k = 1;
  EXPECT_EQ(drawn(draw_counts(logits, p, 500)), (std::set<TokenId>{3}));
  p.top_k = 5;  // == vocab: no filtering
  EXPECT_EQ(drawn(draw_counts(logits, p, 3000)).size(), 5u);
}

TEST(SamplerTopK, LargeVocabKeepsTheKLargest) {
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> dist(-2.0f, 2.0f);
  std::vector<float> logits(49152);
  for (float& l : logits) l = dist(rng);
  SamplingParams p;
  p.top_k = 50;
  std::vector<TokenId> ids(logits.size());
  std::iota(ids.begin(), ids.end(), 0);
  std::stable_sort(ids.begin(), ids.end(),
                   [&](TokenId a, TokenId b) { return logits[a] > logits[b]; });
  const std::set<TokenId> top50(ids.begin(), ids.begin() + 50);
  const auto seen = drawn(draw_counts(logits, p, 3000));
  EXPECT_EQ(seen, top50);  // each has p ~ 1/50..1/100: all appear in 3000 draws
}

TEST(SamplerTopP, KeepsTheMinimalNucleus) {
  // Sorted probabilities 0.5, 0.3, 0.15, 0.05 on shuffled ids.
  const std::vector<double> probs = {0.15, 0.5, 0.05, 0.3};
  const auto logits = logits_of(probs);
  struct Case {
    float top_p;
    std::set<TokenId> kept;
  };
  for (const Case& c : {Case{0.3f, {1}}, Case{0.5f, {1}}, Case{0.51f, {1, 3}}, Case{0.8f, {1, 3}},
                        Case{0.81f, {0, 1, 3}}, Case{0.95f, {0, 1, 3}}, Case{0.96f, {0, 1, 2, 3}},
                        Case{1.0f, {0, 1, 2, 3}}}) {
    SamplingParams p;
    p.top_p = c.top_p;
    EXPECT_EQ(drawn(draw_counts(logits, p, 4000)), c.kept) << "top_p=" << c.top_p;
  }
  SamplingParams p;
  p.top_p = 0.8f;
  expect_frequencies(draw_counts(logits, p, 30000), {0.0, 0.5 / 0.8, 0.0, 0.3 / 0.8});
}

TEST(SamplerTopP, AppliesAfterTopKOnRenormalizedProbabilities) {
  // top_k = 2 leaves {0.4, 0.3} -> renormalized {4/7, 3/7}; top_p = 0.55 keeps only the first.
  // Without renormalization 0.4 < 0.55 would have kept both.
  const std::vector<double> probs = {0.4, 0.3, 0.2, 0.1};
  SamplingParams p;
  p.top_k = 2;
  p.top_p = 0.55f;
  EXPECT_EQ(drawn(draw_counts(logits_of(probs), p, 3000)), (std::set<TokenId>{0}));
}

TEST(SamplerTopP, LargeVocabWithHeavyTailMatchesReference) {
  // 10 head tokens at logit 10 and a flat tail at 0: the head holds ~82% of the mass, so a 0.9
  // nucleus needs head + the lowest-id ~22,000 tail tokens (the thresholded prefilter must widen).
  const int32_t vocab = 49152;
  std::vector<float> logits(vocab, 0.0f);
  for (int32_t i = 0; i < 10; ++i) logits[i * 4000 + 17] = 10.0f;
  // Reference: full sort in double (descending, ties by id), smallest prefix reaching 0.9.
  const auto probs = test::softmax(logits);
  std::vector<TokenId> ids(vocab);
  std::iota(ids.begin(), ids.end(), 0);
  std::stable_sort(ids.begin(), ids.end(),
                   [&](TokenId a, TokenId b) { return probs[a] > probs[b]; });
  double cum = 0.0;
  size_t nucleus = 0;
  while (cum < 0.9) cum += probs[ids[nucleus++]];
  const TokenId last_kept = ids[nucleus - 1];
  ASSERT_GT(nucleus, 20000u);

  SamplingParams p;
  p.top_p = 0.9f;
  const auto counts = draw_counts(logits, p, 2000);
  TokenId max_tail = -1;
  int64_t head = 0;
  for (TokenId t = 0; t < vocab; ++t) {
    if (counts[t] == 0) continue;
    if (logits[t] == 10.0f)
      head += counts[t];
    else
      max_tail = std::max(max_tail, t);
  }
  // Float vs double rounding may move the boundary by a token or two, never more.
  EXPECT_LE(max_tail, last_kept + 2);
  EXPECT_GT(max_tail, last_kept - 2000);  // the tail right up to the boundary is used
  const double head_p = 10.0 * probs[17] / cum;
  EXPECT_NEAR(static_cast<double>(head), 2000 * head_p, test::binomial_tolerance(2000, head_p));
}

TEST(SamplerMinP, DropsTokensBelowFractionOfMax) {
  const std::vector<double> probs = {0.06, 0.5, 0.1, 0.3, 0.04};
  SamplingParams p;
  p.min_p = 0.15f;  // threshold 0.075: keeps 0.5, 0.3, 0.1
  const auto counts = draw_counts(logits_of(probs), p, 30000);
  EXPECT_EQ(drawn(counts), (std::set<TokenId>{1, 2, 3}));
  expect_frequencies(counts, {0.0, 0.5 / 0.9, 0.1 / 0.9, 0.3 / 0.9, 0.0});
  p.min_p = 1.0f;  // only the max
  EXPECT_EQ(drawn(draw_counts(logits_of(probs), p, 1000)), (std::set<TokenId>{1}));
}

TEST(SamplerMinP, UsesTemperatureScaledProbabilities) {
  // p = {0.64, 0.16, 0.04, 0.01}/0.85. Relative to the max: T=1 -> 1, .25, .0625, .0156;
  // T=2 (square roots) -> 1, .5, .25, .125. min_p = 0.2 keeps 2 tokens at T=1, 3 at T=2.
  const std::vector<double> probs = {0.64 / 0.85, 0.16 / 0.85, 0.04 / 0.85, 0.01 / 0.85};
  SamplingParams p;
  p.min_p = 0.2f;
  EXPECT_EQ(drawn(draw_counts(logits_of(probs), p, 3000)), (std::set<TokenId>{0, 1}));
  p.temperature = 2.0f;
  EXPECT_EQ(drawn(draw_counts(logits_of(probs), p, 3000)), (std::set<TokenId>{0, 1, 2}));
}

TEST(SamplerFilters, CombinedFilterFrequencies) {
  // temperature 0.5 squares the probabilities: .09 .0025 .0625 .04 .0225 .0025.
  // top-k 4 keeps ids 0, 2, 3, 4; renormalized .4186 .2907 .1860 .1047, cumulative .8953 after
  // three, so top-p 0.9 needs all four; min-p 0.3 (relative weights 1 .694 .444 .25) drops id 4.
  const std::vector<double> probs = {0.3, 0.05, 0.25, 0.2, 0.15, 0.05};
  SamplingParams p;
  p.temperature = 0.5f;
  p.top_k = 4;
  p.top_p = 0.9f;
  p.min_p = 0.3f;
  const auto counts = draw_counts(logits_of(probs), p, 40000, 777);
  const double kept = 0.09 + 0.0625 + 0.04;
  expect_frequencies(counts, {0.09 / kept, 0.0, 0.0625 / kept, 0.04 / kept, 0.0, 0.0});
}

}  // namespace
}  // namespace loom
