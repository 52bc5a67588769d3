// The engine's invariance tests on the GPU: a request's greedy output does not depend on the
// other requests in the batch, on chunked prefill, on preemption by swap or by recompute, nor on
// decode steps being replayed from CUDA graphs (padded to a bucketed batch) or launched eagerly.
// Model: the random-weight HF Llama of tools/make_hf_random_llama.py (LOOM_HF_RANDOM_DIR, set by
// scripts/gpu_test.sh), loaded from safetensors as bf16.
//
// Tolerance, and why: the CPU backend is bit-exact across batches, this one is not. cuBLAS picks
// its kernel (tile shape, split-K) by the number of rows, so one row's product rounds differently
// in a batch of 1 and of 40 (bf16 outputs, ~2^-9 relative), and graph padding changes the row
// count too. Random weights make near-ties between the top two tokens common, so such rounding
// may flip a greedy choice, after which the continuations legitimately differ. The check is
// therefore, for each pair of runs of the same request:
//   - until the first differing token, every step's sampled logprob agrees within 0.1. Measured
//     on an H200: rounding drift through the bf16 KV cache reaches 0.035 after ~20 steps (log-
//     probabilities near -4.5); a wrong KV slot, block table or position moves them by whole
//     units;
//   - at the first differing token (if any), both tokens are each other's top-2 alternatives and
//     their logprobs in either run are within 0.1 of each other: a genuine near-tie, not an error.
// How many requests stay token-identical is printed, not asserted: on random weights near-ties
// are common (on an H200, 1 to 3 of 3 requests, 8 of 12, 13 of 13 in the tests below), and every
// divergence is already held to the near-tie rule.
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <random>

#include "backend/cuda/cuda_backend.h"
#include "cuda/cuda_test_util.h"
#include "e2e/engine_fixture.h"
#include "model/model_file.h"

