// A model on disk, opened for inference: its config, its tokenizer description, and every weight
// tensor as a view into the mapped file(s), named as GGUF names them whatever the source format.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "model/mapped_file.h"
#include "model/model_config.h"
#include "model/tensor.h"
#include "tokenizer/tokenizer_spec.h"
#include "util/result.h"

namespace loom {

class ModelFile {
 public:
  // `path` is a .gguf file or an HF model directory (config.json, *.safetensors, tokenizer.json
  // and optionally tokenizer_config.json). The result has been validated: every tensor the
  // decoder needs exists with the shape that the config implies.
  static Result<std::unique_ptr<ModelFile>> open(const std::string& path);

  const ModelConfig& config() const { return config_; }
  const TokenizerSpec& tokenizer_spec() const { return tokenizer_spec_; }
  // nullptr when absent. Names: "token_embd.weight", "blk.3.attn_q.weight", "output.weight", ...
  const TensorView* tensor(const std::string& gguf_name) const;
  const std::vector<TensorView>& tensors() const { return tensors_; }
  std::string format() const { return format_; }  // "gguf" or "safetensors"
  int64_t num_parameters() const;
  size_t weight_bytes() const;  // sum of tensor byte sizes as stored

  // The pieces a format-specific loader produces (model_loaders.h); open() validates them.
  struct Parts {
    ModelConfig config;
    TokenizerSpec tokenizer_spec;
    std::vector<TensorView> tensors;
    std::string format;
    std::vector<std::shared_ptr<const MappedFile>> files;  // keep the tensor data mapped
  };
  static Result<std::unique_ptr<ModelFile>> from_parts(Parts parts);

 private:
  ModelFile() = default;

  ModelConfig config_;
  TokenizerSpec tokenizer_spec_;
  std::vector<TensorView> tensors_;
  std::unordered_map<std::string, size_t> index_;
  std::string format_;
  std::vector<std::shared_ptr<const MappedFile>> files_;
};

}  // namespace loom
