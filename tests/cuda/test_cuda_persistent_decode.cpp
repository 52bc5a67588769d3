// The persistent decode kernel (decode_persistent.cuh) against the layer-by-layer kernels: the
// same random-weight model (same dummy seed) in two backends, one running one-token steps in the
// persistent kernel, the other with it turned off. Shapes cover head_dim 64 and 128, groups of 4
// and 8 query heads, both RoPE pairings, contexts from 1 to 1,100 tokens (one to all of the
// attention's splits), graphed and eager steps, and a one-token prefill chunk without logits.
//
// Tolerance: the two paths compute the same layer in a different order (per-warp row sums
// instead of one warp per row; gate and up kept in f32 before SwiGLU instead of rounded to bf16;
// the attention split differently), so logits agree to rounding, not bitwise: cosine > 0.9999
// and each side's top-1 within the other's top-5, as the backend's other invariance tests.
// Within the persistent path itself, results are bitwise reproducible (no atomics in the sums).
//
// The kernel also makes the greedy token of its logits (one 64-bit atomic maximum a CTA): it must
// be the argmax of the very logits it wrote (largest value, ties to the lowest index), as the
// argmax kernel and sample_token pick it, through forward_greedy and through the sampler.
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "backend/cuda/cuda_backend.cuh"
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/decode_persistent.cuh"
#include "cuda/backend_checks.h"
#include "cuda/cuda_test_util.h"

