// Byte-level BPE (GPT-2, Llama 3, SmolLM2, Qwen2): pre-tokenize with the model's regexes, map each
// word's bytes to GPT-2's printable stand-ins, then apply merges lowest rank first.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/pre_tokenizer.h"
#include "tokenizer/vocab_tokenizer.h"

namespace loom {

class BpeTokenizer final : public VocabTokenizer {
 public:
  static Result<std::unique_ptr<Tokenizer>> create(TokenizerSpec spec);

 private:
  explicit BpeTokenizer(TokenizerSpec spec) : VocabTokenizer(std::move(spec)) {}
  void encode_plain(std::string_view text, bool after_special,
                    std::vector<TokenId>& out) const override;
  // Merges one pre-tokenized word (raw bytes) into ids.
  void encode_word(std::string_view word, std::vector<TokenId>& out) const;

  struct Merge {
    int32_t rank;
    TokenId merged;
  };
  static uint64_t pair_key(TokenId left, TokenId right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) |
           static_cast<uint32_t>(right);
  }

  std::unique_ptr<PreTokenizer> pre_;
  std::unordered_map<uint64_t, Merge> merges_;  // (left id, right id) -> rank, merged id
  std::array<TokenId, 256> byte_ids_{};         // byte -> id of its one-character token, or -1
  bool ignore_merges_ = false;  // Llama 3: a word that is itself a token is not merged

  // Words seen before (raw bytes -> ids). Prompts repeat words a lot; bounded, reset when full.
  static constexpr size_t kMaxCachedWords = 1 << 16;
  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<TokenId>> cache_;
};

}  // namespace loom
