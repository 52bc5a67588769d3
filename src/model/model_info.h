// A human-readable summary of a loaded model for `loom info`.
#pragma once

#include <cstdint>
#include <string>

#include "model/model_file.h"

namespace loom {

// KV-cache bytes that one token occupies: K and V, every layer, every KV head.
inline int64_t kv_bytes_per_token(const ModelConfig& c, int32_t kv_bytes_per_value) {
  return 2ll * c.num_layers * c.num_kv_heads * c.head_dim * kv_bytes_per_value;
}

// Multi-line text: architecture, name, shapes, tensor type counts, parameter count, weight
// memory, KV bytes per token and per block of `block_size` tokens, context length, tokenizer.
std::string describe_model(const ModelFile& m, int32_t block_size, int32_t kv_bytes_per_value);

}  // namespace loom
