// The counter-based draw: same (seed, step) -> same token, whatever else happens; different seeds
// and steps give unrelated, uniform numbers.
#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "sampler_test_util.h"

namespace loom {
namespace {

using test::sample_once;

std::vector<float> flat_logits(int32_t vocab) {
  return std::vector<float>(vocab, 0.0f);
}

TEST(SamplerSeed, SameSeedAndStepGiveSameToken) {
  const auto logits = flat_logits(1000);
  SamplingParams p;
  p.top_p = 0.95f;
  for (int32_t step = 0; step < 50; ++step) {
    const TokenId a = sample_once(logits, p, 2024, step).token;
    sample_once(logits, p, 7, step + 1);  // unrelated work in between (another "sequence")
    SamplerScratch fresh;                 // and a fresh scratch, as after a preemption
    SampleInput in;
    in.logits = logits.data();
    in.vocab_size = 1000;
    in.params = &p;
    in.seed = 2024;
    in.step = step;
    EXPECT_EQ(sample_token(in, fresh).token, a);
  }
}

TEST(SamplerSeed, DifferentSeedsGiveDifferentSequences) {
  const auto logits = flat_logits(1000);
  SamplingParams p;
  std::set<std::vector<TokenId>> sequences;
  for (uint64_t seed = 0; seed < 20; ++seed) {
    std::vector<TokenId> seq;
    for (int32_t step = 0; step < 10; ++step)
      seq.push_back(sample_once(logits, p, seed, step).token);
    sequences.insert(seq);
  }
  EXPECT_EQ(sequences.size(), 20u);
  // And the steps of one seed are not all the same token.
  std::set<TokenId> tokens;
  for (int32_t step = 0; step < 10; ++step) tokens.insert(sample_once(logits, p, 5, step).token);
  EXPECT_GT(tokens.size(), 5u);
}

// Counts of u in 20 equal bins, for consecutive seeds at one step and consecutive steps of one
// seed (the two ways the engine walks the counter): each bin within 5 binomial sigma.
TEST(SamplerSeed, UniformNumbersAreUniform) {
  constexpr int kBins = 20;
  constexpr int kDraws = 100000;
  for (int walk = 0; walk < 2; ++walk) {
    std::vector<int64_t> bins(kBins, 0);
    double sum = 0.0;
    for (int i = 0; i < kDraws; ++i) {
      const double u =
          walk == 0 ? sample_uniform(static_cast<uint64_t>(i), 3) : sample_uniform(99, i);
      ASSERT_GE(u, 0.0);
      ASSERT_LT(u, 1.0);
      sum += u;
      bins[static_cast<int>(u * kBins)]++;
    }
    for (int64_t b : bins)
      EXPECT_NEAR(b, kDraws / kBins, test::binomial_tolerance(kDraws, 1.0 / kBins));
    EXPECT_NEAR(sum / kDraws, 0.5, 5.0 * std::sqrt(1.0 / 12.0 / kDraws));
  }
  // Neighbouring seeds and steps are not correlated: u(s, t) vs u(s + 1, t) and u(s, t + 1).
  double cov_seed = 0.0, cov_step = 0.0;
  for (int i = 0; i < kDraws; ++i) {
    const double u = sample_uniform(static_cast<uint64_t>(i), 0) - 0.5;
    cov_seed += u * (sample_uniform(static_cast<uint64_t>(i) + 1, 0) - 0.5);
    cov_step += u * (sample_uniform(static_cast<uint64_t>(i), 1) - 0.5);
  }
  // Var(u) = 1/12; the product of independent centred uniforms has sd 1/12.
  EXPECT_NEAR(cov_seed / kDraws, 0.0, 5.0 / 12.0 / std::sqrt(kDraws));
  EXPECT_NEAR(cov_step / kDraws, 0.0, 5.0 / 12.0 / std::sqrt(kDraws));
}

TEST(SamplerSeed, EmpiricalFrequenciesAcrossSeedsFollowTheDistribution) {
  // Each of many seeds draws its first token (step 0): across seeds, the tokens follow the
  // distribution too (what many requests with their own seeds see).
  const std::vector<float> logits = {0.0f, 1.0f, 2.0f, -0.5f};
  const auto probs = test::softmax(logits);
  SamplingParams p;
  constexpr int kSeeds = 40000;
  std::vector<int64_t> counts(logits.size(), 0);
  for (int s = 0; s < kSeeds; ++s)
    counts[sample_once(logits, p, static_cast<uint64_t>(s) * 7919, 0).token]++;
  for (size_t i = 0; i < counts.size(); ++i)
    EXPECT_NEAR(counts[i], kSeeds * probs[i], test::binomial_tolerance(kSeeds, probs[i]));
}

}  // namespace
}  // namespace loom
