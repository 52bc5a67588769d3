#include "server/prompt_builder.h"

namespace loom {

std::variant<std::vector<Request>, ApiError> build_engine_requests(const ApiRequest& api,
                                                                   const PromptContext& ctx,
                                                                   const std::string& external_id) {
  const Tokenizer& tok = *ctx.tokenizer;
  const char* prompt_param = api.kind == ApiKind::kChat ? "messages" : "prompt";
  std::vector<std::vector<TokenId>> prompts;
  if (api.kind == ApiKind::kChat) {
    if (ctx.chat_template == nullptr)
      return invalid_request("This model has no chat template; use /v1/completions.", "messages",
                             "no_chat_template");
    Result<std::string> text = ctx.chat_template->apply(api.messages, true);
    if (!text.ok()) return invalid_request(text.error(), "messages");
    // The template spells special tokens as text (<|im_start|>, BOS): parse them.
    prompts.push_back(tok.encode(*text, /*add_special=*/false, /*parse_special=*/true));
  } else {
    for (const PromptInput& in : api.prompts) {
      // Plain text is user content: special-token text in it stays text.
      prompts.push_back(in.text ? tok.encode(*in.text, /*add_special=*/true,
                                             /*parse_special=*/false)
                                : in.token_ids);
    }
  }

  std::vector<Request> out;
  out.reserve(prompts.size() * static_cast<size_t>(api.n));
  for (size_t p = 0; p < prompts.size(); ++p) {
    const int32_t len = static_cast<int32_t>(prompts[p].size());
    if (len == 0) return invalid_request("The prompt is empty after tokenization.", prompt_param);
    if (len >= ctx.max_context) {
      return invalid_request("The prompt is " + std::to_string(len) +
                                 " tokens long, but this model's context holds " +
                                 std::to_string(ctx.max_context) + " tokens (prompt plus output).",
                             prompt_param, "context_length_exceeded");
    }
    SamplingParams sampling = api.sampling;
    const int32_t room = ctx.max_context - len;
    if (api.max_tokens_given) {
      if (sampling.max_tokens > room) {
        return invalid_request("max_tokens is " + std::to_string(sampling.max_tokens) +
                                   " but the prompt is " + std::to_string(len) +
                                   " tokens and this model's context holds " +
                                   std::to_string(ctx.max_context) + " tokens; at most " +
                                   std::to_string(room) + " can be generated.",
                               "max_tokens", "context_length_exceeded");
      }
    } else {
      // Chat without max_tokens: the rest of the context (as OpenAI); completions: 16, clipped.
      sampling.max_tokens = api.kind == ApiKind::kChat ? room : std::min(sampling.max_tokens, room);
      if (ctx.max_tokens_limit > 0)
        sampling.max_tokens = std::min(sampling.max_tokens, ctx.max_tokens_limit);
      sampling.min_tokens = std::min(sampling.min_tokens, sampling.max_tokens);
    }
    if (Status s = sampling.validate(tok.vocab_size()); !s.ok()) {
      std::string param = s.error().substr(0, s.error().find(' '));
      return invalid_request(s.error(), param);
    }
    for (int32_t i = 0; i < api.n; ++i) {
      Request r;
      r.external_id = external_id + "-" + std::to_string(p * api.n + i);
      r.prompt = prompts[p];
      r.sampling = sampling;
      if (sampling.seed) r.sampling.seed = *sampling.seed + static_cast<uint64_t>(i);
      r.priority = api.priority;
      out.push_back(std::move(r));
    }
  }
  return out;
}

}  // namespace loom
