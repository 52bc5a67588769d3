// Arbitrary bytes and ids never crash, hang or produce invalid UTF-8 from the streaming decoder.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <random>

#include "golden_util.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace loom {
namespace {

void exercise(const Tokenizer& tok, uint32_t seed) {
  std::mt19937 rng(seed);
  const std::string alphabet[] = {"a",
                                  " ",
                                  "\n",
                                  "\t",
                                  "7",
                                  "'s",
                                  "\xE4\xB8\x96",
                                  "\xF0\x9F\x8D\x95",
                                  "<|im_start|>",
                                  "</s>",
                                  "\x80",
                                  "\xFF",
                                  "\xC3",
                                  "\xE4\xB8"};
  for (int round = 0; round < 300; ++round) {
    std::string text;
    const int len = static_cast<int>(rng() % 64);
    for (int i = 0; i < len; ++i) {
      if (rng() % 3 == 0) {
        text += static_cast<char>(rng() & 0xFF);
      } else {
        text += alphabet[rng() % std::size(alphabet)];
      }
    }
    const bool special = rng() & 1;
    const auto ids = tok.encode(text, special, special);
    for (TokenId id : ids) ASSERT_TRUE(id >= 0 && id < tok.vocab_size());
    // Valid UTF-8 text round-trips exactly through encode/decode when specials are not parsed.
    // (SmolLM2's vocabulary lacks a few control bytes; those are dropped, as llama.cpp does.)
    const bool representable = std::all_of(text.begin(), text.end(), [&](char c) {
      return !tok.encode(std::string(1, c), false, false).empty() || (c & 0x80);
    });
    if (utf8::is_valid(text) && representable) {
      EXPECT_EQ(tok.decode(tok.encode(text, false, false), false), text);
    }
    // Random ids, including out-of-range ones, stream as valid UTF-8.
    IncrementalDecoder decoder(tok, rng() & 1);
    for (int i = 0; i < 32; ++i) {
      const TokenId id = static_cast<TokenId>(rng() % (tok.vocab_size() + 10)) - 5;
      ASSERT_TRUE(utf8::is_valid(decoder.push(id)));
    }
    ASSERT_TRUE(utf8::is_valid(decoder.flush()));
  }
}

TEST(Robustness, ByteLevelBpe) {
  if (!std::filesystem::exists(test::default_model_path())) GTEST_SKIP() << "no default model";
  auto spec = test::gguf_tokenizer_spec(test::default_model_path());
  ASSERT_TRUE(spec.ok()) << spec.error();
  auto tok = Tokenizer::create(std::move(*spec));
  ASSERT_TRUE(tok.ok());
  exercise(**tok, 1);
}

TEST(Robustness, SentencePiece) {
  auto tok = Tokenizer::create(test::spm_fixture_spec());
  ASSERT_TRUE(tok.ok());
  exercise(**tok, 2);
}

}  // namespace
}  // namespace loom
