// Helpers for the sampler tests: one call to sample_token, a reference softmax in double, and
// empirical draw counts over many steps of fixed seeds (deterministic, so tests cannot flake).
#pragma once

#include <cmath>
#include <cstdint>
#include <map>
#include <vector>

#include "core/sampling_params.h"
#include "sample/sampler.h"

namespace loom::test {

struct History {
  std::vector<TokenId> prompt;
  std::vector<TokenId> output;
  std::vector<TokenId> eos;
};

inline SampleOutput sample_once(const std::vector<float>& logits, const SamplingParams& params,
                                uint64_t seed = 0, int32_t step = 0, const History& h = {}) {
  static thread_local SamplerScratch scratch;
  SampleInput in;
  in.logits = logits.data();
  in.vocab_size = static_cast<int32_t>(logits.size());
  in.params = &params;
  in.prompt = h.prompt;
  in.output = h.output;
  in.eos_ids = h.eos;
  in.seed = seed;
  in.step = step;
  return sample_token(in, scratch);
}

// softmax(logits / temperature) in double, written independently of the sampler.
inline std::vector<double> softmax(const std::vector<float>& logits, double temperature = 1.0) {
  double max_z = -INFINITY;
  for (float l : logits) max_z = std::max(max_z, l / temperature);
  std::vector<double> p(logits.size());
  double sum = 0.0;
  for (size_t i = 0; i < logits.size(); ++i)
    sum += p[i] = std::exp(logits[i] / temperature - max_z);
  for (double& x : p) x /= sum;
  return p;
}

// Logits whose softmax is exactly `probs` (up to rounding): log(p).
inline std::vector<float> logits_of(const std::vector<double>& probs) {
  std::vector<float> l;
  for (double p : probs) l.push_back(p > 0 ? static_cast<float>(std::log(p)) : -INFINITY);
  return l;
}

// Token counts over `num_draws` draws: steps 0..num_draws-1 of `seed`.
inline std::vector<int64_t> draw_counts(const std::vector<float>& logits, const SamplingParams& p,
                                        int32_t num_draws, uint64_t seed = 12345) {
  std::vector<int64_t> counts(logits.size(), 0);
  for (int32_t step = 0; step < num_draws; ++step)
    counts[sample_once(logits, p, seed, step).token]++;
  return counts;
}

// |count - n p| must stay within 5 binomial standard deviations (plus one for tiny p). The
// draws are deterministic, so a pass is a pass forever; 5 sigma keeps the bound meaningful.
inline double binomial_tolerance(int64_t n, double p) {
  return 5.0 * std::sqrt(static_cast<double>(n) * p * (1.0 - p)) + 1.0;
}

}  // namespace loom::test
