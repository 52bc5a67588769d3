#include "tokenizer/utf8.h"

namespace loom::utf8 {

namespace {

// Number of bytes a lead byte announces, or 0 for a byte that cannot start a character.
size_t announced_len(uint8_t lead) {
  if (lead < 0x80) return 1;
  if (lead >= 0xC2 && lead <= 0xDF) return 2;
  if (lead >= 0xE0 && lead <= 0xEF) return 3;
  if (lead >= 0xF0 && lead <= 0xF4) return 4;
  return 0;
}

// Allowed range of the second byte for a lead byte (excludes overlongs, surrogates, > U+10FFFF).
bool second_ok(uint8_t lead, uint8_t b) {
  switch (lead) {
    case 0xE0:
      return b >= 0xA0 && b <= 0xBF;
    case 0xED:
      return b >= 0x80 && b <= 0x9F;
    case 0xF0:
      return b >= 0x90 && b <= 0xBF;
    case 0xF4:
      return b >= 0x80 && b <= 0x8F;
    default:
      return b >= 0x80 && b <= 0xBF;
  }
}

bool is_cont(uint8_t b) {
  return (b & 0xC0) == 0x80;
}

}  // namespace

size_t valid_char_len(std::string_view text, size_t pos) {
  const auto lead = static_cast<uint8_t>(text[pos]);
  const size_t len = announced_len(lead);
  if (len <= 1) return len;
  if (pos + len > text.size()) return 0;
  if (!second_ok(lead, static_cast<uint8_t>(text[pos + 1]))) return 0;
  for (size_t i = 2; i < len; ++i) {
    if (!is_cont(static_cast<uint8_t>(text[pos + i]))) return 0;
  }
  return len;
}

uint32_t decode(std::string_view text, size_t pos, size_t len) {
  const auto* p = reinterpret_cast<const uint8_t*>(text.data() + pos);
  switch (len) {
    case 1:
      return p[0];
    case 2:
      return ((p[0] & 0x1Fu) << 6) | (p[1] & 0x3Fu);
    case 3:
      return ((p[0] & 0x0Fu) << 12) | ((p[1] & 0x3Fu) << 6) | (p[2] & 0x3Fu);
    default:
      return ((p[0] & 0x07u) << 18) | ((p[1] & 0x3Fu) << 12) | ((p[2] & 0x3Fu) << 6) |
             (p[3] & 0x3Fu);
  }
}

void append(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

bool is_valid(std::string_view text) {
  for (size_t pos = 0; pos < text.size();) {
    const size_t len = valid_char_len(text, pos);
    if (len == 0) return false;
    pos += len;
  }
  return true;
}

std::string sanitize(std::string_view text) {
  if (is_valid(text)) return std::string(text);
  std::string out;
  out.reserve(text.size() + 8);
  for (size_t pos = 0; pos < text.size();) {
    const size_t len = valid_char_len(text, pos);
    if (len == 0) {
      append(out, kReplacement);
      pos += 1;
    } else {
      out.append(text.substr(pos, len));
      pos += len;
    }
  }
  return out;
}

size_t complete_prefix_len(std::string_view bytes) {
  // Only the last (at most 3) bytes can be an unfinished character.
  const size_t n = bytes.size();
  for (size_t back = 1; back <= 3 && back <= n; ++back) {
    const size_t pos = n - back;
    const auto b = static_cast<uint8_t>(bytes[pos]);
    if (is_cont(b)) continue;  // keep looking for the lead byte
    const size_t len = announced_len(b);
    if (len <= back) return n;  // ASCII, a finished character or an impossible lead
    // The tail is a prefix of a longer character: held back only if it could still be valid.
    if (back >= 2 && !second_ok(b, static_cast<uint8_t>(bytes[pos + 1]))) return n;
    return pos;
  }
  return n;
}

}  // namespace loom::utf8
