#include "tokenizer/byte_unicode.h"

#include <array>

#include "tokenizer/utf8.h"

namespace loom {

namespace {

struct ByteTables {
  std::array<std::string, 256> to_text;
  std::array<int16_t, 512> from_cp;  // code point (< 512) -> byte, -1 when unmapped

  ByteTables() {
    from_cp.fill(-1);
    uint32_t next_extra = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      const uint32_t cp = printable ? static_cast<uint32_t>(b) : next_extra++;
      utf8::append(to_text[b], cp);
      from_cp[cp] = static_cast<int16_t>(b);
    }
  }
};

const ByteTables& tables() {
  static const ByteTables t;
  return t;
}

}  // namespace

const std::string& byte_to_unicode(uint8_t b) {
  return tables().to_text[b];
}

void bytes_to_unicode(std::string_view bytes, std::string& out) {
  const auto& t = tables();
  for (char c : bytes) out += t.to_text[static_cast<uint8_t>(c)];
}

std::optional<std::string> unicode_to_bytes(std::string_view text) {
  const auto& t = tables();
  std::string out;
  out.reserve(text.size());
  for (size_t pos = 0; pos < text.size();) {
    const size_t len = utf8::valid_char_len(text, pos);
    if (len == 0) return std::nullopt;
    const uint32_t cp = utf8::decode(text, pos, len);
    if (cp >= t.from_cp.size() || t.from_cp[cp] < 0) return std::nullopt;
    out += static_cast<char>(t.from_cp[cp]);
    pos += len;
  }
  return out;
}

}  // namespace loom
