#include "sample/sampler.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <limits>

#include "sample/uniform.h"
#include "sample/vec_math.h"
#include "util/check.h"

namespace loom {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Top-p keeps a prefix whose probability reaches top_p minus this much, so that a hand-made
// distribution like {0.5, 0.3, 0.2} with top_p = 0.8 keeps two tokens despite float rounding.
constexpr double kTopPSlack = 1e-6;

// NaN never wins (-inf); +inf becomes the largest finite value so that differences stay finite.
inline float clean(float x) {
  if (std::isnan(x)) return kNegInf;
  return x > FLT_MAX ? FLT_MAX : x;
}

inline bool in_vocab(TokenId t, int32_t vocab_size) {
  return t >= 0 && t < vocab_size;
}

bool repetition_active(const SampleInput& in) {
  return in.params->repetition_penalty != 1.0f && (!in.prompt.empty() || !in.output.empty());
}
bool presence_frequency_active(const SampleInput& in) {
  const SamplingParams& p = *in.params;
  return (p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f) && !in.output.empty();
}
bool min_tokens_active(const SampleInput& in) {
  const SamplingParams& p = *in.params;
  return static_cast<int64_t>(in.output.size()) < p.min_tokens &&
         (!in.eos_ids.empty() || !p.stop_token_ids.empty());
}

// Steps 1-3 of the pipeline. Returns the logits to sample from: the input row itself when no
// processor applies (the common greedy case pays no copy), else scratch.processed.
const float* apply_processors(const SampleInput& in, SamplerScratch& s) {
  const bool repetition = repetition_active(in);
  const bool presence_frequency = presence_frequency_active(in);
  const bool min_tokens = min_tokens_active(in);
  if (!repetition && !presence_frequency && !min_tokens) return in.logits;

  const int32_t vocab = in.vocab_size;
  const SamplingParams& p = *in.params;
  s.processed.resize(vocab);
  std::memcpy(s.processed.data(), in.logits, sizeof(float) * vocab);
  float* l = s.processed.data();

  if (repetition) {
    if (static_cast<int32_t>(s.seen.size()) < vocab) s.seen.assign(vocab, 0);
    const float r = p.repetition_penalty;
    auto penalize = [&](std::span<const TokenId> tokens) {
      for (TokenId t : tokens) {
        if (!in_vocab(t, vocab) || s.seen[t]) continue;
        s.seen[t] = 1;
        s.touched.push_back(t);
        l[t] = l[t] > 0.0f ? l[t] / r : l[t] * r;
      }
    };
    penalize(in.prompt);
    penalize(in.output);
    for (TokenId t : s.touched) s.seen[t] = 0;
    s.touched.clear();
  }

  if (presence_frequency) {
    if (static_cast<int32_t>(s.counts.size()) < vocab) s.counts.assign(vocab, 0);
    for (TokenId t : in.output) {
      if (!in_vocab(t, vocab)) continue;
      if (s.counts[t]++ == 0) s.touched.push_back(t);
    }
    for (TokenId t : s.touched) {
      l[t] -= static_cast<float>(s.counts[t]) * p.frequency_penalty;
      l[t] -= p.presence_penalty;  // every touched token occurs at least once
      s.counts[t] = 0;
    }
    s.touched.clear();
  }

  if (min_tokens) {
    for (TokenId t : in.eos_ids) {
      if (in_vocab(t, vocab)) l[t] = kNegInf;
    }
    for (TokenId t : p.stop_token_ids) {
      if (in_vocab(t, vocab)) l[t] = kNegInf;
    }
  }
  return l;
}

// Log-softmax of `logits` (after the processors) for the sampled token and the top-n.
void fill_logprobs(const float* logits, int32_t vocab, int32_t top_n, TokenId token,
                   TokenLogprobs& out) {
  const float max_logit = vec::max_ignoring_nan(logits, vocab);
  double log_z = std::numeric_limits<double>::infinity();  // all masked: every logprob -inf
  if (max_logit > kNegInf) {
    log_z = double(max_logit) + std::log(vec::exp_shifted(logits, nullptr, vocab, max_logit));
  }
  auto logprob = [&](float logit) { return static_cast<float>(double(logit) - log_z); };

  out.sampled = {token, logprob(clean(logits[token]))};
  // Top-n by a single scan with a sorted array of at most top_n (<= 20) entries. Scanning ids
  // upward and replacing only on a strictly larger value sends ties to the lower id.
  std::vector<TokenLogprob>& top = out.top;
  top.clear();
  if (top_n <= 0) return;
  top.reserve(top_n);
  // Masked (-inf) and NaN entries are never listed: first_greater skips them.
  for (int32_t i = 0;; ++i) {
    const bool full = static_cast<int32_t>(top.size()) == top_n;
    i = vec::first_greater(logits, i, vocab, full ? top.back().logprob : kNegInf);
    if (i >= vocab) break;
    if (full) top.pop_back();
    const float v = clean(logits[i]);
    auto pos = std::upper_bound(top.begin(), top.end(), v, [](float value, const TokenLogprob& e) {
      return value > e.logprob;
    });
    top.insert(pos, TokenLogprob{i, v});  // logprob holds the logit until the loop ends
  }
  for (TokenLogprob& e : top) e.logprob = logprob(e.logprob);
}

// Tokens with w >= the returned threshold hold the answer of select_largest(target, by_mass):
// they are a prefix of the descending order, so once they hold `target` (k tokens, or the mass)
// the rest can be left out. Each try is one vectorized pass; most rows stop at the first.
float prefilter_threshold(const float* w, int32_t vocab, double target, bool by_mass) {
  constexpr float kThresholds[] = {1e-2f, 1e-4f, 1e-8f};
  for (float t : kThresholds) {
    int64_t count = 0;
    const double mass = vec::sum_at_least(w, vocab, t, &count);
    if ((by_mass ? mass : static_cast<double>(count)) >= target) return t;
  }
  return FLT_TRUE_MIN;  // every token with a nonzero weight
}

// Step 5: temperature, top-k, top-p, min-p and the draw. Returns -1 if every token is masked.
TokenId sample_filtered(const float* logits, int32_t vocab, const SamplingParams& p, double u,
                        SamplerScratch& s) {
  s.weights.resize(vocab);
  float* w = s.weights.data();
  const float max_z = vec::scale_clean_max(logits, w, vocab, 1.0f / p.temperature);
  if (!(max_z > kNegInf)) return -1;
  // w = exp(z - max z): the best token has w = 1 exactly and survives every filter, so min-p
  // (prob < min_p * max prob) is simply w < min_p, whatever was renormalized before it.
  vec::exp_shifted(w, w, vocab, max_z);
  const float min_w = std::max(p.min_p, FLT_TRUE_MIN);  // zero weights can never be drawn
  const bool top_k = p.top_k > 0 && p.top_k < vocab;
  const bool top_p = p.top_p < 1.0f;

  if (!top_k && !top_p) {  // draw over the row in id order, no candidate list
    const double total = vec::sum_at_least(w, vocab, min_w, nullptr);
    return vec::find_cumulative(w, vocab, min_w, u * total);
  }

  std::vector<WeightedToken>& c = s.candidates;
  c.resize(vocab);
  size_t n = 0;
  if (top_k) {
    n = vec::gather_at_least(w, vocab, prefilter_threshold(w, vocab, p.top_k, false), c.data());
    if (static_cast<size_t>(p.top_k) < n) {
      n = select_largest(std::span(c.data(), n), p.top_k, /*by_mass=*/false);
    }
  }
  if (top_p) {
    // top-p renormalizes over what top-k kept (or over the whole row).
    double mass = 0.0;
    if (top_k) {
      for (size_t i = 0; i < n; ++i) mass += c[i].w;
    } else {
      mass = vec::sum_at_least(w, vocab, FLT_TRUE_MIN, nullptr);
    }
    const double need = (static_cast<double>(p.top_p) - kTopPSlack) * mass;
    if (!top_k) {
      n = vec::gather_at_least(w, vocab, prefilter_threshold(w, vocab, need, true), c.data());
    }
    n = select_largest(std::span(c.data(), n), need, /*by_mass=*/true);
  }
  // min-p, and one draw from what is left (in the order select_largest left it).
  double total = 0.0;
  for (size_t i = 0; i < n; ++i) total += c[i].w >= min_w ? c[i].w : 0.0f;
  const double target = u * total;
  double cum = 0.0;
  TokenId last = -1;
  for (size_t i = 0; i < n; ++i) {
    if (c[i].w < min_w) continue;
    cum += c[i].w;
    last = c[i].id;
    if (cum > target) return c[i].id;
  }
  return last;  // rounding left the target at the very top
}

}  // namespace

double sample_uniform(uint64_t seed, int32_t step) {
  return sample_uniform_hd(seed, step);
}

SampleOutput sample_token(const SampleInput& in, SamplerScratch& scratch) {
  LOOM_CHECK(in.logits != nullptr && in.params != nullptr, "sample_token: missing logits/params");
  LOOM_CHECK(in.vocab_size > 0, "sample_token: vocab_size %d", in.vocab_size);
  const SamplingParams& p = *in.params;

  const float* logits = apply_processors(in, scratch);
  TokenId token = p.greedy() ? vec::argmax(logits, in.vocab_size)
                             : sample_filtered(logits, in.vocab_size, p,
                                               sample_uniform(in.seed, in.step), scratch);
  if (token < 0) token = vec::argmax(in.logits, in.vocab_size);  // every token masked
  if (token < 0) token = 0;                                      // and every logit NaN or -inf

  SampleOutput out;
  out.token = token;
  if (p.logprobs >= 0) fill_logprobs(logits, in.vocab_size, p.logprobs, token, out.logprobs);
  return out;
}

}  // namespace loom
