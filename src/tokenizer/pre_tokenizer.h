// Splits text into the "words" that byte-level BPE merges within, by a sequence of regexes in the
// way llama.cpp and HF tokenizers apply them: each regex splits every piece produced by the one
// before, and the text between matches is kept as pieces of its own (nothing is dropped).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "util/result.h"

namespace loom {

class PreTokenizer {
 public:
  // The regexes a named pre-tokenizer uses ("gpt2", "smollm", "llama3", "qwen2", "default", ...).
  // An unknown name is an error that lists the known ones.
  static Result<std::vector<std::string>> regexes_for(const std::string& name);
  // Compiles the regexes (PCRE2 with UTF and UCP, JIT when available).
  static Result<std::unique_ptr<PreTokenizer>> create(const std::vector<std::string>& regexes);
  ~PreTokenizer();
  PreTokenizer(const PreTokenizer&) = delete;
  PreTokenizer& operator=(const PreTokenizer&) = delete;

  // `text` must be valid UTF-8 (utf8::sanitize). Pieces are views into `text`, in order, and
  // concatenate to it.
  std::vector<std::string_view> split(std::string_view text) const;

 private:
  struct Compiled;
  PreTokenizer() = default;
  std::vector<std::unique_ptr<Compiled>> compiled_;
};

}  // namespace loom
