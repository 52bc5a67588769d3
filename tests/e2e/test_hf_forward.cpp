// The CPU backend on HF checkpoints (safetensors, F32 / F16 / BF16, sharded, llama3 RoPE
// scaling, Qwen2 biases, tied and untied output) against a float64 NumPy forward of the HF
// architecture (tools/make_tiny_hf_logits.py): every position's logits of a 14-token prompt.
#include <gtest/gtest.h>

#include <fstream>

#include "e2e/model_fixture.h"

namespace loom::testing {
namespace {

TEST(HfForward, TinyCheckpointsMatchNumpyReference) {
  const std::string root = std::string(LOOM_SOURCE_DIR) + "/tests/golden/model/tiny_hf/";
  std::ifstream f(root + "reference_logits.json");
  ASSERT_TRUE(f.good());
  const auto ref = nlohmann::json::parse(f);
  const auto tokens = ref["tokens"].get<std::vector<TokenId>>();
  for (const auto& [name, rows] : ref["variants"].items()) {
    auto model = ModelFile::open(root + name);
    ASSERT_TRUE(model.ok()) << name << ": " << model.error();
    std::shared_ptr<const ModelFile> shared(std::move(model).value());
    cpu::CpuBackendOptions options;
    options.kv_cache_bytes = size_t{4} << 20;
    options.swap_space_bytes = 0;
    auto backend = cpu::CpuBackend::create(shared, options);
    ASSERT_TRUE(backend.ok()) << name << ": " << backend.error();
    const int32_t vocab = backend.value()->vocab_size();

    ManualSeq s;
    s.tokens = tokens;
    s.blocks = {3, 1};  // non-contiguous pages on purpose
    ForwardBatch b = make_batch({&s}, {static_cast<int32_t>(tokens.size())}, options.block_size);
    b.logits_rows.clear();
    for (int32_t t = 0; t < static_cast<int32_t>(tokens.size()); ++t) b.logits_rows.push_back(t);
    std::vector<float> logits(tokens.size() * vocab);
    backend.value()->forward(b, logits.data());

    for (size_t t = 0; t < tokens.size(); ++t) {
      const auto want = rows[t].get<std::vector<float>>();
      // Weights are exact in every variant; the K/V cache holds f16 (rel. error ~5e-4), which
      // bounds how far a row may move.
      EXPECT_GT(cosine(logits.data() + t * vocab, want.data(), vocab), 0.9999)
          << name << " row " << t;
      EXPECT_EQ(top_ids(logits.data() + t * vocab, vocab, 1)[0], top_ids(want.data(), vocab, 1)[0])
          << name << " row " << t;
    }
  }
}

}  // namespace
}  // namespace loom::testing
