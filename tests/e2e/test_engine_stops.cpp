// Text the stop-string matcher holds back (it might be the start of a stop string) must still
// reach the client when the sequence ends for another reason: a stop token, EOS or the length
// limit. The held text is built from the model's own greedy continuation, so the test does not
// depend on what the model says.
#include <gtest/gtest.h>

#include <algorithm>

#include "e2e/engine_fixture.h"

namespace loom::testing {
namespace {

Request greedy_request(int32_t max_tokens) {
  Request r;
  r.prompt = default_tokenizer()->encode("The history of the printing press begins", true, false);
  r.sampling.max_tokens = max_tokens;
  r.sampling.temperature = 0.0f;
  r.sampling.ignore_eos = true;
  return r;
}

std::string text_of(const std::vector<TokenId>& tokens, size_t begin, size_t end) {
  return default_tokenizer()->decode(
      std::vector<TokenId>(tokens.begin() + begin, tokens.begin() + end), true);
}

TEST(EngineStops, HeldStopPrefixIsReleasedWhenAStopTokenEndsTheSequence) {
  SchedulerConfig sc;
  auto engine = make_engine(sc, size_t{64} << 20);
  const EngineRun ref = run_requests(*engine, {greedy_request(16)})[0];
  ASSERT_EQ(ref.tokens.size(), 16u);

  // The stop token: the first token from position 6 on that does not occur before it.
  size_t k = 6;
  while (k < ref.tokens.size() && std::find(ref.tokens.begin(), ref.tokens.begin() + k,
                                            ref.tokens[k]) != ref.tokens.begin() + k)
    ++k;
  ASSERT_LT(k, ref.tokens.size()) << "no usable stop token in the continuation";
  const std::string held = text_of(ref.tokens, 2, k);
  ASSERT_FALSE(held.empty());

  Request r = greedy_request(16);
  r.sampling.stop_token_ids = {ref.tokens[k]};
  // From token 2 on, everything generated is a prefix of this string, so the matcher holds it.
  r.sampling.stop = {held + "\x7f never generated"};
  const EngineRun run = run_requests(*engine, {r})[0];

  EXPECT_EQ(run.finish, FinishReason::kStop);
  ASSERT_EQ(run.tokens.size(), k + 1);  // the stop token is reported, its text is not
  EXPECT_TRUE(std::equal(run.tokens.begin(), run.tokens.end(), ref.tokens.begin()));
  EXPECT_EQ(run.text, text_of(ref.tokens, 0, k));
}

TEST(EngineStops, HeldStopPrefixIsReleasedAtTheLengthLimit) {
  SchedulerConfig sc;
  auto engine = make_engine(sc, size_t{64} << 20);
  const EngineRun ref = run_requests(*engine, {greedy_request(10)})[0];
  ASSERT_EQ(ref.tokens.size(), 10u);
  Request r = greedy_request(10);
  r.sampling.stop = {text_of(ref.tokens, 3, 10) + "\x7f never generated"};
  const EngineRun run = run_requests(*engine, {r})[0];
  EXPECT_EQ(run.finish, FinishReason::kLength);
  EXPECT_EQ(run.tokens, ref.tokens);
  EXPECT_EQ(run.text, ref.text);
}

}  // namespace
}  // namespace loom::testing
