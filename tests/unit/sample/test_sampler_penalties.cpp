// Repetition, presence and frequency penalties and min_tokens masking, checked against the
// formulas on small vocabularies. The processed logits are read back through the logprobs
// (log-softmax of the processed logits): l'_i = lp_i - lp_ref + l_ref for an untouched token ref.
#include <gtest/gtest.h>

#include <cmath>

#include "sampler_test_util.h"

namespace loom {
namespace {

using test::History;
using test::sample_once;

// The processed logits for `logits` whose last entry is untouched by every penalty.
std::vector<double> processed_logits(const std::vector<float>& logits, SamplingParams p,
                                     const History& h) {
  p.temperature = 0.0f;
  p.logprobs = static_cast<int32_t>(logits.size());
  const SampleOutput out = sample_once(logits, p, 0, 0, h);
  std::vector<double> lp(logits.size(), NAN);
  for (const auto& e : out.logprobs.top) lp[e.token] = e.logprob;
  const size_t ref = logits.size() - 1;
  std::vector<double> result;
  for (size_t i = 0; i < logits.size(); ++i) result.push_back(lp[i] - lp[ref] + logits[ref]);
  return result;
}

void expect_near_all(const std::vector<double>& got, const std::vector<double>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-5) << "token " << i;
}

TEST(SamplerPenalties, RepetitionDividesPositiveAndMultipliesNegative) {
  const std::vector<float> logits = {2.0f, -1.0f, 0.5f, 3.0f, 0.0f, 1.0f};
  SamplingParams p;
  p.repetition_penalty = 2.0f;
  History h;
  h.prompt = {0, 4, 0};  // duplicates count once; a zero logit stays zero
  h.output = {1, 1, 0};
  expect_near_all(processed_logits(logits, p, h), {1.0, -2.0, 0.5, 3.0, 0.0, 1.0});
  p.repetition_penalty = 0.5f;  // < 1 encourages repetition
  expect_near_all(processed_logits(logits, p, h), {4.0, -0.5, 0.5, 3.0, 0.0, 1.0});
}

TEST(SamplerPenalties, RepetitionChangesGreedyChoice) {
  const std::vector<float> logits = {2.0f, 1.5f};
  SamplingParams p;
  p.temperature = 0.0f;
  EXPECT_EQ(sample_once(logits, p).token, 0);
  p.repetition_penalty = 2.0f;
  History h;
  h.prompt = {0};
  EXPECT_EQ(sample_once(logits, p, 0, 0, h).token, 1);
}

TEST(SamplerPenalties, PresenceAndFrequencyFollowOpenAiFormula) {
  const std::vector<float> logits = {1.0f, 1.0f, 1.0f, -1.0f, 0.0f};
  SamplingParams p;
  p.presence_penalty = 0.5f;
  p.frequency_penalty = 0.25f;
  History h;
  h.prompt = {1, 1, 1};  // the prompt does not count for these penalties
  h.output = {0, 3, 0, 2, 0};
  // l - count * 0.25 - 0.5 for each output token.
  expect_near_all(processed_logits(logits, p, h),
                  {1.0 - 0.75 - 0.5, 1.0, 1.0 - 0.25 - 0.5, -1.0 - 0.25 - 0.5, 0.0});
  p.presence_penalty = -1.0f;  // negative values encourage
  p.frequency_penalty = 0.0f;
  expect_near_all(processed_logits(logits, p, h), {2.0, 1.0, 2.0, 0.0, 0.0});
}

TEST(SamplerPenalties, RepetitionAppliesBeforePresenceAndFrequency) {
  const std::vector<float> logits = {2.0f, 0.0f};
  SamplingParams p;
  p.repetition_penalty = 2.0f;
  p.frequency_penalty = 0.5f;
  p.presence_penalty = 0.1f;
  History h;
  h.output = {0, 0};
  // (2 / 2) - 2 * 0.5 - 0.1 = -0.1; the other order would give (2 - 1 - 0.1) / 2 = 0.45.
  expect_near_all(processed_logits(logits, p, h), {-0.1, 0.0});
}

TEST(SamplerPenalties, ScratchIsCleanBetweenCalls) {
  // The per-vocabulary marks and counts must be reset: the same call twice gives the same result,
  // and a later call with a different history is not affected by the earlier one.
  const std::vector<float> logits = {1.0f, 1.0f, 1.0f, 0.0f};
  SamplingParams p;
  p.repetition_penalty = 2.0f;
  p.frequency_penalty = 1.0f;
  History h1;
  h1.output = {0, 0, 1};
  const auto first = processed_logits(logits, p, h1);
  expect_near_all(processed_logits(logits, p, h1), first);
  History h2;
  h2.output = {2};
  expect_near_all(processed_logits(logits, p, h2), {1.0, 1.0, 0.5 - 1.0, 0.0});
}

TEST(SamplerPenalties, OutOfVocabularyHistoryIsIgnored) {
  const std::vector<float> logits = {1.0f, 0.0f};
  SamplingParams p;
  p.repetition_penalty = 2.0f;
  p.presence_penalty = 1.0f;
  History h;
  h.prompt = {-1, 7};
  h.output = {2, 1000000};
  h.eos = {5};
  p.min_tokens = 3;
  expect_near_all(processed_logits(logits, p, h), {1.0, 0.0});
}

TEST(SamplerMinTokens, MasksEosAndStopTokenIdsUntilReached) {
  const std::vector<float> logits = {0.0f, 5.0f, 1.0f, 4.0f};
  SamplingParams p;
  p.temperature = 0.0f;
  p.min_tokens = 2;
  p.stop_token_ids = {3};
  p.logprobs = 0;
  History h;
  h.eos = {1};
  h.output = {2};  // one token so far: EOS (1) and the stop id (3) are masked
  SampleOutput out = sample_once(logits, p, 0, 1, h);
  EXPECT_EQ(out.token, 2);
  // The masked ones carry no mass: only ids 0 and 2 share the softmax.
  EXPECT_NEAR(out.logprobs.sampled.logprob, 1.0 - std::log(1.0 + std::exp(1.0)), 1e-6);
  h.output = {2, 2};  // min_tokens reached
  EXPECT_EQ(sample_once(logits, p, 0, 2, h).token, 1);

  // Sampling never draws a masked id either.
  p.temperature = 1.0f;
  h.output = {2};
  for (int32_t step = 0; step < 500; ++step) {
    const TokenId t = sample_once(logits, p, 42, step, h).token;
    EXPECT_TRUE(t == 0 || t == 2) << t;
  }
}

TEST(SamplerMinTokens, MaskedTokensAreNotListedInTopLogprobs) {
  const std::vector<float> logits = {0.0f, 5.0f, 1.0f, 4.0f};
  SamplingParams p;
  p.temperature = 0.0f;
  p.min_tokens = 1;
  p.logprobs = 4;
  History h;
  h.eos = {1, 3};
  const SampleOutput out = sample_once(logits, p, 0, 0, h);
  ASSERT_EQ(out.logprobs.top.size(), 2u);
  EXPECT_EQ(out.logprobs.top[0].token, 2);
  EXPECT_EQ(out.logprobs.top[1].token, 0);
  EXPECT_NEAR(std::exp(out.logprobs.top[0].logprob) + std::exp(out.logprobs.top[1].logprob), 1.0,
              1e-6);
}

}  // namespace
}  // namespace loom
