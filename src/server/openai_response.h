// Native results -> OpenAI response JSON: completion, chat.completion and their streaming chunk
// objects, usage, and logprobs in both the completions and the chat formats.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/request.h"
#include "server/openai_request.h"
#include "tokenizer/tokenizer.h"

namespace loom {

// What identifies one response and all of its chunks.
struct ResponseMeta {
  ApiKind kind = ApiKind::kCompletion;
  std::string id;       // "cmpl-..." / "chatcmpl-..."
  int64_t created = 0;  // unix seconds
  std::string model;
  int32_t logprobs = -1;  // -1: none; N: sampled token's logprob + top-N
};

// Everything one choice (one sample of one prompt) produced so far.
struct ChoiceState {
  int32_t index = 0;
  std::string text;
  std::vector<TokenId> tokens;
  std::vector<TokenLogprobs> logprobs;  // parallel to tokens when requested
  std::optional<FinishReason> finish;
  std::string error;
  int32_t num_prompt_tokens = 0;
  int32_t num_output_tokens = 0;
};

struct Usage {
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
};

std::string make_response_id(ApiKind kind);  // random, e.g. "cmpl-3f2a..."
int64_t unix_time_s();
const char* api_finish_reason(FinishReason reason);

nlohmann::json usage_json(const Usage& usage);
// Completions format: {"tokens", "token_logprobs", "top_logprobs", "text_offset"}; text offsets
// are byte offsets counted from `text_offset_start`.
nlohmann::json completion_logprobs_json(const Tokenizer& tokenizer,
                                        const std::vector<TokenLogprobs>& logprobs,
                                        int64_t text_offset_start);
// Chat format: {"content": [{"token", "logprob", "bytes", "top_logprobs": [...]}, ...]}.
nlohmann::json chat_logprobs_json(const Tokenizer& tokenizer,
                                  const std::vector<TokenLogprobs>& logprobs);

// Whole (non-streaming) responses.
nlohmann::json build_response(const ResponseMeta& meta, const std::vector<ChoiceState>& choices,
                              const Usage& usage, const Tokenizer& tokenizer);

// One streaming chunk for choice `index`. `delta` carries the new text (and, for chat, whether
// this is the first chunk, which names the role). `include_usage` adds "usage": null as OpenAI
// does on every chunk but the last when stream_options.include_usage is set.
struct ChunkDelta {
  int32_t index = 0;
  std::string text;
  bool first = false;                                    // chat: {"role": "assistant"} in the delta
  const std::vector<TokenLogprobs>* logprobs = nullptr;  // new tokens' logprobs, if requested
  int64_t text_offset_start = 0;  // completions logprobs: bytes of this choice before
  std::optional<FinishReason> finish;
};
nlohmann::json build_chunk(const ResponseMeta& meta, const ChunkDelta& delta, bool include_usage,
                           const Tokenizer& tokenizer);
// The last chunk with stream_options.include_usage: "choices": [] and the usage.
nlohmann::json build_usage_chunk(const ResponseMeta& meta, const Usage& usage);

}  // namespace loom
