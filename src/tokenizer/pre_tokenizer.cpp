#include "tokenizer/pre_tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <map>

namespace loom {

namespace {

// GPT-2's pattern (also StarCoder/SmolLM after a digit split, and llama.cpp's default).
constexpr const char* kGpt2 =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
// Llama 3: case-insensitive contractions, a letter run may take one leading non-letter, numbers
// in groups of up to three digits.
constexpr const char* kLlama3 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// Qwen2: as Llama 3 but every digit on its own.
constexpr const char* kQwen2 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

const std::map<std::string, std::vector<std::string>>& known() {
  static const std::map<std::string, std::vector<std::string>> table = [] {
    std::map<std::string, std::vector<std::string>> t;
    const std::vector<std::string> gpt2 = {kGpt2};
    // Digits split one by one first (HF: Digits(individual_digits) then ByteLevel).
    const std::vector<std::string> digits_then_gpt2 = {R"(\p{N})", kGpt2};
    const std::vector<std::string> llama3 = {kLlama3};
    const std::vector<std::string> qwen2 = {kQwen2};
    for (const char* n : {"gpt2", "gpt-2", "phi-2", "mpt", "olmo", "jais"}) t[n] = gpt2;
    for (const char* n : {"smollm", "starcoder", "refact", "codeshell", "command-r"}) {
      t[n] = digits_then_gpt2;
    }
    for (const char* n : {"llama3", "llama-v3", "llama-bpe", "dbrx", "smaug-bpe"}) t[n] = llama3;
    for (const char* n : {"qwen2", "stablelm2", "deepseek-r1-qwen", "megrez"}) t[n] = qwen2;
    // llama.cpp's fallback for BPE models that name no pre-tokenizer.
    t["default"] = {R"([\p{P}\$\+<=>\^~\|]+)", kGpt2, R"(\p{N}+)", "[0-9][0-9][0-9]"};
    return t;
  }();
  return table;
}

}  // namespace

struct PreTokenizer::Compiled {
  pcre2_code* code = nullptr;
  ~Compiled() {
    if (code != nullptr) pcre2_code_free(code);
  }
};

PreTokenizer::~PreTokenizer() = default;

Result<std::vector<std::string>> PreTokenizer::regexes_for(const std::string& name) {
  const auto& table = known();
  auto it = table.find(name);
  if (it == table.end()) {
    std::string names;
    for (const auto& [n, _] : table) names += (names.empty() ? "" : ", ") + n;
    return make_error("unknown pre-tokenizer '%s' (known: %s)", name.c_str(), names.c_str());
  }
  return it->second;
}

Result<std::unique_ptr<PreTokenizer>> PreTokenizer::create(
    const std::vector<std::string>& regexes) {
  if (regexes.empty()) return make_error("pre-tokenizer has no regex");
  std::unique_ptr<PreTokenizer> pre(new PreTokenizer());
  for (const auto& pattern : regexes) {
    int error_code = 0;
    PCRE2_SIZE error_offset = 0;
    auto compiled = std::make_unique<Compiled>();
    compiled->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                   PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK, &error_code,
                                   &error_offset, nullptr);
    if (compiled->code == nullptr) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(error_code, message, sizeof(message));
      return make_error("pre-tokenizer regex '%s' does not compile at offset %zu: %s",
                        pattern.c_str(), static_cast<size_t>(error_offset),
                        reinterpret_cast<const char*>(message));
    }
    pcre2_jit_compile(compiled->code, PCRE2_JIT_COMPLETE);  // falls back to the interpreter
    pre->compiled_.push_back(std::move(compiled));
  }
  return pre;
}

std::vector<std::string_view> PreTokenizer::split(std::string_view text) const {
  std::vector<std::string_view> pieces;
  if (text.empty()) return pieces;
  pieces.push_back(text);
  // Match data is per call: split() is const and may run on several threads at once.
  std::vector<std::string_view> next;
  for (const auto& compiled : compiled_) {
    pcre2_match_data* match = pcre2_match_data_create_from_pattern(compiled->code, nullptr);
    next.clear();
    next.reserve(pieces.size() * 2);
    for (std::string_view piece : pieces) {
      // Each piece is its own subject: lookaheads and anchors see the piece's end, not the text's.
      const auto* subject = reinterpret_cast<PCRE2_SPTR>(piece.data());
      size_t kept_until = 0;  // end of the last match (start of an unmatched gap)
      size_t offset = 0;
      while (offset < piece.size()) {
        const int rc = pcre2_match(compiled->code, subject, piece.size(), offset,
                                   PCRE2_NO_UTF_CHECK, match, nullptr);
        if (rc < 0) break;  // no further match (or a resource limit: keep the rest whole)
        const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(match);
        size_t begin = ov[0], end = ov[1];
        if (end == begin) {  // empty match: step one character to guarantee progress
          offset = begin + 1;
          while (offset < piece.size() && (static_cast<uint8_t>(piece[offset]) & 0xC0) == 0x80) {
            ++offset;
          }
          continue;
        }
        if (begin > kept_until) next.push_back(piece.substr(kept_until, begin - kept_until));
        next.push_back(piece.substr(begin, end - begin));
        kept_until = offset = end;
      }
      if (kept_until < piece.size()) next.push_back(piece.substr(kept_until));
    }
    pcre2_match_data_free(match);
    pieces.swap(next);
  }
  return pieces;
}

}  // namespace loom
