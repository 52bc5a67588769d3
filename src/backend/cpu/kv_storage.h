// The bytes of the paged KV cache on the CPU: a device pool (used by attention) and a host swap
// pool of the same block format. On the CPU both live in RAM; the swap pool still models the
// real cost of moving blocks (a memcpy of the whole block) so swap and recompute behave as on a
// GPU.
//
// Layout of one pool: [num_blocks][num_layers][2 (K, V)][num_kv_heads] head regions. One head
// region holds block_size rows of one (layer, K or V, KV head):
//   [block_size][row_data_bytes] values, then [block_size][row_param_bytes] scales
// in the row format of the dtype (kv_quant.h; f16 has no scales). One block (all layers, K and V,
// scales included) is one contiguous range of bytes whatever the dtype: a swap or a copy-on-write
// is a single memcpy, and one head's rows of a block are contiguous for attention.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <span>

#include "backend/cpu/kv_quant.h"
#include "core/step.h"

namespace loom::cpu {

struct KvLayout {
  int32_t num_layers = 0;
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;
  int32_t block_size = 16;
  KvDtype dtype = KvDtype::kF16;

  size_t row_data_bytes() const { return kv_row_data_bytes(dtype, head_dim); }
  size_t row_param_bytes() const { return kv_row_param_bytes(dtype, head_dim); }
  // Bytes from a head region's start to its scales.
  size_t params_offset() const { return static_cast<size_t>(block_size) * row_data_bytes(); }
  size_t head_bytes() const {
    return static_cast<size_t>(block_size) * (row_data_bytes() + row_param_bytes());
  }
  size_t layer_bytes() const { return 2 * num_kv_heads * head_bytes(); }  // K and V
  size_t block_bytes() const { return num_layers * layer_bytes(); }
};

class KvStorage {
 public:
  KvStorage(KvLayout layout, int32_t num_device_blocks, int32_t num_host_blocks);
  const KvLayout& layout() const { return layout_; }
  int32_t num_device_blocks() const { return num_device_blocks_; }
  int32_t num_host_blocks() const { return num_host_blocks_; }

  // Head region of one (block, layer, kv head) in the device pool (layout above).
  uint8_t* k(BlockId block, int32_t layer, int32_t kv_head) {
    return head_ptr(device_.get(), block, layer, 0, kv_head);
  }
  uint8_t* v(BlockId block, int32_t layer, int32_t kv_head) {
    return head_ptr(device_.get(), block, layer, 1, kv_head);
  }

  void swap_out(std::span<const BlockCopy> copies);     // device -> host
  void swap_in(std::span<const BlockCopy> copies);      // host -> device
  void copy_blocks(std::span<const BlockCopy> copies);  // device -> device

 private:
  struct FreeDeleter {
    void operator()(void* p) const { std::free(p); }
  };
  uint8_t* head_ptr(uint8_t* pool, BlockId block, int32_t layer, int32_t kv, int32_t head) {
    return pool + static_cast<size_t>(block) * layout_.block_bytes() +
           static_cast<size_t>(layer) * layout_.layer_bytes() +
           (static_cast<size_t>(kv) * layout_.num_kv_heads + head) * layout_.head_bytes();
  }

  KvLayout layout_;
  int32_t num_device_blocks_;
  int32_t num_host_blocks_;
  // calloc'd: pages are committed only when first written.
  std::unique_ptr<uint8_t, FreeDeleter> device_;
  std::unique_ptr<uint8_t, FreeDeleter> host_;
};

}  // namespace loom::cpu
