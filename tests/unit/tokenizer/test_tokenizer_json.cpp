// HF tokenizer.json loading against HF `tokenizers`' own ids for the same files
// (tests/golden/tokenizer/hf_*.tokenizer.json and hf_golden.json, tools/make_tokenizer_golden.py).
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "golden_util.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_json.h"

namespace loom {
namespace {

std::string fixture(const std::string& pre) {
  return test::golden_dir() + "/hf_" + pre + ".tokenizer.json";
}
std::string config_path() {
  return test::golden_dir() + "/hf_tokenizer_config.json";
}

std::string write_temp(const std::string& name, const std::string& content) {
  const auto path = std::filesystem::temp_directory_path() /
                    ("loom_tok_" + std::to_string(::getpid()) + "_" + name);
  std::ofstream(path, std::ios::binary) << content;
  return path.string();
}

void expect_matches_golden(const Tokenizer& tok, const nlohmann::json& cases) {
  ASSERT_GE(cases.size(), 30u);
  for (const auto& c : cases) {
    const std::string text = c["text"].get<std::string>();
    const auto ids = tok.encode(text, /*add_special=*/false, /*parse_special=*/true);
    EXPECT_EQ(ids, test::ids_of(c["ids"])) << c["name"];
    EXPECT_EQ(tok.decode(ids, false), c["decode"].get<std::string>()) << c["name"];
    EXPECT_EQ(tok.decode(ids, true), c["decode_skip"].get<std::string>()) << c["name"];
  }
}

class TokenizerJsonTest : public ::testing::TestWithParam<std::string> {};

TEST_P(TokenizerJsonTest, IdsMatchHfTokenizers) {
  const std::string pre = GetParam();
  auto spec = load_tokenizer_json(fixture(pre), config_path());
  ASSERT_TRUE(spec.ok()) << spec.error();
  EXPECT_EQ(spec->kind, TokenizerKind::kByteLevelBpe);
  EXPECT_EQ(spec->pre, pre);  // the Split regex / Digits+ByteLevel map to our named pre-tokenizer
  auto tok = Tokenizer::create(std::move(*spec));
  ASSERT_TRUE(tok.ok()) << tok.error();
  expect_matches_golden(**tok, test::load_golden("hf_golden.json")["cases"][pre]);
}

INSTANTIATE_TEST_SUITE_P(Pre, TokenizerJsonTest, ::testing::Values("smollm", "llama3", "qwen2"));

TEST(TokenizerJson, ReadsConfigAndAddedTokens) {
  auto spec = load_tokenizer_json(fixture("smollm"), config_path());
  ASSERT_TRUE(spec.ok()) << spec.error();
  EXPECT_EQ(spec->bos_id, TokenId{1});  // <|im_start|>
  EXPECT_EQ(spec->eos_id, TokenId{2});  // <|im_end|>
  EXPECT_FALSE(spec->add_bos);
  EXPECT_EQ(spec->token_types[0], TokenType::kControl);
  EXPECT_EQ(spec->token_types[100], TokenType::kNormal);
  EXPECT_EQ(spec->extra_eos_ids, std::vector<TokenId>{2});
  auto chat = ChatTemplate::from_spec(*spec);
  ASSERT_TRUE(chat.ok()) << chat.error();
  EXPECT_EQ(chat->format(), ChatFormat::kChatML);
  EXPECT_EQ(chat->default_system(),
            "You are a helpful AI assistant named SmolLM, trained by Hugging Face");
}

TEST(TokenizerJson, MissingConfigIsFine) {
  auto spec = load_tokenizer_json(fixture("smollm"), test::golden_dir() + "/no_such_config.json");
  ASSERT_TRUE(spec.ok()) << spec.error();
  EXPECT_FALSE(spec->bos_id.has_value());
  EXPECT_TRUE(spec->chat_template.empty());
}

TEST(TokenizerJson, StringMergesGiveTheSameIdsAsPairMerges) {
  auto doc = test::load_golden("hf_smollm.tokenizer.json");
  ASSERT_TRUE(doc["model"]["merges"][0].is_array());  // the fixture uses the pair form
  for (auto& m : doc["model"]["merges"]) {
    m = m[0].get<std::string>() + " " + m[1].get<std::string>();
  }
  const std::string path = write_temp("string_merges.json", doc.dump());
  auto spec = load_tokenizer_json(path, "");
  std::remove(path.c_str());
  ASSERT_TRUE(spec.ok()) << spec.error();
  auto tok = Tokenizer::create(std::move(*spec));
  ASSERT_TRUE(tok.ok()) << tok.error();
  expect_matches_golden(**tok, test::load_golden("hf_golden.json")["cases"]["smollm"]);
}

TEST(TokenizerJson, UnknownSplitPatternIsUsedDirectly) {
  auto doc = test::load_golden("hf_llama3.tokenizer.json");
  // A pattern that splits on every character: each piece is one character's bytes.
  doc["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = ".";
  const std::string path = write_temp("custom_split.json", doc.dump());
  auto spec = load_tokenizer_json(path, "");
  std::remove(path.c_str());
  ASSERT_TRUE(spec.ok()) << spec.error();
  EXPECT_EQ(spec->pre_regexes, std::vector<std::string>{"."});
  auto tok = Tokenizer::create(std::move(*spec));
  ASSERT_TRUE(tok.ok()) << tok.error();
  EXPECT_EQ((*tok)->encode("abc", false, false).size(), 3u);
}

TEST(TokenizerJson, RefusesUnsupportedModelsAndBadFiles) {
  const std::string wordpiece =
      write_temp("wordpiece.json", R"({"model": {"type": "WordPiece", "vocab": {"a": 0}}})");
  const std::string unigram =
      write_temp("unigram.json", R"({"model": {"type": "Unigram", "vocab": [["a", 0.0]]}})");
  const std::string garbage = write_temp("garbage.json", "{not json");
  const std::string bad_merge = write_temp(
      "bad_merge.json",
      R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [1]}, "decoder": {"type": "ByteLevel"}})");
  auto w = load_tokenizer_json(wordpiece, "");
  ASSERT_FALSE(w.ok());
  EXPECT_NE(w.error().find("WordPiece"), std::string::npos) << w.error();
  auto u = load_tokenizer_json(unigram, "");
  ASSERT_FALSE(u.ok());
  EXPECT_NE(u.error().find("Unigram"), std::string::npos) << u.error();
  EXPECT_FALSE(load_tokenizer_json(garbage, "").ok());
  EXPECT_FALSE(load_tokenizer_json(bad_merge, "").ok());
  EXPECT_FALSE(load_tokenizer_json(test::golden_dir() + "/missing.json", "").ok());
  for (const auto& p : {wordpiece, unigram, garbage, bad_merge}) std::remove(p.c_str());
}

}  // namespace
}  // namespace loom
