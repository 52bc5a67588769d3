// Turns one row of logits into one token: penalties, min_tokens masking, then greedy or
// temperature / top-k / top-p / min-p sampling with a counter-based random draw.
//
// sample_token is a pure function of its input: the same logits, parameters, history, seed and
// step give the same token whatever else shares the batch, and again after a preemption and
// recompute (the random number depends only on (seed, step), never on a generator's state).
//
// Pipeline (in this order):
//   1. repetition_penalty over the distinct tokens of prompt + output (HF / CTRL style):
//        l > 0 ? l / r : l * r
//   2. presence / frequency penalties over the output tokens (OpenAI):
//        l -= count * frequency_penalty + (count > 0) * presence_penalty
//   3. min_tokens: while output.size() < min_tokens, eos_ids and stop_token_ids get -inf.
//   -- logprobs are taken here: log-softmax of the logits after steps 1-3, before temperature and
//      the filters, so they describe the model's (penalized) distribution and do not depend on
//      the sampling knobs; a filtered-out token keeps its true logprob.
//   4. greedy (temperature <= 0): argmax, ties to the lowest id. Otherwise:
//   5. z = l / temperature; top-k keeps the k largest (ties to the lower id);
//      top-p keeps the smallest prefix of the descending order whose probability (renormalized
//      after top-k) sums to >= top_p (1e-6 absolute slack against rounding; at least one token);
//      min-p drops tokens with prob < min_p * max prob; then one draw from the kept tokens,
//      renormalized, with u in [0, 1) from (seed, step).
//
// Cost per call on a 49,152-token row: greedy is a vectorized max and a scan for its first
// index, and no copy unless a penalty or min_tokens applies; the sampled path computes the
// weights once (vectorized exp) and finds the top-k / top-p set by partial selection on a
// prefiltered candidate list (select_largest.h), never by sorting the vocabulary.
//
// Logprobs: `sampled` is the sampled token's; `top` lists the top-N by logprob (ties to the lower
// id), never a masked (-inf) token, so it may be shorter than N when fewer tokens are possible.
//
// NaN logits are treated as -inf (never chosen) and +inf as the largest finite float. Token ids
// outside [0, vocab_size) in the history or in eos_ids cannot have a logit, so they are skipped.
// If every token is masked (a degenerate input), the argmax of the raw logits is returned.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "core/ids.h"
#include "core/request.h"
#include "core/sampling_params.h"
#include "sample/select_largest.h"

namespace loom {

struct SampleInput {
  const float* logits = nullptr;  // [vocab_size], one row, not modified
  int32_t vocab_size = 0;
  const SamplingParams* params = nullptr;
  std::span<const TokenId> prompt;  // for repetition_penalty
  std::span<const TokenId> output;  // tokens generated so far (penalties, min_tokens)
  uint64_t seed = 0;  // the request's seed, or one the engine drew when the request gave none
  int32_t step = 0;   // index of the token being generated (0 = first output token)
  std::span<const TokenId> eos_ids;  // the model's end-of-sequence ids (masked under min_tokens)
};

struct SampleOutput {
  TokenId token = 0;
  TokenLogprobs logprobs;  // filled when params->logprobs >= 0 (top has params->logprobs entries)
};

// Reusable buffers so that the hot path does not allocate once they have grown to the vocabulary.
// One per thread that samples; contents between calls are meaningless except for the invariants
// noted (kept by sample_token).
struct SamplerScratch {
  std::vector<float> processed;           // [vocab] logits after penalties and masking
  std::vector<float> weights;             // [vocab] exp(z - max z), z = logit / temperature
  std::vector<int32_t> counts;            // [vocab] output-token counts; all zero between calls
  std::vector<uint8_t> seen;              // [vocab] repetition marks; all zero between calls
  std::vector<TokenId> touched;           // ids whose counts / seen entries must be reset
  std::vector<WeightedToken> candidates;  // tokens with weight > 0, for top-k / top-p
};

SampleOutput sample_token(const SampleInput& in, SamplerScratch& scratch);

// The uniform number in [0, 1) used for the draw of token `step` of a sequence seeded `seed`
// (splitmix64 finalizer over seed and step; 53 random bits).
double sample_uniform(uint64_t seed, int32_t step);

}  // namespace loom
