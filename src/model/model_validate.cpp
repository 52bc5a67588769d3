// Checks that a loaded model is one the decoder can run: sane config values, and every tensor
// present with the shape that the config implies.
#include <cinttypes>
#include <cmath>

#include "model/model_loaders.h"

namespace loom {
namespace {

std::string shape_str(const std::vector<int64_t>& ne) {
  std::string s = "[";
  for (size_t i = 0; i < ne.size(); ++i) {
    if (i > 0) s += ", ";
    s += std::to_string(ne[i]);
  }
  return s + "]";
}

}  // namespace

Status validate_config(const ModelConfig& c) {
  struct Positive {
    const char* name;
    int64_t value;
  };
  for (const Positive& p :
       {Positive{"vocab_size", c.vocab_size}, Positive{"hidden_size", c.hidden_size},
        Positive{"intermediate_size", c.intermediate_size}, Positive{"num_layers", c.num_layers},
        Positive{"num_heads", c.num_heads}, Positive{"num_kv_heads", c.num_kv_heads},
        Positive{"head_dim", c.head_dim}, Positive{"max_context", c.max_context}}) {
    if (p.value <= 0)
      return make_error("model config: %s = %" PRId64 " must be positive", p.name, p.value);
  }
  if (c.num_heads % c.num_kv_heads != 0) {
    return make_error("model config: num_heads %d is not a multiple of num_kv_heads %d",
                      c.num_heads, c.num_kv_heads);
  }
  if (c.head_dim % 2 != 0) {
    return make_error("model config: head_dim %d must be even for RoPE", c.head_dim);
  }
  // q_dim / kv_dim are int32 products.
  if (static_cast<int64_t>(c.num_heads) * c.head_dim > INT32_MAX) {
    return make_error("model config: num_heads %d x head_dim %d is too large", c.num_heads,
                      c.head_dim);
  }
  if (!(c.rms_norm_eps > 0.0f) || !std::isfinite(c.rms_norm_eps)) {
    return make_error("model config: rms_norm_eps %g must be positive", c.rms_norm_eps);
  }
  if (!(c.rope_theta > 0.0f) || !std::isfinite(c.rope_theta)) {
    return make_error("model config: rope_theta %g must be positive", c.rope_theta);
  }
  return ok_status();
}

Status validate_tensors(const ModelConfig& c,
                        const std::function<const TensorView*(const std::string&)>& lookup) {
  const int64_t hidden = c.hidden_size, vocab = c.vocab_size, ffn = c.intermediate_size;
  const int64_t q_dim = c.q_dim(), kv_dim = c.kv_dim();
  auto expect = [&](const std::string& name, std::vector<int64_t> ne) -> Status {
    const TensorView* t = lookup(name);
    if (t == nullptr) {
      return make_error("tensor '%s' is missing (expected shape %s)", name.c_str(),
                        shape_str(ne).c_str());
    }
    if (t->ne != ne) {
      return make_error("tensor '%s': expected shape %s, found %s", name.c_str(),
                        shape_str(ne).c_str(), shape_str(t->ne).c_str());
    }
    return ok_status();
  };
  if (auto s = expect("token_embd.weight", {hidden, vocab}); !s) return s;
  if (auto s = expect("output_norm.weight", {hidden}); !s) return s;
  if (!c.tied_embeddings) {
    if (auto s = expect("output.weight", {hidden, vocab}); !s) return s;
  }
  for (int32_t i = 0; i < c.num_layers; ++i) {
    const std::string p = "blk." + std::to_string(i) + ".";
    struct Want {
      const char* suffix;
      std::vector<int64_t> ne;
    };
    std::vector<Want> wants = {
        {"attn_norm.weight", {hidden}},          {"attn_q.weight", {hidden, q_dim}},
        {"attn_k.weight", {hidden, kv_dim}},     {"attn_v.weight", {hidden, kv_dim}},
        {"attn_output.weight", {q_dim, hidden}}, {"ffn_norm.weight", {hidden}},
        {"ffn_gate.weight", {hidden, ffn}},      {"ffn_up.weight", {hidden, ffn}},
        {"ffn_down.weight", {ffn, hidden}},
    };
    if (c.qkv_bias) {
      wants.push_back({"attn_q.bias", {q_dim}});
      wants.push_back({"attn_k.bias", {kv_dim}});
      wants.push_back({"attn_v.bias", {kv_dim}});
    }
    for (const Want& w : wants) {
      if (auto s = expect(p + w.suffix, w.ne); !s) return s;
    }
  }
  return ok_status();
}

}  // namespace loom
