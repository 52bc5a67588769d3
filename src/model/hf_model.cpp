// ModelConfig, TokenizerSpec and tensors from an HF checkpoint directory: config.json,
// *.safetensors (GGUF tensor names and innermost-first dims after loading), tokenizer.json.
#include <cinttypes>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "model/model_loaders.h"
#include "model/safetensors_file.h"
#include "tokenizer/tokenizer_json.h"

namespace loom {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

Result<json> read_json(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error("cannot read '%s'", path.c_str());
  std::stringstream buf;
  buf << in.rdbuf();
  json j = json::parse(buf.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return make_error("'%s' is not valid JSON", path.c_str());
  if (!j.is_object()) return make_error("'%s' is not a JSON object", path.c_str());
  return j;
}

// A positive int32 field; absent or null -> `fallback` when >= 0, else an error.
Result<int32_t> get_dim(const json& j, const char* key, int64_t fallback = -1) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    if (fallback >= 0) return static_cast<int32_t>(fallback);
    return make_error("config.json: '%s' is missing", key);
  }
  if (!it->is_number_integer()) return make_error("config.json: '%s' is not an integer", key);
  int64_t v = it->is_number_unsigned() && it->get<uint64_t>() > INT64_MAX ? -1 : it->get<int64_t>();
  if (v <= 0 || v > std::numeric_limits<int32_t>::max()) {
    return make_error("config.json: '%s' = %s is out of range", key, it->dump().c_str());
  }
  return static_cast<int32_t>(v);
}

Result<double> get_number(const json& j, const char* key, double fallback, const char* where) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    if (!std::isnan(fallback)) return fallback;
    return make_error("%s: '%s' is missing", where, key);
  }
  if (!it->is_number()) return make_error("%s: '%s' is not a number", where, key);
  return it->get<double>();
}

Result<bool> get_bool(const json& j, const char* key, bool fallback) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) return make_error("config.json: '%s' is not a boolean", key);
  return it->get<bool>();
}

// transformers 5 writes the RoPE settings as one "rope_parameters" object (rope_type,
// rope_theta, factor, ...) where older configs have "rope_theta" and "rope_scaling".
Status load_rope_scaling(const json& j, ModelConfig* c) {
  auto it = j.find("rope_scaling");
  if (it == j.end() || it->is_null()) it = j.find("rope_parameters");
  if (it == j.end() || it->is_null()) return ok_status();
  if (!it->is_object()) return make_error("config.json: 'rope_scaling' is not an object");
  const json& rs = *it;
  std::string type;
  for (const char* key : {"rope_type", "type"}) {
    auto t = rs.find(key);
    if (t != rs.end() && t->is_string()) {
      type = t->get<std::string>();
      break;
    }
  }
  const double kRequired = std::nan("");
  if (type == "default") return ok_status();
  if (type == "linear") {
    auto f = get_number(rs, "factor", kRequired, "config.json rope_scaling");
    if (!f) return Error{f.error()};
    if (!(*f > 0.0)) return make_error("config.json: rope_scaling factor must be positive");
    c->rope_scaling.type = RopeScaling::Type::kLinear;
    c->rope_scaling.factor = static_cast<float>(*f);
    return ok_status();
  }
  if (type == "llama3") {
    const char* where = "config.json rope_scaling (llama3)";
    auto f = get_number(rs, "factor", kRequired, where);
    auto lo = get_number(rs, "low_freq_factor", kRequired, where);
    auto hi = get_number(rs, "high_freq_factor", kRequired, where);
    auto orig = get_number(rs, "original_max_position_embeddings", kRequired, where);
    for (const auto* r : {&f, &lo, &hi, &orig}) {
      if (!*r) return Error{r->error()};
    }
    if (!(*f > 0.0) || !(*lo > 0.0) || !(*hi > *lo) || !(*orig >= 1.0) ||
        *orig > std::numeric_limits<int32_t>::max()) {
      return make_error(
          "%s: needs factor > 0, 0 < low_freq_factor < high_freq_factor and "
          "original_max_position_embeddings >= 1",
          where);
    }
    c->rope_scaling.type = RopeScaling::Type::kLlama3;
    c->rope_scaling.factor = static_cast<float>(*f);
    c->rope_scaling.low_freq_factor = static_cast<float>(*lo);
    c->rope_scaling.high_freq_factor = static_cast<float>(*hi);
    c->rope_scaling.original_max_position = static_cast<int32_t>(*orig);
    c->rope_freq_factors = llama3_rope_freq_factors(c->rope_scaling, c->rope_theta, c->head_dim);
    return ok_status();
  }
  return make_error("config.json: rope_scaling type '%s' is not supported (linear, llama3)",
                    type.c_str());
}

