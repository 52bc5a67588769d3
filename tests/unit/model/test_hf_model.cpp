// ModelFile from HF directories: the tiny checkpoints written by tools/make_tiny_hf_llama.py
// (F32 / F16 / BF16, single file and two shards) against the values that script recorded.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "model/model_file.h"
#include "model/model_info.h"
#include "model/model_loaders.h"

namespace loom {

namespace {

using nlohmann::json;
namespace fs = std::filesystem;

const std::string kFixtures = LOOM_SOURCE_DIR "/tests/golden/model/tiny_hf";

json expected() {
  std::ifstream in(kFixtures + "/expected.json");
  return json::parse(in);
}

float bf16_to_f32(uint16_t h) {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

float f16_to_f32(uint16_t h) {
  uint32_t sign = (h >> 15) & 1, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
  float v;
  if (exp == 0) {
    v = std::ldexp(static_cast<float>(mant), -24);
  } else if (exp == 31) {
    v = mant ? NAN : INFINITY;
  } else {
    v = std::ldexp(static_cast<float>(mant | 0x400), static_cast<int>(exp) - 25);
  }
  return sign ? -v : v;
}

float value_at(const TensorView& t, size_t i) {
  if (t.type == DType::kF32) {
    float f;
    std::memcpy(&f, static_cast<const uint8_t*>(t.data) + 4 * i, 4);
    return f;
  }
  uint16_t h;
  std::memcpy(&h, static_cast<const uint8_t*>(t.data) + 2 * i, 2);
  return t.type == DType::kBF16 ? bf16_to_f32(h) : f16_to_f32(h);
}

class TinyHf : public ::testing::TestWithParam<std::string> {};

TEST_P(TinyHf, LoadsNamesShapesAndValues) {
  const std::string variant = GetParam();
  json want = expected()["variants"][variant];
  auto m = ModelFile::open(kFixtures + "/" + variant);
  ASSERT_TRUE(m.ok()) << m.error();
  const ModelFile& model = **m;
  const ModelConfig& c = model.config();
  EXPECT_EQ(model.format(), "safetensors");
  EXPECT_STREQ(arch_name(c.arch), want["arch"].get<std::string>().c_str());
  EXPECT_EQ(c.rope_style, RopeStyle::kNeox);
  EXPECT_EQ(c.qkv_bias, want["arch"] == "qwen2");
  EXPECT_EQ(c.tied_embeddings, want["tied"].get<bool>());
  EXPECT_EQ(c.vocab_size, 64);
  EXPECT_EQ(c.hidden_size, 32);
  EXPECT_EQ(c.num_heads, 2);
  EXPECT_EQ(c.num_kv_heads, 1);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_EQ(c.intermediate_size, 48);
  EXPECT_EQ(c.num_layers, 2);
  EXPECT_EQ(c.max_context, 512);
  EXPECT_EQ(c.name, variant);  // no _name_or_path: the directory name
  EXPECT_EQ(model.tensors().size(), want["num_tensors"].get<size_t>());
  EXPECT_EQ(model.num_parameters(), want["num_parameters"].get<int64_t>());
  const std::string dtype = want["dtype"];
  for (auto& [name, t] : want["tensors"].items()) {
    const TensorView* v = model.tensor(name);
    ASSERT_NE(v, nullptr) << name;
    EXPECT_EQ(v->ne, t["ne"].get<std::vector<int64_t>>()) << name;
    EXPECT_STREQ(dtype_name(v->type), dtype.c_str()) << name;
    EXPECT_EQ(v->nbytes, static_cast<size_t>(v->num_elements()) * (dtype == "F32" ? 4 : 2));
  }
  for (const json& s : want["samples"]) {
    const TensorView* v = model.tensor(s["name"]);
    ASSERT_NE(v, nullptr) << s["name"];
    EXPECT_EQ(value_at(*v, s["index"].get<size_t>()), s["value"].get<float>())
        << s["hf_name"] << " [" << s["index"] << "]";
  }
  EXPECT_EQ(model.tokenizer_spec().tokens.size(), expected()["num_tokens"].get<size_t>());
  // <|im_end|> (id 2) is the EOS of config.json and of tokenizer_config.json; no other id ends
  // generation (extra_eos_ids may repeat it, never add another).
  const TokenizerSpec& tok = model.tokenizer_spec();
  EXPECT_EQ(tok.eos_id, 2);
  for (TokenId id : tok.extra_eos_ids) EXPECT_EQ(id, 2);
  if (want.contains("rope_freq_factors")) {
    EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::kLlama3);
    auto f = want["rope_freq_factors"].get<std::vector<float>>();
    ASSERT_EQ(c.rope_freq_factors.size(), f.size());
    for (size_t i = 0; i < f.size(); ++i)
      EXPECT_NEAR(c.rope_freq_factors[i], f[i], 1e-5f * f[i]) << i;
  } else {
    EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::kNone);
    EXPECT_TRUE(c.rope_freq_factors.empty());
  }
}

INSTANTIATE_TEST_SUITE_P(Variants, TinyHf,
                         ::testing::Values("llama_f32", "llama_f16_llama3", "llama_bf16_sharded",
                                           "qwen2_bf16"));

TEST(HfNames, MapsToGgufNames) {
  EXPECT_EQ(hf_to_gguf_name("model.embed_tokens.weight"), "token_embd.weight");
  EXPECT_EQ(hf_to_gguf_name("lm_head.weight"), "output.weight");
  EXPECT_EQ(hf_to_gguf_name("model.norm.weight"), "output_norm.weight");
  EXPECT_EQ(hf_to_gguf_name("model.layers.12.self_attn.q_proj.weight"), "blk.12.attn_q.weight");
  EXPECT_EQ(hf_to_gguf_name("model.layers.0.self_attn.v_proj.bias"), "blk.0.attn_v.bias");
  EXPECT_EQ(hf_to_gguf_name("model.layers.3.self_attn.o_proj.weight"), "blk.3.attn_output.weight");
  EXPECT_EQ(hf_to_gguf_name("model.layers.3.mlp.down_proj.weight"), "blk.3.ffn_down.weight");
  EXPECT_EQ(hf_to_gguf_name("model.layers.3.post_attention_layernorm.weight"),
            "blk.3.ffn_norm.weight");
  EXPECT_EQ(hf_to_gguf_name("model.layers.3.input_layernorm.weight"), "blk.3.attn_norm.weight");
  EXPECT_EQ(hf_to_gguf_name("model.layers.x.mlp.down_proj.weight"), "");
  EXPECT_EQ(hf_to_gguf_name("model.layers.01.mlp.down_proj.weight"), "");
  EXPECT_EQ(hf_to_gguf_name("model.layers.1.mlp.down_proj.scale"), "");
  EXPECT_EQ(hf_to_gguf_name("model.layers.1"), "");
  EXPECT_EQ(hf_to_gguf_name("vision_tower.weight"), "");
}

// Copies a fixture into a scratch directory so a test can break it.
class ScratchModel {
 public:
  explicit ScratchModel(const std::string& variant) {
    static int counter = 0;
    dir_ = fs::temp_directory_path() /
           ("loom_hf_" + std::to_string(getpid()) + "_" + std::to_string(counter++));
    fs::create_directories(dir_);
    fs::copy(kFixtures + "/" + variant, dir_, fs::copy_options::recursive);
  }
  ~ScratchModel() { fs::remove_all(dir_); }
  std::string path() const { return dir_.string(); }
  json config() const {
    std::ifstream in(dir_ / "config.json");
    return json::parse(in);
  }
  void write(const std::string& name, const std::string& text) const {
    std::ofstream out(dir_ / name, std::ios::trunc);
    out << text;
  }
  void set_config(const json& j) const { write("config.json", j.dump()); }

