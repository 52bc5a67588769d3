// SentencePiece BPE with byte fallback against the sentencepiece library's ids for a tiny model
// trained on spm_train.txt (tests/golden/tokenizer/spm_*.json, tools/make_tokenizer_golden.py).
#include <gtest/gtest.h>

#include "golden_util.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace loom {
namespace {

std::unique_ptr<Tokenizer> make_spm() {
  auto tok = Tokenizer::create(test::spm_fixture_spec());
  LOOM_CHECK(tok.ok(), "%s", tok.error().c_str());
  return std::move(*tok);
}

TEST(SentencePiece, IdsAndDecodeMatchSentencepiece) {
  const auto tok = make_spm();
  const auto cases = test::load_golden("spm_golden.json")["cases"];
  ASSERT_GE(cases.size(), 30u);
  int byte_fallbacks = 0;
  for (const auto& c : cases) {
    const std::string text = c["text"].get<std::string>();
    const auto ids = tok->encode(text, /*add_special=*/false, /*parse_special=*/false);
    EXPECT_EQ(ids, test::ids_of(c["ids"])) << c["name"];
    EXPECT_EQ(tok->decode(ids, true), c["decode"].get<std::string>()) << c["name"];
    for (TokenId id : ids) byte_fallbacks += tok->spec().token_types[id] == TokenType::kByte;
  }
  EXPECT_GT(byte_fallbacks, 0);  // the corpus exercises <0xXX> tokens (emoji, unseen scripts)
}

TEST(SentencePiece, BosAndSpecialTokens) {
  const auto tok = make_spm();
  const TokenId bos = *tok->spec().bos_id, eos = *tok->spec().eos_id;
  const auto plain = tok->encode("Hello world", false, false);
  auto with_bos = plain;
  with_bos.insert(with_bos.begin(), bos);
  EXPECT_EQ(tok->encode("Hello world", true, false), with_bos);
  EXPECT_EQ(tok->encode("", true, false), std::vector<TokenId>{bos});
  EXPECT_TRUE(tok->encode("", false, false).empty());
  // "</s>" is plain text unless special parsing is on; after it the space prefix comes back.
  const auto parsed = tok->encode("a</s>b", false, true);
  EXPECT_EQ(std::count(parsed.begin(), parsed.end(), eos), 1);
  const auto unparsed = tok->encode("a</s>b", false, false);
  EXPECT_EQ(std::count(unparsed.begin(), unparsed.end(), eos), 0);
  EXPECT_EQ(tok->decode(parsed, true), "a b");
  EXPECT_EQ(tok->decode(parsed, false), "a</s> b");
}

TEST(SentencePiece, InvalidUtf8BecomesByteTokens) {
  const auto tok = make_spm();
  const std::string text = "ab\xff\xc3";
  const auto ids = tok->encode(text, false, false);
  EXPECT_EQ(tok->decode(ids, true), text);  // byte fallback is lossless
}

TEST(SentencePiece, IncrementalDecodeEqualsWholeDecode) {
  const auto tok = make_spm();
  const auto golden = test::load_golden("spm_golden.json");
  for (const auto& c : golden["cases"]) {
    const auto ids = test::ids_of(c["ids"]);
    IncrementalDecoder decoder(*tok, true);
    std::string streamed;
    for (TokenId id : ids) {
      const std::string chunk = decoder.push(id);
      EXPECT_TRUE(utf8::is_valid(chunk)) << c["name"];
      streamed += chunk;
    }
    streamed += decoder.flush();
    EXPECT_EQ(streamed, tok->decode(ids, true)) << c["name"];
  }
}

}  // namespace
}  // namespace loom
