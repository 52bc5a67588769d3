#include "tokenizer/spm_tokenizer.h"

#include <cstdio>
#include <queue>

#include "tokenizer/utf8.h"

namespace loom {

namespace {
constexpr std::string_view kSpace = "\xE2\x96\x81";  // U+2581 "▁"
}

Result<std::unique_ptr<Tokenizer>> SpmTokenizer::create(TokenizerSpec spec) {
  if (spec.scores.size() != spec.tokens.size()) {
    return make_error("SentencePiece tokenizer has %zu scores for %zu tokens", spec.scores.size(),
                      spec.tokens.size());
  }
  std::unique_ptr<SpmTokenizer> tok(new SpmTokenizer(std::move(spec)));
  if (auto s = tok->init_vocab(/*byte_level=*/false); !s) return Error{s.error()};
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    tok->byte_ids_[b] = tok->find(name);
  }
  return std::unique_ptr<Tokenizer>(std::move(tok));
}

TokenId SpmTokenizer::mergeable(std::string_view piece) const {
  const TokenId id = find(piece);
  if (id < 0) return -1;
  const TokenType type = type_of(id);
  return type == TokenType::kNormal || type == TokenType::kUserDefined ? id : -1;
}

void SpmTokenizer::append_bytes(std::string_view piece, std::vector<TokenId>& out) const {
  for (char c : piece) {
    const TokenId id = byte_ids_[static_cast<uint8_t>(c)];
    if (id >= 0) {
      out.push_back(id);
    } else if (spec_.unk_id) {
      out.push_back(*spec_.unk_id);
    }
  }
}

void SpmTokenizer::encode_plain(std::string_view raw, bool after_special,
                                std::vector<TokenId>& out) const {
  std::string text;
  text.reserve(raw.size() + raw.size() / 4 + 3);
  if (spec_.add_space_prefix && after_special) text += kSpace;
  for (char c : raw) {
    if (c == ' ') {
      text += kSpace;
    } else {
      text += c;
    }
  }
  // One symbol per character (a byte that is not part of a valid character is its own symbol and
  // ends up as a byte token); a merge joins a symbol with its right neighbour.
  struct Symbol {
    uint32_t begin, len;  // bytes of `text`; len 0 = merged away
    int32_t prev, next;
  };
  std::vector<Symbol> symbols;
  symbols.reserve(text.size());
  for (size_t pos = 0; pos < text.size();) {
    size_t len = utf8::valid_char_len(text, pos);
    if (len == 0) len = 1;
    symbols.push_back({static_cast<uint32_t>(pos), static_cast<uint32_t>(len), 0, 0});
    pos += len;
  }
  const auto n = static_cast<int32_t>(symbols.size());
  for (int32_t i = 0; i < n; ++i) {
    symbols[i].prev = i - 1;
    symbols[i].next = i + 1 < n ? i + 1 : -1;
  }
  auto piece = [&](const Symbol& s) { return std::string_view(text).substr(s.begin, s.len); };
  // Highest score first, then leftmost (SentencePiece's order). Entries record the pair's total
  // length so that stale ones (a side has grown since) are recognised when popped.
  struct Candidate {
    float score;
    int32_t left;
    uint32_t len;
    bool operator<(const Candidate& o) const {
      return score != o.score ? score < o.score : left > o.left;
    }
  };
  std::priority_queue<Candidate> queue;
  auto consider = [&](int32_t left) {
    if (left < 0 || symbols[left].next < 0) return;
    const Symbol& a = symbols[left];
    const Symbol& b = symbols[a.next];
    const TokenId id = mergeable(std::string_view(text).substr(a.begin, a.len + b.len));
    if (id >= 0) queue.push({spec_.scores[id], left, a.len + b.len});
  };
  for (int32_t i = 0; i + 1 < n; ++i) consider(i);
  while (!queue.empty()) {
    const Candidate c = queue.top();
    queue.pop();
    Symbol& left = symbols[c.left];
    if (left.len == 0 || left.next < 0) continue;
    Symbol& right = symbols[left.next];
    if (left.len + right.len != c.len) continue;  // a side changed since this was queued
    left.len += right.len;
    right.len = 0;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = c.left;
    consider(left.prev);
    consider(c.left);
  }
  for (const Symbol& s : symbols) {
    if (s.len == 0) continue;
    const TokenId id = mergeable(piece(s));
    if (id >= 0) {
      out.push_back(id);
    } else {
      append_bytes(piece(s), out);
    }
  }
}

std::string SpmTokenizer::decode(const std::vector<TokenId>& ids, bool skip_special) const {
  std::string out;
  bool first_text = true;
  for (TokenId id : ids) {
    if (is_special(id)) {
      if (!skip_special) out += token_bytes(id);
      continue;
    }
    std::string piece = token_bytes(id);
    if (first_text && spec_.add_space_prefix && !piece.empty() && piece[0] == ' ') {
      piece.erase(0, 1);
    }
    if (!piece.empty()) first_text = false;
    out += piece;
  }
  return out;
}

}  // namespace loom
