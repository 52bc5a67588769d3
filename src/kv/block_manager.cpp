#include "kv/block_manager.h"

#include "kv/block_hash.h"
#include "util/check.h"

namespace loom {

BlockManager::BlockManager(int32_t num_device_blocks, int32_t num_host_blocks, int32_t block_size,
                           bool prefix_caching)
    : block_size_(block_size),
      prefix_caching_(prefix_caching),
      device_(num_device_blocks),
      cache_(num_device_blocks, block_size),
      host_(num_host_blocks) {
  LOOM_CHECK(block_size > 0, "block_size %d", block_size);
}

void BlockManager::extend_hashes(std::span<const TokenId> tokens,
                                 std::vector<uint64_t>& hashes) const {
  const size_t num_full = tokens.size() / static_cast<size_t>(block_size_);
  while (hashes.size() < num_full) {
    const size_t b = hashes.size();
    const uint64_t parent = b == 0 ? kRootBlockHash : hashes[b - 1];
    hashes.push_back(hash_block(parent, tokens.subspan(b * block_size_, block_size_)));
  }
}

int32_t BlockManager::match_prefix(std::span<const TokenId> tokens,
                                   std::span<const uint64_t> hashes, int32_t max_blocks,
                                   std::vector<BlockId>& out) const {
  if (!prefix_caching_) return 0;
  int32_t n = 0;
  for (; n < max_blocks && static_cast<size_t>(n) < hashes.size(); ++n) {
    const size_t b = static_cast<size_t>(n);
    const uint64_t parent = b == 0 ? kRootBlockHash : hashes[b - 1];
    const BlockId hit =
        cache_.lookup(hashes[b], parent, tokens.subspan(b * block_size_, block_size_));
    if (hit == kNoBlock) break;
    out.push_back(hit);
  }
  return n;
}

int32_t BlockManager::num_unreferenced(std::span<const BlockId> blocks) const {
  int32_t n = 0;
  for (BlockId b : blocks) n += device_.ref_count(b) == 0 ? 1 : 0;
  return n;
}

void BlockManager::share(std::span<const BlockId> blocks, std::vector<BlockId>& table) {
  for (BlockId b : blocks) {
    device_.incref(b);
    table.push_back(b);
  }
}

bool BlockManager::grow(std::vector<BlockId>& table, int32_t num_blocks) {
  const int32_t need = num_blocks - static_cast<int32_t>(table.size());
  if (need <= 0) return true;
  if (!device_.can_allocate(need)) return false;
  for (int32_t k = 0; k < need; ++k) {
    const auto got = device_.allocate();
    LOOM_CHECK(got.has_value());
    if (got->evicted) cache_.erase(got->block);
    table.push_back(got->block);
  }
  return true;
}

void BlockManager::shrink(std::vector<BlockId>& table, int32_t num_blocks) {
  while (static_cast<int32_t>(table.size()) > num_blocks) {
    device_.decref(table.back());
    table.pop_back();
  }
}

void BlockManager::register_blocks(std::span<const BlockId> table, std::span<const TokenId> tokens,
                                   std::span<const uint64_t> hashes, int32_t from, int32_t to) {
  if (!prefix_caching_) return;
  LOOM_CHECK(to <= static_cast<int32_t>(table.size()) && to <= static_cast<int32_t>(hashes.size()));
  for (int32_t b = from; b < to; ++b) {
    const BlockId block = table[static_cast<size_t>(b)];
    if (device_.registered(block)) continue;  // a cache hit shared at admission
    const uint64_t parent = b == 0 ? kRootBlockHash : hashes[static_cast<size_t>(b) - 1];
    if (cache_.insert(block, hashes[static_cast<size_t>(b)], parent,
                      tokens.subspan(static_cast<size_t>(b) * block_size_, block_size_))) {
      device_.set_registered(block, true);
    }
  }
}

void BlockManager::check_invariants() const {
  device_.check_invariants();
  cache_.check_invariants(device_);
  host_.check_invariants();
}

}  // namespace loom
