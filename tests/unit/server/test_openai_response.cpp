#include <gtest/gtest.h>

#include "server/api_error.h"
#include "server/openai_response.h"
#include "server/sse.h"
#include "unit/server/fake_tokenizer.h"

namespace loom {
namespace {

using nlohmann::json;

ResponseMeta meta(ApiKind kind, int32_t logprobs = -1) {
  return ResponseMeta{kind, make_response_id(kind), 1700000000, "smol", logprobs};
}

ChoiceState choice(int32_t index, std::string text, FinishReason finish) {
  ChoiceState c;
  c.index = index;
  c.text = std::move(text);
  c.finish = finish;
  c.num_prompt_tokens = 5;
  c.num_output_tokens = 3;
  return c;
}

TEST(OpenAiResponse, CompletionShape) {
  testing::ByteTokenizer tok;
  json r = build_response(meta(ApiKind::kCompletion), {choice(0, "abc", FinishReason::kLength)},
                          Usage{5, 3}, tok);
  EXPECT_EQ(r["object"], "text_completion");
  EXPECT_EQ(r["id"].get<std::string>().rfind("cmpl-", 0), 0u);
  EXPECT_EQ(r["created"], 1700000000);
  EXPECT_EQ(r["model"], "smol");
  ASSERT_EQ(r["choices"].size(), 1u);
  EXPECT_EQ(r["choices"][0]["index"], 0);
  EXPECT_EQ(r["choices"][0]["text"], "abc");
  EXPECT_TRUE(r["choices"][0]["logprobs"].is_null());
  EXPECT_EQ(r["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(r["usage"],
            (json{{"prompt_tokens", 5}, {"completion_tokens", 3}, {"total_tokens", 8}}));
}

TEST(OpenAiResponse, ChatShape) {
  testing::ByteTokenizer tok;
  json r =
      build_response(meta(ApiKind::kChat),
                     {choice(0, "hi", FinishReason::kStop), choice(1, "yo", FinishReason::kStop)},
                     Usage{5, 6}, tok);
  EXPECT_EQ(r["object"], "chat.completion");
  EXPECT_EQ(r["id"].get<std::string>().rfind("chatcmpl-", 0), 0u);
  ASSERT_EQ(r["choices"].size(), 2u);
  EXPECT_EQ(r["choices"][1]["index"], 1);
  EXPECT_EQ(r["choices"][1]["message"], (json{{"role", "assistant"}, {"content", "yo"}}));
  EXPECT_EQ(r["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(r["usage"]["total_tokens"], 11);
}

std::vector<TokenLogprobs> two_tokens() {
  // 'h' then 'i', each with two alternatives.
  return {TokenLogprobs{{'h', -0.5f}, {{'h', -0.5f}, {'j', -1.5f}}},
          TokenLogprobs{{'i', -0.25f}, {{'i', -0.25f}, {'o', -2.0f}}}};
}

TEST(OpenAiResponse, CompletionLogprobsFormat) {
  testing::ByteTokenizer tok;
  json lp = completion_logprobs_json(tok, two_tokens(), 10);
  EXPECT_EQ(lp["tokens"], (json{"h", "i"}));
  EXPECT_EQ(lp["token_logprobs"], (json{-0.5, -0.25}));
  EXPECT_EQ(lp["top_logprobs"][0], (json{{"h", -0.5}, {"j", -1.5}}));
  EXPECT_EQ(lp["text_offset"], (json{10, 11}));
}

TEST(OpenAiResponse, ChatLogprobsFormat) {
  testing::ByteTokenizer tok;
  json lp = chat_logprobs_json(tok, two_tokens());
  ASSERT_EQ(lp["content"].size(), 2u);
  const json& first = lp["content"][0];
  EXPECT_EQ(first["token"], "h");
  EXPECT_EQ(first["logprob"], -0.5);
  EXPECT_EQ(first["bytes"], (json{104}));
  ASSERT_EQ(first["top_logprobs"].size(), 2u);
  EXPECT_EQ(first["top_logprobs"][1], (json{{"token", "j"}, {"logprob", -1.5}, {"bytes", {106}}}));
}

TEST(OpenAiResponse, ChatChunks) {
  testing::ByteTokenizer tok;
  ResponseMeta m = meta(ApiKind::kChat);
  json first = build_chunk(m, ChunkDelta{0, "", true, nullptr, 0, std::nullopt}, false, tok);
  EXPECT_EQ(first["object"], "chat.completion.chunk");
  EXPECT_EQ(first["choices"][0]["delta"], (json{{"role", "assistant"}, {"content", ""}}));
  EXPECT_TRUE(first["choices"][0]["finish_reason"].is_null());
  EXPECT_FALSE(first.contains("usage"));
  json mid = build_chunk(m, ChunkDelta{1, "ab", false, nullptr, 0, std::nullopt}, true, tok);
  EXPECT_EQ(mid["choices"][0]["index"], 1);
  EXPECT_EQ(mid["choices"][0]["delta"], (json{{"content", "ab"}}));
  EXPECT_TRUE(mid.contains("usage"));
  EXPECT_TRUE(mid["usage"].is_null());  // include_usage: null on all but the last chunk
  json last = build_chunk(m, ChunkDelta{1, "", false, nullptr, 0, FinishReason::kStop}, false, tok);
  EXPECT_EQ(last["choices"][0]["delta"], json::object());
  EXPECT_EQ(last["choices"][0]["finish_reason"], "stop");
  json usage = build_usage_chunk(m, Usage{4, 2});
  EXPECT_EQ(usage["choices"], json::array());
  EXPECT_EQ(usage["usage"]["total_tokens"], 6);
  EXPECT_EQ(usage["id"], m.id);
}

TEST(OpenAiResponse, CompletionChunkWithLogprobs) {
  testing::ByteTokenizer tok;
  ResponseMeta m = meta(ApiKind::kCompletion, 1);
  auto lps = two_tokens();
  json c = build_chunk(m, ChunkDelta{0, "hi", false, &lps, 7, std::nullopt}, false, tok);
  EXPECT_EQ(c["object"], "text_completion");
  EXPECT_EQ(c["choices"][0]["text"], "hi");
  EXPECT_EQ(c["choices"][0]["logprobs"]["text_offset"], (json{7, 8}));
}

TEST(Sse, Framing) {
  EXPECT_EQ(sse_event(json{{"a", "x\ny"}}), "data: {\"a\":\"x\\ny\"}\n\n");
  EXPECT_EQ(sse_done(), "data: [DONE]\n\n");
  // Invalid UTF-8 in generated text never breaks the stream.
  std::string bad = "ok\xff";
  std::string ev = sse_event(json{{"t", bad}});
  EXPECT_EQ(ev.rfind("data: ", 0), 0u);
  EXPECT_NE(ev.find("\xef\xbf\xbd"), std::string::npos);  // U+FFFD
}

TEST(ApiErrorJson, OpenAiShape) {
  json e = error_json(invalid_request("n must be ...", "n"));
  EXPECT_EQ(e, (json{{"error",
                      {{"message", "n must be ..."},
                       {"type", "invalid_request_error"},
                       {"param", "n"},
                       {"code", "invalid_value"}}}}));
  json u = error_json(unauthorized());
  EXPECT_TRUE(u["error"]["param"].is_null());
  EXPECT_EQ(u["error"]["code"], "invalid_api_key");
  EXPECT_EQ(unauthorized().status, 401);
  EXPECT_EQ(model_not_found("x").status, 404);
  EXPECT_EQ(model_not_found("x").param, "model");
  EXPECT_EQ(body_too_large(10).status, 413);
  ApiError q = queue_full("full", 2);
  EXPECT_EQ(q.status, 429);
  EXPECT_EQ(q.retry_after_s, 2);
  EXPECT_EQ(shutting_down().status, 503);
  EXPECT_EQ(error_for_status(404, 0).code, "unknown_route");
  EXPECT_EQ(error_for_status(413, 99).status, 413);
  EXPECT_EQ(error_for_status(418, 0).status, 418);
}

}  // namespace
}  // namespace loom