 private:
  fs::path dir_;
};

std::string open_error(const ScratchModel& m) {
  auto r = ModelFile::open(m.path());
  return r.ok() ? std::string("(loaded)") : r.error();
}

bool contains(const std::string& s, const std::string& sub) {
  return s.find(sub) != std::string::npos;
}

TEST(HfModel, RefusesUnsupportedArchitecturesAndScaling) {
  ScratchModel m("llama_f32");
  json c = m.config();
  c["architectures"] = {"GPTNeoXForCausalLM"};
  m.set_config(c);
  EXPECT_TRUE(contains(open_error(m), "unsupported architecture 'GPTNeoXForCausalLM'"))
      << open_error(m);
  c = m.config();
  c["architectures"] = {"MistralForCausalLM"};
  c["rope_scaling"] = {{"type", "yarn"}, {"factor", 4.0}};
  m.set_config(c);
  EXPECT_TRUE(contains(open_error(m), "yarn")) << open_error(m);
  c["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};
  m.set_config(c);
  auto ok = ModelFile::open(m.path());
  ASSERT_TRUE(ok.ok()) << ok.error();
  EXPECT_EQ((*ok)->config().rope_scaling.type, RopeScaling::Type::kLinear);
  EXPECT_EQ((*ok)->config().rope_scaling.factor, 2.0f);
  c["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}};
  m.set_config(c);
  EXPECT_TRUE(contains(open_error(m), "low_freq_factor")) << open_error(m);
  c.erase("rope_scaling");
  c["num_attention_heads"] = "two";
  m.set_config(c);
  EXPECT_TRUE(contains(open_error(m), "num_attention_heads")) << open_error(m);
  m.write("config.json", "{ broken");
  EXPECT_TRUE(contains(open_error(m), "config.json")) << open_error(m);
}

// transformers 5 writes RoPE settings as one "rope_parameters" object.
TEST(HfModel, ReadsRopeParametersOfNewerConfigs) {
  ScratchModel m("llama_f16_llama3");
  json c = m.config();
  const json scaling = c["rope_scaling"];
  const double theta = c.value("rope_theta", 10000.0);
  auto before = ModelFile::open(m.path());
  ASSERT_TRUE(before.ok()) << before.error();
  c.erase("rope_scaling");
  c.erase("rope_theta");
  json params = scaling;
  params["rope_theta"] = theta * 2;
  c["rope_parameters"] = params;
  m.set_config(c);
  auto after = ModelFile::open(m.path());
  ASSERT_TRUE(after.ok()) << after.error();
  EXPECT_EQ((*after)->config().rope_theta, static_cast<float>(theta * 2));
  EXPECT_EQ((*after)->config().rope_scaling.type, RopeScaling::Type::kLlama3);
  EXPECT_EQ((*after)->config().rope_scaling.factor, (*before)->config().rope_scaling.factor);
  EXPECT_EQ((*after)->config().rope_freq_factors.size(),
            (*before)->config().rope_freq_factors.size());
}

TEST(HfModel, ShapeMismatchAndMissingTensorsAreNamed) {
  ScratchModel m("llama_f32");
  json c = m.config();
  c["intermediate_size"] = 64;
  m.set_config(c);
  std::string e = open_error(m);
  EXPECT_TRUE(contains(e, "blk.0.ffn_gate.weight") && contains(e,
                                                               "expected shape [32, 64], "
                                                               "found [32, 48]"))
      << e;
  c["intermediate_size"] = 48;
  c["num_hidden_layers"] = 3;
  m.set_config(c);
  e = open_error(m);
  EXPECT_TRUE(contains(e, "blk.2.attn_norm.weight") && contains(e, "missing")) << e;
  c["num_hidden_layers"] = 2;
  c["architectures"] = {"Qwen2ForCausalLM"};
  m.set_config(c);
  e = open_error(m);
  EXPECT_TRUE(contains(e, "blk.0.attn_q.bias")) << e;

  ScratchModel tied("llama_bf16_sharded");
  c = tied.config();
  c["tie_word_embeddings"] = false;
  tied.set_config(c);
  e = open_error(tied);
  EXPECT_TRUE(contains(e, "lm_head.weight")) << e;
}

TEST(HfModel, BrokenShardsAndIndex) {
  ScratchModel m("llama_bf16_sharded");
  fs::remove(fs::path(m.path()) / "model-00002-of-00002.safetensors");
  EXPECT_TRUE(contains(open_error(m), "model-00002-of-00002.safetensors")) << open_error(m);

  ScratchModel evil("llama_bf16_sharded");
  evil.write("model.safetensors.index.json",
             R"({"weight_map": {"model.norm.weight": "../../etc/passwd"}})");
  EXPECT_TRUE(contains(open_error(evil), "not a plain file name")) << open_error(evil);

  ScratchModel wrong("llama_bf16_sharded");
  std::ifstream in(fs::path(wrong.path()) / "model.safetensors.index.json");
  json idx = json::parse(in);
  // Point model.norm.weight at the shard that does not hold it.
  const std::string shard1 = "model-00001-of-00002.safetensors";
  const std::string shard2 = "model-00002-of-00002.safetensors";
  idx["weight_map"]["model.norm.weight"] =
      idx["weight_map"]["model.norm.weight"] == shard1 ? shard2 : shard1;
  wrong.write("model.safetensors.index.json", idx.dump());
  EXPECT_TRUE(contains(open_error(wrong), "model.norm.weight")) << open_error(wrong);

  ScratchModel notok("llama_f32");
  fs::remove(fs::path(notok.path()) / "tokenizer.json");
  EXPECT_TRUE(contains(open_error(notok), "tokenizer.json")) << open_error(notok);

  auto file = ModelFile::open(kFixtures + "/llama_f32/model.safetensors");
  ASSERT_FALSE(file.ok());
  EXPECT_TRUE(contains(file.error(), "pass its directory")) << file.error();

  ScratchModel trunc("llama_f32");
  fs::resize_file(fs::path(trunc.path()) / "model.safetensors", 5000);
  EXPECT_TRUE(contains(open_error(trunc), "past the end")) << open_error(trunc);
}

TEST(HfModel, Llama3FactorsFollowTheThreeBands) {
  RopeScaling s;
  s.type = RopeScaling::Type::kLlama3;
  s.factor = 32.0f;
  s.low_freq_factor = 1.0f;
  s.high_freq_factor = 4.0f;
  s.original_max_position = 8192;
  auto f = llama3_rope_freq_factors(s, 500000.0f, 64);  // Llama 3.2 1B
  ASSERT_EQ(f.size(), 32u);
  for (size_t i = 0; i < f.size(); ++i) {
    double wavelen = 2 * M_PI * std::pow(500000.0, 2.0 * i / 64);
    if (wavelen < 8192 / 4.0) {
      EXPECT_EQ(f[i], 1.0f) << i;
    }
    if (wavelen > 8192 / 1.0) {
      EXPECT_EQ(f[i], 32.0f) << i;
    }
    if (i > 0) {
      EXPECT_GE(f[i], f[i - 1]) << i;  // monotone from 1 to factor
    }
  }
  EXPECT_EQ(f.front(), 1.0f);
  EXPECT_EQ(f.back(), 32.0f);
}

TEST(ModelInfo, DescribesTheModel) {
  auto m = ModelFile::open(kFixtures + "/qwen2_bf16");
  ASSERT_TRUE(m.ok()) << m.error();
  std::string s = describe_model(**m, 16, 2);
  // KV per token: 2 (K, V) * 2 layers * 1 KV head * 16 dims * 2 bytes = 128; per block of 16: 2048.
  EXPECT_EQ(kv_bytes_per_token((*m)->config(), 2), 128);
  for (const char* want : {"qwen2", "qwen2_bf16", "safetensors", "layers:            2", "BF16 x26",
                           "128 bytes per token", "2048 bytes per block of 16",
                           "context length:    512", "byte-level BPE", "qkv bias:          yes"}) {
    EXPECT_TRUE(contains(s, want)) << "missing \"" << want << "\" in:\n" << s;
  }
}

}  // namespace
}  // namespace loom
