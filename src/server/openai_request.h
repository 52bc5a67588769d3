// OpenAI request JSON -> native structs, with validation. Each refusal names the parameter.
// Unknown fields are ignored; wrong types and out-of-range values are refused.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "core/request.h"
#include "server/api_error.h"
#include "tokenizer/chat_template.h"

namespace loom {

enum class ApiKind { kCompletion, kChat };

struct ProtocolLimits {
  int32_t vocab_size = 0;  // bounds token-id prompts
  int32_t max_n = 16;
  int32_t max_prompts = 64;
  int32_t max_stop_strings = 8;
  int32_t max_stop_string_bytes = 256;
  int32_t max_logprobs = 20;
  int32_t max_tokens_limit = 1 << 20;  // hard upper bound on max_tokens
};

// One completions prompt: text to tokenize, or token ids given by the client.
struct PromptInput {
  std::optional<std::string> text;
  std::vector<TokenId> token_ids;
};

struct ApiRequest {
  ApiKind kind = ApiKind::kCompletion;
  std::string model;                  // empty if the client sent none
  std::vector<PromptInput> prompts;   // completions
  std::vector<ChatMessage> messages;  // chat
  // Sampling: max_tokens holds the request's value or, when absent, the default below.
  SamplingParams sampling;
  bool max_tokens_given = false;  // chat without one: the rest of the context
  int32_t n = 1;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  // Completions: logprobs = N (top-N); chat: logprobs=true with top_logprobs = N. -1 = none.
  int32_t logprobs = -1;
  int32_t priority = kStandardPriority;
  std::string user;
};

using ParseResult = std::variant<ApiRequest, ApiError>;

// `body` is the raw HTTP body (JSON text).
ParseResult parse_api_request(ApiKind kind, const std::string& body, const ProtocolLimits& limits);
ParseResult parse_api_request(ApiKind kind, const nlohmann::json& body,
                              const ProtocolLimits& limits);

}  // namespace loom
