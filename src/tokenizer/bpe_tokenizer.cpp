#include "tokenizer/bpe_tokenizer.h"

#include <queue>

#include "tokenizer/byte_unicode.h"
#include "tokenizer/utf8.h"

namespace loom {

Result<std::unique_ptr<Tokenizer>> BpeTokenizer::create(TokenizerSpec spec) {
  std::vector<std::string> regexes = spec.pre_regexes;
  if (regexes.empty()) {
    auto named = PreTokenizer::regexes_for(spec.pre.empty() ? "default" : spec.pre);
    if (!named) return Error{named.error()};
    regexes = std::move(*named);
  }
  std::unique_ptr<BpeTokenizer> tok(new BpeTokenizer(std::move(spec)));
  if (auto s = tok->init_vocab(/*byte_level=*/true); !s) return Error{s.error()};
  auto pre = PreTokenizer::create(regexes);
  if (!pre) return Error{pre.error()};
  tok->pre_ = std::move(*pre);
  const std::string& pre_name = tok->spec_.pre;
  tok->ignore_merges_ = tok->spec_.ignore_merges || pre_name == "llama3" ||
                        pre_name == "llama-v3" || pre_name == "llama-bpe";

  for (int b = 0; b < 256; ++b) tok->byte_ids_[b] = tok->find(byte_to_unicode(b));

  const auto& merges = tok->spec_.merges;
  tok->merges_.reserve(merges.size());
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const std::string& m = merges[rank];
    // "left right"; the separator is the first space after the first character.
    const size_t sep = m.size() > 1 ? m.find(' ', 1) : std::string::npos;
    if (sep == std::string::npos || sep + 1 >= m.size()) {
      return make_error("BPE merge %zu ('%s') is not of the form 'left right'", rank, m.c_str());
    }
    const std::string_view left(m.data(), sep);
    const std::string_view right(m.data() + sep + 1, m.size() - sep - 1);
    const TokenId left_id = tok->find(left), right_id = tok->find(right);
    std::string merged;
    merged.reserve(left.size() + right.size());
    merged.append(left).append(right);
    const TokenId merged_id = tok->find(merged);
    // A merge whose parts or result are not tokens can never produce a token: skip it.
    if (left_id < 0 || right_id < 0 || merged_id < 0) continue;
    tok->merges_.emplace(pair_key(left_id, right_id),
                         Merge{static_cast<int32_t>(rank), merged_id});  // first rank wins
  }
  return std::unique_ptr<Tokenizer>(std::move(tok));
}

void BpeTokenizer::encode_plain(std::string_view text, bool /*after_special*/,
                                std::vector<TokenId>& out) const {
  // Invalid UTF-8 becomes U+FFFD per bad byte (as llama.cpp does) so the regexes see valid text.
  const std::string clean = utf8::sanitize(text);
  for (std::string_view word : pre_->split(clean)) encode_word(word, out);
}

void BpeTokenizer::encode_word(std::string_view word, std::vector<TokenId>& out) const {
  {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    auto it = cache_.find(std::string(word));
    if (it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<TokenId> ids;
  if (ignore_merges_) {
    std::string mapped;
    bytes_to_unicode(word, mapped);
    if (TokenId id = find(mapped); id >= 0) ids.push_back(id);
  }
  if (ids.empty()) {
    // One symbol per byte in a doubly linked list; merges join a symbol with its right neighbour.
    struct Symbol {
      TokenId id;
      int32_t prev, next;
    };
    std::vector<Symbol> symbols;
    symbols.reserve(word.size());
    for (char c : word) {
      const TokenId id = byte_ids_[static_cast<uint8_t>(c)];
      if (id < 0) continue;  // the vocabulary lacks this byte: dropped, as llama.cpp does
      symbols.push_back({id, 0, 0});
    }
    const auto n = static_cast<int32_t>(symbols.size());
    for (int32_t i = 0; i < n; ++i) {
      symbols[i].prev = i - 1;
      symbols[i].next = i + 1 < n ? i + 1 : -1;
    }
    // Candidate merges: lowest rank first, then leftmost. Entries go stale when a neighbour
    // changes; they are checked against the current ids when popped.
    struct Candidate {
      int32_t rank, left;
      TokenId left_id, right_id;
      bool operator>(const Candidate& o) const {
        return rank != o.rank ? rank > o.rank : left > o.left;
      }
    };
    std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> queue;
    auto consider = [&](int32_t left) {
      if (left < 0) return;
      const int32_t right = symbols[left].next;
      if (right < 0) return;
      auto it = merges_.find(pair_key(symbols[left].id, symbols[right].id));
      if (it != merges_.end()) {
        queue.push({it->second.rank, left, symbols[left].id, symbols[right].id});
      }
    };
    for (int32_t i = 0; i + 1 < n; ++i) consider(i);
    while (!queue.empty()) {
      const Candidate c = queue.top();
      queue.pop();
      Symbol& left = symbols[c.left];
      if (left.id != c.left_id || left.next < 0) continue;  // id -1 marks a removed symbol
      Symbol& right = symbols[left.next];
      if (right.id != c.right_id) continue;
      left.id = merges_.at(pair_key(c.left_id, c.right_id)).merged;
      right.id = -1;
      left.next = right.next;
      if (right.next >= 0) symbols[right.next].prev = c.left;
      consider(left.prev);
      consider(c.left);
    }
    for (const Symbol& s : symbols) {
      if (s.id >= 0) ids.push_back(s.id);
    }
  }
  out.insert(out.end(), ids.begin(), ids.end());
  std::lock_guard<std::mutex> lock(cache_mutex_);
  if (cache_.size() >= kMaxCachedWords) cache_.clear();
  cache_.emplace(std::string(word), std::move(ids));
}

}  // namespace loom
