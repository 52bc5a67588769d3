// Instantiated CUDA graphs of decode steps. A decode step of a Llama launches ~10 kernels per
// layer (~150-300 per step); at small batches the launches, not the GPU, set the step time. A
// graph replays the whole step in one launch.
//
// A graph bakes in every kernel argument: buffer addresses, token counts, the attention split.
// So steps are padded to a bucketed batch size and a bucketed block-table stride (the key), every
// buffer a graph reads lives at a fixed address, and when any buffer is reallocated (the
// backend's buffer generation changes) all graphs are dropped and recaptured on demand.
#pragma once

#include <cstdint>
#include <functional>
#include <unordered_map>

#include "backend/cuda/cuda_common.cuh"

namespace loom::cuda {

class GraphCache {
 public:
  GraphCache() = default;
  GraphCache(const GraphCache&) = delete;
  GraphCache& operator=(const GraphCache&) = delete;
  ~GraphCache() { clear(); }

  // Launches the graph of `key` on `stream`. The first time (or after the buffers moved, i.e.
  // `generation` differs from the one the cached graphs were captured at) `record` is run under
  // stream capture to build it; `record` must only enqueue work on `stream`.
  void launch(uint64_t key, uint64_t generation, cudaStream_t stream,
              const std::function<void()>& record);

  void clear();
  size_t size() const { return graphs_.size(); }
  int64_t num_captures() const { return num_captures_; }

 private:
  std::unordered_map<uint64_t, cudaGraphExec_t> graphs_;
  uint64_t generation_ = 0;
  int64_t num_captures_ = 0;
};

// Decode batch buckets: 1, 2, 4, 8, then multiples of 8 (at most 7 padded rows past 8).
int32_t graph_batch_bucket(int32_t num_seqs);
// Block-table stride buckets: powers of two, at least 8 blocks.
int32_t graph_stride_bucket(int32_t max_blocks_per_seq);

}  // namespace loom::cuda
