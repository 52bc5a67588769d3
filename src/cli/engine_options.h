// Command-line options shared by every subcommand that runs the engine (generate, serve, bench),
// and the code that turns them into a loaded model, tokenizer and engine.
#pragma once

#include <CLI/CLI.hpp>
#include <memory>
#include <optional>
#include <string>

#include "engine/engine.h"
#include "model/model_file.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace loom::cli {

std::string
default_model_path();  // models/SmolLM2-135M-Instruct.Q4_1.gguf next to the binary's repo

struct EngineOptions {
  std::string model_path;
  std::string chat_template;  // override: chatml, llama3, llama2, mistral
  double kv_cache_mib = 0;    // 0: 1024 MiB on the CPU, --gpu-memory-utilization on the GPU
  // cpu: f16, int8 or int4 (backend/cpu/kv_quant.h); cuda: bf16 (also f16, auto), fp8 or int8
  // (backend/cuda/kv_cache_format.h).
  std::string kv_cache_dtype = "f16";
  double swap_space_mib = 512;
  int32_t block_size = 16;
  int32_t threads = 0;
  int32_t max_num_batched_tokens = 512;
  int32_t max_num_seqs = 128;
  int32_t max_model_len = 0;  // 0 = the model's context
  bool no_chunked_prefill = false;
  bool no_prefix_caching = false;
  std::string batching = "continuous";
  double dynamic_window_ms = 20;
  bool static_padding = false;
  std::string admission = "profiled";
  std::string preemption = "auto";
  double aging_s = 5;
  int32_t max_waiting_requests = 4096;
  std::string device = "cpu";           // cpu or cuda
  double gpu_memory_utilization = 0.9;  // cuda: share of GPU memory for weights + KV cache
  std::string load_format = "auto";     // auto, or dummy: random weights from config.json
  bool enforce_eager = false;           // cuda: no CUDA graphs
  bool no_overlap = false;              // plan each step only after the last one's tokens
  std::string tokenizer_path;           // dummy: tokenizer directory (default: the model's)

  void add_to(CLI::App& app);
};

struct LoadedEngine {
  std::shared_ptr<const ModelFile> model;
  std::shared_ptr<const Tokenizer> tokenizer;
  std::optional<ChatTemplate> chat_template;  // absent when the model's is unknown and none named
  std::string chat_template_error;
  std::unique_ptr<Engine> engine;  // not started
};

// Loads the model, builds the backend, tokenizer and engine; errors name the problem.
Result<std::unique_ptr<LoadedEngine>> load_engine(const EngineOptions& options);

}  // namespace loom::cli
