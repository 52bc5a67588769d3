// SentencePiece BPE with byte fallback (Llama 2, Mistral): spaces become "▁", an optional "▁" is
// put in front of the text, characters are merged pairwise by the highest piece score, and
// characters outside the vocabulary are spelled with <0xXX> byte tokens.
#pragma once

#include <array>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/vocab_tokenizer.h"

namespace loom {

class SpmTokenizer final : public VocabTokenizer {
 public:
  static Result<std::unique_ptr<Tokenizer>> create(TokenizerSpec spec);
  // Drops the space that add_space_prefix put in front of the first word.
  std::string decode(const std::vector<TokenId>& ids, bool skip_special) const override;

 private:
  explicit SpmTokenizer(TokenizerSpec spec) : VocabTokenizer(std::move(spec)) {}
  void encode_plain(std::string_view text, bool after_special,
                    std::vector<TokenId>& out) const override;
  // Id of a piece that merges may produce (normal or user-defined), or -1.
  TokenId mergeable(std::string_view piece) const;
  void append_bytes(std::string_view piece, std::vector<TokenId>& out) const;

  std::array<TokenId, 256> byte_ids_{};  // byte -> <0xXX> token id, or -1
};

}  // namespace loom
