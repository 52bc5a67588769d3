#include "server/openai_response.h"

#include <chrono>
#include <random>

namespace loom {

using nlohmann::json;

std::string make_response_id(ApiKind kind) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id = kind == ApiKind::kChat ? "chatcmpl-" : "cmpl-";
  for (int i = 0; i < 2; ++i) {
    uint64_t r = rng();
    for (int j = 0; j < 16; ++j) id += kHex[(r >> (4 * j)) & 15];
  }
  return id;
}

int64_t unix_time_s() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

const char* api_finish_reason(FinishReason reason) {
  return finish_reason_name(reason);
}

json usage_json(const Usage& usage) {
  return json{{"prompt_tokens", usage.prompt_tokens},
              {"completion_tokens", usage.completion_tokens},
              {"total_tokens", usage.prompt_tokens + usage.completion_tokens}};
}

json completion_logprobs_json(const Tokenizer& tokenizer,
                              const std::vector<TokenLogprobs>& logprobs,
                              int64_t text_offset_start) {
  json tokens = json::array(), token_logprobs = json::array(), top = json::array(),
       offsets = json::array();
  int64_t offset = text_offset_start;
  for (const TokenLogprobs& lp : logprobs) {
    std::string piece = tokenizer.token_bytes(lp.sampled.token);
    tokens.push_back(piece);
    token_logprobs.push_back(lp.sampled.logprob);
    json alternatives = json::object();
    for (const TokenLogprob& alt : lp.top)
      alternatives[tokenizer.token_bytes(alt.token)] = alt.logprob;
    top.push_back(std::move(alternatives));
    offsets.push_back(offset);
    offset += static_cast<int64_t>(piece.size());
  }
  return json{{"tokens", std::move(tokens)},
              {"token_logprobs", std::move(token_logprobs)},
              {"top_logprobs", std::move(top)},
              {"text_offset", std::move(offsets)}};
}

namespace {
json chat_token_json(const Tokenizer& tokenizer, const TokenLogprob& lp) {
  std::string piece = tokenizer.token_bytes(lp.token);
  json bytes = json::array();
  for (unsigned char c : piece) bytes.push_back(static_cast<int>(c));
  return json{{"token", piece}, {"logprob", lp.logprob}, {"bytes", std::move(bytes)}};
}
}  // namespace

json chat_logprobs_json(const Tokenizer& tokenizer, const std::vector<TokenLogprobs>& logprobs) {
  json content = json::array();
  for (const TokenLogprobs& lp : logprobs) {
    json entry = chat_token_json(tokenizer, lp.sampled);
    json top = json::array();
    for (const TokenLogprob& alt : lp.top) top.push_back(chat_token_json(tokenizer, alt));
    entry["top_logprobs"] = std::move(top);
    content.push_back(std::move(entry));
  }
  return json{{"content", std::move(content)}};
}

json build_response(const ResponseMeta& meta, const std::vector<ChoiceState>& choices,
                    const Usage& usage, const Tokenizer& tokenizer) {
  json out_choices = json::array();
  for (const ChoiceState& c : choices) {
    json finish = c.finish ? json(api_finish_reason(*c.finish)) : json(nullptr);
    if (meta.kind == ApiKind::kCompletion) {
      json lp =
          meta.logprobs >= 0 ? completion_logprobs_json(tokenizer, c.logprobs, 0) : json(nullptr);
      out_choices.push_back(json{{"index", c.index},
                                 {"text", c.text},
                                 {"logprobs", std::move(lp)},
                                 {"finish_reason", std::move(finish)}});
    } else {
      json lp = meta.logprobs >= 0 ? chat_logprobs_json(tokenizer, c.logprobs) : json(nullptr);
      out_choices.push_back(json{{"index", c.index},
                                 {"message", json{{"role", "assistant"}, {"content", c.text}}},
                                 {"logprobs", std::move(lp)},
                                 {"finish_reason", std::move(finish)}});
    }
  }
  return json{{"id", meta.id},
              {"object", meta.kind == ApiKind::kChat ? "chat.completion" : "text_completion"},
              {"created", meta.created},
              {"model", meta.model},
              {"system_fingerprint", nullptr},
              {"choices", std::move(out_choices)},
              {"usage", usage_json(usage)}};
}

json build_chunk(const ResponseMeta& meta, const ChunkDelta& delta, bool include_usage,
                 const Tokenizer& tokenizer) {
  json finish = delta.finish ? json(api_finish_reason(*delta.finish)) : json(nullptr);
  json lp = nullptr;
  if (meta.logprobs >= 0 && delta.logprobs != nullptr && !delta.logprobs->empty()) {
    lp = meta.kind == ApiKind::kChat
             ? chat_logprobs_json(tokenizer, *delta.logprobs)
             : completion_logprobs_json(tokenizer, *delta.logprobs, delta.text_offset_start);
  }
  json choice;
  if (meta.kind == ApiKind::kCompletion) {
    choice = json{{"index", delta.index},
                  {"text", delta.text},
                  {"logprobs", std::move(lp)},
                  {"finish_reason", std::move(finish)}};
  } else {
    json d = json::object();
    if (delta.first) d["role"] = "assistant";
    if (!delta.text.empty() || (delta.first && !delta.finish)) d["content"] = delta.text;
    choice = json{{"index", delta.index},
                  {"delta", std::move(d)},
                  {"logprobs", std::move(lp)},
                  {"finish_reason", std::move(finish)}};
  }
  json chunk{{"id", meta.id},
             {"object", meta.kind == ApiKind::kChat ? "chat.completion.chunk" : "text_completion"},
             {"created", meta.created},
             {"model", meta.model},
             {"system_fingerprint", nullptr},
             {"choices", json::array({std::move(choice)})}};
  if (include_usage) chunk["usage"] = nullptr;
  return chunk;
}

json build_usage_chunk(const ResponseMeta& meta, const Usage& usage) {
  return json{{"id", meta.id},
              {"object", meta.kind == ApiKind::kChat ? "chat.completion.chunk" : "text_completion"},
              {"created", meta.created},
              {"model", meta.model},
              {"system_fingerprint", nullptr},
              {"choices", json::array()},
              {"usage", usage_json(usage)}};
}

}  // namespace loom
