#include "backend/cpu/kv_storage.h"

#include <cstring>
#include <new>

#include "util/check.h"

namespace loom::cpu {
namespace {

uint8_t* alloc_pool(size_t bytes) {
  if (bytes == 0) return nullptr;
  void* p = std::calloc(bytes, 1);
  if (p == nullptr) throw std::bad_alloc();
  return static_cast<uint8_t*>(p);
}

}  // namespace

KvStorage::KvStorage(KvLayout layout, int32_t num_device_blocks, int32_t num_host_blocks)
    : layout_(layout),
      num_device_blocks_(num_device_blocks),
      num_host_blocks_(num_host_blocks),
      device_(alloc_pool(static_cast<size_t>(num_device_blocks) * layout.block_bytes())),
      host_(alloc_pool(static_cast<size_t>(num_host_blocks) * layout.block_bytes())) {
  LOOM_CHECK(num_device_blocks > 0 && num_host_blocks >= 0);
  // Scales are f16: every head region and its scales must start on an even byte.
  LOOM_CHECK(layout.head_bytes() % 2 == 0 && layout.params_offset() % 2 == 0);
}

void KvStorage::swap_out(std::span<const BlockCopy> copies) {
  const size_t n = layout_.block_bytes();
  for (const BlockCopy& c : copies) {
    LOOM_CHECK(c.src >= 0 && c.src < num_device_blocks_ && c.dst >= 0 && c.dst < num_host_blocks_,
               "swap_out %d -> %d out of range", c.src, c.dst);
    std::memcpy(host_.get() + c.dst * n, device_.get() + c.src * n, n);
  }
}

void KvStorage::swap_in(std::span<const BlockCopy> copies) {
  const size_t n = layout_.block_bytes();
  for (const BlockCopy& c : copies) {
    LOOM_CHECK(c.src >= 0 && c.src < num_host_blocks_ && c.dst >= 0 && c.dst < num_device_blocks_,
               "swap_in %d -> %d out of range", c.src, c.dst);
    std::memcpy(device_.get() + c.dst * n, host_.get() + c.src * n, n);
  }
}

void KvStorage::copy_blocks(std::span<const BlockCopy> copies) {
  const size_t n = layout_.block_bytes();
  for (const BlockCopy& c : copies) {
    LOOM_CHECK(c.src >= 0 && c.src < num_device_blocks_ && c.dst >= 0 &&
                   c.dst < num_device_blocks_ && c.src != c.dst,
               "copy %d -> %d out of range", c.src, c.dst);
    std::memcpy(device_.get() + c.dst * n, device_.get() + c.src * n, n);
  }
}

}  // namespace loom::cpu