Result<ModelConfig> load_config(const json& j, const std::string& dir) {
  ModelConfig c;
  auto archs = j.find("architectures");
  if (archs == j.end() || !archs->is_array() || archs->empty() || !(*archs)[0].is_string()) {
    return make_error("config.json: 'architectures' is missing");
  }
  const std::string arch = (*archs)[0].get<std::string>();
  if (arch == "LlamaForCausalLM" || arch == "MistralForCausalLM") {
    c.arch = Arch::kLlama;
  } else if (arch == "Qwen2ForCausalLM") {
    c.arch = Arch::kQwen2;
    c.qkv_bias = true;
  } else {
    return make_error(
        "unsupported architecture '%s' (loom runs LlamaForCausalLM, "
        "MistralForCausalLM and Qwen2ForCausalLM)",
        arch.c_str());
  }
  c.rope_style = RopeStyle::kNeox;  // HF checkpoints pair dimension i with i + head_dim / 2
  for (const char* key : {"attention_bias", "mlp_bias"}) {
    auto v = get_bool(j, key, false);
    if (!v) return Error{v.error()};
    if (*v && c.arch == Arch::kLlama) {
      return make_error("config.json: '%s' = true is not supported", key);
    }
  }
  auto name = j.find("_name_or_path");
  c.name = name != j.end() && name->is_string() && !name->get<std::string>().empty()
               ? name->get<std::string>()
               : fs::path(dir).lexically_normal().filename().string();
  if (c.name.empty()) c.name = fs::path(dir).lexically_normal().parent_path().filename().string();
  struct DimKey {
    int32_t* field;
    const char* key;
  };
  for (const DimKey& k :
       {DimKey{&c.vocab_size, "vocab_size"}, DimKey{&c.hidden_size, "hidden_size"},
        DimKey{&c.intermediate_size, "intermediate_size"},
        DimKey{&c.num_layers, "num_hidden_layers"}, DimKey{&c.num_heads, "num_attention_heads"},
        DimKey{&c.max_context, "max_position_embeddings"}}) {
    auto v = get_dim(j, k.key);
    if (!v) return Error{v.error()};
    *k.field = *v;
  }
  auto kv = get_dim(j, "num_key_value_heads", c.num_heads);
  if (!kv) return Error{kv.error()};
  c.num_kv_heads = *kv;
  bool has_head_dim = j.contains("head_dim") && !j["head_dim"].is_null();
  if (!has_head_dim && c.hidden_size % c.num_heads != 0) {
    return make_error("config.json: hidden_size %d is not a multiple of num_attention_heads %d",
                      c.hidden_size, c.num_heads);
  }
  auto hd = get_dim(j, "head_dim", c.hidden_size / c.num_heads);
  if (!hd) return Error{hd.error()};
  c.head_dim = *hd;
  auto eps = get_number(j, "rms_norm_eps", 1e-6, "config.json");
  if (!eps) return Error{eps.error()};
  c.rms_norm_eps = static_cast<float>(*eps);
  auto rope_parameters = j.find("rope_parameters");
  const bool theta_in_parameters =
      !j.contains("rope_theta") && rope_parameters != j.end() && rope_parameters->is_object();
  auto theta = theta_in_parameters ? get_number(*rope_parameters, "rope_theta", 10000.0,
                                                "config.json rope_parameters")
                                   : get_number(j, "rope_theta", 10000.0, "config.json");
  if (!theta) return Error{theta.error()};
  c.rope_theta = static_cast<float>(*theta);
  if (auto s = validate_config(c); !s) return Error{s.error()};
  if (auto s = load_rope_scaling(j, &c); !s) return Error{s.error()};
  return c;
}

