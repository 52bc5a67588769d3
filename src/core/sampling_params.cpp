#include "core/sampling_params.h"

#include <cmath>

namespace loom {

Status SamplingParams::validate(int32_t vocab_size) const {
  auto finite = [](float x) { return std::isfinite(x); };
  if (!finite(temperature) || temperature < 0.0f || temperature > 100.0f)
    return make_error("temperature must be in [0, 100], got %g", temperature);
  if (top_k < -1 || top_k > vocab_size)
    return make_error("top_k must be -1, 0 or in [1, %d], got %d", vocab_size, top_k);
  if (!finite(top_p) || top_p <= 0.0f || top_p > 1.0f)
    return make_error("top_p must be in (0, 1], got %g", top_p);
  if (!finite(min_p) || min_p < 0.0f || min_p > 1.0f)
    return make_error("min_p must be in [0, 1], got %g", min_p);
  if (!finite(repetition_penalty) || repetition_penalty <= 0.0f || repetition_penalty > 10.0f)
    return make_error("repetition_penalty must be in (0, 10], got %g", repetition_penalty);
  if (!finite(presence_penalty) || presence_penalty < -2.0f || presence_penalty > 2.0f)
    return make_error("presence_penalty must be in [-2, 2], got %g", presence_penalty);
  if (!finite(frequency_penalty) || frequency_penalty < -2.0f || frequency_penalty > 2.0f)
    return make_error("frequency_penalty must be in [-2, 2], got %g", frequency_penalty);
  if (max_tokens < 1) return make_error("max_tokens must be at least 1, got %d", max_tokens);
  if (min_tokens < 0 || min_tokens > max_tokens)
    return make_error("min_tokens must be in [0, max_tokens], got %d", min_tokens);
  if (logprobs < -1 || logprobs > 20)
    return make_error("logprobs must be in [0, 20], got %d", logprobs);
  for (const auto& s : stop) {
    if (s.empty()) return make_error("stop strings must not be empty");
  }
  for (TokenId t : stop_token_ids) {
    if (t < 0 || t >= vocab_size)
      return make_error("stop_token_ids: %d is outside the vocabulary [0, %d)", t, vocab_size);
  }
  return ok_status();
}

}  // namespace loom
