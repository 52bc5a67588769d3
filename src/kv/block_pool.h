// Device KV-block bookkeeping: ids, reference counts and the two lists of unreferenced blocks.
// No tensors here: the backend owns the bytes, this class only decides which block holds what.
//
// Every block is in exactly one of three states (conservation: free + used + cached == total):
//   used    ref_count > 0 (held by one or more sequences; may also be registered in the cache)
//   cached  ref_count == 0 and registered in the prefix cache: still holds reusable K/V, sits in
//           an LRU list (intrusive, doubly linked: O(1) removal from the middle on a cache hit)
//   free    ref_count == 0 and not registered: sits on a free stack
// Allocation takes free blocks first and evicts the least recently freed cached block only when
// none is left, so cached prefixes survive as long as possible.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "core/ids.h"

namespace loom {

class BlockPool {
 public:
  explicit BlockPool(int32_t num_blocks);

  struct Allocated {
    BlockId block = kNoBlock;
    bool evicted = false;  // it was a cached block: the caller must drop it from the prefix cache
  };

  int32_t num_total() const { return static_cast<int32_t>(ref_count_.size()); }
  int32_t num_free() const { return static_cast<int32_t>(free_stack_.size()); }
  int32_t num_cached() const { return num_lru_; }
  int32_t num_used() const { return num_total() - num_free() - num_cached(); }
  // Blocks an allocation may take right now (free ones, then evictable cached ones).
  int32_t num_available() const { return num_free() + num_cached(); }
  bool can_allocate(int32_t n) const { return n <= num_available(); }

  // One block with ref_count 1, or nullopt (and no change) when none is available.
  std::optional<Allocated> allocate();
  // Takes another reference; a cached block (ref 0) leaves the LRU list and becomes used.
  void incref(BlockId b);
  // Drops a reference; at zero a registered block becomes the most recent cached block, any
  // other block goes back to the free stack.
  void decref(BlockId b);
  // Marks a block registered / unregistered in the prefix cache. Unregistering a cached block
  // moves it to the free stack.
  void set_registered(BlockId b, bool registered);

  int32_t ref_count(BlockId b) const { return ref_count_[check_id(b)]; }
  bool registered(BlockId b) const { return registered_[check_id(b)] != 0; }
  bool valid(BlockId b) const { return b >= 0 && b < num_total(); }

  // Aborts when the lists, states and counts disagree. O(num_blocks).
  void check_invariants() const;

 private:
  size_t check_id(BlockId b) const;
  void lru_push_back(BlockId b);
  void lru_remove(BlockId b);

  std::vector<int32_t> ref_count_;   // [num_blocks]
  std::vector<uint8_t> registered_;  // [num_blocks] 1 = registered in the prefix cache
  std::vector<BlockId> free_stack_;  // unreferenced, unregistered; top = back
  std::vector<BlockId> lru_prev_;    // [num_blocks] intrusive LRU links (kNoBlock at the ends)
  std::vector<BlockId> lru_next_;
  std::vector<uint8_t> in_lru_;  // [num_blocks]
  BlockId lru_head_ = kNoBlock;  // least recently freed: evicted first
  BlockId lru_tail_ = kNoBlock;
  int32_t num_lru_ = 0;
};

}  // namespace loom
