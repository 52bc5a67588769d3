// ApiRequest -> engine Requests: tokenization, chat template, context-length checks and the
// fan-out of n samples per prompt (sample i gets seed + i when a seed is given).
#pragma once

#include <string>
#include <variant>
#include <vector>

#include "core/request.h"
#include "server/api_error.h"
#include "server/openai_request.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace loom {

struct PromptContext {
  const Tokenizer* tokenizer = nullptr;
  const ChatTemplate* chat_template = nullptr;  // null: chat requests are refused
  int32_t max_context = 0;                      // tokens, prompt + output
  int32_t max_tokens_limit = 0;                 // 0 = no cap beyond the context
};

// Requests in choice order: prompt p's sample i is element p * n + i. `external_id` is the
// response id; each request gets "<id>-<choice index>".
std::variant<std::vector<Request>, ApiError> build_engine_requests(const ApiRequest& api,
                                                                   const PromptContext& context,
                                                                   const std::string& external_id);

}  // namespace loom
