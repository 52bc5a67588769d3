// sample_token time for one row of a 49,152-token vocabulary (SmolLM2's), per configuration.
// Two logit shapes: "peaked" (a few strong candidates over a N(0, 2) background, like most decode
// steps of an instruct model) and "flat" (N(0, 3): a high-entropy step with a wide nucleus).
// Run: build/bench_sampler  (prints Google Benchmark's table; time per call is per token).
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "sample/sampler.h"

namespace loom {
namespace {

constexpr int32_t kVocab = 49152;

std::vector<float> make_logits(bool peaked) {
  std::mt19937 rng(1234);
  std::normal_distribution<float> dist(0.0f, peaked ? 2.0f : 3.0f);
  std::vector<float> logits(kVocab);
  for (float& l : logits) l = dist(rng);
  if (peaked) {
    const float peaks[] = {18.0f, 16.5f, 15.0f, 14.0f, 12.0f};
    for (int i = 0; i < 5; ++i) logits[(i + 1) * 7919] = peaks[i];
  }
  return logits;
}

enum Config { kGreedy, kGreedyLogprobs, kGreedyPenalties, kTopK50, kTopP09, kTopK50TopP09, kMinP };

SamplingParams make_params(Config c) {
  SamplingParams p;
  p.temperature = 0.8f;
  switch (c) {
    case kGreedy:
      p.temperature = 0.0f;
      break;
    case kGreedyLogprobs:
      p.temperature = 0.0f;
      p.logprobs = 5;
      break;
    case kGreedyPenalties:
      p.temperature = 0.0f;
      p.repetition_penalty = 1.1f;
      p.frequency_penalty = 0.5f;
      break;
    case kTopK50:
      p.top_k = 50;
      break;
    case kTopP09:
      p.top_p = 0.9f;
      break;
    case kTopK50TopP09:
      p.top_k = 50;
      p.top_p = 0.9f;
      break;
    case kMinP:
      p.min_p = 0.05f;
      break;
  }
  return p;
}

void BM_SampleToken(benchmark::State& state) {
  const auto config = static_cast<Config>(state.range(0));
  const bool peaked = state.range(1) != 0;
  const std::vector<float> logits = make_logits(peaked);
  const SamplingParams params = make_params(config);
  std::vector<TokenId> prompt(512), output(128);
  std::mt19937 rng(5);
  for (TokenId& t : prompt) t = static_cast<TokenId>(rng() % kVocab);
  for (TokenId& t : output) t = static_cast<TokenId>(rng() % kVocab);
  SamplerScratch scratch;
  SampleInput in;
  in.logits = logits.data();
  in.vocab_size = kVocab;
  in.params = &params;
  in.prompt = prompt;
  in.output = output;
  in.seed = 42;
  int32_t step = 0;
  for (auto _ : state) {
    in.step = step++;
    benchmark::DoNotOptimize(sample_token(in, scratch).token);
  }
}

const char* kNames[] = {"greedy",   "greedy+logprobs5", "greedy+penalties", "top_k50",
                        "top_p0.9", "top_k50+top_p0.9", "min_p0.05"};

void register_all() {
  for (int c = 0; c <= kMinP; ++c) {
    for (int peaked : {1, 0}) {
      std::string name = std::string("sample_token/") + kNames[c] + (peaked ? "/peaked" : "/flat");
      benchmark::RegisterBenchmark(name.c_str(), BM_SampleToken)
          ->Args({c, peaked})
          ->Unit(benchmark::kMicrosecond);
    }
  }
}

}  // namespace
}  // namespace loom

int main(int argc, char** argv) {
  loom::register_all();
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  return 0;
}
