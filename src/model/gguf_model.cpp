// ModelConfig and TokenizerSpec from GGUF metadata (llama.cpp's key names).
#include <cinttypes>
#include <cstring>
#include <limits>

#include "model/model_loaders.h"
#include "util/log.h"

namespace loom {
namespace {

// A positive int32 from any integer key; `fallback` (when >= 0) is used if the key is absent.
Result<int32_t> get_dim(const GgufFile& g, const std::string& key, int64_t fallback = -1) {
  if (!g.has(key)) {
    if (fallback >= 0) return static_cast<int32_t>(fallback);
    return make_error("GGUF metadata '%s' is missing", key.c_str());
  }
  auto v = g.get_int(key);
  if (!v) return Error{v.error()};
  if (*v <= 0 || *v > std::numeric_limits<int32_t>::max()) {
    return make_error("GGUF metadata '%s' = %" PRId64 " is out of range", key.c_str(), *v);
  }
  return static_cast<int32_t>(*v);
}

Result<float> get_float_or(const GgufFile& g, const std::string& key, float fallback) {
  if (!g.has(key)) return fallback;
  auto v = g.get_float(key);
  if (!v) return Error{v.error()};
  return static_cast<float>(*v);
}

Status load_rope_scaling(const GgufFile& g, const std::string& arch, ModelConfig* c) {
  std::string type = "none";
  if (g.has(arch + ".rope.scaling.type")) {
    auto t = g.get_string(arch + ".rope.scaling.type");
    if (!t) return Error{t.error()};
    type = *t;
  }
  if (type == "linear") {
    auto f = get_float_or(g, arch + ".rope.scaling.factor", 1.0f);
    if (!f) return Error{f.error()};
    c->rope_scaling.type = RopeScaling::Type::kLinear;
    c->rope_scaling.factor = *f;
  } else if (type == "none" || type.empty()) {
    // Older files give a linear factor under a different key.
    if (g.has(arch + ".rope.scale_linear")) {
      auto f = g.get_float(arch + ".rope.scale_linear");
      if (!f) return Error{f.error()};
      if (*f != 1.0) {
        c->rope_scaling.type = RopeScaling::Type::kLinear;
        c->rope_scaling.factor = static_cast<float>(*f);
      }
    }
  } else {
    return make_error(
        "GGUF rope scaling type '%s' is not supported (none, linear, or Llama 3 "
        "frequency factors)",
        type.c_str());
  }
  if (c->rope_scaling.type == RopeScaling::Type::kLinear && !(c->rope_scaling.factor > 0.0f)) {
    return make_error("GGUF rope scaling factor %g must be positive", c->rope_scaling.factor);
  }
  // Llama 3.x: the converter stores the per-pair divisors as a tensor.
  if (const GgufTensor* t = g.tensor("rope_freqs.weight")) {
    const TensorView& v = t->view;
    int64_t pairs = c->head_dim / 2;
    if (v.type != DType::kF32 || v.ne.size() != 1 || v.ne[0] != pairs) {
      return make_error("tensor 'rope_freqs.weight': expected F32 [%" PRId64
                        "] (head_dim / 2), found %s with %zu dims",
                        pairs, dtype_name(v.type), v.ne.size());
    }
    c->rope_freq_factors.resize(pairs);
    std::memcpy(c->rope_freq_factors.data(), v.data, pairs * sizeof(float));
    for (float f : c->rope_freq_factors) {
      if (!(f > 0.0f)) return make_error("tensor 'rope_freqs.weight' holds a non-positive factor");
    }
    if (c->rope_scaling.type == RopeScaling::Type::kNone) {
      c->rope_scaling.type = RopeScaling::Type::kLlama3;
    }
  }
  return ok_status();
}

Result<ModelConfig> load_config(const GgufFile& g) {
  ModelConfig c;
  auto arch = g.get_string("general.architecture");
  if (!arch) return Error{arch.error()};
  if (*arch == "llama") {
    c.arch = Arch::kLlama;
    c.rope_style = RopeStyle::kInterleaved;  // the converter permuted Q/K rows
  } else if (*arch == "qwen2") {
    c.arch = Arch::kQwen2;
    c.rope_style = RopeStyle::kNeox;
    c.qkv_bias = true;
  } else {
    return make_error("unsupported architecture '%s' (loom runs llama and qwen2)", arch->c_str());
  }
  const std::string& a = *arch;
  if (g.has("general.name")) {
    auto name = g.get_string("general.name");
    if (!name) return Error{name.error()};
    c.name = *name;
  }
  struct DimKey {
    int32_t* field;
    std::string key;
  };
  for (auto& [field, key] : std::vector<DimKey>{
           {&c.hidden_size, a + ".embedding_length"},
           {&c.num_layers, a + ".block_count"},
           {&c.intermediate_size, a + ".feed_forward_length"},
           {&c.num_heads, a + ".attention.head_count"},
           {&c.max_context, a + ".context_length"},
       }) {
    auto v = get_dim(g, key);
    if (!v) return Error{v.error()};
    *field = *v;
  }
  auto kv_heads = get_dim(g, a + ".attention.head_count_kv", c.num_heads);
  if (!kv_heads) return Error{kv_heads.error()};
  c.num_kv_heads = *kv_heads;
  if (c.hidden_size % c.num_heads != 0 && !g.has(a + ".attention.key_length")) {
    return make_error("hidden size %d is not a multiple of the head count %d", c.hidden_size,
                      c.num_heads);
  }
  auto head_dim = get_dim(g, a + ".attention.key_length", c.hidden_size / c.num_heads);
  if (!head_dim) return Error{head_dim.error()};
  c.head_dim = *head_dim;
  if (g.has(a + ".attention.value_length")) {
    auto v = get_dim(g, a + ".attention.value_length");
    if (!v) return Error{v.error()};
    if (*v != c.head_dim) {
      return make_error("value head size %d differs from key head size %d: not supported", *v,
                        c.head_dim);
    }
  }
  if (g.has(a + ".rope.dimension_count")) {
    auto v = get_dim(g, a + ".rope.dimension_count");
    if (!v) return Error{v.error()};
    if (*v != c.head_dim) {
      return make_error(
          "partial rotary embedding (rope dimension %d of head size %d) is not "
          "supported",
          *v, c.head_dim);
    }
  }
  auto eps = get_float_or(g, a + ".attention.layer_norm_rms_epsilon", 1e-5f);
  if (!eps) return Error{eps.error()};
  c.rms_norm_eps = *eps;
  auto theta = get_float_or(g, a + ".rope.freq_base", 10000.0f);
  if (!theta) return Error{theta.error()};
  c.rope_theta = *theta;

  // Vocabulary: the embedding table's row count is what the decoder indexes.
  const GgufTensor* embd = g.tensor("token_embd.weight");
  int64_t vocab_fallback = embd != nullptr && embd->view.ne.size() == 2 ? embd->view.ne[1] : -1;
  if (vocab_fallback > std::numeric_limits<int32_t>::max()) vocab_fallback = -1;
  auto vocab = get_dim(g, a + ".vocab_size", vocab_fallback);
  if (!vocab) {
    return make_error(
        "cannot tell the vocabulary size: no '%s.vocab_size' and no 2-d "
        "token_embd.weight",
        a.c_str());
  }
  c.vocab_size = *vocab;
  c.tied_embeddings = g.tensor("output.weight") == nullptr;
  if (auto s = validate_config(c); !s) return Error{s.error()};
  if (auto s = load_rope_scaling(g, a, &c); !s) return Error{s.error()};
  return c;
}

// An optional token id: absent -> nullopt; out of the vocabulary -> error (required) or ignored
// with a warning (ids that only label padding / unknown).
Result<std::optional<TokenId>> get_token_id(const GgufFile& g, const std::string& key, size_t vocab,
                                            bool strict) {
  if (!g.has(key)) return std::optional<TokenId>();
  auto v = g.get_int(key);
  if (!v) return Error{v.error()};
  if (*v < 0 || static_cast<uint64_t>(*v) >= vocab) {
    if (strict) {
      return make_error("GGUF metadata '%s' = %" PRId64 " is outside the vocabulary (%zu tokens)",
                        key.c_str(), *v, vocab);
    }
    LOOM_LOG_WARN("GGUF metadata '%s' = %" PRId64 " is outside the vocabulary; ignored",
                  key.c_str(), *v);
    return std::optional<TokenId>();
  }
  return std::optional<TokenId>(static_cast<TokenId>(*v));
}

Result<TokenizerSpec> load_tokenizer(const GgufFile& g) {
  TokenizerSpec spec;
  auto model = g.get_string("tokenizer.ggml.model");
  if (!model) return Error{model.error()};
  if (*model == "gpt2") {
    spec.kind = TokenizerKind::kByteLevelBpe;
  } else if (*model == "llama") {
    spec.kind = TokenizerKind::kSentencePiece;
    spec.add_bos = true;  // llama.cpp's defaults for SentencePiece vocabularies
    spec.add_space_prefix = true;
  } else {
    return make_error("unsupported tokenizer model '%s' (supported: gpt2, llama)", model->c_str());
  }
  if (g.has("tokenizer.ggml.pre")) {
    auto pre = g.get_string("tokenizer.ggml.pre");
    if (!pre) return Error{pre.error()};
    spec.pre = *pre;
  } else {
    spec.pre = "default";
  }
  auto tokens = g.get_string_array("tokenizer.ggml.tokens");
  if (!tokens) return Error{tokens.error()};
  if (tokens->empty()) return make_error("GGUF metadata 'tokenizer.ggml.tokens' is empty");
  if (tokens->size() > static_cast<size_t>(std::numeric_limits<TokenId>::max())) {
    return make_error("GGUF vocabulary of %zu tokens is too large", tokens->size());
  }
  const size_t vocab = tokens->size();
  spec.tokens.reserve(vocab);
  for (std::string_view t : *tokens) spec.tokens.emplace_back(t);

  if (g.has("tokenizer.ggml.scores")) {
    auto scores = g.get_float_array("tokenizer.ggml.scores");
    if (!scores) return Error{scores.error()};
    if (scores->size() != vocab) {
      return make_error("GGUF tokenizer.ggml.scores has %zu entries for %zu tokens", scores->size(),
                        vocab);
    }
    spec.scores = std::move(scores).value();
  }
  if (g.has("tokenizer.ggml.token_type")) {
    auto types = g.get_int_array("tokenizer.ggml.token_type");
    if (!types) return Error{types.error()};
    if (types->size() != vocab) {
      return make_error("GGUF tokenizer.ggml.token_type has %zu entries for %zu tokens",
                        types->size(), vocab);
    }
    spec.token_types.reserve(vocab);
    for (size_t i = 0; i < vocab; ++i) {
      int64_t t = (*types)[i];
      if (t == 0) t = static_cast<int64_t>(TokenType::kNormal);  // llama.cpp's "undefined"
      if (t < 1 || t > 6) {
        return make_error("GGUF token %zu has unknown token type %" PRId64, i, (*types)[i]);
      }
      spec.token_types.push_back(static_cast<TokenType>(t));
    }
  }
  if (g.has("tokenizer.ggml.merges")) {
    auto merges = g.get_string_array("tokenizer.ggml.merges");
    if (!merges) return Error{merges.error()};
    spec.merges.reserve(merges->size());
    for (std::string_view m : *merges) spec.merges.emplace_back(m);
  }
  struct IdKey {
    std::optional<TokenId>* field;
    const char* key;
    bool strict;
  };
  for (const IdKey& k : {IdKey{&spec.bos_id, "tokenizer.ggml.bos_token_id", true},
                         IdKey{&spec.eos_id, "tokenizer.ggml.eos_token_id", true},
                         IdKey{&spec.unk_id, "tokenizer.ggml.unknown_token_id", false},
                         IdKey{&spec.pad_id, "tokenizer.ggml.padding_token_id", false}}) {
    auto id = get_token_id(g, k.key, vocab, k.strict);
    if (!id) return Error{id.error()};
    *k.field = *id;
  }
  struct FlagKey {
    bool* field;
    const char* key;
  };
  for (const FlagKey& k : {FlagKey{&spec.add_bos, "tokenizer.ggml.add_bos_token"},
                           FlagKey{&spec.add_eos, "tokenizer.ggml.add_eos_token"},
                           FlagKey{&spec.add_space_prefix, "tokenizer.ggml.add_space_prefix"}}) {
    if (!g.has(k.key)) continue;
    auto v = g.get_bool(k.key);
    if (!v) return Error{v.error()};
    *k.field = *v;
  }
  if (g.has("tokenizer.chat_template")) {
    auto t = g.get_string("tokenizer.chat_template");
    if (!t) return Error{t.error()};
    spec.chat_template = *t;
  }
  // Extra end-of-generation tokens: Llama 3's <|eot_id|> / <|eom_id|>, ChatML's <|im_end|>.
  auto add_eos = [&spec](TokenId id) {
    if (spec.eos_id == id) return;
    for (TokenId e : spec.extra_eos_ids) {
      if (e == id) return;
    }
    spec.extra_eos_ids.push_back(id);
  };
  for (const char* key : {"tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"}) {
    auto id = get_token_id(g, key, vocab, true);
    if (!id) return Error{id.error()};
    if (*id) add_eos(**id);
  }
  for (size_t i = 0; i < vocab; ++i) {
    if (spec.tokens[i] == "<|im_end|>") {
      add_eos(static_cast<TokenId>(i));
      break;
    }
  }
  return spec;
}

}  // namespace

Result<ModelFile::Parts> load_gguf_parts(const GgufFile& gguf) {
  ModelFile::Parts parts;
  auto config = load_config(gguf);
  if (!config) return Error{config.error()};
  parts.config = std::move(config).value();
  auto tok = load_tokenizer(gguf);
  if (!tok) return Error{tok.error()};
  parts.tokenizer_spec = std::move(tok).value();
  if (parts.tokenizer_spec.tokens.size() > static_cast<size_t>(parts.config.vocab_size)) {
    return make_error("the tokenizer has %zu tokens but the model's vocabulary is %d",
                      parts.tokenizer_spec.tokens.size(), parts.config.vocab_size);
  }
  parts.tensors.reserve(gguf.tensors().size());
  for (const GgufTensor& t : gguf.tensors()) parts.tensors.push_back(t.view);
  parts.format = "gguf";
  parts.files.push_back(gguf.shared_file());
  return parts;
}

}  // namespace loom
