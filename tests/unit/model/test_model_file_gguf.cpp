// ModelFile from GGUF: the default model against an independent reader's dump, and small
// generated models for config extraction and validation errors.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "model/gguf_file.h"
#include "model/model_file.h"
#include "model/model_info.h"
#include "unit/model/tiny_gguf_model.h"

namespace loom {
namespace {

using nlohmann::json;
using testing::GgufWriter;
using testing::TempFile;
using testing::tiny_model_writer;

const char* kDefaultModel = LOOM_SOURCE_DIR "/models/SmolLM2-135M-Instruct.Q4_1.gguf";

std::string fnv1a64(const void* data, size_t n) {
  uint64_t h = 0xcbf29ce484222325ull;
  const uint8_t* p = static_cast<const uint8_t*>(data);
  for (size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 0x100000001b3ull;
  }
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

json load_golden() {
  std::ifstream in(LOOM_SOURCE_DIR "/tests/golden/model/smollm2_meta.json");
  return json::parse(in);
}

bool contains(const std::string& s, const std::string& sub) {
  return s.find(sub) != std::string::npos;
}

TEST(DefaultModel, ConfigMatchesReferenceReader) {
  if (!std::filesystem::exists(kDefaultModel)) GTEST_SKIP() << "default model not present";
  json g = load_golden();
  auto m = ModelFile::open(kDefaultModel);
  ASSERT_TRUE(m.ok()) << m.error();
  const ModelConfig& c = (*m)->config();
  const json& gc = g["config"];
  EXPECT_EQ((*m)->format(), "gguf");
  EXPECT_EQ(c.arch, Arch::kLlama);
  EXPECT_STREQ(arch_name(c.arch), gc["architecture"].get<std::string>().c_str());
  EXPECT_EQ(c.name, gc["name"].get<std::string>());
  EXPECT_EQ(c.num_layers, gc["block_count"].get<int>());
  EXPECT_EQ(c.hidden_size, gc["embedding_length"].get<int>());
  EXPECT_EQ(c.intermediate_size, gc["feed_forward_length"].get<int>());
  EXPECT_EQ(c.num_heads, gc["attention.head_count"].get<int>());
  EXPECT_EQ(c.num_kv_heads, gc["attention.head_count_kv"].get<int>());
  EXPECT_EQ(c.head_dim, gc["rope.dimension_count"].get<int>());
  EXPECT_EQ(c.vocab_size, gc["vocab_size"].get<int>());
  EXPECT_EQ(c.max_context, gc["context_length"].get<int>());
  EXPECT_FLOAT_EQ(c.rope_theta, gc["rope.freq_base"].get<float>());
  EXPECT_FLOAT_EQ(c.rms_norm_eps, gc["attention.layer_norm_rms_epsilon"].get<float>());
  EXPECT_EQ(c.rope_style, RopeStyle::kInterleaved);
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::kNone);
  EXPECT_TRUE(c.rope_freq_factors.empty());
  EXPECT_EQ(c.tied_embeddings, !g["has_output_weight"].get<bool>());
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_EQ((*m)->tensors().size(), g["num_tensors"].get<size_t>());
  EXPECT_EQ((*m)->num_parameters(), g["num_parameters"].get<int64_t>());
  EXPECT_EQ((*m)->weight_bytes(), g["weight_bytes"].get<size_t>());
  std::map<std::string, int> counts;
  for (const TensorView& t : (*m)->tensors()) ++counts[dtype_name(t.type)];
  for (auto& [type, n] : g["tensor_type_counts"].items())
    EXPECT_EQ(counts[type], n.get<int>()) << type;
}

TEST(DefaultModel, TensorsMatchReferenceReader) {
  if (!std::filesystem::exists(kDefaultModel)) GTEST_SKIP() << "default model not present";
  json g = load_golden();
  auto m = ModelFile::open(kDefaultModel);
  ASSERT_TRUE(m.ok()) << m.error();
  auto gguf = GgufFile::open(kDefaultModel);
  ASSERT_TRUE(gguf.ok()) << gguf.error();
  EXPECT_EQ((*gguf)->version(), g["config"]["version"].get<uint32_t>());
  EXPECT_EQ((*gguf)->alignment(), g["config"]["alignment"].get<uint32_t>());
  EXPECT_EQ((*gguf)->data_offset(), g["config"]["data_offset"].get<uint64_t>());
  EXPECT_EQ((*gguf)->keys().size(), g["config"]["kv_count"].get<size_t>());
  for (auto& [name, want] : g["tensors"].items()) {
    SCOPED_TRACE(name);
    const TensorView* t = (*m)->tensor(name);
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(static_cast<uint32_t>(t->type), want["type_id"].get<uint32_t>());
    EXPECT_STREQ(dtype_name(t->type), want["type"].get<std::string>().c_str());
    EXPECT_EQ(t->ne, want["ne"].get<std::vector<int64_t>>());
    EXPECT_EQ(t->nbytes, want["nbytes"].get<size_t>());
    EXPECT_EQ(fnv1a64(t->data, std::min<size_t>(1024, t->nbytes)),
              want["head_fnv1a64"].get<std::string>());
    if (want.contains("all_fnv1a64")) {
      EXPECT_EQ(fnv1a64(t->data, t->nbytes), want["all_fnv1a64"].get<std::string>());
    }
    if (want.contains("first_values")) {
      const float* v = static_cast<const float*>(t->data);
      auto first = want["first_values"].get<std::vector<float>>();
      for (size_t i = 0; i < first.size(); ++i) EXPECT_EQ(v[i], first[i]);
    }
    const GgufTensor* gt = (*gguf)->tensor(name);
    ASSERT_NE(gt, nullptr);
    EXPECT_EQ(gt->offset, want["offset"].get<uint64_t>());
  }
}

TEST(DefaultModel, TokenizerSpecMatchesReferenceReader) {
  if (!std::filesystem::exists(kDefaultModel)) GTEST_SKIP() << "default model not present";
  json g = load_golden()["tokenizer"];
  auto m = ModelFile::open(kDefaultModel);
  ASSERT_TRUE(m.ok()) << m.error();
  const TokenizerSpec& t = (*m)->tokenizer_spec();
  EXPECT_EQ(t.kind, TokenizerKind::kByteLevelBpe);
  EXPECT_EQ(g["model"], "gpt2");
  EXPECT_EQ(t.pre, g["pre"].get<std::string>());
  ASSERT_EQ(t.tokens.size(), g["num_tokens"].get<size_t>());
  ASSERT_EQ(t.merges.size(), g["num_merges"].get<size_t>());
  ASSERT_EQ(t.token_types.size(), t.tokens.size());
  EXPECT_TRUE(t.scores.empty());
  for (auto& [i, tok] : g["tokens_sample"].items()) EXPECT_EQ(t.tokens[std::stoi(i)], tok) << i;
  for (auto& [i, mg] : g["merges_sample"].items()) EXPECT_EQ(t.merges[std::stoi(i)], mg) << i;
  for (auto& [i, ty] : g["token_type_sample"].items()) {
    EXPECT_EQ(static_cast<int>(t.token_types[std::stoi(i)]), ty.get<int>()) << i;
  }
  EXPECT_EQ(t.bos_id, g["bos_token_id"].get<int>());
  EXPECT_EQ(t.eos_id, g["eos_token_id"].get<int>());
  EXPECT_EQ(t.unk_id, g["unknown_token_id"].get<int>());
  EXPECT_EQ(t.pad_id, g["padding_token_id"].get<int>());
  EXPECT_EQ(t.add_bos, g["add_bos_token"].get<bool>());
  EXPECT_FALSE(t.add_eos);
  EXPECT_EQ(t.add_space_prefix, g["add_space_prefix"].get<bool>());
  EXPECT_EQ(fnv1a64(t.chat_template.data(), t.chat_template.size()),
            g["chat_template_fnv1a64"].get<std::string>());
  // ChatML: <|im_end|> ends generation too (listed as extra only when it is not the EOS).
  TokenId im_end = g["im_end_id"].get<TokenId>();
  EXPECT_EQ(t.extra_eos_ids,
            im_end == t.eos_id ? std::vector<TokenId>{} : std::vector<TokenId>{im_end});
}

TEST(DefaultModel, TensorsAreUsedInPlace) {
  if (!std::filesystem::exists(kDefaultModel)) GTEST_SKIP() << "default model not present";
  auto m = ModelFile::open(kDefaultModel);
  ASSERT_TRUE(m.ok()) << m.error();
  auto gguf = GgufFile::open(kDefaultModel);
  ASSERT_TRUE(gguf.ok());
  // Views point into one mapping, in file order, each inside it.
  const TensorView* embd = (*m)->tensor("token_embd.weight");
  const TensorView* last = (*m)->tensor("blk.29.ffn_up.weight");
  ASSERT_NE(embd, nullptr);
  ASSERT_NE(last, nullptr);
  auto base =
      static_cast<const uint8_t*>(embd->data) - (*gguf)->tensor("token_embd.weight")->offset;
  EXPECT_EQ(static_cast<const uint8_t*>(last->data) - base,
            static_cast<ptrdiff_t>((*gguf)->tensor("blk.29.ffn_up.weight")->offset));
}

TEST(DefaultModel, DescribeModel) {
  if (!std::filesystem::exists(kDefaultModel)) GTEST_SKIP() << "default model not present";
  json g = load_golden();
  auto m = ModelFile::open(kDefaultModel);
  ASSERT_TRUE(m.ok()) << m.error();
  std::string s = describe_model(**m, 16, 2);
  const json& c = g["config"];
  // K and V, every layer, every KV head, head_dim values of 2 bytes.
  int64_t per_token = 2ll * c["block_count"].get<int>() * c["attention.head_count_kv"].get<int>() *
                      (c["embedding_length"].get<int>() / c["attention.head_count"].get<int>()) * 2;
  char mib[64];
  std::snprintf(mib, sizeof(mib), "%.1f MiB", g["weight_bytes"].get<double>() / (1024.0 * 1024.0));
  for (std::string want :
       {std::string("architecture:      llama"), std::to_string(per_token) + " bytes per token",
        std::to_string(per_token * 16) + " bytes per block of 16", std::string(mib),
        "parameters:        " + std::to_string(g["num_parameters"].get<int64_t>()),
        std::string("Q4_1 x210"), std::string("Q8_0 x1"), std::string("F32 x61"),
        std::string("tokenizer:         byte-level BPE, pre 'smollm', 49152 tokens"),
        std::string("tied")}) {
    EXPECT_TRUE(contains(s, want)) << "missing \"" << want << "\" in:\n" << s;
  }
}

TEST(GgufModel, TinyLlamaLoads) {
  TempFile f(tiny_model_writer("llama", /*tied=*/false).build());
  auto m = ModelFile::open(f.path());
  ASSERT_TRUE(m.ok()) << m.error();
  const ModelConfig& c = (*m)->config();
  EXPECT_EQ(c.name, "tiny llama");
  EXPECT_EQ(c.hidden_size, 8);
  EXPECT_EQ(c.num_heads, 2);
  EXPECT_EQ(c.num_kv_heads, 1);
  EXPECT_EQ(c.head_dim, 4);
  EXPECT_EQ(c.intermediate_size, 16);
  EXPECT_EQ(c.num_layers, 2);
  EXPECT_EQ(c.vocab_size, 8);  // from token_embd: no vocab_size key
  EXPECT_EQ(c.max_context, 128);
  EXPECT_FLOAT_EQ(c.rms_norm_eps, 1e-6f);
  EXPECT_FLOAT_EQ(c.rope_theta, 500000.0f);
  EXPECT_FALSE(c.tied_embeddings);
  EXPECT_EQ(c.rope_style, RopeStyle::kInterleaved);
  const TokenizerSpec& t = (*m)->tokenizer_spec();
  EXPECT_EQ(t.pre, "qwen2");
  EXPECT_EQ(t.merges, std::vector<std::string>{"a b"});
  EXPECT_EQ(t.eos_id, 6);
  EXPECT_EQ(t.extra_eos_ids, std::vector<TokenId>{5});  // <|im_end|>
  EXPECT_EQ(t.token_types[4], TokenType::kControl);
  EXPECT_FALSE(t.add_bos);  // gpt2 default
}

TEST(GgufModel, Qwen2NeedsBiasesAndUsesNeox) {
  TempFile ok(tiny_model_writer("qwen2").build());
  auto m = ModelFile::open(ok.path());
  ASSERT_TRUE(m.ok()) << m.error();
  EXPECT_EQ((*m)->config().arch, Arch::kQwen2);
  EXPECT_EQ((*m)->config().rope_style, RopeStyle::kNeox);
  EXPECT_TRUE((*m)->config().qkv_bias);
  EXPECT_TRUE((*m)->config().tied_embeddings);
  TempFile missing(tiny_model_writer("qwen2", true, "blk.1.attn_k.bias").build());
  auto e = ModelFile::open(missing.path());
  ASSERT_FALSE(e.ok());
  EXPECT_TRUE(contains(e.error(), "blk.1.attn_k.bias")) << e.error();
  EXPECT_TRUE(contains(e.error(), "missing")) << e.error();
}

TEST(GgufModel, MissingOrMisshapenTensorsAreNamed) {
  for (const char* name : {"token_embd.weight", "output_norm.weight", "blk.0.attn_q.weight",
                           "blk.1.ffn_down.weight", "blk.1.ffn_norm.weight"}) {
    TempFile f(tiny_model_writer("llama", true, name).build());
    auto e = ModelFile::open(f.path());
    ASSERT_FALSE(e.ok()) << name;
    EXPECT_TRUE(contains(e.error(), name)) << e.error();
  }
  TempFile untied(tiny_model_writer("llama", true).build());  // tied: fine without output
  EXPECT_TRUE(ModelFile::open(untied.path()).ok());

  GgufWriter w = tiny_model_writer("llama");
  for (auto& t : w.tensors()) {
    if (t.name == "blk.1.attn_v.weight") {
      t.ne = {8, 8};
      t.data.assign(8 * 8 * 4, 0);
    }
  }
  TempFile f(w.build());
  auto e = ModelFile::open(f.path());
  ASSERT_FALSE(e.ok());
  EXPECT_TRUE(contains(e.error(), "blk.1.attn_v.weight")) << e.error();
  EXPECT_TRUE(contains(e.error(), "expected shape [8, 4], found [8, 8]")) << e.error();

  // A vocabulary key that disagrees with the embedding table.
  GgufWriter v = tiny_model_writer("llama");
  v.add_u32("llama.vocab_size", 16);
  TempFile fv(v.build());
  auto ev = ModelFile::open(fv.path());
  ASSERT_FALSE(ev.ok());
  EXPECT_TRUE(contains(ev.error(), "token_embd.weight")) << ev.error();
}

TEST(GgufModel, UnsupportedArchitectureAndConfig) {
  GgufWriter w = tiny_model_writer("phi3");
  TempFile f(w.build());
  auto e = ModelFile::open(f.path());
  ASSERT_FALSE(e.ok());
  EXPECT_TRUE(contains(e.error(), "unsupported architecture 'phi3'")) << e.error();

  testing::TinyShape s;
  s.kv_heads = 3;  // 2 heads are not a multiple of 3 KV heads
  s.heads = 2;
  TempFile fk(tiny_model_writer("llama", true, "", s).build());
  auto ek = ModelFile::open(fk.path());
  ASSERT_FALSE(ek.ok());
  EXPECT_TRUE(contains(ek.error(), "num_kv_heads")) << ek.error();

  GgufWriter notok = tiny_model_writer("llama");
  notok.add_string("llama.rope.scaling.type", "yarn");
  TempFile fy(notok.build());
  auto ey = ModelFile::open(fy.path());
  ASSERT_FALSE(ey.ok());
  EXPECT_TRUE(contains(ey.error(), "yarn")) << ey.error();

  GgufWriter badbos = tiny_model_writer("llama");
  badbos.add_u32("tokenizer.ggml.unknown_token_id", 3);
  badbos.add_u32("tokenizer.ggml.eot_token_id", 99);
  TempFile fb(badbos.build());
  auto eb = ModelFile::open(fb.path());
  ASSERT_FALSE(eb.ok());
  EXPECT_TRUE(contains(eb.error(), "tokenizer.ggml.eot_token_id")) << eb.error();

  GgufWriter partial = tiny_model_writer("llama");
  partial.add_u32("llama.rope.dimension_count", 2);
  TempFile fp(partial.build());
  auto ep = ModelFile::open(fp.path());
  ASSERT_FALSE(ep.ok());
  EXPECT_TRUE(contains(ep.error(), "partial rotary")) << ep.error();

  TempFile garbage(std::vector<uint8_t>{'n', 'o', 'p', 'e', 0, 0, 0, 0});
  auto eg = ModelFile::open(garbage.path());
  ASSERT_FALSE(eg.ok());
  EXPECT_TRUE(contains(eg.error(), "magic")) << eg.error();
  auto none = ModelFile::open("/nonexistent/dir/model.gguf");
  ASSERT_FALSE(none.ok());
  EXPECT_TRUE(contains(none.error(), "does not exist")) << none.error();
}

TEST(GgufModel, RopeScalingHeadDimAndExtraEos) {
  testing::TinyShape s;
  GgufWriter w = tiny_model_writer("llama", true, "", s);
  w.add_f32_tensor("rope_freqs.weight", {2}, {1.0f, 8.0f});
  w.add_u32("tokenizer.ggml.eot_token_id", 3);
  w.add_u32("tokenizer.ggml.eom_token_id", 6);  // equals eos: not repeated
  TempFile f(w.build());
  auto m = ModelFile::open(f.path());
  ASSERT_TRUE(m.ok()) << m.error();
  EXPECT_EQ((*m)->config().rope_scaling.type, RopeScaling::Type::kLlama3);
  EXPECT_EQ((*m)->config().rope_freq_factors, (std::vector<float>{1.0f, 8.0f}));
  EXPECT_EQ((*m)->tokenizer_spec().extra_eos_ids, (std::vector<TokenId>{3, 5}));

  GgufWriter bad = tiny_model_writer("llama");
  bad.add_f32_tensor("rope_freqs.weight", {3}, {1.0f, 2.0f, 3.0f});
  TempFile fb(bad.build());
  auto eb = ModelFile::open(fb.path());
  ASSERT_FALSE(eb.ok());
  EXPECT_TRUE(contains(eb.error(), "rope_freqs.weight")) << eb.error();

  GgufWriter lin = tiny_model_writer("llama");
  lin.add_string("llama.rope.scaling.type", "linear");
  lin.add_f32("llama.rope.scaling.factor", 4.0f);
  TempFile fl(lin.build());
  auto ml = ModelFile::open(fl.path());
  ASSERT_TRUE(ml.ok()) << ml.error();
  EXPECT_EQ((*ml)->config().rope_scaling.type, RopeScaling::Type::kLinear);
  EXPECT_EQ((*ml)->config().rope_scaling.factor, 4.0f);

  // Explicit key_length: heads of 8 with hidden 8 and 2 heads (q_dim 16 != hidden).
  testing::TinyShape wide;
  wide.head_dim = 8;
  GgufWriter kl = tiny_model_writer("llama", true, "", wide);
  kl.add_u32("llama.attention.key_length", 8);
  TempFile fk(kl.build());
  auto mk = ModelFile::open(fk.path());
  ASSERT_TRUE(mk.ok()) << mk.error();
  EXPECT_EQ((*mk)->config().head_dim, 8);
  EXPECT_EQ((*mk)->config().q_dim(), 16);
}

TEST(GgufModel, SentencePieceDefaultsAndScores) {
  // tiny_model_writer writes a gpt2 tokenizer; this one has SentencePiece metadata and the same
  // tensors.
  GgufWriter spm = tiny_model_writer("llama");
  GgufWriter s2;
  s2.add_string("general.architecture", "llama");
  s2.add_u32("llama.context_length", 64);
  s2.add_u32("llama.embedding_length", 8);
  s2.add_u32("llama.block_count", 2);
  s2.add_u32("llama.feed_forward_length", 16);
  s2.add_u32("llama.attention.head_count", 2);
  s2.add_u32("llama.attention.head_count_kv", 1);
  s2.add_string("tokenizer.ggml.model", "llama");
  s2.add_string_array("tokenizer.ggml.tokens", {"<unk>", "<s>", "</s>", "▁a", "b", "c", "d", "e"});
  s2.add_array<float>("tokenizer.ggml.scores", 6, {0, 0, 0, -1, -2, -3, -4, -5});
  s2.add_u32("tokenizer.ggml.bos_token_id", 1);
  s2.add_u32("tokenizer.ggml.eos_token_id", 2);
  for (auto& t : spm.tensors()) s2.add_tensor(t.name, DType::kF32, t.ne);
  TempFile f(s2.build());
  auto m = ModelFile::open(f.path());
  ASSERT_TRUE(m.ok()) << m.error();
  const TokenizerSpec& t = (*m)->tokenizer_spec();
  EXPECT_EQ(t.kind, TokenizerKind::kSentencePiece);
  EXPECT_TRUE(t.add_bos);
  EXPECT_TRUE(t.add_space_prefix);
  EXPECT_EQ(t.pre, "default");
  EXPECT_EQ(t.scores.size(), 8u);
  EXPECT_EQ(t.scores[4], -2.0f);
  EXPECT_TRUE(t.extra_eos_ids.empty());
  EXPECT_EQ((*m)->config().rope_theta, 10000.0f);  // defaults when keys are absent
  EXPECT_EQ((*m)->config().rms_norm_eps, 1e-5f);
}

}  // namespace
}  // namespace loom
