// A byte tokenizer for server tests: token id = byte value (0..255), 256 = EOS. Enough to check
// how the HTTP layer maps text and token ids without a model file.
#pragma once

#include "tokenizer/tokenizer.h"

namespace loom::testing {

class ByteTokenizer final : public Tokenizer {
 public:
  static constexpr TokenId kEos = 256;
  std::vector<TokenId> encode(std::string_view text, bool, bool) const override {
    std::vector<TokenId> ids;
    for (unsigned char c : text) ids.push_back(c);
    return ids;
  }
  std::string token_bytes(TokenId id) const override {
    return id < 256 ? std::string(1, static_cast<char>(id)) : std::string("</s>");
  }
  std::string decode(const std::vector<TokenId>& ids, bool skip_special) const override {
    std::string out;
    for (TokenId id : ids)
      if (id < 256 || !skip_special) out += token_bytes(id);
    return out;
  }
  int32_t vocab_size() const override { return 257; }
  bool is_special(TokenId id) const override { return id >= 256; }
  const TokenizerSpec& spec() const override { return spec_; }
  const std::vector<TokenId>& eos_ids() const override { return eos_; }

 private:
  TokenizerSpec spec_;
  std::vector<TokenId> eos_{kEos};
};

}  // namespace loom::testing
