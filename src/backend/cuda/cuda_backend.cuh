// The CUDA backend: the Llama / Qwen2 decoder over a flat ragged batch with bf16 weights, f32
// residual stream and a paged KV cache (bf16, or fp8 / int8: kv_cache_format.h) on one GPU.
//
// Per layer (T new tokens): add+RMSNorm -> fused QKV product (f32 out) -> RoPE + K/V cache write
// -> paged attention -> O product (f32) -> add+RMSNorm -> fused gate/up product (bf16) -> SwiGLU
// -> down product (f32). Products go through cuBLAS; everything else is this folder's kernels.
// Steps of a handful of tokens take the fused small-batch products (gemv.cuh) instead, and
// one-token steps the persistent kernel that runs every layer in one launch
// (decode_persistent.cuh).
// Tensor parallelism later splits heads and FFN columns by rank, with an all-reduce after the O
// and down products: the fused weights keep per-head row blocks to make that split a slice.
#pragma once

#include <memory>
#include <vector>

#include "backend/cuda/attention.cuh"
#include "backend/cuda/attention_prefill.cuh"
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/decode_persistent.cuh"
#include "backend/cuda/device_sampler.cuh"
#include "backend/cuda/gemm.cuh"
#include "backend/cuda/graph_cache.cuh"
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
  // Samples on the GPU (device_sampler.cuh): only token ids come back, except for rows that ask
  // for logprobs, whose logits row is copied and sampled on the host. launch_sample +
  // finish_sample, with nothing else in flight.
  bool forward_sample(const ForwardBatch& batch, std::span<const SampleInput> rows,
                      std::span<SampleOutput> out) override;
  // Overlapped steps: launch_sample enqueues the upload, the pending tokens' fill
  // (pending_tokens.cuh), the layers and the sampler, and returns; finish_sample waits for the
  // oldest launch's event. A pending token must name a row of the previous launch_sample that
  // was sampled on the device: a row that asks for logprobs is decided on the host, in
  // finish_sample, so the step after it cannot read its token (LOOM_CHECK).
  bool launch_sample(const ForwardBatch& batch, std::span<const SampleInput> rows) override;
  void finish_sample(std::span<SampleOutput> out) override;
  bool supports_overlap() const override { return true; }
  void swap_out(std::span<const BlockCopy> copies) override;
  void swap_in(std::span<const BlockCopy> copies) override;
  void copy_blocks(std::span<const BlockCopy> copies) override;

  // Runs the forward and samples greedily on the GPU: only R token ids come back. Like forward(),
  // takes no pending tokens.
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
  // One step's inputs on the device (views into meta_dev_) and its padded sizes.
  struct StepInputs {
    int32_t T = 0, R = 0, S = 0;  // tokens, logits rows, sequences (padding included)
    int32_t stride = 0;           // block-table row length
    int32_t splits = 1, keys_per_split = 32;
    const int64_t* slots = nullptr;                          // [T]
    const int32_t *tokens = nullptr, *positions = nullptr;   // [T]
    const int32_t *seq_of_token = nullptr, *rows = nullptr;  // [T], [R]
    const int32_t* tables = nullptr;                         // [S][stride]
    int32_t num_tiles = 0;               // prefill tiles (attention_prefill.cuh)
    const PrefillTile* tiles = nullptr;  // [num_tiles]
    const uint8_t* skip = nullptr;       // [T] 1 = token in a tile (null when no tiles)
    // The one token is the greedy token the previous step's persistent kernel left in
    // persistent_argmax_, and `tokens` points there (no fill kernel between the steps).
    bool token_from_argmax = false;
  };
  // Leaves logits_ filled for batch.logits_rows (row i of logits_ = logits_rows[i]); pure decode
  // steps replay a captured graph (graph_cache.cuh), others launch their kernels one by one.
  // Pending tokens (launch_sample only) are filled from the sampler's device ids of the previous
  // launch before the layers (or the graph) read the tokens.
  void run_layers(const ForwardBatch& batch);
  bool graphable(const ForwardBatch& batch) const;
  // Uploads the batch's metadata, padded to `pad_to` one-token rows (0: none) with block tables
  // of `stride` entries, fills its pending tokens on the device (launch_fill_pending_tokens,
  // or for a lone sequence after a persistent step, reads its token where that kernel left it)
  // and picks the attention split.
  StepInputs stage_inputs(const ForwardBatch& batch, int32_t pad_to, int32_t stride);
  void launch_layers(const StepInputs& in);
  // The logits rows (in.rows) of x (+ delta, the last residual add not yet made, or null):
  // the output RMSNorm, then the output layer, into logits_.
  void launch_output_layer(const StepInputs& in, const float* delta);
  // The persistent kernel's set-up (init) and whether a step takes it.
  void init_persistent_decode();
  // Its arguments for a one-token step (device pointers of the step's token, position, KV slot
  // and block table); with_logits: the output layer and the greedy argmax as its last phase.
  PersistentDecodeArgs persistent_args(const int32_t* token, const int32_t* position,
                                       const int64_t* slot, const int32_t* table,
                                       bool with_logits) const;
  // Chooses the persistent kernel's ring depth and copies in flight
  // (CudaBackendOptions::persistent_in_flight); once the KV cache exists.
  void choose_persistent_ring();
  bool persistent_step(const StepInputs& in) const;
  bool persistent_logits(const StepInputs& in) const;  // a persistent step that makes logits

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
  // The persistent decode kernel (decode_persistent.cuh): plan.grid == 0 when not used.
  PersistentDecodePlan persistent_plan_;
  PersistentLayer* persistent_layers_ = nullptr;  // device [num_layers]
  uint8_t* persistent_ws_ = nullptr;              // the kernel's exchange workspace
  unsigned* persistent_sync_ = nullptr;           // kPersistentSyncWords
  // The greedy argmax of the kernel's logits row (it computes it whenever it makes logits).
  int32_t* persistent_argmax_ = nullptr;  // device [1]

  KvCacheShape cache_shape_;
  int32_t num_device_blocks_ = 0;  // blocks the scheduler may use
  int32_t padding_block_ = -1;     // one more block, written only by graph padding rows
  uint8_t* kv_cache_ = nullptr;    // blocks of cache_shape_.block_bytes() bytes
  std::unique_ptr<KvSwapPool> swap_;

  // Per-step inputs: one pinned staging buffer, one upload. Two staging buffers, used in turn
  // (slot = staged steps % 2): with overlapped steps the upload of step N+1 may still be queued
  // when step N+2 is staged. Each slot's event is recorded after its upload, and staging into a
  // slot waits for it (already complete when the launches follow Backend's protocol: finish N,
  // which comes before launch N+2, waited for an event recorded after N's upload). The device
  // side stays single: its readers and the next upload are ordered on stream_.
  DeviceArray<int64_t> meta_dev_;
  int64_t* meta_host_[2] = {nullptr, nullptr};
  int64_t meta_host_capacity_[2] = {0, 0};  // 8-byte words
  cudaEvent_t meta_uploaded_[2] = {nullptr, nullptr};
  uint64_t steps_staged_ = 0;
  // Activations, grown on demand (a growth synchronises once).
  DeviceArray<float> x_, delta_, qkv_, q_, logits_, attn_ws_;
  DeviceArray<bf16> h_, attn_out_, gate_up_, act_, rows_h_;
  DeviceArray<int32_t> ids_;
  // forward_greedy's ids come back through this pinned buffer: a copy into the caller's pageable
  // memory would go through the driver's own staging and block the host longer.
  int32_t* greedy_ids_host_ = nullptr;
  int32_t greedy_ids_capacity_ = 0;
  uint64_t buffers_generation_ = 0;  // bumped whenever a buffer above moves

  std::unique_ptr<DeviceSampler> sampler_;  // created on the first launch_sample
  // Whether the last step was a launch_sample (not forward / forward_greedy): pending tokens
  // read that launch's device ids.
  bool last_step_sampled_ = false;
  // Whether the last run_layers was a persistent step with logits: its row's greedy token is in
  // persistent_argmax_ (so no argmax kernel is needed for a greedy row).
  bool argmax_in_kernel_ = false;
  GraphCache graphs_;
  std::vector<PrefillTile> prefill_tiles_;  // per step, reused
  std::vector<uint8_t> skip_flags_;
  int32_t max_graph_batch_ = 0;   // decode batches up to this many sequences are graphed
  int32_t max_graph_stride_ = 0;  // block-table stride bucket of the longest context
};

}  // namespace loom::cuda
