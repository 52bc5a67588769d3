#include "kv/host_pool.h"

#include "util/check.h"

namespace loom {

HostPool::HostPool(int32_t num_blocks) {
  LOOM_CHECK(num_blocks >= 0, "num_blocks %d", num_blocks);
  in_use_.assign(static_cast<size_t>(num_blocks), 0);
  free_stack_.reserve(static_cast<size_t>(num_blocks));
  for (int32_t b = num_blocks - 1; b >= 0; --b) free_stack_.push_back(b);
}

bool HostPool::allocate(int32_t n, std::vector<BlockId>& out) {
  if (n < 0 || !can_allocate(n)) return false;
  for (int32_t k = 0; k < n; ++k) {
    const BlockId b = free_stack_.back();
    free_stack_.pop_back();
    in_use_[static_cast<size_t>(b)] = 1;
    out.push_back(b);
  }
  return true;
}

void HostPool::free(BlockId b) {
  LOOM_CHECK(in_use(b), "freeing host block %d that is not in use", b);
  in_use_[static_cast<size_t>(b)] = 0;
  free_stack_.push_back(b);
}

bool HostPool::in_use(BlockId b) const {
  LOOM_CHECK(b >= 0 && b < num_total(), "host block id %d out of range [0, %d)", b, num_total());
  return in_use_[static_cast<size_t>(b)] != 0;
}

void HostPool::check_invariants() const {
  std::vector<uint8_t> seen(in_use_.size(), 0);
  for (BlockId b : free_stack_) {
    LOOM_CHECK(b >= 0 && b < num_total());
    const size_t i = static_cast<size_t>(b);
    LOOM_CHECK(!seen[i] && !in_use_[i], "host block %d: bad free-list entry", b);
    seen[i] = 1;
  }
  int32_t used = 0;
  for (uint8_t u : in_use_) used += u;
  LOOM_CHECK(used + num_free() == num_total(), "host conservation: %d + %d != %d", used, num_free(),
             num_total());
}

}  // namespace loom
