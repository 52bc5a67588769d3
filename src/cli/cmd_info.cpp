// `loom info --model PATH`: what the model is and what it needs in memory.
#include <cstdio>
#include <string>

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
  cmd->callback([model_path, block_size] {
    auto model = ModelFile::open(*model_path);
    if (!model.ok()) {
      std::fprintf(stderr, "loom info: %s\n", model.error().c_str());
      throw CLI::RuntimeError(1);
    }
    // The CPU backend keeps K and V in f16: 2 bytes a value.
    std::fputs(describe_model(*model.value(), *block_size, 2).c_str(), stdout);
  });
}

}  // namespace loom::cli
