#include "backend/cuda/kv_swap.cuh"

namespace loom::cuda {

KvSwapPool::KvSwapPool(size_t block_bytes, int32_t num_host_blocks)
    : block_bytes_(block_bytes), num_host_blocks_(num_host_blocks) {
  if (num_host_blocks_ > 0)
    LOOM_CUDA_CHECK(cudaHostAlloc(reinterpret_cast<void**>(&host_),
                                  block_bytes_ * static_cast<size_t>(num_host_blocks_),
                                  cudaHostAllocDefault));
  LOOM_CUDA_CHECK(cudaStreamCreateWithFlags(&copy_stream_, cudaStreamNonBlocking));
  LOOM_CUDA_CHECK(cudaEventCreateWithFlags(&compute_reached_, cudaEventDisableTiming));
  LOOM_CUDA_CHECK(cudaEventCreateWithFlags(&copies_done_, cudaEventDisableTiming));
}

KvSwapPool::~KvSwapPool() {
  if (copy_stream_) cudaStreamSynchronize(copy_stream_);
  if (host_) cudaFreeHost(host_);
  if (copy_stream_) cudaStreamDestroy(copy_stream_);
  if (compute_reached_) cudaEventDestroy(compute_reached_);
  if (copies_done_) cudaEventDestroy(copies_done_);
}

void KvSwapPool::copy(std::span<const BlockCopy> copies, uint8_t* dst_base, const uint8_t* src_base,
                      cudaMemcpyKind kind, cudaStream_t compute) {
  if (copies.empty()) return;
  LOOM_CUDA_CHECK(cudaEventRecord(compute_reached_, compute));
  LOOM_CUDA_CHECK(cudaStreamWaitEvent(copy_stream_, compute_reached_, 0));
  // Runs of consecutive source and destination blocks go as one copy.
  size_t i = 0;
  while (i < copies.size()) {
    size_t n = 1;
    while (i + n < copies.size() && copies[i + n].src == copies[i].src + static_cast<BlockId>(n) &&
           copies[i + n].dst == copies[i].dst + static_cast<BlockId>(n))
      ++n;
    LOOM_CUDA_CHECK(cudaMemcpyAsync(dst_base + static_cast<size_t>(copies[i].dst) * block_bytes_,
                                    src_base + static_cast<size_t>(copies[i].src) * block_bytes_,
                                    n * block_bytes_, kind, copy_stream_));
    i += n;
  }
  LOOM_CUDA_CHECK(cudaEventRecord(copies_done_, copy_stream_));
  LOOM_CUDA_CHECK(cudaStreamWaitEvent(compute, copies_done_, 0));
}

void KvSwapPool::swap_out(std::span<const BlockCopy> copies, const void* device_pool,
                          int32_t num_device_blocks, cudaStream_t compute) {
  for (const BlockCopy& c : copies)
    LOOM_CHECK(c.src >= 0 && c.src < num_device_blocks && c.dst >= 0 && c.dst < num_host_blocks_,
               "swap out %d -> %d out of range", c.src, c.dst);
  copy(copies, host_, static_cast<const uint8_t*>(device_pool), cudaMemcpyDeviceToHost, compute);
}

void KvSwapPool::swap_in(std::span<const BlockCopy> copies, void* device_pool,
                         int32_t num_device_blocks, cudaStream_t compute) {
  for (const BlockCopy& c : copies)
    LOOM_CHECK(c.src >= 0 && c.src < num_host_blocks_ && c.dst >= 0 && c.dst < num_device_blocks,
               "swap in %d -> %d out of range", c.src, c.dst);
  copy(copies, static_cast<uint8_t*>(device_pool), host_, cudaMemcpyHostToDevice, compute);
}

}  // namespace loom::cuda
