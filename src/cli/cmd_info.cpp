// `loom info --model PATH`: what the model is and what it needs in memory.
#include <cstdio>
#include <string>

#include "backend/cpu/kv_storage.h"
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
  cmd->add_option("--kv-cache-dtype", *kv_dtype, "KV cache row format: f16, int8 or int4")
      ->capture_default_str();
  cmd->add_option("--kv-cache-memory", *kv_mib, "KV cache budget in MiB")->capture_default_str();
  cmd->callback([model_path, block_size, kv_dtype, kv_mib] {
    auto model = ModelFile::open(*model_path);
    if (!model.ok()) {
      std::fprintf(stderr, "loom info: %s\n", model.error().c_str());
      throw CLI::RuntimeError(1);
    }
    // The CPU backend keeps K and V in f16: 2 bytes a value.
    std::fputs(describe_model(*model.value(), *block_size, 2).c_str(), stdout);
    // The capacity in tokens of the chosen row format (scales included) in the budget.
    auto dtype = cpu::parse_kv_dtype(*kv_dtype);
    const ModelConfig& c = model.value()->config();
    if (!dtype.ok() || *block_size < 1 || !cpu::kv_dtype_supports(dtype.value(), c.head_dim)) {
      std::fprintf(stderr, "loom info: %s\n",
                   dtype.ok() ? "block size or head_dim not supported" : dtype.error().c_str());
      throw CLI::RuntimeError(1);
    }
    const cpu::KvLayout layout{c.num_layers, c.num_kv_heads, c.head_dim, *block_size,
                               dtype.value()};
    const size_t blocks = static_cast<size_t>(*kv_mib * (1 << 20)) / layout.block_bytes();
    std::printf("kv capacity:       %zu tokens (%zu blocks of %zu bytes) in %.0f MiB as %s\n",
                blocks * *block_size, blocks, layout.block_bytes(), *kv_mib,
                cpu::kv_dtype_name(dtype.value()));
  });
}

}  // namespace loom::cli