namespace loom::testing {
namespace {

constexpr float kLogprobTolerance = 0.1f;

struct GpuModel {
  std::shared_ptr<const ModelFile> file;
  std::shared_ptr<const Tokenizer> tokenizer;
};

const GpuModel* gpu_model() {
  static GpuModel model = [] {
    GpuModel m;
    const char* dir = std::getenv("LOOM_HF_RANDOM_DIR");
    if (!dir) return m;
    const std::string path = std::string(dir) + "/llama_d64";
    if (!std::filesystem::exists(path)) return m;
    auto f = ModelFile::open(path);
    if (!f.ok()) {
      ADD_FAILURE() << f.error();
      return m;
    }
    m.file = std::shared_ptr<const ModelFile>(std::move(f).value());
    auto t = Tokenizer::create(m.file->tokenizer_spec());
    if (!t.ok()) {
      ADD_FAILURE() << t.error();
      return m;
    }
    m.tokenizer = std::shared_ptr<const Tokenizer>(std::move(t).value());
    return m;
  }();
  return model.file ? &model : nullptr;
}

#define LOOM_REQUIRE_GPU_MODEL()                                       \
  LOOM_REQUIRE_GPU();                                                  \
  if (!gpu_model())                                                    \
  GTEST_SKIP() << "LOOM_HF_RANDOM_DIR/llama_d64 missing (run it from " \
                  "scripts/gpu_test.sh)"

std::unique_ptr<Engine> make_gpu_engine(SchedulerConfig sc, size_t kv_bytes, size_t swap_bytes,
                                        bool graphs = true) {
  CudaBackendOptions o;
  o.block_size = sc.block_size;
  o.kv_cache_bytes = kv_bytes;
  o.swap_space_bytes = swap_bytes;
  o.max_num_batched_tokens = std::max(sc.max_num_batched_tokens, 256);
  o.max_num_seqs = sc.max_num_seqs;
  o.cuda_graphs = graphs;
  auto backend = create_cuda_backend(gpu_model()->file, o);
  EXPECT_TRUE(backend.ok()) << backend.error();
  if (!backend.ok()) return nullptr;
  EngineConfig ec;
  ec.scheduler = sc;
  auto engine = std::make_unique<Engine>(std::move(backend).value(), gpu_model()->tokenizer,
                                         gpu_model()->file->config(), ec);
  engine->start();
  return engine;
}

Request make_request(int32_t i, int32_t max_tokens) {
  std::mt19937 rng(1000 + i);
  // Prompt ids must lie in the tokenizer's vocabulary (the engine rejects others), which for this
  // test checkpoint is smaller than the model's.
  const int32_t vocab =
      std::min(gpu_model()->file->config().vocab_size, gpu_model()->tokenizer->vocab_size());
  Request r;
  r.prompt.resize(8 + (i * 7) % 40);  // 8-47 tokens
  for (TokenId& t : r.prompt) t = static_cast<TokenId>(3 + rng() % (vocab - 3));
  r.sampling.max_tokens = max_tokens;
  r.sampling.temperature = 0.0f;
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

const float* logprob_of(const TokenLogprobs& lp, TokenId t) {
  if (lp.sampled.token == t) return &lp.sampled.logprob;
  for (const TokenLogprob& e : lp.top)
    if (e.token == t) return &e.logprob;
  return nullptr;
}

// Checks the rule in the header; returns whether the two runs agree on every token.
bool expect_equivalent(const EngineRun& a, const EngineRun& b, const std::string& what) {
  EXPECT_EQ(a.tokens.size(), b.tokens.size()) << what;
  const size_t n = std::min(a.tokens.size(), b.tokens.size());
  if (a.logprobs.size() < n || b.logprobs.size() < n) {
    ADD_FAILURE() << what << ": logprobs missing";
    return false;
  }
  for (size_t i = 0; i < n; ++i) {
    const TokenLogprobs &la = a.logprobs[i], &lb = b.logprobs[i];
    if (a.tokens[i] == b.tokens[i]) {
      EXPECT_NEAR(la.sampled.logprob, lb.sampled.logprob, kLogprobTolerance)
          << what << ", step " << i;
      continue;
    }
    // First divergence: must be a near-tie between the two tokens, seen from both runs.
    const TokenId ta = a.tokens[i], tb = b.tokens[i];
    const float *a_of_b = logprob_of(la, tb), *b_of_a = logprob_of(lb, ta);
    EXPECT_TRUE(a_of_b && b_of_a) << what << ", step " << i << ": tokens " << ta << " and " << tb
                                  << " are not each other's top-2 alternatives";
    if (a_of_b) {
      EXPECT_NEAR(la.sampled.logprob, *a_of_b, kLogprobTolerance) << what << " " << i;
    }
    if (b_of_a) {
      EXPECT_NEAR(lb.sampled.logprob, *b_of_a, kLogprobTolerance) << what << " " << i;
    }
    return false;
  }
  return true;
}

struct Tally {
  int compared = 0, identical = 0;
  void add(bool same) {
    ++compared;
    identical += same;
  }
  void report(const char* what) const {
    std::printf("%s: %d of %d requests token-identical\n", what, identical, compared);
  }
};

const std::vector<EngineRun>& alone_runs() {
  static std::vector<EngineRun> runs = [] {
    std::vector<EngineRun> out;
    auto engine = make_gpu_engine(base_config(), size_t{256} << 20, size_t{64} << 20);
    for (int32_t i : {0, 21, 42}) out.push_back(run_requests(*engine, {make_request(i, 24)})[0]);
    return out;
  }();
  return runs;
}

TEST(CudaEngineInvariance, AloneEqualsAmong63Others) {
  LOOM_REQUIRE_GPU_MODEL();
  const auto& alone = alone_runs();
  auto engine = make_gpu_engine(base_config(), size_t{256} << 20, size_t{64} << 20);
  std::vector<Request> reqs;
  for (int32_t i = 0; i < 64; ++i) reqs.push_back(make_request(i, i % 3 == 0 ? 24 : 8 + i % 20));
  auto runs = run_requests(*engine, reqs);
  Tally t;
  t.add(expect_equivalent(alone[0], runs[0], "request 0"));
  t.add(expect_equivalent(alone[1], runs[21], "request 21"));
  t.add(expect_equivalent(alone[2], runs[42], "request 42"));
  t.report("alone vs among 63");
}

TEST(CudaEngineInvariance, ChunkedPrefillOnOffAndChunkSizes) {
  LOOM_REQUIRE_GPU_MODEL();
  const auto& alone = alone_runs();
  Tally t;
  for (int32_t budget : {4, 16, 64}) {
    for (bool chunked : {true, false}) {
      SchedulerConfig sc = base_config();
      sc.max_num_batched_tokens = budget;
      sc.chunked_prefill = chunked;
      auto engine = make_gpu_engine(sc, size_t{256} << 20, size_t{64} << 20);
      std::vector<Request> reqs;
      for (int32_t i = 0; i < 48; i += 3) reqs.push_back(make_request(i, 24));
      auto runs = run_requests(*engine, reqs);
      const std::string what =
          "budget " + std::to_string(budget) + (chunked ? " chunked" : " unchunked");
      t.add(expect_equivalent(alone[0], runs[0], what + ", request 0"));
      t.add(expect_equivalent(alone[1], runs[7], what + ", request 21"));
    }
  }
  t.report("chunked prefill");
}

void run_preemption_case(PreemptionMode mode) {
  const auto& alone = alone_runs();
  SchedulerConfig sc = base_config();
  sc.preemption = mode;
  sc.admission = AdmissionPolicy::kOptimistic;
  sc.prefix_caching = false;
  // bf16 blocks of 16 tokens; 24 of them hold ~6 of the 26 sequences (prompt up to 47 + 24
  // output tokens = up to 5 blocks each).
  const ModelConfig& c = gpu_model()->file->config();
  const size_t block_bytes = size_t{16} * c.num_layers * 2 * c.num_kv_heads * c.head_dim * 2;
  auto engine = make_gpu_engine(sc, 24 * block_bytes, 400 * block_bytes);
  std::vector<Request> reqs;
  for (int32_t i = 0; i < 48; i += 2) reqs.push_back(make_request(i, 24));
  reqs.push_back(make_request(21, 24));
  reqs.push_back(make_request(42, 24));
  auto runs = run_requests(*engine, reqs);
  const int64_t swaps = engine->metrics().preemptions_swap.load();
  const int64_t recomputes = engine->metrics().preemptions_recompute.load();
  if (mode == PreemptionMode::kSwap) {
    EXPECT_GT(swaps, 0);
  } else {
    EXPECT_GT(recomputes, 0);
  }
  Tally t;
  t.add(expect_equivalent(alone[0], runs[0], "request 0"));
  t.add(expect_equivalent(alone[1], runs[24], "request 21"));
  t.add(expect_equivalent(alone[2], runs[25], "request 42"));
  for (const EngineRun& r : runs) EXPECT_EQ(r.tokens.size(), 24u);
  t.report(mode == PreemptionMode::kSwap ? "swap" : "recompute");
}

TEST(CudaEngineInvariance, PreemptedBySwap) {
  LOOM_REQUIRE_GPU_MODEL();
  run_preemption_case(PreemptionMode::kSwap);
}

TEST(CudaEngineInvariance, PreemptedByRecompute) {
  LOOM_REQUIRE_GPU_MODEL();
  run_preemption_case(PreemptionMode::kRecompute);
}

// Decode steps replayed from graphs (batch padded to 1, 2, 4, 8, 16, ...) against eager launches.
// 13 requests finishing at different steps walk the batch through many buckets.
TEST(CudaEngineInvariance, GraphsMatchEagerLaunches) {
  LOOM_REQUIRE_GPU_MODEL();
  std::vector<Request> reqs;
  for (int32_t i = 0; i < 13; ++i) reqs.push_back(make_request(i, 6 + 3 * i));
  SchedulerConfig sc = base_config();
  sc.prefix_caching = false;  // the repeat below must recompute its prompts the same way
  auto graphed = make_gpu_engine(sc, size_t{256} << 20, size_t{64} << 20, true);
  auto eager = make_gpu_engine(sc, size_t{256} << 20, size_t{64} << 20, false);
  auto a = run_requests(*graphed, reqs);
  auto b = run_requests(*eager, reqs);
  Tally t;
  for (size_t i = 0; i < reqs.size(); ++i)
    t.add(expect_equivalent(a[i], b[i], "request " + std::to_string(i)));
  t.report("graphs vs eager");
  // Replays are deterministic: the same requests again give the very same tokens.
  auto again = run_requests(*graphed, reqs);
  for (size_t i = 0; i < reqs.size(); ++i) EXPECT_EQ(a[i].tokens, again[i].tokens) << i;
}

}  // namespace
}  // namespace loom::testing
