#include "kv/block_pool.h"

#include "util/check.h"

namespace loom {

BlockPool::BlockPool(int32_t num_blocks) {
  LOOM_CHECK(num_blocks >= 0, "num_blocks %d", num_blocks);
  const size_t n = static_cast<size_t>(num_blocks);
  ref_count_.assign(n, 0);
  registered_.assign(n, 0);
  lru_prev_.assign(n, kNoBlock);
  lru_next_.assign(n, kNoBlock);
  in_lru_.assign(n, 0);
  free_stack_.reserve(n);
  // Reverse order so that block 0 is handed out first (deterministic, easy to read in tests).
  for (int32_t b = num_blocks - 1; b >= 0; --b) free_stack_.push_back(b);
}

size_t BlockPool::check_id(BlockId b) const {
  LOOM_CHECK(valid(b), "block id %d out of range [0, %d)", b, num_total());
  return static_cast<size_t>(b);
}

std::optional<BlockPool::Allocated> BlockPool::allocate() {
  Allocated out;
  if (!free_stack_.empty()) {
    out.block = free_stack_.back();
    free_stack_.pop_back();
  } else if (lru_head_ != kNoBlock) {
    out.block = lru_head_;
    lru_remove(out.block);
    registered_[static_cast<size_t>(out.block)] = 0;
    out.evicted = true;
  } else {
    return std::nullopt;
  }
  LOOM_CHECK(ref_count_[static_cast<size_t>(out.block)] == 0);
  ref_count_[static_cast<size_t>(out.block)] = 1;
  return out;
}

void BlockPool::incref(BlockId b) {
  const size_t i = check_id(b);
  if (ref_count_[i] == 0) {
    // Only registered blocks are reachable while unreferenced (through a cache hit).
    LOOM_CHECK(in_lru_[i], "incref of free block %d", b);
    lru_remove(b);
  }
  ++ref_count_[i];
}

void BlockPool::decref(BlockId b) {
  const size_t i = check_id(b);
  LOOM_CHECK(ref_count_[i] > 0, "decref of unreferenced block %d", b);
  if (--ref_count_[i] > 0) return;
  if (registered_[i]) {
    lru_push_back(b);
  } else {
    free_stack_.push_back(b);
  }
}

void BlockPool::set_registered(BlockId b, bool registered) {
  const size_t i = check_id(b);
  if (static_cast<bool>(registered_[i]) == registered) return;
  // Only computed blocks held by a sequence are registered, so registration never moves a block
  // between lists; unregistering an unreferenced (cached) block makes it free.
  LOOM_CHECK(!registered || ref_count_[i] > 0, "registering unreferenced block %d", b);
  registered_[i] = registered ? 1 : 0;
  if (!registered && ref_count_[i] == 0) {
    lru_remove(b);
    free_stack_.push_back(b);
  }
}

void BlockPool::lru_push_back(BlockId b) {
  const size_t i = static_cast<size_t>(b);
  LOOM_CHECK(!in_lru_[i]);
  lru_prev_[i] = lru_tail_;
  lru_next_[i] = kNoBlock;
  if (lru_tail_ != kNoBlock) {
    lru_next_[static_cast<size_t>(lru_tail_)] = b;
  } else {
    lru_head_ = b;
  }
  lru_tail_ = b;
  in_lru_[i] = 1;
  ++num_lru_;
}

void BlockPool::lru_remove(BlockId b) {
  const size_t i = static_cast<size_t>(b);
  LOOM_CHECK(in_lru_[i]);
  const BlockId prev = lru_prev_[i];
  const BlockId next = lru_next_[i];
  if (prev != kNoBlock) {
    lru_next_[static_cast<size_t>(prev)] = next;
  } else {
    lru_head_ = next;
  }
  if (next != kNoBlock) {
    lru_prev_[static_cast<size_t>(next)] = prev;
  } else {
    lru_tail_ = prev;
  }
  lru_prev_[i] = lru_next_[i] = kNoBlock;
  in_lru_[i] = 0;
  --num_lru_;
}

void BlockPool::check_invariants() const {
  const int32_t n = num_total();
  std::vector<uint8_t> on_free(static_cast<size_t>(n), 0);
  for (BlockId b : free_stack_) {
    const size_t i = check_id(b);
    LOOM_CHECK(!on_free[i], "block %d twice on the free stack", b);
    on_free[i] = 1;
    LOOM_CHECK(ref_count_[i] == 0 && !registered_[i] && !in_lru_[i], "bad free block %d", b);
  }
  int32_t walked = 0;
  BlockId prev = kNoBlock;
  for (BlockId b = lru_head_; b != kNoBlock; b = lru_next_[static_cast<size_t>(b)]) {
    const size_t i = check_id(b);
    LOOM_CHECK(in_lru_[i] && ref_count_[i] == 0 && registered_[i], "bad cached block %d", b);
    LOOM_CHECK(lru_prev_[i] == prev, "broken LRU link at block %d", b);
    prev = b;
    LOOM_CHECK(++walked <= n, "LRU list has a cycle");
  }
  LOOM_CHECK(prev == lru_tail_ && walked == num_lru_, "LRU walk %d != count %d", walked, num_lru_);
  int32_t num_used = 0;
  for (int32_t b = 0; b < n; ++b) {
    const size_t i = static_cast<size_t>(b);
    LOOM_CHECK(ref_count_[i] >= 0);
    if (ref_count_[i] > 0) {
      LOOM_CHECK(!on_free[i] && !in_lru_[i], "used block %d on a list", b);
      ++num_used;
    } else {
      LOOM_CHECK(on_free[i] != in_lru_[i], "unreferenced block %d on no list or both", b);
    }
  }
  LOOM_CHECK(num_free() + num_cached() + num_used == n, "conservation: %d + %d + %d != %d",
             num_free(), num_cached(), num_used, n);
}

}  // namespace loom
