// Shared helpers for tests that run the default model: locating it, loading it once, and
// driving the backend directly with hand-made paged batches (no scheduler).
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "model/model_file.h"

namespace loom::testing {

inline std::string default_model_path() {
  if (const char* p = std::getenv("LOOM_MODEL")) return p;
  return std::string(LOOM_SOURCE_DIR) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
}

inline std::shared_ptr<const ModelFile> default_model() {
  static std::shared_ptr<const ModelFile> model = [] {
    auto m = ModelFile::open(default_model_path());
    if (!m.ok()) {
      ADD_FAILURE() << "cannot open the default model (run scripts/fetch_model.sh): " << m.error();
      return std::shared_ptr<const ModelFile>();
    }
    return std::shared_ptr<const ModelFile>(std::move(m).value());
  }();
  return model;
}

inline nlohmann::json golden_index() {
  std::ifstream f(std::string(LOOM_SOURCE_DIR) + "/tests/golden/model_outputs/golden.json");
  return nlohmann::json::parse(f);
}

// `name` is the file name under tests/golden/model_outputs/ without ".f32".
inline std::vector<float> golden_first_logits(const std::string& name, size_t vocab) {
  std::vector<float> v(vocab);
  std::ifstream f(std::string(LOOM_SOURCE_DIR) + "/tests/golden/model_outputs/" + name + ".f32",
                  std::ios::binary);
  f.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(vocab * sizeof(float)));
  EXPECT_TRUE(f.good()) << name;
  return v;
}

inline double cosine(const float* a, const float* b, size_t n) {
  double ab = 0, aa = 0, bb = 0;
  for (size_t i = 0; i < n; ++i) {
    ab += static_cast<double>(a[i]) * b[i];
    aa += static_cast<double>(a[i]) * a[i];
    bb += static_cast<double>(b[i]) * b[i];
  }
  return ab / std::sqrt(aa * bb);
}

inline std::vector<int32_t> top_ids(const float* logits, int32_t vocab, int32_t k) {
  std::vector<int32_t> ids(vocab);
  for (int32_t i = 0; i < vocab; ++i) ids[i] = i;
  std::partial_sort(ids.begin(), ids.begin() + k, ids.end(), [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  });
  ids.resize(k);
  return ids;
}

// A sequence driven by hand: owns a contiguous range of blocks of the backend's pool.
struct ManualSeq {
  std::vector<TokenId> tokens;  // everything fed so far plus pending
  int32_t num_computed = 0;
  std::vector<BlockId> blocks;
};

// Builds one ragged batch where each sequence feeds `counts[i]` more of its tokens, and every
// sequence's last fed row gets logits.
inline ForwardBatch make_batch(std::vector<ManualSeq*> seqs, const std::vector<int32_t>& counts,
                               int32_t block_size) {
  ForwardBatch b;
  b.query_start.push_back(0);
  int32_t max_blocks = 1;
  for (auto* s : seqs)
    max_blocks = std::max<int32_t>(max_blocks, static_cast<int32_t>(s->blocks.size()));
  b.max_blocks_per_seq = max_blocks;
  for (size_t i = 0; i < seqs.size(); ++i) {
    ManualSeq& s = *seqs[i];
    for (int32_t j = 0; j < counts[i]; ++j) {
      const int32_t pos = s.num_computed + j;
      b.tokens.push_back(s.tokens[pos]);
      b.positions.push_back(pos);
      b.slot_mapping.push_back(static_cast<int64_t>(s.blocks[pos / block_size]) * block_size +
                               pos % block_size);
    }
    s.num_computed += counts[i];
    b.query_start.push_back(static_cast<int32_t>(b.tokens.size()));
    b.context_lens.push_back(s.num_computed);
    b.logits_rows.push_back(static_cast<int32_t>(b.tokens.size()) - 1);
    for (int32_t k = 0; k < max_blocks; ++k)
      b.block_tables.push_back(k < static_cast<int32_t>(s.blocks.size()) ? s.blocks[k] : -1);
  }
  return b;
}

}  // namespace loom::testing
