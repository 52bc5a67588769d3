// The KV block manager: the device pool, the prefix cache over it and the host swap pool,
// with the operations the scheduler performs on one sequence's block table.
// Bookkeeping only (no tensors). Every "does it fit" question is answered without a change;
// only grow / share / release / register mutate, and grow changes nothing when it fails.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "core/ids.h"
#include "kv/block_pool.h"
#include "kv/host_pool.h"
#include "kv/prefix_cache.h"

namespace loom {

class BlockManager {
 public:
  BlockManager(int32_t num_device_blocks, int32_t num_host_blocks, int32_t block_size,
               bool prefix_caching);

  int32_t block_size() const { return block_size_; }
  bool prefix_caching() const { return prefix_caching_; }
  // Blocks needed to hold `num_tokens` tokens.
  int32_t blocks_for(int64_t num_tokens) const {
    return static_cast<int32_t>((num_tokens + block_size_ - 1) / block_size_);
  }
  const BlockPool& device() const { return device_; }
  const PrefixCache& prefix_cache() const { return cache_; }
  const HostPool& host() const { return host_; }
  HostPool& host() { return host_; }

  // Extends `hashes` (one per full block, a chain from kRootBlockHash) to cover every full block
  // of `tokens`. Hashes depend only on token ids, so a sequence computes each one once.
  void extend_hashes(std::span<const TokenId> tokens, std::vector<uint64_t>& hashes) const;
  // Appends to `out` the cached blocks holding the longest prefix of full blocks of `tokens`,
  // at most `max_blocks` of them; returns how many. Changes nothing. 0 when caching is off.
  int32_t match_prefix(std::span<const TokenId> tokens, std::span<const uint64_t> hashes,
                       int32_t max_blocks, std::vector<BlockId>& out) const;
  // How many of `blocks` are unreferenced (cached): sharing them uses up available blocks.
  int32_t num_unreferenced(std::span<const BlockId> blocks) const;
  // Commits a match: takes a reference on each block and appends it to `table`.
  void share(std::span<const BlockId> blocks, std::vector<BlockId>& table);
  // Grows `table` to `num_blocks` fresh blocks. False (and no change) when they do not fit.
  bool grow(std::vector<BlockId>& table, int32_t num_blocks);
  // Drops the tail of `table` down to `num_blocks`, last block first (so a sequence's tail,
  // the least shareable part, becomes the first eviction candidate).
  void shrink(std::vector<BlockId>& table, int32_t num_blocks);
  void release(std::vector<BlockId>& table) { shrink(table, 0); }
  // Offers table[from, to) (full, computed blocks of `tokens`) to the prefix cache.
  void register_blocks(std::span<const BlockId> table, std::span<const TokenId> tokens,
                       std::span<const uint64_t> hashes, int32_t from, int32_t to);

  void check_invariants() const;

 private:
  int32_t block_size_;
  bool prefix_caching_;
  BlockPool device_;
  PrefixCache cache_;
  HostPool host_;
};

}  // namespace loom
