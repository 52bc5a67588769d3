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
  // Steps of at most 8 tokens: RoPE + the KV write (bf16 cache), SwiGLU and the residual adds
  // fused into the small-batch products (gemv.cuh), and the RMSNorms too (fuse_norm): 5 kernels a
  // layer instead of 10 (one more when the attention splits the context).
  bool fused_small_batch = true;
  // Whether those products also apply the RMSNorm of their input (each CTA normalises the
  // residual stream itself) or a separate kernel does, once: kAuto fuses up to a hidden size of
  // 2048, where it measured faster (on an H200: Llama-3.2-1B 0.98 vs 1.02 ms a batch-1 step;
  // Llama-3.1-8B's 4096-wide rows make every CTA's copy cost more than the kernel it saves).
  enum class FuseNorm { kAuto, kOn, kOff };
  FuseNorm fuse_norm = FuseNorm::kAuto;
  // Programmatic dependent launch between the step's kernels (pdl_launch.cuh); Hopper and later.
  bool pdl = true;
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
