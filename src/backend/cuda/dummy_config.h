// Model configs for `--load-format dummy` (random weights): from an HF config.json alone (a file
// or the directory holding it), or a named preset of a published shape.
#pragma once

#include <string>

#include "model/model_config.h"
#include "util/result.h"

namespace loom {

// `source`: "llama-3.2-1b", "llama-3.1-8b", a config.json path or a directory holding one.
Result<ModelConfig> load_dummy_config(const std::string& source);

}  // namespace loom
