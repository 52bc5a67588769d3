// The architecture hyper-parameters that the decoder needs, from GGUF metadata or config.json.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace loom {

enum class Arch { kLlama, kQwen2 };
const char* arch_name(Arch arch);

// How RoPE pairs dimensions. GGUF "llama" checkpoints have Q/K rows permuted by the converter so
// that pairs are adjacent (interleaved, GPT-J style); HF checkpoints and Qwen2 pair dimension i
// with i + head_dim/2 (NeoX / rotate_half style).
enum class RopeStyle { kInterleaved, kNeox };

struct RopeScaling {
  enum class Type { kNone, kLinear, kLlama3 } type = Type::kNone;
  float factor = 1.0f;
  float low_freq_factor = 1.0f;          // llama3
  float high_freq_factor = 4.0f;         // llama3
  int32_t original_max_position = 8192;  // llama3
};

struct ModelConfig {
  Arch arch = Arch::kLlama;
  std::string name;
  int32_t vocab_size = 0;
  int32_t hidden_size = 0;        // d_model
  int32_t intermediate_size = 0;  // SwiGLU hidden width
  int32_t num_layers = 0;
  int32_t num_heads = 0;
  int32_t num_kv_heads = 0;  // GQA: num_heads % num_kv_heads == 0
  int32_t head_dim = 0;
  int32_t max_context = 0;  // tokens
  float rms_norm_eps = 1e-5f;
  float rope_theta = 10000.0f;
  RopeStyle rope_style = RopeStyle::kNeox;
  RopeScaling rope_scaling;
  // Per-pair frequency divisors, [head_dim / 2]; empty = none. The loader fills it from GGUF's
  // rope_freqs tensor or computes it from an HF llama3 rope_scaling block, so the decoder only
  // divides: inv_freq[i] = rope_theta^(-2i/head_dim) / rope_freq_factors[i].
  std::vector<float> rope_freq_factors;
  bool tied_embeddings = false;  // no separate output matrix: logits use the embedding table
  bool qkv_bias = false;         // Qwen2

  int32_t q_dim() const { return num_heads * head_dim; }
  int32_t kv_dim() const { return num_kv_heads * head_dim; }
};

}  // namespace loom
