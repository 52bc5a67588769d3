// The random-weight HF Llamas that scripts/gpu_test.sh builds with transformers
// (tools/make_hf_random_llama.py) under LOOM_HF_RANDOM_DIR: each subfolder holds the safetensors
// checkpoint and golden.json (HF's prompt ids, greedy ids and first-step logits).
#pragma once

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "model/model_file.h"

namespace loom::testing {

struct HfRandomModel {
  std::string dir;
  nlohmann::json golden;
  std::shared_ptr<const ModelFile> file;
};

// LOOM_HF_RANDOM_DIR, or null when unset (tests then skip).
inline const char* hf_random_dir() {
  return std::getenv("LOOM_HF_RANDOM_DIR");
}

// Every model under `root` with a golden.json, opened; a model that fails to open is a test
// failure and is left out.
inline std::vector<HfRandomModel> open_hf_random_models(const std::string& root) {
  std::vector<HfRandomModel> out;
  for (const auto& entry : std::filesystem::directory_iterator(root)) {
    const auto golden_path = entry.path() / "golden.json";
    if (!std::filesystem::exists(golden_path)) continue;
    HfRandomModel m;
    m.dir = entry.path().string();
    std::ifstream in(golden_path);
    m.golden = nlohmann::json::parse(in);
    auto file = ModelFile::open(m.dir);
    if (!file.ok()) {
      ADD_FAILURE() << m.dir << ": " << file.error();
      continue;
    }
    m.file = std::shared_ptr<const ModelFile>(std::move(file).value());
    out.push_back(std::move(m));
  }
  if (out.empty()) ADD_FAILURE() << "no golden.json under " << root;
  return out;
}

}  // namespace loom::testing
