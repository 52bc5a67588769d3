// The host side of KV swapping: a pinned host pool of whole blocks, and block copies between it
// and the device pool on a copy stream of their own. Ordering by events, never by host waits:
// the copy stream waits for the compute stream's work so far (the blocks' last writers), and the
// compute stream waits for the copies before its next forward (the blocks' next readers/writers).
#pragma once

#include <span>

#include "backend/cuda/cuda_common.cuh"
#include "core/step.h"

namespace loom::cuda {

class KvSwapPool {
 public:
  KvSwapPool(size_t block_bytes, int32_t num_host_blocks);
  ~KvSwapPool();
  KvSwapPool(const KvSwapPool&) = delete;
  KvSwapPool& operator=(const KvSwapPool&) = delete;

  int32_t num_host_blocks() const { return num_host_blocks_; }
  const uint8_t* host_block(int32_t block) const { return host_ + block * block_bytes_; }

  // device_pool: num_device_blocks blocks of block_bytes each.
  void swap_out(std::span<const BlockCopy> copies, const void* device_pool,
                int32_t num_device_blocks, cudaStream_t compute);
  void swap_in(std::span<const BlockCopy> copies, void* device_pool, int32_t num_device_blocks,
               cudaStream_t compute);

 private:
  void copy(std::span<const BlockCopy> copies, uint8_t* dst_base, const uint8_t* src_base,
            cudaMemcpyKind kind, cudaStream_t compute);

  size_t block_bytes_;
  int32_t num_host_blocks_;
  uint8_t* host_ = nullptr;  // pinned
  cudaStream_t copy_stream_ = nullptr;
  cudaEvent_t compute_reached_ = nullptr;
  cudaEvent_t copies_done_ = nullptr;
};

}  // namespace loom::cuda
