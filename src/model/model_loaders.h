// Format-specific halves of ModelFile::open (internal to model/).
#pragma once

#include <functional>
#include <string>

#include "model/gguf_file.h"
#include "model/model_config.h"
#include "model/model_file.h"
#include "util/result.h"

namespace loom {

// ModelConfig, TokenizerSpec and tensors from a parsed GGUF file (gguf_model.cpp).
Result<ModelFile::Parts> load_gguf_parts(const GgufFile& gguf);
// The same from an HF directory: config.json, *.safetensors (hf_model.cpp).
Result<ModelFile::Parts> load_hf_parts(const std::string& dir);

// HF safetensors name -> GGUF name ("model.layers.3.self_attn.q_proj.weight" ->
// "blk.3.attn_q.weight"); empty when the name has no GGUF counterpart.
std::string hf_to_gguf_name(const std::string& hf_name);

// Per-pair RoPE frequency divisors [head_dim / 2] for Llama 3 scaling, as HF computes them.
std::vector<float> llama3_rope_freq_factors(const RopeScaling& scaling, float rope_theta,
                                            int32_t head_dim);

// Value checks shared by both formats (positive sizes, head counts dividing, ...).
Status validate_config(const ModelConfig& config);
// Every tensor the decoder needs exists with the shape the config implies (model_validate.cpp).
Status validate_tensors(const ModelConfig& config,
                        const std::function<const TensorView*(const std::string&)>& lookup);

}  // namespace loom
