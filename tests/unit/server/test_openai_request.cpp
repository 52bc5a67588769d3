#include <gtest/gtest.h>

#include "server/openai_request.h"

namespace loom {
namespace {

ProtocolLimits limits() {
  ProtocolLimits l;
  l.vocab_size = 1000;
  l.max_n = 4;
  l.max_stop_strings = 2;
  l.max_stop_string_bytes = 8;
  l.max_logprobs = 5;
  l.max_tokens_limit = 2048;
  return l;
}

ApiRequest parse_ok(ApiKind kind, const std::string& body) {
  ParseResult r = parse_api_request(kind, body, limits());
  if (auto* e = std::get_if<ApiError>(&r)) {
    ADD_FAILURE() << "refused " << body << ": " << e->message;
    return {};
  }
  return std::get<ApiRequest>(r);
}

TEST(OpenAiRequest, CompletionFieldsMapToNativeStructs) {
  ApiRequest r = parse_ok(ApiKind::kCompletion, R"({
    "model": "m", "prompt": "hello", "max_tokens": 7, "temperature": 0.5, "top_p": 0.9, "n": 2,
    "stop": ["a", "b"], "seed": 42, "presence_penalty": 0.5, "frequency_penalty": -1,
    "logprobs": 3, "user": "u", "stream": true, "stream_options": {"include_usage": true},
    "top_k": 40, "min_p": 0.05, "repetition_penalty": 1.1, "ignore_eos": true, "min_tokens": 2,
    "tier": "batch", "some_unknown_field": {"x": [1, 2]}})");
  EXPECT_EQ(r.model, "m");
  ASSERT_EQ(r.prompts.size(), 1u);
  EXPECT_EQ(*r.prompts[0].text, "hello");
  EXPECT_EQ(r.sampling.max_tokens, 7);
  EXPECT_TRUE(r.max_tokens_given);
  EXPECT_FLOAT_EQ(r.sampling.temperature, 0.5f);
  EXPECT_FLOAT_EQ(r.sampling.top_p, 0.9f);
  EXPECT_EQ(r.n, 2);
  EXPECT_EQ(r.sampling.stop, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(r.sampling.seed, 42u);
  EXPECT_FLOAT_EQ(r.sampling.presence_penalty, 0.5f);
  EXPECT_FLOAT_EQ(r.sampling.frequency_penalty, -1.0f);
  EXPECT_EQ(r.logprobs, 3);
  EXPECT_EQ(r.sampling.logprobs, 3);
  EXPECT_EQ(r.user, "u");
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.include_usage);
  EXPECT_EQ(r.sampling.top_k, 40);
  EXPECT_FLOAT_EQ(r.sampling.min_p, 0.05f);
  EXPECT_FLOAT_EQ(r.sampling.repetition_penalty, 1.1f);
  EXPECT_TRUE(r.sampling.ignore_eos);
  EXPECT_EQ(r.sampling.min_tokens, 2);
  EXPECT_EQ(r.priority, kBatchPriority);
}

TEST(OpenAiRequest, PromptShapes) {
  EXPECT_EQ(parse_ok(ApiKind::kCompletion, R"({"prompt": ["a", "b", "c"]})").prompts.size(), 3u);
  ApiRequest ids = parse_ok(ApiKind::kCompletion, R"({"prompt": [1, 2, 3]})");
  ASSERT_EQ(ids.prompts.size(), 1u);
  EXPECT_EQ(ids.prompts[0].token_ids, (std::vector<TokenId>{1, 2, 3}));
  EXPECT_FALSE(ids.prompts[0].text.has_value());
  ApiRequest lists = parse_ok(ApiKind::kCompletion, R"({"prompt": [[1, 2], [3]]})");
  ASSERT_EQ(lists.prompts.size(), 2u);
  EXPECT_EQ(lists.prompts[1].token_ids, (std::vector<TokenId>{3}));
}

TEST(OpenAiRequest, Defaults) {
  ApiRequest c = parse_ok(ApiKind::kCompletion, R"({"prompt": "x"})");
  EXPECT_EQ(c.sampling.max_tokens, 16);  // OpenAI's completions default
  EXPECT_FALSE(c.max_tokens_given);
  EXPECT_EQ(c.n, 1);
  EXPECT_EQ(c.logprobs, -1);
  EXPECT_FALSE(c.stream);
  EXPECT_EQ(c.priority, kStandardPriority);
  // null means "not given".
  ApiRequest nulls =
      parse_ok(ApiKind::kCompletion, R"({"prompt": "x", "max_tokens": null, "stop": null})");
  EXPECT_FALSE(nulls.max_tokens_given);
  EXPECT_TRUE(nulls.sampling.stop.empty());
  // An empty or null logit_bias asks for nothing, so it is accepted (a non-empty one is refused).
  parse_ok(ApiKind::kCompletion, R"({"prompt": "x", "logit_bias": {}})");
  parse_ok(ApiKind::kCompletion, R"({"prompt": "x", "logit_bias": null})");
}

TEST(OpenAiRequest, ChatFields) {
  ApiRequest r = parse_ok(ApiKind::kChat, R"({
    "messages": [{"role": "system", "content": "s"},
                 {"role": "user", "content": [{"type": "text", "text": "a"},
                                              {"type": "text", "text": "b"}]},
                 {"role": "assistant", "content": null},
                 {"role": "developer", "content": "d"}],
    "max_completion_tokens": 9, "max_tokens": 3, "logprobs": true, "top_logprobs": 2,
    "priority": -7})");
  ASSERT_EQ(r.messages.size(), 4u);
  EXPECT_EQ(r.messages[1].content, "ab");
  EXPECT_EQ(r.messages[2].content, "");
  EXPECT_EQ(r.messages[3].role, "system");
  EXPECT_EQ(r.sampling.max_tokens, 9);  // max_completion_tokens wins
  EXPECT_EQ(r.logprobs, 2);
  EXPECT_EQ(r.priority, -7);
  EXPECT_EQ(parse_ok(ApiKind::kChat, R"({"messages": [{"role": "user", "content": "x"}],
                                         "logprobs": true})")
                .logprobs,
            0);
  EXPECT_EQ(parse_ok(ApiKind::kChat, R"({"messages": [{"role": "user", "content": "x"}],
                                         "logprobs": false})")
                .logprobs,
            -1);
}

