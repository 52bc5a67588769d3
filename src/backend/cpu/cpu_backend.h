// The CPU backend: runs the Llama / Qwen2 decoder over a flat ragged batch with the KV cache in
// pages of f16, int8 or int4 rows (kv_quant.h). The budgets are in bytes, so a smaller row format
// gives proportionally more blocks. It is the reference every other backend is checked against.
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/attention.h"
#include "backend/cpu/kv_storage.h"
#include "backend/cpu/ops.h"
#include "model/model_file.h"
#include "util/result.h"

namespace loom::cpu {

struct CpuBackendOptions {
  int32_t block_size = 16;                      // tokens per KV block
  size_t kv_cache_bytes = size_t{1} << 30;      // device pool budget
  size_t swap_space_bytes = size_t{512} << 20;  // host swap pool budget
  int32_t num_threads = 0;                      // 0 = every core
  KvDtype kv_dtype = KvDtype::kF16;             // row format of the KV cache (kv_quant.h)
};

class CpuBackend final : public Backend {
 public:
  static Result<std::unique_ptr<CpuBackend>> create(std::shared_ptr<const ModelFile> model,
                                                    const CpuBackendOptions& options);

  std::string name() const override { return "cpu"; }
  int32_t vocab_size() const override { return config_.vocab_size; }
  KvPoolInfo kv_pool() const override;
  void forward(const ForwardBatch& batch, float* logits) override;
  void swap_out(std::span<const BlockCopy> copies) override { kv_.swap_out(copies); }
  void swap_in(std::span<const BlockCopy> copies) override { kv_.swap_in(copies); }
  void copy_blocks(std::span<const BlockCopy> copies) override { kv_.copy_blocks(copies); }

 private:
  struct LayerWeights {
    const TensorView* wq = nullptr;  // [hidden] -> [q_dim]
    const TensorView* wk = nullptr;  // [hidden] -> [kv_dim]
    const TensorView* wv = nullptr;
    const TensorView* wo = nullptr;      // [q_dim] -> [hidden]
    const TensorView* w_gate = nullptr;  // [hidden] -> [ffn]
    const TensorView* w_up = nullptr;
    const TensorView* w_down = nullptr;      // [ffn] -> [hidden]
    std::vector<float> attn_norm, ffn_norm;  // [hidden]
    std::vector<float> bq, bk, bv;           // Qwen2 biases, else empty
  };

  CpuBackend(std::shared_ptr<const ModelFile> model, KvLayout layout, int32_t num_device_blocks,
             int32_t num_host_blocks);

  std::shared_ptr<const ModelFile> model_;
  ModelConfig config_;
  std::vector<LayerWeights> layers_;
  const TensorView* token_embd_ = nullptr;  // [vocab][hidden]
  const TensorView* output_ = nullptr;      // [vocab][hidden] (the embedding when tied)
  std::vector<float> output_norm_;
  AttentionShape attn_shape_;
  KvStorage kv_;
  RopeTables rope_;
  // Scratch, grown on demand: [T][...] activations of the current step.
  std::vector<float> x_, h_, q_, k_, v_, attn_, gate_, up_, rows_;
};

}  // namespace loom::cpu
