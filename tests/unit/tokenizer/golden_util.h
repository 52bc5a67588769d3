// Helpers for the tokenizer tests: golden files, hex, and the default model's tokenizer spec.
#pragma once

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "core/ids.h"
#include "tokenizer/tokenizer_spec.h"
#include "util/result.h"

namespace loom::test {

inline std::string golden_dir() {
  return std::string(LOOM_SOURCE_DIR) + "/tests/golden/tokenizer";
}
inline std::string default_model_path() {
  return std::string(LOOM_SOURCE_DIR) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
}

inline nlohmann::json load_golden(const std::string& name) {
  std::ifstream in(golden_dir() + "/" + name, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return nlohmann::json::parse(buffer.str());
}

inline std::string from_hex(const std::string& hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    out += static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
  }
  return out;
}

inline std::string to_hex(const std::string& bytes) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

inline std::vector<TokenId> ids_of(const nlohmann::json& j) {
  return j.get<std::vector<TokenId>>();
}

// The default model's tokenizer as the GGUF describes it (read here with the GGUF reader so the
// test does not depend on the rest of the model loader).
Result<TokenizerSpec> gguf_tokenizer_spec(const std::string& path);

// A spec from the SentencePiece fixture (spm_model.json).
TokenizerSpec spm_fixture_spec();

}  // namespace loom::test
