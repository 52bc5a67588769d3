// What both tokenizer models share: the id <-> text tables, special-token splitting, BOS/EOS, and
// decoding. A model (byte-level BPE, SentencePiece) only encodes runs of plain text.
#pragma once

#include <array>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace loom {

class VocabTokenizer : public Tokenizer {
 public:
  std::vector<TokenId> encode(std::string_view text, bool add_special,
                              bool parse_special) const final;
  std::string token_bytes(TokenId id) const final;
  std::string decode(const std::vector<TokenId>& ids, bool skip_special) const override;
  int32_t vocab_size() const final { return static_cast<int32_t>(spec_.tokens.size()); }
  bool is_special(TokenId id) const final;
  const TokenizerSpec& spec() const final { return spec_; }
  const std::vector<TokenId>& eos_ids() const final { return eos_ids_; }

 protected:
  explicit VocabTokenizer(TokenizerSpec spec) : spec_(std::move(spec)) {}
  // Builds the shared tables; `byte_level` says how normal tokens' text maps to bytes.
  Status init_vocab(bool byte_level);
  TokenType type_of(TokenId id) const {
    return spec_.token_types.empty() ? TokenType::kNormal : spec_.token_types[id];
  }
  // Id of a token text, or -1.
  TokenId find(std::string_view text) const;

  // Appends the ids of a run of plain text (no special tokens in it). `after_special` is true
  // at the start of the text and right after a special token (SentencePiece's space prefix).
  virtual void encode_plain(std::string_view text, bool after_special,
                            std::vector<TokenId>& out) const = 0;

  TokenizerSpec spec_;
  std::vector<std::string> bytes_;  // id -> raw bytes (token_bytes)

 private:
  struct SpecialToken {
    std::string_view text;  // into spec_.tokens
    TokenId id;
    bool needs_parse_special;  // control/unknown: only with parse_special; user-defined: always
  };

  std::unordered_map<std::string_view, TokenId> token_to_id_;  // views into spec_.tokens
  std::vector<TokenId> eos_ids_;
  // Special tokens by first byte, longest first, for a left-to-right longest-match scan.
  std::array<std::vector<SpecialToken>, 256> specials_by_first_byte_;
};

}  // namespace loom
