// Text <-> token ids for the model families loom serves. Built from a TokenizerSpec.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/ids.h"
#include "tokenizer/tokenizer_spec.h"
#include "util/result.h"

namespace loom {

class Tokenizer {
 public:
  // Refuses an unknown pre-tokenizer or a malformed vocabulary with a clear message.
  static Result<std::unique_ptr<Tokenizer>> create(TokenizerSpec spec);
  virtual ~Tokenizer() = default;

  // add_special: prepend BOS (and append EOS) as the model's metadata says.
  // parse_special: text like "<|im_start|>" becomes its special token instead of plain text.
  virtual std::vector<TokenId> encode(std::string_view text, bool add_special,
                                      bool parse_special) const = 0;
  // The raw bytes of one token (byte-level decoding / byte-fallback applied). May be a partial
  // UTF-8 sequence; see IncrementalDecoder for streaming.
  virtual std::string token_bytes(TokenId id) const = 0;
  // Whole-sequence decode; skip_special drops control tokens (BOS, EOS, <|im_end|>, ...).
  virtual std::string decode(const std::vector<TokenId>& ids, bool skip_special) const = 0;

  virtual int32_t vocab_size() const = 0;
  virtual bool is_special(TokenId id) const = 0;
  virtual const TokenizerSpec& spec() const = 0;
  // EOS plus any extra end-of-generation tokens (<|im_end|>, <|eot_id|>, ...).
  virtual const std::vector<TokenId>& eos_ids() const = 0;
};

// Streams text token by token and never emits half a UTF-8 character: bytes of an incomplete
// character are held back until the next token completes it (or flush() is called).
class IncrementalDecoder {
 public:
  IncrementalDecoder(const Tokenizer& tokenizer, bool skip_special)
      : tokenizer_(&tokenizer), skip_special_(skip_special) {}
  // Text that became complete with this token: always valid UTF-8 (bytes that can never start
  // or continue a character come out as U+FFFD right away rather than stalling the stream).
  std::string push(TokenId id);
  std::string flush();  // whatever is held back, invalid bytes replaced by U+FFFD

 private:
  const Tokenizer* tokenizer_;
  bool skip_special_;
  std::string pending_;   // bytes of an incomplete UTF-8 character
  bool started_ = false;  // some text has been produced (SentencePiece's leading space is gone)
};

}  // namespace loom
