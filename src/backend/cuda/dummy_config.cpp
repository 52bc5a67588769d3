#include "backend/cuda/dummy_config.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "model/model_loaders.h"

namespace loom {
namespace {

using json = nlohmann::json;

ModelConfig llama3(const char* name, int32_t hidden, int32_t ffn, int32_t layers, int32_t heads,
                   int32_t kv_heads, bool tied, float rope_factor) {
  ModelConfig c;
  c.arch = Arch::kLlama;
  c.name = name;
  c.vocab_size = 128256;
  c.hidden_size = hidden;
  c.intermediate_size = ffn;
  c.num_layers = layers;
  c.num_heads = heads;
  c.num_kv_heads = kv_heads;
  c.head_dim = hidden / heads;
  c.max_context = 131072;
  c.rms_norm_eps = 1e-5f;
  c.rope_theta = 500000.0f;
  c.rope_style = RopeStyle::kNeox;
  c.rope_scaling.type = RopeScaling::Type::kLlama3;
  c.rope_scaling.factor = rope_factor;
  c.rope_scaling.low_freq_factor = 1.0f;
  c.rope_scaling.high_freq_factor = 4.0f;
  c.rope_scaling.original_max_position = 8192;
  c.rope_freq_factors = llama3_rope_freq_factors(c.rope_scaling, c.rope_theta, c.head_dim);
  c.tied_embeddings = tied;
  return c;
}

Result<int32_t> dim(const json& j, const char* key, int32_t fallback) {
  if (!j.contains(key) || j[key].is_null()) {
    if (fallback >= 0) return fallback;
    return make_error("config.json has no %s", key);
  }
  if (!j[key].is_number_integer() || j[key].get<int64_t>() <= 0 ||
      j[key].get<int64_t>() > (int64_t{1} << 30))
    return make_error("config.json: %s must be a positive integer", key);
  return static_cast<int32_t>(j[key].get<int64_t>());
}

}  // namespace

Result<ModelConfig> load_dummy_config(const std::string& source) {
  if (source == "llama-3.2-1b") return llama3("llama-3.2-1b", 2048, 8192, 16, 32, 8, true, 32.0f);
  if (source == "llama-3.1-8b") return llama3("llama-3.1-8b", 4096, 14336, 32, 32, 8, false, 8.0f);
  namespace fs = std::filesystem;
  fs::path path = source;
  if (fs::is_directory(path)) path /= "config.json";
  std::ifstream in(path);
  if (!in)
    return make_error("cannot open %s (expected a config.json or a preset name)",
                      path.string().c_str());
  json j = json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object())
    return make_error("%s is not JSON", path.string().c_str());
  const std::string type = j.value("model_type", "llama");
  if (type != "llama")
    return make_error("dummy weights support model_type llama, not %s", type.c_str());
  ModelConfig c;
  c.arch = Arch::kLlama;
  c.name = path.parent_path().filename().string();
  auto get = [&](const char* key, int32_t fallback, int32_t* out) -> Status {
    auto v = dim(j, key, fallback);
    if (!v.ok()) return Error{v.error()};
    *out = v.value();
    return ok_status();
  };
  if (Status s = get("vocab_size", -1, &c.vocab_size); !s.ok()) return Error{s.error()};
  if (Status s = get("hidden_size", -1, &c.hidden_size); !s.ok()) return Error{s.error()};
  if (Status s = get("intermediate_size", -1, &c.intermediate_size); !s.ok())
    return Error{s.error()};
  if (Status s = get("num_hidden_layers", -1, &c.num_layers); !s.ok()) return Error{s.error()};
  if (Status s = get("num_attention_heads", -1, &c.num_heads); !s.ok()) return Error{s.error()};
  if (Status s = get("num_key_value_heads", c.num_heads, &c.num_kv_heads); !s.ok())
    return Error{s.error()};
  if (Status s = get("head_dim", c.hidden_size / c.num_heads, &c.head_dim); !s.ok())
    return Error{s.error()};
  if (Status s = get("max_position_embeddings", 4096, &c.max_context); !s.ok())
    return Error{s.error()};
  if (j.contains("rms_norm_eps") && j["rms_norm_eps"].is_number())
    c.rms_norm_eps = j["rms_norm_eps"].get<float>();
  if (j.contains("rope_theta") && j["rope_theta"].is_number())
    c.rope_theta = j["rope_theta"].get<float>();
  c.rope_style = RopeStyle::kNeox;
  c.tied_embeddings = j.value("tie_word_embeddings", false);
  if (Status s = validate_config(c); !s.ok()) return Error{s.error()};
  return c;
}

}  // namespace loom
