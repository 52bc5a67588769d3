// SamplingParams::validate cases not covered in tests/unit/core: each field's range, NaN, and
// that the message names the field.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>

#include "core/sampling_params.h"

namespace loom {
namespace {

struct Case {
  const char* field;
  std::function<void(SamplingParams&)> set;
};

TEST(SamplingParamsValidate, RejectsEachFieldOutOfRange) {
  const std::vector<Case> bad = {
      {"temperature", [](SamplingParams& p) { p.temperature = NAN; }},
      {"temperature", [](SamplingParams& p) { p.temperature = 1000.0f; }},
      {"top_k", [](SamplingParams& p) { p.top_k = -2; }},
      {"top_k", [](SamplingParams& p) { p.top_k = 101; }},
      {"top_p", [](SamplingParams& p) { p.top_p = 1.5f; }},
      {"top_p", [](SamplingParams& p) { p.top_p = NAN; }},
      {"min_p", [](SamplingParams& p) { p.min_p = -0.1f; }},
      {"min_p", [](SamplingParams& p) { p.min_p = 1.1f; }},
      {"repetition_penalty", [](SamplingParams& p) { p.repetition_penalty = 0.0f; }},
      {"repetition_penalty", [](SamplingParams& p) { p.repetition_penalty = INFINITY; }},
      {"presence_penalty", [](SamplingParams& p) { p.presence_penalty = 2.5f; }},
      {"frequency_penalty", [](SamplingParams& p) { p.frequency_penalty = -2.5f; }},
      {"min_tokens", [](SamplingParams& p) { p.min_tokens = -1; }},
      {"min_tokens", [](SamplingParams& p) { p.min_tokens = p.max_tokens + 1; }},
      {"logprobs", [](SamplingParams& p) { p.logprobs = 21; }},
      {"logprobs", [](SamplingParams& p) { p.logprobs = -2; }},
      {"stop",
       [](SamplingParams& p) {
         p.stop = {"ok", ""};
       }},
      {"stop_token_ids", [](SamplingParams& p) { p.stop_token_ids = {-1}; }},
  };
  for (const Case& c : bad) {
    SamplingParams p;
    c.set(p);
    Status s = p.validate(100);
    ASSERT_FALSE(s.ok()) << c.field;
    EXPECT_NE(s.error().find(c.field), std::string::npos) << s.error();
  }
}

TEST(SamplingParamsValidate, AcceptsTheEdgesOfEachRange) {
  const std::vector<std::function<void(SamplingParams&)>> good = {
      [](SamplingParams& p) { p.temperature = 0.0f; },
      [](SamplingParams& p) { p.top_k = -1; },
      [](SamplingParams& p) { p.top_k = 100; },
      [](SamplingParams& p) { p.top_p = 1e-6f; },
      [](SamplingParams& p) { p.min_p = 1.0f; },
      [](SamplingParams& p) { p.presence_penalty = -2.0f; },
      [](SamplingParams& p) { p.frequency_penalty = 2.0f; },
      [](SamplingParams& p) { p.min_tokens = p.max_tokens; },
      [](SamplingParams& p) { p.logprobs = 0; },
      [](SamplingParams& p) { p.logprobs = 20; },
      [](SamplingParams& p) {
        p.stop_token_ids = {0, 99};
      },
  };
  for (size_t i = 0; i < good.size(); ++i) {
    SamplingParams p;
    good[i](p);
    EXPECT_TRUE(p.validate(100).ok()) << "case " << i;
  }
}

}  // namespace
}  // namespace loom
