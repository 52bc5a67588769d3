// Automatic prefix caching: a map from block content hash (kv/block_hash.h) to the device block
// holding that content. Only full, computed blocks are registered. A registered block whose last
// user finished stays in the pool's LRU list (kv/block_pool.h) and can be hit again until an
// allocation evicts it. A hit is verified against the stored parent hash and token ids, so a
// 64-bit collision reads as a miss.
#pragma once

#include <cstdint>
#include <span>
#include <unordered_map>
#include <vector>

#include "core/ids.h"

namespace loom {

class BlockPool;

class PrefixCache {
 public:
  PrefixCache(int32_t num_blocks, int32_t block_size);

  // The registered block holding `tokens` (block_size of them) after the parent chain ending in
  // `parent_hash`, or kNoBlock.
  BlockId lookup(uint64_t hash, uint64_t parent_hash, std::span<const TokenId> tokens) const;
  // Registers full block `b`. Returns false and registers nothing when the hash is already taken
  // (the same content is cached in another block, or a collision).
  bool insert(BlockId b, uint64_t hash, uint64_t parent_hash, std::span<const TokenId> tokens);
  // Drops block `b` (evicted for a new allocation). No-op when it is not registered.
  void erase(BlockId b);

  bool contains_block(BlockId b) const { return holds_[static_cast<size_t>(b)] != 0; }
  int32_t size() const { return static_cast<int32_t>(by_hash_.size()); }
  // Map and per-block records agree with each other and with the pool's registered flags.
  void check_invariants(const BlockPool& pool) const;

 private:
  int32_t block_size_;
  std::unordered_map<uint64_t, BlockId> by_hash_;
  std::vector<uint64_t> hash_;         // [num_blocks]
  std::vector<uint64_t> parent_hash_;  // [num_blocks]
  std::vector<TokenId> tokens_;        // [num_blocks][block_size]
  std::vector<uint8_t> holds_;         // [num_blocks] 1 = registered
};

}  // namespace loom
