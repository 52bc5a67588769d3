// `loom info --model PATH`: what the model is and what it needs in memory.
#include <cstdio>
#include <string>

#include "backend/cpu/kv_storage.h"
#include "backend/cuda/kv_cache_format.h"
#include "cli/commands.h"
#include "cli/engine_options.h"
#include "model/model_file.h"
#include "model/model_info.h"

namespace loom::cli {

void add_info_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("info", "print a model's architecture, shapes and memory needs");
  auto model_path = std::make_shared<std::string>(default_model_path());
  auto block_size = std::make_shared<int32_t>(16);
  cmd->add_option("--model", *model_path, "GGUF file or HF directory")->capture_default_str();
  cmd->add_option("--block-size", *block_size, "tokens per KV block")->capture_default_str();
  auto kv_dtype = std::make_shared<std::string>("f16");
  auto kv_mib = std::make_shared<double>(1024);
  auto device = std::make_shared<std::string>("cpu");
  cmd->add_option("--kv-cache-dtype", *kv_dtype,
                  "KV cache row format: f16, int8 or int4 on cpu; bf16 (also f16, auto), fp8 or "
                  "int8 on cuda")
      ->capture_default_str();
  cmd->add_option("--kv-cache-memory", *kv_mib, "KV cache budget in MiB")->capture_default_str();
  cmd->add_option("--device", *device, "whose KV cache format to size: cpu or cuda")
      ->capture_default_str();
  cmd->callback([model_path, block_size, kv_dtype, kv_mib, device] {
    auto fail = [](const std::string& message) {
      std::fprintf(stderr, "loom info: %s\n", message.c_str());
      throw CLI::RuntimeError(1);
    };
    if (*device != "cpu" && *device != "cuda") fail("--device must be cpu or cuda, not " + *device);
    if (*block_size < 1) fail("block size must be positive");
    if (*device == "cpu" && *kv_dtype == "fp8")
      fail(
          "--kv-cache-dtype fp8 is GPU only (add --device cuda); the CPU cache takes f16, int8 or "
          "int4");
    auto model = ModelFile::open(*model_path);
    if (!model.ok()) fail(model.error());
    // The capacity in tokens of the chosen row format (scales included) in the budget; bad
    // names fail before anything is printed.
    const ModelConfig& c = model.value()->config();
    size_t block_bytes = 0;
    std::string name;
    if (*device == "cuda") {
      auto dtype = cuda::parse_kv_cache_dtype(*kv_dtype);
      if (!dtype.ok()) fail(dtype.error());
      const cuda::KvCacheShape shape{c.num_layers, c.num_kv_heads, c.head_dim, *block_size,
                                     dtype.value()};
      block_bytes = static_cast<size_t>(shape.block_bytes());
      name = std::string(cuda::kv_cache_dtype_name(dtype.value())) + " (cuda)";
    } else {
      auto dtype = cpu::parse_kv_dtype(*kv_dtype);
      if (!dtype.ok()) fail(dtype.error());
      if (!cpu::kv_dtype_supports(dtype.value(), c.head_dim)) fail("head_dim not supported");
      const cpu::KvLayout layout{c.num_layers, c.num_kv_heads, c.head_dim, *block_size,
                                 dtype.value()};
      block_bytes = layout.block_bytes();
      name = cpu::kv_dtype_name(dtype.value());
    }
    // The 16-bit cache (f16 on the CPU, bf16 on the GPU): 2 bytes a value.
    std::fputs(describe_model(*model.value(), *block_size, 2).c_str(), stdout);
    const size_t blocks = static_cast<size_t>(*kv_mib * (1 << 20)) / block_bytes;
    std::printf(
        "kv capacity:       %zu tokens (%zu blocks of %zu bytes, %.1f bytes per token) in %.0f "
        "MiB as %s\n",
        blocks * *block_size, blocks, block_bytes, static_cast<double>(block_bytes) / *block_size,
        *kv_mib, name.c_str());
  });
}

}  // namespace loom::cli