struct BadCase {
  ApiKind kind;
  const char* body;
  const char* param;  // expected "param" of the error; "" = none
};

TEST(OpenAiRequest, RefusalsNameTheParameter) {
  const ApiKind C = ApiKind::kCompletion, H = ApiKind::kChat;
  const BadCase cases[] = {
      {C, R"({"prompt": "x", )", ""},         // bad JSON
      {C, R"([1, 2])", ""},                   // not an object
      {C, "{\"prompt\": \"\xff\xfe\"}", ""},  // invalid UTF-8
      {C, R"({})", "prompt"},
      {C, R"({"prompt": ""})", "prompt"},
      {C, R"({"prompt": []})", "prompt"},
      {C, R"({"prompt": 5})", "prompt"},
      {C, R"({"prompt": [1, "a"]})", "prompt"},
      {C, R"({"prompt": [1, 5000]})", "prompt"},
      {C, R"({"prompt": [-1]})", "prompt"},
      {C, R"({"prompt": [[]]})", "prompt"},
      {C, R"({"prompt": "x", "model": 3})", "model"},
      {C, R"({"prompt": "x", "max_tokens": -1})", "max_tokens"},
      {C, R"({"prompt": "x", "max_tokens": 0})", "max_tokens"},
      {C, R"({"prompt": "x", "max_tokens": "5"})", "max_tokens"},
      {C, R"({"prompt": "x", "max_tokens": 1.5})", "max_tokens"},
      {C, R"({"prompt": "x", "max_tokens": 1e300})", "max_tokens"},
      {C, R"({"prompt": "x", "max_tokens": 99999999999999999999999})", "max_tokens"},
      {C, R"({"prompt": "x", "max_tokens": 4096})", "max_tokens"},
      {C, R"({"prompt": "x", "temperature": -0.1})", "temperature"},
      {C, R"({"prompt": "x", "temperature": 2.5})", "temperature"},
      {C, R"({"prompt": "x", "temperature": "hot"})", "temperature"},
      {C, R"({"prompt": "x", "top_p": 0})", "top_p"},
      {C, R"({"prompt": "x", "top_p": 1.01})", "top_p"},
      {C, R"({"prompt": "x", "n": 0})", "n"},
      {C, R"({"prompt": "x", "n": 5})", "n"},
      {C, R"({"prompt": "x", "n": true})", "n"},
      {C, R"({"prompt": "x", "stop": 3})", "stop"},
      {C, R"({"prompt": "x", "stop": ["a", 3]})", "stop"},
      {C, R"({"prompt": "x", "stop": ["a", "b", "c"]})", "stop"},
      {C, R"({"prompt": "x", "stop": [""]})", "stop"},
      {C, R"({"prompt": "x", "stop": "123456789"})", "stop"},
      {C, R"({"prompt": "x", "seed": "1"})", "seed"},
      {C, R"({"prompt": "x", "presence_penalty": 3})", "presence_penalty"},
      {C, R"({"prompt": "x", "frequency_penalty": -2.5})", "frequency_penalty"},
      {C, R"({"prompt": "x", "logprobs": 6})", "logprobs"},
      {C, R"({"prompt": "x", "logprobs": true})", "logprobs"},
      {C, R"({"prompt": "x", "echo": true})", "echo"},
      {C, R"({"prompt": "x", "logit_bias": {"50256": -100}})", "logit_bias"},
      {H, R"({"messages": [{"role": "user", "content": "x"}], "logit_bias": {"7": 5}})",
       "logit_bias"},
      {C, R"({"prompt": "x", "best_of": 3})", "best_of"},
      {C, R"({"prompt": "x", "stream": "yes"})", "stream"},
      {C, R"({"prompt": "x", "stream_options": {"include_usage": true}})", "stream_options"},
      {C, R"({"prompt": "x", "stream": true, "stream_options": 1})", "stream_options"},
      {C, R"({"prompt": "x", "top_k": -2})", "top_k"},
      {C, R"({"prompt": "x", "min_p": 1.5})", "min_p"},
      {C, R"({"prompt": "x", "repetition_penalty": 0})", "repetition_penalty"},
      {C, R"({"prompt": "x", "ignore_eos": 1})", "ignore_eos"},
      {C, R"({"prompt": "x", "min_tokens": -1})", "min_tokens"},
      {C, R"({"prompt": "x", "max_tokens": 2, "min_tokens": 3})", "min_tokens"},
      {C, R"({"prompt": "x", "tier": "gold"})", "tier"},
      {C, R"({"prompt": "x", "priority": 100000})", "priority"},
      {C, R"({"prompt": "x", "user": 5})", "user"},
      {H, R"({})", "messages"},
      {H, R"({"messages": []})", "messages"},
      {H, R"({"messages": "hi"})", "messages"},
      {H, R"({"messages": [{"content": "x"}]})", "messages"},
      {H, R"({"messages": [{"role": "robot", "content": "x"}]})", "messages"},
      {H, R"({"messages": [{"role": "user"}]})", "messages"},
      {H, R"({"messages": [{"role": "user", "content": 5}]})", "messages"},
      {H, R"({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]})", "messages"},
      {H, R"({"messages": [{"role": "user", "content": "x"}], "logprobs": 2})", "logprobs"},
      {H, R"({"messages": [{"role": "user", "content": "x"}], "top_logprobs": 2})", "top_logprobs"},
      {H, R"({"messages": [{"role": "user", "content": "x"}], "logprobs": true,
              "top_logprobs": 9})",
       "top_logprobs"},
      {H, R"({"messages": [{"role": "user", "content": "x"}], "max_completion_tokens": -5})",
       "max_completion_tokens"},
  };
  for (const BadCase& c : cases) {
    ParseResult r = parse_api_request(c.kind, std::string(c.body), limits());
    const ApiError* e = std::get_if<ApiError>(&r);
    ASSERT_NE(e, nullptr) << "accepted: " << c.body;
    EXPECT_EQ(e->status, 400) << c.body;
    EXPECT_EQ(e->type, "invalid_request_error") << c.body;
    EXPECT_EQ(e->param, c.param) << c.body << " -> " << e->message;
    EXPECT_FALSE(e->message.empty());
    if (*c.param != 0) {
      EXPECT_NE(e->message.find(c.param), std::string::npos) << e->message;
    }
  }
}

}  // namespace
}  // namespace loom
