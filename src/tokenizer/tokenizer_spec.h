// Everything a tokenizer is built from, whatever file it came from (GGUF metadata or an HF
// tokenizer.json). The model loader fills it; tokenizer/ turns it into a Tokenizer.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/ids.h"

namespace loom {

enum class TokenizerKind {
  kByteLevelBpe,  // GPT-2 / Llama 3 / SmolLM2 / Qwen2 (GGUF tokenizer.ggml.model == "gpt2")
  kSentencePiece  // SentencePiece BPE with byte fallback: Llama 2, Mistral (GGUF "llama")
};

// GGUF token types (llama.cpp numbering).
enum class TokenType : int32_t {
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,
  kUserDefined = 4,
  kUnused = 5,
  kByte = 6
};

struct TokenizerSpec {
  TokenizerKind kind = TokenizerKind::kByteLevelBpe;
  std::string pre;  // pre-tokenizer name: "smollm", "llama-bpe", "qwen2", "gpt2"...
  // When not empty, these regexes (applied in order, llama.cpp style) replace the named `pre`;
  // an HF tokenizer.json whose Split pattern matches no known pre-tokenizer fills them.
  std::vector<std::string> pre_regexes;
  bool ignore_merges = false;          // BPE: a word that is a token is not merged (Llama 3 style);
                                       // also implied by pre "llama3" / "llama-bpe"
  std::vector<std::string> tokens;     // id -> token text (byte-level: GPT-2 byte-to-unicode form)
  std::vector<float> scores;           // SentencePiece merge scores (empty for BPE)
  std::vector<TokenType> token_types;  // empty = all normal
  std::vector<std::string> merges;     // "left right", highest priority first (BPE)
  std::optional<TokenId> bos_id, eos_id, unk_id, pad_id;
  std::vector<TokenId> extra_eos_ids;  // e.g. Llama 3 <|eot_id|>, ChatML <|im_end|>
  bool add_bos = false;
  bool add_eos = false;
  bool add_space_prefix = false;  // SentencePiece: prepend "▁" to the text
  std::string chat_template;      // Jinja source from the model, may be empty
};

}  // namespace loom
