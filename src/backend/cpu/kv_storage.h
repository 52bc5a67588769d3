// The bytes of the paged KV cache on the CPU: a device pool (used by attention) and a host swap
// pool of the same block format. On the CPU both live in RAM; the swap pool still models the
// real cost of moving blocks (a memcpy of the whole block) so swap and recompute behave as on a GPU.
//
// Layout of one pool: [num_blocks][num_layers][2 (K, V)][num_kv_heads][block_size][head_dim]
// of f16 values, so one block (all layers, K and V) is one contiguous range: a swap or a
// copy-on-write is a single memcpy, and one head's K rows of a block are contiguous for attention.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <span>

#include "core/step.h"

namespace loom::cpu {

struct KvLayout {
  int32_t num_layers = 0;
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;
  int32_t block_size = 16;

  size_t head_elems() const { return static_cast<size_t>(block_size) * head_dim; }
  size_t layer_elems() const { return 2 * num_kv_heads * head_elems(); }  // K and V
  size_t block_elems() const { return num_layers * layer_elems(); }
  size_t block_bytes() const { return block_elems() * sizeof(uint16_t); }
};

class KvStorage {
 public:
  KvStorage(KvLayout layout, int32_t num_device_blocks, int32_t num_host_blocks);
  const KvLayout& layout() const { return layout_; }
  int32_t num_device_blocks() const { return num_device_blocks_; }
  int32_t num_host_blocks() const { return num_host_blocks_; }

  // f16 rows of one (block, layer, kv head): [block_size][head_dim].
  uint16_t* k(BlockId block, int32_t layer, int32_t kv_head) {
    return head_ptr(device_.get(), block, layer, 0, kv_head);
  }
  uint16_t* v(BlockId block, int32_t layer, int32_t kv_head) {
    return head_ptr(device_.get(), block, layer, 1, kv_head);
  }

  void swap_out(std::span<const BlockCopy> copies);   // device -> host
  void swap_in(std::span<const BlockCopy> copies);    // host -> device
  void copy_blocks(std::span<const BlockCopy> copies);  // device -> device

 private:
  struct FreeDeleter {
    void operator()(void* p) const { std::free(p); }
  };
  uint16_t* head_ptr(uint16_t* pool, BlockId block, int32_t layer, int32_t kv, int32_t head) {
    return pool + static_cast<size_t>(block) * layout_.block_elems() +
           static_cast<size_t>(layer) * layout_.layer_elems() +
           (static_cast<size_t>(kv) * layout_.num_kv_heads + head) * layout_.head_elems();
  }

  KvLayout layout_;
  int32_t num_device_blocks_;
  int32_t num_host_blocks_;
  // calloc'd: pages are committed only when first written.
  std::unique_ptr<uint16_t, FreeDeleter> device_;
  std::unique_ptr<uint16_t, FreeDeleter> host_;
};

}  // namespace loom::cpu