// Adds ids from an "eos_token_id" field (int or list) as extra end-of-generation tokens.
void add_eos_ids(const json& j, TokenizerSpec* spec) {
  auto it = j.find("eos_token_id");
  if (it == j.end()) return;
  std::vector<json> ids =
      it->is_array() ? std::vector<json>(it->begin(), it->end()) : std::vector<json>{*it};
  for (const json& v : ids) {
    if (!v.is_number_integer()) continue;
    int64_t id = v.get<int64_t>();
    if (id < 0 || static_cast<uint64_t>(id) >= spec->tokens.size()) continue;
    TokenId t = static_cast<TokenId>(id);
    if (spec->eos_id == t) continue;
    bool seen = false;
    for (TokenId e : spec->extra_eos_ids) seen = seen || e == t;
    if (!seen) spec->extra_eos_ids.push_back(t);
  }
}

}  // namespace

std::vector<float> llama3_rope_freq_factors(const RopeScaling& s, float rope_theta,
                                            int32_t head_dim) {
  // As transformers' _compute_llama3_parameters: wavelengths shorter than
  // original_max / high_freq_factor keep their frequency, longer than original_max /
  // low_freq_factor are divided by `factor`, and those between blend smoothly. Returned as the
  // divisor of each pair's default inverse frequency.
  const int32_t pairs = head_dim / 2;
  const double old_context = s.original_max_position;
  const double low_freq_wavelen = old_context / s.low_freq_factor;
  const double high_freq_wavelen = old_context / s.high_freq_factor;
  std::vector<float> factors(pairs);
  for (int32_t i = 0; i < pairs; ++i) {
    // HF computes inv_freq in float32: base ** (2i / dim).
    float inv_freq = 1.0f / std::pow(rope_theta, static_cast<float>(2 * i) / head_dim);
    double wavelen = 2.0 * M_PI / inv_freq;
    double divisor;
    if (wavelen < high_freq_wavelen) {
      divisor = 1.0;
    } else if (wavelen > low_freq_wavelen) {
      divisor = s.factor;
    } else {
      double smooth =
          (old_context / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
      // new_inv_freq = (1 - smooth) * inv_freq / factor + smooth * inv_freq
      divisor = 1.0 / ((1.0 - smooth) / s.factor + smooth);
    }
    factors[i] = static_cast<float>(divisor);
  }
  return factors;
}

std::string hf_to_gguf_name(const std::string& hf) {
  if (hf == "model.embed_tokens.weight") return "token_embd.weight";
  if (hf == "model.norm.weight") return "output_norm.weight";
  if (hf == "lm_head.weight") return "output.weight";
  const std::string prefix = "model.layers.";
  if (hf.compare(0, prefix.size(), prefix) != 0) return "";
  size_t pos = prefix.size(), end = pos;
  while (end < hf.size() && hf[end] >= '0' && hf[end] <= '9') ++end;
  if (end == pos || end - pos > 6 || end >= hf.size() || hf[end] != '.') return "";
  if (hf[pos] == '0' && end - pos > 1) return "";  // no leading zeros: one name per layer
  const std::string layer = hf.substr(pos, end - pos);
  const std::string rest = hf.substr(end + 1);
  static const std::pair<const char*, const char*> kMap[] = {
      {"self_attn.q_proj.", "attn_q."},
      {"self_attn.k_proj.", "attn_k."},
      {"self_attn.v_proj.", "attn_v."},
      {"self_attn.o_proj.", "attn_output."},
      {"mlp.gate_proj.", "ffn_gate."},
      {"mlp.up_proj.", "ffn_up."},
      {"mlp.down_proj.", "ffn_down."},
      {"input_layernorm.", "attn_norm."},
      {"post_attention_layernorm.", "ffn_norm."},
  };
  for (const auto& [from, to] : kMap) {
    std::string f(from);
    if (rest.compare(0, f.size(), f) != 0) continue;
    std::string leaf = rest.substr(f.size());
    if (leaf != "weight" && leaf != "bias") return "";
    return "blk." + layer + "." + to + leaf;
  }
  return "";
}

Result<ModelFile::Parts> load_hf_parts(const std::string& dir) {
  const fs::path root(dir);
  auto cfg_json = read_json(root / "config.json");
  if (!cfg_json) return Error{cfg_json.error()};
  auto config = load_config(*cfg_json, dir);
  if (!config) return Error{config.error()};

  auto set = open_safetensors_dir(dir);
  if (!set) return Error{set.error()};
  ModelFile::Parts parts;
  parts.format = "safetensors";
  for (const auto& f : set->files) parts.files.push_back(f->shared_file());
  for (const SafetensorsTensor* t : set->tensors) {
    std::string name = hf_to_gguf_name(t->name);
    if (name.empty()) {
      // Buffers some exports carry (rotary_emb.inv_freq) are recomputed; keep anything else
      // under its HF name so nothing silently disappears from `loom info`.
      if (t->name.find("rotary_emb.inv_freq") != std::string::npos) continue;
      name = t->name;
    }
    TensorView v;
    v.name = std::move(name);
    v.type = t->type;
    v.ne.assign(t->shape.rbegin(), t->shape.rend());  // [out, in] -> ne = {in, out}
    v.data = t->data;
    v.nbytes = t->nbytes;
    parts.tensors.push_back(std::move(v));
  }
  bool has_output = false;
  for (const TensorView& v : parts.tensors) has_output = has_output || v.name == "output.weight";
  auto tie = get_bool(*cfg_json, "tie_word_embeddings", false);
  if (!tie) return Error{tie.error()};
  if (!*tie && !has_output) {
    return make_error("config.json sets tie_word_embeddings false, but lm_head.weight is missing");
  }
  config->tied_embeddings = !has_output;  // a tied export may still carry a copy of lm_head
  parts.config = std::move(config).value();

  const fs::path tok_path = root / "tokenizer.json";
  std::error_code ec;
  if (!fs::exists(tok_path, ec)) return make_error("'%s' is missing", tok_path.c_str());
  auto tok = load_tokenizer_json(tok_path.string(), (root / "tokenizer_config.json").string());
  if (!tok) return Error{tok.error()};
  parts.tokenizer_spec = std::move(tok).value();
  TokenizerSpec& spec = parts.tokenizer_spec;
  if (spec.tokens.size() > static_cast<size_t>(parts.config.vocab_size)) {
    return make_error("tokenizer.json has %zu tokens but config.json's vocab_size is %d",
                      spec.tokens.size(), parts.config.vocab_size);
  }
  // End-of-generation ids the generation config adds (Llama 3 lists <|eot_id|> there).
  add_eos_ids(*cfg_json, &spec);
  if (fs::exists(root / "generation_config.json", ec)) {
    auto gen = read_json(root / "generation_config.json");
    if (gen) add_eos_ids(*gen, &spec);
  }
  for (size_t i = 0; i < spec.tokens.size(); ++i) {
    if (spec.tokens[i] != "<|im_end|>") continue;
    json one = {{"eos_token_id", static_cast<int64_t>(i)}};
    add_eos_ids(one, &spec);
    break;
  }
  return parts;
}

}  // namespace loom