namespace loom::testing {
namespace {

constexpr int32_t kBlockSize = 16;

struct Shape {
  const char* name;
  ModelConfig config;
};

std::vector<Shape> shapes() {
  ModelConfig d128 = small_llama_config();
  d128.hidden_size = 1024;
  d128.intermediate_size = 2048;
  d128.num_layers = 3;
  d128.num_heads = 8;
  d128.num_kv_heads = 2;
  d128.head_dim = 128;
  ModelConfig g8 = small_llama_config();
  g8.num_layers = 2;
  g8.num_heads = 16;  // q_dim 1024 != hidden 512
  g8.num_kv_heads = 2;
  g8.intermediate_size = 1536;
  g8.rope_style = RopeStyle::kInterleaved;
  return {{"head_dim 64, group 4", small_llama_config()},
          {"head_dim 128, group 4", d128},
          {"head_dim 64, group 8, interleaved RoPE", g8}};
}

std::unique_ptr<Backend> make_backend(const ModelConfig& c, bool persistent, bool graphs = true,
                                      int32_t block_size = kBlockSize) {
  CudaBackendOptions o = test_backend_options(block_size);
  o.swap_space_bytes = size_t{4} << 20;
  o.max_num_batched_tokens = 1200;
  o.persistent_decode = persistent;
  o.cuda_graphs = graphs;
  return dummy_cuda_backend(c, o);
}

// The kernel's default plan for this shape on this GPU.
cuda::PersistentDecodePlan plan_for(const ModelConfig& c) {
  return cuda::plan_persistent_decode(c.num_layers, c.hidden_size, c.intermediate_size, c.num_heads,
                                      c.num_kv_heads, c.head_dim);
}

// Skips unless the persistent kernel runs for this shape on this GPU.
bool persistent_runs(const ModelConfig& c) {
  std::string why;
  if (!cuda::persistent_decode_supports(c.hidden_size, c.intermediate_size, c.num_heads,
                                        c.num_kv_heads, c.head_dim, cuda::KvCacheDtype::kBf16,
                                        &why))
    return false;
  return plan_for(c).grid > 0;
}

void expect_close(const std::vector<float>& a, const std::vector<float>& b, int32_t vocab,
                  const std::string& what) {
  EXPECT_GT(cosine(a.data(), b.data(), vocab), 0.9999) << what;
  const auto ta = top_ids(a.data(), vocab, 5), tb = top_ids(b.data(), vocab, 5);
  EXPECT_NE(std::find(tb.begin(), tb.end(), ta[0]), tb.end()) << what;
  EXPECT_NE(std::find(ta.begin(), ta.end(), tb[0]), ta.end()) << what;
}

// Prefill `prompt` tokens in chunks of at most `chunk` (one token: a one-token step itself), then
// greedy decode steps, on both backends; every step's logits compared (the prefill's last).
void compare_decode(Backend& persistent, Backend& layered, int32_t prompt, int32_t steps,
                    const std::string& what, int32_t chunk = 1 << 30,
                    int32_t block_size = kBlockSize) {
  const int32_t V = persistent.vocab_size();
  const int32_t blocks = (prompt + steps) / block_size + 1;
  ManualSeq p = seq(random_tokens(prompt, 7 + prompt, V), 0, blocks), r = p;
  std::vector<float> lp(V, NAN), lr(V, NAN);
  for (int32_t done = 0; done < prompt;) {
    const int32_t n = std::min(chunk, prompt - done);
    persistent.forward(make_batch({&p}, {n}, block_size), lp.data());
    layered.forward(make_batch({&r}, {n}, block_size), lr.data());
    done += n;
  }
  expect_close(lp, lr, V, what + ", prompt of " + std::to_string(prompt));
  for (int32_t step = 0; step < steps; ++step) {
    const TokenId next = top_ids(lr.data(), V, 1)[0];
    p.tokens.push_back(next);
    r.tokens.push_back(next);
    std::fill(lp.begin(), lp.end(), NAN);
    persistent.forward(make_batch({&p}, {1}, block_size), lp.data());
    layered.forward(make_batch({&r}, {1}, block_size), lr.data());
    expect_close(lp, lr, V,
                 what + ", context " + std::to_string(prompt + step + 1) + " (step " +
                     std::to_string(step) + ")");
  }
}

TEST(CudaPersistentDecode, MatchesLayerByLayerKernels) {
  LOOM_REQUIRE_GPU();
  for (const Shape& s : shapes()) {
    if (!persistent_runs(s.config)) GTEST_SKIP() << "no persistent kernel on this GPU";
    auto p = make_backend(s.config, true), r = make_backend(s.config, false);
    ASSERT_TRUE(p && r);
    for (int32_t prompt : {1, 37, 300, 1100}) compare_decode(*p, *r, prompt, 5, s.name);
  }
}

// A model of 8 KV heads, so the context is cut into few splits (the plan's attn_splits: the SMs
// over the KV heads), each of many keys.
ModelConfig eight_kv_heads() {
  ModelConfig c = small_llama_config();
  c.num_layers = 2;
  c.num_heads = 32;
  c.num_kv_heads = 8;
  c.max_context = 8192;
  return c;
}

// Long contexts: splits of many 16-key blocks, each warp taking several (the key loop's running
// maximum and sum carried across blocks, and several K/V stages a split): a prompt of at least 256
// keys a split (fed in chunks), then decode steps, against the layer-by-layer kernels.
TEST(CudaPersistentDecode, LongContextsMatchToo) {
  LOOM_REQUIRE_GPU();
  const ModelConfig c = eight_kv_heads();
  if (!persistent_runs(c)) GTEST_SKIP() << "no persistent kernel on this GPU";
  const cuda::PersistentDecodePlan plan = plan_for(c);
  const int32_t prompt = plan.attn_splits * 256 + 200;
  if (prompt + 8 > c.max_context) GTEST_SKIP() << "too many splits for this test's context";
  auto p = make_backend(c, true), r = make_backend(c, false);
  ASSERT_TRUE(p && r);
  compare_decode(*p, *r, prompt, 4, "long context", /*chunk=*/1000);
}

// The new token's K/V rows come from shared memory, the split's other keys' from ring stages: the
// new token in a stage's window with other keys (the other tests), alone in its split, and
// starting a block right after its split's full stages. Contexts of the last two kinds found with
// the kernel's own split rule, then a decode step each against the layer-by-layer kernels.
TEST(CudaPersistentDecode, NewTokenAtAStageEdgeMatchesToo) {
  LOOM_REQUIRE_GPU();
  const ModelConfig c = eight_kv_heads();
  if (!persistent_runs(c)) GTEST_SKIP() << "no persistent kernel on this GPU";
  const cuda::PersistentDecodePlan plan = plan_for(c);
  const int32_t stage_keys = cuda::persistent_kv_stage_keys(c.head_dim);
  int32_t alone = 0, after_stages = 0;  // contexts (keys, the new token's included)
  for (int32_t keys = 2; keys + 8 < c.max_context && (alone == 0 || after_stages == 0); ++keys) {
    const cuda::PersistentSplits sp = cuda::persistent_attention_splits(keys, plan.attn_splits);
    const int32_t offset = keys - 1 - (sp.used - 1) * sp.per;  // the new token's, in its split
    if (alone == 0 && sp.used > 1 && offset == 0) alone = keys;
    if (after_stages == 0 && offset > 0 && offset % stage_keys == 0) after_stages = keys;
  }
  if (after_stages == 0) GTEST_SKIP() << "no such context below " << c.max_context;
  ASSERT_GT(alone, 0);
  auto p = make_backend(c, true), r = make_backend(c, false);
  ASSERT_TRUE(p && r);
  compare_decode(*p, *r, alone - 1, 1, "the new token alone in its split", 1000);
  compare_decode(*p, *r, after_stages - 1, 1, "the new token after full stages", 1000);
}

// One or two weight copies in flight a CTA, rings of 5 and 6 stages (the backend measures them
// at start and keeps the fastest; here each is forced): the same logits.
TEST(CudaPersistentDecode, EveryRingChoiceMatches) {
  LOOM_REQUIRE_GPU();
  const ModelConfig c = eight_kv_heads();
  if (!persistent_runs(c)) GTEST_SKIP() << "no persistent kernel on this GPU";
  auto r = make_backend(c, false);
  ASSERT_TRUE(r);
  for (int32_t stages : {5, 6}) {
    for (int32_t in_flight : {1, 2}) {
      CudaBackendOptions o = test_backend_options(kBlockSize);
      o.max_num_batched_tokens = 1200;
      o.persistent_in_flight = in_flight;
      o.persistent_stages = stages;
      auto p = dummy_cuda_backend(c, o);
      ASSERT_TRUE(p);
      compare_decode(
          *p, *r, 300, 3,
          std::to_string(stages) + " stages, " + std::to_string(in_flight) + " copies in flight");
    }
  }
}

// KV blocks of 8 tokens: a 16-key block of the attention's key loop spans two of them (each key's
// row looked up on its own), and splits start inside a KV block.
TEST(CudaPersistentDecode, SmallKvBlocksMatchToo) {
  LOOM_REQUIRE_GPU();
  const ModelConfig c = small_llama_config();
  if (!persistent_runs(c)) GTEST_SKIP() << "no persistent kernel on this GPU";
  auto p = make_backend(c, true, true, 8), r = make_backend(c, false, true, 8);
  ASSERT_TRUE(p && r);
  for (int32_t prompt : {29, 700}) compare_decode(*p, *r, prompt, 3, "KV blocks of 8", 1 << 30, 8);
}

// The output layer runs in chunks of at most a CTA's row-sum room: vocabularies of many chunks a
// CTA, with rows smaller than a ring stage (hidden 512: 32 rows a stage, more than the room) and
// larger (hidden 1024), against the output layer of the layered path.
TEST(CudaPersistentDecode, OutputLayerInChunks) {
  LOOM_REQUIRE_GPU();
  for (const auto& [shape, vocab] :
       {std::pair{shapes()[0], 20011}, std::pair{shapes()[1], 33333}}) {
    ModelConfig c = shape.config;
    c.vocab_size = vocab;
    if (!persistent_runs(c)) GTEST_SKIP() << "no persistent kernel on this GPU";
    auto p = make_backend(c, true), r = make_backend(c, false);
    ASSERT_TRUE(p && r);
    compare_decode(*p, *r, 37, 3, std::string(shape.name) + ", vocab " + std::to_string(vocab));
  }
}

TEST(CudaPersistentDecode, EagerStepsMatchToo) {
  LOOM_REQUIRE_GPU();
  const ModelConfig c = small_llama_config();
  if (!persistent_runs(c)) GTEST_SKIP() << "no persistent kernel on this GPU";
  auto p = make_backend(c, true, /*graphs=*/false), r = make_backend(c, false, false);
  ASSERT_TRUE(p && r);
  compare_decode(*p, *r, 50, 4, "eager");
}

// A one-token prefill chunk that asks for no logits still writes its K/V: the next step's logits
// match the layered path's.
TEST(CudaPersistentDecode, ChunkWithoutLogitsWritesTheCache) {
  LOOM_REQUIRE_GPU();
  const ModelConfig c = small_llama_config();
  if (!persistent_runs(c)) GTEST_SKIP() << "no persistent kernel on this GPU";
  auto p = make_backend(c, true), r = make_backend(c, false);
  ASSERT_TRUE(p && r);
  const int32_t V = p->vocab_size();
  auto run = [&](Backend& b) {
    ManualSeq s = seq(random_tokens(21, 11, V), 0, 2);
    std::vector<float> logits(V, NAN);
    b.forward(make_batch({&s}, {19}, kBlockSize), logits.data());
    ForwardBatch chunk = make_batch({&s}, {1}, kBlockSize);  // token 19, no logits
    chunk.logits_rows.clear();
    b.forward(chunk, nullptr);
    std::fill(logits.begin(), logits.end(), NAN);
    b.forward(make_batch({&s}, {1}, kBlockSize), logits.data());  // token 20
    return logits;
  };
  expect_close(run(*p), run(*r), V, "after a chunk without logits");
}

// Bitwise reproducible: the same tokens in other blocks give the same logits.
TEST(CudaPersistentDecode, IsDeterministic) {
  LOOM_REQUIRE_GPU();
  const ModelConfig c = small_llama_config();
  if (!persistent_runs(c)) GTEST_SKIP() << "no persistent kernel on this GPU";
  auto p = make_backend(c, true);
  ASSERT_TRUE(p);
  const int32_t V = p->vocab_size();
  const auto toks = random_tokens(200, 12, V);
  ManualSeq a = seq(toks, 0, 14), b = seq(toks, 20, 14);
  std::vector<float> la(V), lb(V);
  p->forward(make_batch({&a}, {199}, kBlockSize), la.data());
  p->forward(make_batch({&b}, {199}, kBlockSize), lb.data());
  for (int step = 0; step < 3; ++step) {
    p->forward(make_batch({&a}, {1}, kBlockSize), la.data());
    std::fill(lb.begin(), lb.end(), NAN);
    p->forward(make_batch({&b}, {1}, kBlockSize), lb.data());
    EXPECT_EQ(la, lb) << "step " << step;
    a.tokens.push_back(static_cast<TokenId>(step + 3));
    b.tokens.push_back(static_cast<TokenId>(step + 3));
  }
}

// The argmax key's order is the argmax's: larger values win, equal values (-0.0 == +0.0) go to
// the lower index, NaN never wins, and a row of -inf and NaN gives token 0. Host-only.
TEST(CudaPersistentDecode, ArgmaxKeyOrdersAsTheArgmax) {
  using cuda::persistent_argmax_key;
  using cuda::persistent_argmax_token;
  const float inf = std::numeric_limits<float>::infinity(), nan = std::nanf("");
  auto argmax = [](const std::vector<float>& v) {
    uint64_t best = 0;
    for (size_t i = 0; i < v.size(); ++i)
      best = std::max(best, persistent_argmax_key(v[i], static_cast<int32_t>(i)));
    return persistent_argmax_token(best);
  };
  EXPECT_EQ(argmax({1.0f, 3.0f, 2.0f}), 1);
  EXPECT_EQ(argmax({-3.0f, -1.0f, -2.0f}), 1);
  EXPECT_EQ(argmax({-1.0f, 0.5f, -0.25f}), 1);
  EXPECT_EQ(argmax({2.0f, 5.0f, 5.0f, 1.0f}), 1);  // ties: the lower index
  EXPECT_EQ(argmax({-1.0f, 0.0f, -0.0f}), 1);      // +0 and -0 tie
  EXPECT_EQ(argmax({-1.0f, -0.0f, 0.0f}), 1);
  EXPECT_EQ(argmax({nan, -5.0f, nan}), 1);  // NaN never wins
  EXPECT_EQ(argmax({-inf, -inf, 1e-30f}), 2);
  EXPECT_EQ(argmax({-inf, nan, -inf}), 0);  // nothing above -inf: token 0
  EXPECT_EQ(argmax({nan, nan}), 0);
  EXPECT_EQ(argmax({inf, 3.0f, inf}), 0);
  EXPECT_EQ(argmax({-1e30f, -inf, 1.17e-38f, 1.4e-45f}), 2);  // denormals order too
  // Large indices survive the inversion.
  EXPECT_EQ(persistent_argmax_token(persistent_argmax_key(1.0f, 131071)), 131071);
}

// The greedy token the kernel makes is the argmax of its logits row, read through forward_greedy
// and through the sampler (a greedy row, and a row whose penalties make the sampler's own kernel
// run), step after step; the layer-by-layer backend's forward_greedy agrees on the same logits.
TEST(CudaPersistentDecode, GreedyTokenIsTheArgmaxOfItsLogits) {
  LOOM_REQUIRE_GPU();
  for (const Shape& s : shapes()) {
    if (!persistent_runs(s.config)) GTEST_SKIP() << "no persistent kernel on this GPU";
    for (bool graphs : {true, false}) {
      SCOPED_TRACE(std::string(s.name) + (graphs ? ", graphed" : ", eager"));
      CudaBackendOptions o = test_backend_options(kBlockSize);
      o.swap_space_bytes = size_t{4} << 20;
      o.max_num_batched_tokens = 1200;
      o.cuda_graphs = graphs;
      auto created = cuda::CudaBackend::create(s.config, nullptr, o);
      ASSERT_TRUE(created.ok()) << created.error();
      cuda::CudaBackend& b = *created.value();
      const int32_t V = b.vocab_size();
      SamplingParams greedy;
      greedy.temperature = 0.0f;
      // A device row (the sampler's own kernel): min_tokens masks a stop id other than the
      // argmax, which leaves the argmax as it is.
      SamplingParams masked = greedy;
      masked.min_tokens = 1000;
      ManualSeq m = seq(random_tokens(40, 5, V), 0, 6);
      std::vector<float> logits(V, NAN);
      b.forward(make_batch({&m}, {40}, kBlockSize), logits.data());
      for (int32_t step = 0; step < 6; ++step) {
        m.tokens.push_back(top_ids(logits.data(), V, 1)[0]);
        const ForwardBatch batch = make_batch({&m}, {1}, kBlockSize);
        std::fill(logits.begin(), logits.end(), NAN);
        b.forward(batch, logits.data());
        const int32_t want = top_ids(logits.data(), V, 1)[0];
        int32_t id = -1;
        b.forward_greedy(batch, &id);
        EXPECT_EQ(id, want) << "forward_greedy, step " << step;
        masked.stop_token_ids = {(want + 1) % V};
        for (const SamplingParams* params : {&greedy, &masked}) {
          SampleInput in;
          in.vocab_size = V;
          in.params = params;
          std::vector<SampleOutput> out(1);
          ASSERT_TRUE(b.forward_sample(batch, {&in, 1}, out));
          EXPECT_EQ(out[0].token, want)
              << (params == &greedy ? "greedy" : "masked") << " row, step " << step;
        }
      }
    }
  }
}

}  // namespace
}  // namespace loom::testing
