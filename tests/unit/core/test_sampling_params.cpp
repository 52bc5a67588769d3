#include <gtest/gtest.h>

#include "core/sampling_params.h"

namespace loom {
namespace {

TEST(SamplingParams, DefaultsAreValid) {
  EXPECT_TRUE(SamplingParams{}.validate(100).ok());
}

TEST(SamplingParams, RejectsOutOfRangeWithFieldName) {
  SamplingParams p;
  p.top_p = 0.0f;
  auto s = p.validate(100);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().find("top_p"), std::string::npos);
  p = SamplingParams{};
  p.max_tokens = 0;
  EXPECT_FALSE(p.validate(100).ok());
  p = SamplingParams{};
  p.stop_token_ids = {100};
  EXPECT_FALSE(p.validate(100).ok());
  p = SamplingParams{};
  p.temperature = -1.0f;
  EXPECT_FALSE(p.validate(100).ok());
}

}  // namespace
}  // namespace loom
