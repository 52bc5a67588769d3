#include "kv/prefix_cache.h"

#include <algorithm>

#include "kv/block_pool.h"
#include "util/check.h"

namespace loom {

PrefixCache::PrefixCache(int32_t num_blocks, int32_t block_size) : block_size_(block_size) {
  LOOM_CHECK(num_blocks >= 0 && block_size > 0);
  const size_t n = static_cast<size_t>(num_blocks);
  hash_.assign(n, 0);
  parent_hash_.assign(n, 0);
  tokens_.assign(n * static_cast<size_t>(block_size), 0);
  holds_.assign(n, 0);
  by_hash_.reserve(n);
}

BlockId PrefixCache::lookup(uint64_t hash, uint64_t parent_hash,
                            std::span<const TokenId> tokens) const {
  LOOM_CHECK(static_cast<int32_t>(tokens.size()) == block_size_);
  auto it = by_hash_.find(hash);
  if (it == by_hash_.end()) return kNoBlock;
  const size_t b = static_cast<size_t>(it->second);
  if (parent_hash_[b] != parent_hash) return kNoBlock;
  const TokenId* stored = tokens_.data() + b * static_cast<size_t>(block_size_);
  if (!std::equal(tokens.begin(), tokens.end(), stored)) return kNoBlock;
  return it->second;
}

bool PrefixCache::insert(BlockId b, uint64_t hash, uint64_t parent_hash,
                         std::span<const TokenId> tokens) {
  LOOM_CHECK(static_cast<int32_t>(tokens.size()) == block_size_);
  const size_t i = static_cast<size_t>(b);
  LOOM_CHECK(i < holds_.size() && !holds_[i], "block %d registered twice", b);
  if (!by_hash_.emplace(hash, b).second) return false;
  hash_[i] = hash;
  parent_hash_[i] = parent_hash;
  std::copy(tokens.begin(), tokens.end(),
            tokens_.begin() + static_cast<ptrdiff_t>(i) * block_size_);
  holds_[i] = 1;
  return true;
}

void PrefixCache::erase(BlockId b) {
  const size_t i = static_cast<size_t>(b);
  if (!holds_[i]) return;
  auto it = by_hash_.find(hash_[i]);
  LOOM_CHECK(it != by_hash_.end() && it->second == b, "prefix map lost block %d", b);
  by_hash_.erase(it);
  holds_[i] = 0;
}

void PrefixCache::check_invariants(const BlockPool& pool) const {
  int32_t num_held = 0;
  for (size_t i = 0; i < holds_.size(); ++i) {
    const BlockId b = static_cast<BlockId>(i);
    LOOM_CHECK(pool.registered(b) == static_cast<bool>(holds_[i]),
               "block %d: pool and prefix cache disagree on registration", b);
    if (!holds_[i]) continue;
    ++num_held;
    auto it = by_hash_.find(hash_[i]);
    LOOM_CHECK(it != by_hash_.end() && it->second == b, "block %d missing from the map", b);
  }
  LOOM_CHECK(num_held == size(), "prefix map size %d != registered blocks %d", size(), num_held);
}

}  // namespace loom
