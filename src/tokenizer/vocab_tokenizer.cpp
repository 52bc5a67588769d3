#include "tokenizer/vocab_tokenizer.h"

#include <algorithm>

#include "tokenizer/byte_unicode.h"

namespace loom {

namespace {

// "<0x0A>" -> 0x0A; -1 when `text` is not a byte token's name.
int parse_byte_token(std::string_view text) {
  if (text.size() != 6 || text.substr(0, 3) != "<0x" || text[5] != '>') return -1;
  int value = 0;
  for (char c : text.substr(3, 2)) {
    value <<= 4;
    if (c >= '0' && c <= '9')
      value |= c - '0';
    else if (c >= 'A' && c <= 'F')
      value |= c - 'A' + 10;
    else if (c >= 'a' && c <= 'f')
      value |= c - 'a' + 10;
    else
      return -1;
  }
  return value;
}

// SentencePiece stores spaces as U+2581 "▁".
std::string unescape_spm_spaces(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    if (text.compare(i, 3, "\xE2\x96\x81") == 0) {
      out += ' ';
      i += 3;
    } else {
      out += text[i++];
    }
  }
  return out;
}

}  // namespace

Status VocabTokenizer::init_vocab(bool byte_level) {
  const size_t num_tokens = spec_.tokens.size();
  if (num_tokens == 0) return make_error("tokenizer vocabulary is empty");
  if (num_tokens > static_cast<size_t>(INT32_MAX)) return make_error("vocabulary too large");
  if (!spec_.token_types.empty() && spec_.token_types.size() != num_tokens) {
    return make_error("tokenizer has %zu token types for %zu tokens", spec_.token_types.size(),
                      num_tokens);
  }
  for (TokenType t : spec_.token_types) {
    const auto v = static_cast<int32_t>(t);
    if (v < 1 || v > 6) return make_error("tokenizer has an unknown token type %d", v);
  }
  auto check_id = [&](const std::optional<TokenId>& id, const char* what) -> Status {
    if (id && (*id < 0 || static_cast<size_t>(*id) >= num_tokens)) {
      return make_error("%s id %d is outside the vocabulary of %zu tokens", what, *id, num_tokens);
    }
    return ok_status();
  };
  for (auto [id, what] : {std::pair{&spec_.bos_id, "BOS"},
                          {&spec_.eos_id, "EOS"},
                          {&spec_.unk_id, "UNK"},
                          {&spec_.pad_id, "PAD"}}) {
    if (auto s = check_id(*id, what); !s) return Error{s.error()};
  }
  for (TokenId id : spec_.extra_eos_ids) {
    if (auto s = check_id(id, "end-of-generation"); !s) return Error{s.error()};
  }
  if (spec_.add_bos && !spec_.bos_id) return make_error("add_bos is set but there is no BOS id");
  if (spec_.add_eos && !spec_.eos_id) return make_error("add_eos is set but there is no EOS id");

  token_to_id_.reserve(num_tokens);
  bytes_.resize(num_tokens);
  for (size_t i = 0; i < num_tokens; ++i) {
    const auto id = static_cast<TokenId>(i);
    const std::string& text = spec_.tokens[i];
    token_to_id_.emplace(std::string_view(text), id);  // first id wins on duplicates
    const TokenType type = type_of(id);
    if (type == TokenType::kNormal) {
      if (byte_level) {
        // A text outside the byte mapping is kept as is rather than refused: some converted
        // vocabularies carry a few such entries, and they can only come out of decoding.
        auto raw = unicode_to_bytes(text);
        bytes_[i] = raw ? std::move(*raw) : text;
      } else {
        bytes_[i] = unescape_spm_spaces(text);
      }
    } else if (type == TokenType::kByte) {
      const int b = parse_byte_token(text);
      bytes_[i] = b >= 0 ? std::string(1, static_cast<char>(b)) : text;
    } else if (type == TokenType::kUserDefined && !byte_level) {
      bytes_[i] = unescape_spm_spaces(text);
    } else {
      bytes_[i] = text;  // control, unknown, unused, byte-level user-defined: the text itself
    }
    if ((type == TokenType::kControl || type == TokenType::kUserDefined ||
         type == TokenType::kUnknown) &&
        !text.empty()) {
      specials_by_first_byte_[static_cast<uint8_t>(text[0])].push_back(
          SpecialToken{text, id, type != TokenType::kUserDefined});
    }
  }
  for (auto& list : specials_by_first_byte_) {
    std::stable_sort(list.begin(), list.end(), [](const SpecialToken& a, const SpecialToken& b) {
      return a.text.size() > b.text.size();
    });
  }
  if (spec_.eos_id) eos_ids_.push_back(*spec_.eos_id);
  for (TokenId id : spec_.extra_eos_ids) {
    if (std::find(eos_ids_.begin(), eos_ids_.end(), id) == eos_ids_.end()) eos_ids_.push_back(id);
  }
  return ok_status();
}

TokenId VocabTokenizer::find(std::string_view text) const {
  auto it = token_to_id_.find(text);
  return it == token_to_id_.end() ? -1 : it->second;
}

std::vector<TokenId> VocabTokenizer::encode(std::string_view text, bool add_special,
                                            bool parse_special) const {
  std::vector<TokenId> out;
  out.reserve(text.size() / 3 + 4);
  if (add_special && spec_.add_bos) out.push_back(*spec_.bos_id);
  size_t plain_start = 0;
  bool after_special = true;
  for (size_t pos = 0; pos < text.size();) {
    const auto& candidates = specials_by_first_byte_[static_cast<uint8_t>(text[pos])];
    const SpecialToken* hit = nullptr;
    for (const SpecialToken& s : candidates) {
      if (s.needs_parse_special && !parse_special) continue;
      if (text.compare(pos, s.text.size(), s.text) == 0) {
        hit = &s;
        break;  // longest first
      }
    }
    if (hit == nullptr) {
      ++pos;
      continue;
    }
    if (pos > plain_start) {
      encode_plain(text.substr(plain_start, pos - plain_start), after_special, out);
    }
    out.push_back(hit->id);
    after_special = true;
    pos += hit->text.size();
    plain_start = pos;
  }
  if (plain_start < text.size()) encode_plain(text.substr(plain_start), after_special, out);
  if (add_special && spec_.add_eos) out.push_back(*spec_.eos_id);
  return out;
}

std::string VocabTokenizer::token_bytes(TokenId id) const {
  if (id < 0 || static_cast<size_t>(id) >= bytes_.size()) return {};
  return bytes_[id];
}

bool VocabTokenizer::is_special(TokenId id) const {
  if (id < 0 || static_cast<size_t>(id) >= bytes_.size()) return false;
  const TokenType type = type_of(id);
  return type == TokenType::kControl || id == spec_.bos_id || id == spec_.eos_id;
}

std::string VocabTokenizer::decode(const std::vector<TokenId>& ids, bool skip_special) const {
  std::string out;
  for (TokenId id : ids) {
    if (skip_special && is_special(id)) continue;
    out += token_bytes(id);
  }
  return out;
}

}  // namespace loom
