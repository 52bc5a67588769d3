// Host-memory swap pool bookkeeping: which host blocks hold swapped-out K/V. The backend owns
// the bytes; a host block has the same shape as a device block. Conservation:
// free + used == total.
#pragma once

#include <cstdint>
#include <vector>

#include "core/ids.h"

namespace loom {

class HostPool {
 public:
  explicit HostPool(int32_t num_blocks);

  int32_t num_total() const { return static_cast<int32_t>(in_use_.size()); }
  int32_t num_free() const { return static_cast<int32_t>(free_stack_.size()); }
  int32_t num_used() const { return num_total() - num_free(); }
  bool can_allocate(int32_t n) const { return n <= num_free(); }

  // Appends `n` host blocks to `out`. Returns false and changes nothing when they do not fit.
  bool allocate(int32_t n, std::vector<BlockId>& out);
  void free(BlockId b);

  bool in_use(BlockId b) const;
  void check_invariants() const;

 private:
  std::vector<uint8_t> in_use_;      // [num_blocks]
  std::vector<BlockId> free_stack_;  // top = back
};

}  // namespace loom
