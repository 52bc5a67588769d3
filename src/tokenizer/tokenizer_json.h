// Reads an HF tokenizer.json (and, when present, tokenizer_config.json for BOS/EOS flags and the
// chat template) into a TokenizerSpec.
#pragma once

#include <string>

#include "tokenizer/tokenizer_spec.h"
#include "util/result.h"

namespace loom {

// tokenizer_config_path may be empty or name a missing file.
Result<TokenizerSpec> load_tokenizer_json(const std::string& tokenizer_json_path,
                                          const std::string& tokenizer_config_path);

}  // namespace loom
