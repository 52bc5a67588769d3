// End-to-end invariance of the engine on the real model: a request's output (tokens and the
// logprobs of every step, compared bit for bit) does not depend on the other requests in the
// batch, on chunked prefill or its chunk size, nor on being preempted by swap or by recompute.
// With a seed, sampled outputs are identical too.
#include <gtest/gtest.h>

#include <cstring>

#include "e2e/engine_fixture.h"

namespace loom::testing {
namespace {

constexpr size_t kRoomyKv = size_t{256} << 20;

std::vector<TokenId> prompt_ids(int32_t i) {
  static const char* kTexts[] = {
      "The history of the printing press begins",
      "In mathematics, a prime number is",
      "def quicksort(items):\n",
      "The weather today is",
      "Photosynthesis is the process by which plants",
      "Once upon a time there was a little robot who",
      "To make a good cup of tea, first",
      "The three laws of motion are",
  };
  std::string text = kTexts[i % 8];
  for (int32_t k = 0; k < i / 8; ++k) text += " and then";  // varied lengths
  return default_tokenizer()->encode(text, true, false);
}

Request make_request(int32_t i, int32_t max_tokens, float temperature = 0.0f,
                     std::optional<uint64_t> seed = std::nullopt) {
  Request r;
  r.prompt = prompt_ids(i);
  r.sampling.max_tokens = max_tokens;
  r.sampling.temperature = temperature;
  r.sampling.seed = seed;
  r.sampling.ignore_eos = true;
  r.sampling.logprobs = 2;
  return r;
}

SchedulerConfig base_config() {
  SchedulerConfig sc;
  sc.max_num_batched_tokens = 256;
  sc.max_num_seqs = 64;
  return sc;
}

void expect_same(const EngineRun& a, const EngineRun& b, const std::string& what) {
  ASSERT_EQ(a.tokens, b.tokens) << what;
  ASSERT_EQ(a.logprobs.size(), b.logprobs.size()) << what;
  for (size_t i = 0; i < a.logprobs.size(); ++i) {
    // Bit-identical: the same logits give the same float.
    EXPECT_EQ(0, std::memcmp(&a.logprobs[i].sampled.logprob, &b.logprobs[i].sampled.logprob,
                             sizeof(float)))
        << what << " step " << i;
  }
  EXPECT_EQ(a.text, b.text) << what;
}

// Outputs of requests 0, 21 and 42 when each runs alone.
const std::vector<EngineRun>& alone_runs() {
  static std::vector<EngineRun> runs = [] {
    std::vector<EngineRun> out;
    auto engine = make_engine(base_config(), kRoomyKv);
    for (int32_t i : {0, 21, 42}) out.push_back(run_requests(*engine, {make_request(i, 24)})[0]);
    return out;
  }();
  return runs;
}

TEST(EngineInvariance, AloneEqualsAmong63Others) {
  const auto& alone = alone_runs();
  auto engine = make_engine(base_config(), kRoomyKv);
  std::vector<Request> reqs;
  for (int32_t i = 0; i < 64; ++i) reqs.push_back(make_request(i, i % 3 == 0 ? 24 : 8 + i % 20));
  auto runs = run_requests(*engine, reqs);
  expect_same(alone[0], runs[0], "request 0");
  expect_same(alone[1], runs[21], "request 21");
  expect_same(alone[2], runs[42], "request 42");
}

TEST(EngineInvariance, ChunkedPrefillOnOffAndChunkSizes) {
  const auto& alone = alone_runs();
  for (int32_t budget : {4, 16, 64}) {
    for (bool chunked : {true, false}) {
      SchedulerConfig sc = base_config();
      sc.max_num_batched_tokens = budget;
      sc.chunked_prefill = chunked;
      auto engine = make_engine(sc, kRoomyKv);
      std::vector<Request> reqs;
      for (int32_t i = 0; i < 48; i += 3) reqs.push_back(make_request(i, 24));
      auto runs = run_requests(*engine, reqs);
      const std::string what =
          "budget " + std::to_string(budget) + (chunked ? " chunked" : " unchunked");
      expect_same(alone[0], runs[0], what + ", request 0");
      expect_same(alone[1], runs[7], what + ", request 21");
    }
  }
}

// A KV pool far too small for 24 concurrent sequences forces preemptions.
void run_preemption_case(PreemptionMode mode) {
  const auto& alone = alone_runs();
  SchedulerConfig sc = base_config();
  sc.preemption = mode;
  sc.admission = AdmissionPolicy::kOptimistic;
  sc.prefix_caching = false;
  const size_t block_bytes =
      size_t{30} * 2 * 3 * 16 * 64 * 2;  // layers * K,V * heads * 16 * 64 * f16
  auto engine = make_engine(sc, 30 * block_bytes, 200 * block_bytes);
  std::vector<Request> reqs;
  for (int32_t i = 0; i < 48; i += 2) reqs.push_back(make_request(i, 24));
  reqs.push_back(make_request(21, 24));
  reqs.push_back(make_request(42, 24));
  auto runs = run_requests(*engine, reqs);
  const int64_t swaps = engine->metrics().preemptions_swap.load();
  const int64_t recomputes = engine->metrics().preemptions_recompute.load();
  if (mode == PreemptionMode::kSwap) {
    EXPECT_GT(swaps, 0);
  }
  if (mode == PreemptionMode::kRecompute) {
    EXPECT_GT(recomputes, 0);
    EXPECT_EQ(swaps, 0);
  }
  expect_same(alone[0], runs[0], "request 0");
  expect_same(alone[1], runs[24], "request 21");
  expect_same(alone[2], runs[25], "request 42");
  for (const auto& r : runs) EXPECT_EQ(r.tokens.size(), 24u);
}

TEST(EngineInvariance, PreemptedBySwap) {
  run_preemption_case(PreemptionMode::kSwap);
}
TEST(EngineInvariance, PreemptedByRecompute) {
  run_preemption_case(PreemptionMode::kRecompute);
}

TEST(EngineInvariance, SeededSamplingIsReproducible) {
  auto engine = make_engine(base_config(), kRoomyKv);
  auto alone = run_requests(*engine, {make_request(5, 24, 0.9f, 1234)})[0];
  std::vector<Request> reqs;
  for (int32_t i = 0; i < 16; ++i) reqs.push_back(make_request(i, 24, 0.9f, 77 + i));
  reqs[5] = make_request(5, 24, 0.9f, 1234);
  auto runs = run_requests(*engine, reqs);
  expect_same(alone, runs[5], "seeded, batched");
  // Another seed gives another continuation (over 24 tokens at temperature 0.9).
  auto other = run_requests(*engine, {make_request(5, 24, 0.9f, 999)})[0];
  EXPECT_NE(alone.tokens, other.tokens);

  SchedulerConfig sc = base_config();
  sc.preemption = PreemptionMode::kRecompute;
  sc.admission = AdmissionPolicy::kOptimistic;
  const size_t block_bytes = size_t{30} * 2 * 3 * 16 * 64 * 2;
  auto small = make_engine(sc, 24 * block_bytes);
  auto preempted = run_requests(*small, reqs);
  EXPECT_GT(small->metrics().preemptions_recompute.load(), 0);
  expect_same(alone, preempted[5], "seeded, preempted");
}

}  // namespace
}  // namespace loom::testing
