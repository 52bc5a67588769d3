// The CUDA backend's public face, free of CUDA headers so that the CLI and the engine compile
// without the toolkit. When the project is built without CUDA (LOOM_CUDA=OFF) the factories
// return an error naming that (cuda_backend_stub.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "backend/backend.h"
#include "backend/cuda/kv_cache_format.h"
#include "model/model_config.h"
#include "model/model_file.h"
#include "util/result.h"

namespace loom {

struct CudaBackendOptions {
  int32_t device = 0;
  int32_t block_size = 16;              // tokens per KV block
  double gpu_memory_utilization = 0.9;  // share of the GPU's memory this process may hold
  size_t kv_cache_bytes = 0;            // > 0: this KV budget instead of the utilization rule
  // bf16, or fp8 / int8 rows with a scale each (kv_cache_format.h): ~1.9x the blocks per byte.
  cuda::KvCacheDtype kv_cache_dtype = cuda::KvCacheDtype::kBf16;
  size_t swap_space_bytes = size_t{512} << 20;  // pinned host swap pool
  int32_t max_num_batched_tokens = 2048;        // activations reserved before the KV pool is sized
  int32_t max_num_seqs = 256;
  uint64_t dummy_seed = 1234;     // --load-format dummy
  bool cuda_graphs = true;        // replay decode steps from CUDA graphs (false: --enforce-eager)
  bool prefill_attention = true;  // tensor-core kernel for prefill chunks (attention_prefill.cuh)
  // Steps of at most 8 tokens: RoPE + the KV write (bf16 cache) and the attention's residual add
  // fused into the small-batch products (gemv.cuh), and with small_batch_mlp = kFused the MLP's
  // SwiGLU and residual add and the RMSNorms (fuse_norm) too.
  bool fused_small_batch = true;
  // With the MLP fused: whether those products also apply the RMSNorm of their input (each CTA
  // normalises the residual stream itself) or a separate kernel does, once: kAuto fuses up to a
  // hidden size of 2048, where it measured faster (on an H200: Llama-3.2-1B 1.016 vs 1.018 ms a
  // batch-1 step; Llama-3.1-8B 5.28 vs 4.81: 4096-wide rows make every CTA's copy cost more).
  enum class FuseNorm { kAuto, kOn, kOff };
  FuseNorm fuse_norm = FuseNorm::kAuto;
  // The MLP of those steps: gate_up and down in the fused small-batch kernels (SwiGLU and the
  // residual add in their epilogues) or through cuBLAS, whose products stream the large MLP
  // matrices faster (on an H200 at 1 row: Llama-3.1-8B's gate_up at 98% of the copy rate against
  // 81-86%), at the price of a SwiGLU kernel and the residual add in the next norm. Measured in
  // one call on an H200, ms a step at 1 / 4 / 8 rows: Llama-3.1-8B 5.79 / 5.91 / 6.26 fused
  // against 4.84 / 5.07 / 5.15 on cuBLAS; Llama-3.2-1B 1.075 / 1.242 / 1.432 against 1.035 /
  // 1.065 / 1.101. kGemvDown: gate_up on cuBLAS, down on the small-batch kernel, which adds
  // into the residual stream itself (so the next QKV product may fuse its norm again). Measured
  // in one call on an H200 (two runs each), ms a step at 1 / 4 / 8 rows: Llama-3.2-1B 1.020 /
  // 1.124 / 1.209 against 1.035-1.044 / 1.062 / 1.099 with the MLP on cuBLAS; Llama-3.1-8B
  // 5.26 / 5.37 / 5.52 against 4.77 / 4.97 / 5.07. kAuto is kGemvDown for one row at a hidden
  // size of at most 2048 and kCublas otherwise.
  enum class SmallBatchMlp { kAuto, kFused, kCublas, kGemvDown };
  SmallBatchMlp small_batch_mlp = SmallBatchMlp::kAuto;
  // Programmatic dependent launch between the step's kernels (pdl_launch.cuh); Hopper and later.
  bool pdl = true;
  // One-token steps (single-stream decode) run every layer in one persistent kernel that streams
  // the weights without a gap between matrices (decode_persistent.cuh), where the model and the
  // GPU allow it (Hopper, bf16 cache, head_dim 64 / 128, widths multiples of 256).
  bool persistent_decode = true;
  // ... with the output layer as its last phase (else a norm kernel and a cuBLAS product after).
  bool persistent_logits = true;
  // Weight copies each of its CTAs keeps in flight: 0 measures 1 and 2, each with the plan's
  // ring and with a stage more where it fits, on this model and GPU at start and keeps the
  // fastest. Which wins depends on both (kernel ms, 49,152-token vocabulary, 5 stages: H100, 1B
  // 0.814 with 1 against 0.862 with 2 (6 stages: 0.801), 8B 4.936 against 4.870; H200, 1B 0.689
  // against 0.674, 8B 3.834 against 3.569): fewer bytes in flight let the hand-overs between the
  // kernel's phases through faster, more keep the memory system busy through long phases. N > 0:
  // N copies, with a ring of at most persistent_stages stages (0: the plan's).
  int32_t persistent_in_flight = 0;
  int32_t persistent_stages = 0;
};

// Whether the build has CUDA and a usable GPU is present.
bool cuda_device_available();

// Weights from a GGUF file or HF directory, uploaded as bf16 (quantized GGUF types dequantized).
Result<std::unique_ptr<Backend>> create_cuda_backend(std::shared_ptr<const ModelFile> model,
                                                     const CudaBackendOptions& options);

// Random weights of the config's architecture (vLLM's `--load-format dummy`), for benchmarks.
Result<std::unique_ptr<Backend>> create_cuda_backend_dummy(const ModelConfig& config,
                                                           const CudaBackendOptions& options);

}  // namespace loom
