// The CUDA backend: the Llama / Qwen2 decoder over a flat ragged batch with bf16 weights, f32
// residual stream and a bf16 paged KV cache on one GPU.
//
// Per layer (T new tokens): add+RMSNorm -> fused QKV product (f32 out) -> RoPE + K/V cache write
// -> paged attention -> O product (f32) -> add+RMSNorm -> fused gate/up product (bf16) -> SwiGLU
// -> down product (f32). Products go through cuBLAS; everything else is this folder's kernels.
// Tensor parallelism later splits heads and FFN columns by rank, with an all-reduce after the O
// and down products: the fused weights keep per-head row blocks to make that split a slice.
#pragma once

#include <memory>
#include <vector>

#include "backend/cuda/attention.cuh"
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/gemm.cuh"
#include "backend/cuda/kv_swap.cuh"

namespace loom::cuda {

class CudaBackend final : public Backend {
 public:
  // weights == nullptr: random weights (dummy load format).
  static Result<std::unique_ptr<CudaBackend>> create(const ModelConfig& config,
                                                     std::shared_ptr<const ModelFile> weights,
                                                     const CudaBackendOptions& options);
  ~CudaBackend() override;

  std::string name() const override { return "cuda"; }
  int32_t vocab_size() const override { return config_.vocab_size; }
  KvPoolInfo kv_pool() const override;
  void forward(const ForwardBatch& batch, float* logits) override;
  void swap_out(std::span<const BlockCopy> copies) override;
  void swap_in(std::span<const BlockCopy> copies) override;
  void copy_blocks(std::span<const BlockCopy> copies) override;

  // Runs the forward and samples greedily on the GPU: only R token ids come back.
  void forward_greedy(const ForwardBatch& batch, int32_t* token_ids);
  cudaStream_t stream() const { return stream_; }
  const ModelConfig& config() const { return config_; }

 private:
  struct LayerWeights {
    bf16* w_qkv = nullptr;       // [q_dim + 2 kv_dim][hidden]
    bf16* w_o = nullptr;         // [hidden][q_dim]
    bf16* w_gate_up = nullptr;   // [2 ffn][hidden]
    bf16* w_down = nullptr;      // [hidden][ffn]
    float* attn_norm = nullptr;  // [hidden]
    float* ffn_norm = nullptr;
    float* qkv_bias = nullptr;  // [q_dim + 2 kv_dim] or null
  };
  template <class T>
  struct DeviceArray {
    T* ptr = nullptr;
    int64_t capacity = 0;
  };

  CudaBackend(const ModelConfig& config, const CudaBackendOptions& options);
  Status init(std::shared_ptr<const ModelFile> weights);
  template <class T>
  T* alloc(int64_t n);
  template <class T>
  void ensure(DeviceArray<T>& a, int64_t n);
  void reserve_activations(int32_t num_tokens, int32_t num_rows, int64_t workspace_floats);
  void run_layers(const ForwardBatch& batch);  // leaves logits_ filled for batch.logits_rows

  ModelConfig config_;
  CudaBackendOptions options_;
  int32_t num_sms_ = 0;
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<Gemm> gemm_;
  std::vector<void*> allocations_;  // freed in the destructor

  bf16* token_embd_ = nullptr;  // [vocab][hidden]
  bf16* lm_head_ = nullptr;     // [vocab][hidden] (token_embd_ when tied)
  float* output_norm_ = nullptr;
  float* inv_freq_ = nullptr;  // [head_dim / 2]
  std::vector<LayerWeights> layers_;

  KvCacheShape cache_shape_;
  int32_t num_device_blocks_ = 0;
  bf16* kv_cache_ = nullptr;
  std::unique_ptr<KvSwapPool> swap_;

  // Per-step inputs: one pinned staging buffer, one upload.
  DeviceArray<int64_t> meta_dev_;
  int64_t* meta_host_ = nullptr;
  int64_t meta_host_capacity_ = 0;
  // Activations, grown on demand (a growth synchronises once).
  DeviceArray<float> x_, delta_, qkv_, q_, logits_, attn_ws_;
  DeviceArray<bf16> h_, attn_out_, gate_up_, act_, rows_h_;
  DeviceArray<int32_t> ids_;
};

}  // namespace loom::cuda
