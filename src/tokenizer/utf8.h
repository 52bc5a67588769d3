// UTF-8 helpers shared by the tokenizers: decoding with the same tolerance for bad input
// everywhere.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace loom::utf8 {

inline constexpr uint32_t kReplacement = 0xFFFD;

// Length in bytes of the well-formed character starting at text[pos] (1..4), or 0 when the bytes
// there are not a complete, well-formed UTF-8 character (bad lead, bad continuation, overlong,
// surrogate, > U+10FFFF, or cut off by the end of `text`).
size_t valid_char_len(std::string_view text, size_t pos);

// Decodes the well-formed character of `len` bytes at text[pos] (len from valid_char_len).
uint32_t decode(std::string_view text, size_t pos, size_t len);

// Appends the UTF-8 encoding of `cp` (a scalar value) to `out`.
void append(std::string& out, uint32_t cp);

// `text` with every byte that does not start a well-formed character replaced by U+FFFD (one
// replacement per bad byte, as llama.cpp does), so regex engines and byte mappers only ever see
// valid UTF-8. Returns `text` unchanged (and cheaply) when it is already valid.
std::string sanitize(std::string_view text);
bool is_valid(std::string_view text);

// Length of the longest prefix of `bytes` that does not end inside an incomplete character that
// more bytes could still complete. Bytes that can never become valid count as complete (they are
// emitted, to be replaced by the reader), so a stream never stalls on garbage.
size_t complete_prefix_len(std::string_view bytes);

}  // namespace loom::utf8
