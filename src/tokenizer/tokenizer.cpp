#include "tokenizer/tokenizer.h"

#include "tokenizer/bpe_tokenizer.h"
#include "tokenizer/spm_tokenizer.h"
#include "tokenizer/utf8.h"

namespace loom {

Result<std::unique_ptr<Tokenizer>> Tokenizer::create(TokenizerSpec spec) {
  switch (spec.kind) {
    case TokenizerKind::kByteLevelBpe:
      return BpeTokenizer::create(std::move(spec));
    case TokenizerKind::kSentencePiece:
      return SpmTokenizer::create(std::move(spec));
  }
  return make_error("unknown tokenizer kind %d", static_cast<int>(spec.kind));
}

std::string IncrementalDecoder::push(TokenId id) {
  if (skip_special_ && tokenizer_->is_special(id)) return {};
  std::string piece = tokenizer_->token_bytes(id);
  // SentencePiece puts a space in front of the first word; whole-sequence decode drops it, and so
  // does the stream, so that the two agree.
  if (!started_ && !tokenizer_->is_special(id)) {
    if (tokenizer_->spec().kind == TokenizerKind::kSentencePiece &&
        tokenizer_->spec().add_space_prefix && !piece.empty() && piece[0] == ' ') {
      piece.erase(0, 1);
    }
    if (!piece.empty()) started_ = true;
  }
  pending_ += piece;
  const size_t complete = utf8::complete_prefix_len(pending_);
  std::string out = utf8::sanitize(std::string_view(pending_).substr(0, complete));
  pending_.erase(0, complete);
  return out;
}

std::string IncrementalDecoder::flush() {
  std::string out = utf8::sanitize(pending_);
  pending_.clear();
  return out;
}

}  // namespace loom
