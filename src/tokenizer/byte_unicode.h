// GPT-2's reversible byte <-> printable-unicode mapping used by byte-level BPE vocabularies:
// bytes that are printable Latin-1 map to themselves, the other 68 bytes to U+0100.. in order.
// So " " is stored as "Ġ" (U+0120) and "\n" as "Ċ" (U+010A).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace loom {

// The UTF-8 text of byte `b`'s unicode stand-in.
const std::string& byte_to_unicode(uint8_t b);
// Appends the stand-ins of every byte of `bytes`.
void bytes_to_unicode(std::string_view bytes, std::string& out);
// Inverse of bytes_to_unicode; nullopt when `text` holds a character outside the mapping.
std::optional<std::string> unicode_to_bytes(std::string_view text);

}  // namespace loom
