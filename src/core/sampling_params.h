// Per-request sampling parameters, as the OpenAI API and loom's own extensions define them.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/ids.h"
#include "util/result.h"

namespace loom {

struct SamplingParams {
  float temperature = 1.0f;         // 0 = greedy
  int32_t top_k = 0;                // 0 or -1 = disabled
  float top_p = 1.0f;               // (0, 1]
  float min_p = 0.0f;               // [0, 1]
  float repetition_penalty = 1.0f;  // > 0; 1 = off (HF / CTRL style, over prompt + output)
  float presence_penalty = 0.0f;    // [-2, 2], over output tokens (OpenAI)
  float frequency_penalty = 0.0f;   // [-2, 2], over output tokens (OpenAI)
  std::optional<uint64_t> seed;     // same seed + same prompt => same output
  int32_t max_tokens = 16;          // new tokens to generate, >= 1
  int32_t min_tokens = 0;           // EOS / stop tokens suppressed before this many
  std::vector<std::string> stop;    // stop strings, matched across token boundaries
  std::vector<TokenId> stop_token_ids;
  bool ignore_eos = false;
  int32_t logprobs = -1;  // -1 = none; N >= 0 = sampled token's logprob + top-N
  bool include_stop_str_in_output = false;

  bool greedy() const { return temperature <= 0.0f; }

  // Checks ranges; vocab_size bounds token ids. The message names the offending field.
  Status validate(int32_t vocab_size) const;
};

}  // namespace loom
