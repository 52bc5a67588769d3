// What a client submits and what it gets back, in native types (no JSON crosses into the engine).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/ids.h"
#include "core/sampling_params.h"

namespace loom {

// Named SLA tiers map onto integer priorities; a lower value is served first.
enum class Tier { kInteractive = 0, kStandard = 1, kBatch = 2 };
inline constexpr int32_t kInteractivePriority = -10;
inline constexpr int32_t kStandardPriority = 0;
inline constexpr int32_t kBatchPriority = 10;
int32_t tier_priority(Tier tier);
const char* tier_name(Tier tier);
std::optional<Tier> parse_tier(const std::string& name);
// The tier a raw priority falls in (for per-tier metrics): <= -5 interactive, >= 5 batch.
Tier tier_of_priority(int32_t priority);

struct Request {
  std::string external_id;      // the client's / API's id, echoed back
  std::vector<TokenId> prompt;  // already tokenized, chat template applied
  SamplingParams sampling;
  int32_t priority = kStandardPriority;  // lower = more urgent
  int64_t arrival_us = 0;                // set by the engine at submit if 0
};

enum class FinishReason { kStop, kLength, kAbort, kError };
const char* finish_reason_name(FinishReason reason);  // "stop", "length", "abort", "error"

struct TokenLogprob {
  TokenId token = 0;
  float logprob = 0.0f;
};

// Logprob record for one generated token: the sampled token's and the top-N alternatives.
struct TokenLogprobs {
  TokenLogprob sampled;
  std::vector<TokenLogprob> top;  // sorted by logprob, descending
};

struct RequestTimings {
  int64_t arrival_us = 0;
  int64_t first_scheduled_us = 0;  // left the waiting queue
  int64_t first_token_us = 0;
  int64_t finished_us = 0;
  int32_t num_preemptions = 0;
};

// One delta on a request's output channel. The last one has `finish` set.
struct RequestOutput {
  SeqId seq_id = 0;
  std::vector<TokenId> new_tokens;
  std::string new_text;                     // UTF-8, never half a character
  std::vector<TokenLogprobs> new_logprobs;  // parallel to new_tokens when logprobs requested
  std::optional<FinishReason> finish;
  std::string error;  // set with FinishReason::kError
  int32_t num_prompt_tokens = 0;
  int32_t num_cached_prompt_tokens = 0;  // prompt tokens served from the prefix cache
  int32_t num_output_tokens = 0;         // total so far
  RequestTimings timings;                // filled on the final delta
};

}  // namespace loom
