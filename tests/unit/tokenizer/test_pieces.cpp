// The building blocks: UTF-8 handling, GPT-2's byte mapping, pre-tokenizer splits, streaming.
#include <gtest/gtest.h>

#include "tokenizer/byte_unicode.h"
#include "tokenizer/pre_tokenizer.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace loom {
namespace {

TEST(Utf8, SanitizeReplacesEachBadByte) {
  EXPECT_EQ(utf8::sanitize("ok \xE4\xB8\x96"), "ok \xE4\xB8\x96");
  EXPECT_EQ(utf8::sanitize("a\x80z"), "a\xEF\xBF\xBDz");
  EXPECT_EQ(utf8::sanitize("\xC3"), "\xEF\xBF\xBD");
  EXPECT_EQ(utf8::sanitize("\xE4\xB8"), "\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(utf8::sanitize("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // surrogate
  EXPECT_EQ(utf8::sanitize("\xC0\xAF"), "\xEF\xBF\xBD\xEF\xBF\xBD");  // overlong '/'
}

TEST(Utf8, CompletePrefixHoldsOnlyUnfinishedCharacters) {
  EXPECT_EQ(utf8::complete_prefix_len("abc"), 3u);
  EXPECT_EQ(utf8::complete_prefix_len("ab\xE4\xB8"), 2u);      // 2 of 3 bytes of 世
  EXPECT_EQ(utf8::complete_prefix_len("ab\xF0\x9F\x8D"), 2u);  // 3 of 4 bytes of 🍕
  EXPECT_EQ(utf8::complete_prefix_len("ab\xE4\xB8\x96"), 5u);
  EXPECT_EQ(utf8::complete_prefix_len("ab\x80"), 3u);  // can never complete: let it out
  EXPECT_EQ(utf8::complete_prefix_len("ab\xFF"), 3u);
  EXPECT_EQ(utf8::complete_prefix_len("\xE0\x80"), 2u);  // overlong start: never valid
}

TEST(ByteUnicode, RoundTripsEveryByte) {
  std::string all;
  for (int b = 0; b < 256; ++b) all += static_cast<char>(b);
  std::string mapped;
  bytes_to_unicode(all, mapped);
  EXPECT_EQ(byte_to_unicode(' '), "\xC4\xA0");   // Ġ
  EXPECT_EQ(byte_to_unicode('\n'), "\xC4\x8A");  // Ċ
  EXPECT_EQ(byte_to_unicode('A'), "A");
  auto back = unicode_to_bytes(mapped);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(*back, all);
  EXPECT_FALSE(unicode_to_bytes("\xE4\xB8\x96").has_value());  // not a stand-in
}

std::vector<std::string> split(const std::string& pre, const std::string& text) {
  auto regexes = PreTokenizer::regexes_for(pre);
  LOOM_CHECK(regexes.ok());
  auto p = PreTokenizer::create(*regexes);
  LOOM_CHECK(p.ok());
  std::vector<std::string> out;
  for (auto piece : (*p)->split(text)) out.emplace_back(piece);
  return out;
}

TEST(PreTokenizer, NamedSplits) {
  using V = std::vector<std::string>;
  EXPECT_EQ(split("gpt2", "Hello world's  end"), (V{"Hello", " world", "'s", " ", " end"}));
  EXPECT_EQ(split("smollm", "a 123"), (V{"a", " ", "1", "2", "3"}));
  EXPECT_EQ(split("llama3", "x 12345"), (V{"x", " ", "123", "45"}));
  EXPECT_EQ(split("qwen2", "I'LL 42"), (V{"I", "'LL", " ", "4", "2"}));
  EXPECT_EQ(split("gpt2", ""), V{});
  EXPECT_FALSE(PreTokenizer::regexes_for("bogus").ok());
}

// A two-token vocabulary whose tokens are the two halves of "é" (C3 A9), to watch streaming.
TEST(IncrementalDecoder, HoldsHalfCharactersBack) {
  TokenizerSpec spec;
  spec.pre = "gpt2";
  spec.tokens = {byte_to_unicode(0xC3), byte_to_unicode(0xA9), "a", "<|end|>"};
  spec.token_types = {TokenType::kNormal, TokenType::kNormal, TokenType::kNormal,
                      TokenType::kControl};
  auto tok = Tokenizer::create(spec);
  ASSERT_TRUE(tok.ok()) << tok.error();
  IncrementalDecoder d(**tok, /*skip_special=*/true);
  EXPECT_EQ(d.push(2), "a");
  EXPECT_EQ(d.push(0), "");  // first half of é held back
  EXPECT_EQ(d.push(3), "");  // a skipped control token does not flush it
  EXPECT_EQ(d.push(1), "\xC3\xA9");
  EXPECT_EQ(d.push(0), "");
  EXPECT_EQ(d.flush(), "\xEF\xBF\xBD");  // a dangling half becomes U+FFFD
  EXPECT_EQ(d.flush(), "");
  IncrementalDecoder keep(**tok, /*skip_special=*/false);
  EXPECT_EQ(keep.push(3), "<|end|>");
  EXPECT_EQ(keep.push(1), "\xEF\xBF\xBD");  // a lone continuation byte never completes
}

}  // namespace
}  // namespace loom
