#include "backend/cuda/graph_cache.cuh"

namespace loom::cuda {

void GraphCache::launch(uint64_t key, uint64_t generation, cudaStream_t stream,
                        const std::function<void()>& record) {
  if (generation != generation_) {
    clear();
    generation_ = generation;
  }
  auto it = graphs_.find(key);
  if (it == graphs_.end()) {
    cudaGraph_t graph = nullptr;
    LOOM_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
    record();
    LOOM_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
    cudaGraphExec_t exec = nullptr;
    LOOM_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
    LOOM_CUDA_CHECK(cudaGraphDestroy(graph));
    it = graphs_.emplace(key, exec).first;
    ++num_captures_;
  }
  LOOM_CUDA_CHECK(cudaGraphLaunch(it->second, stream));
}

void GraphCache::clear() {
  for (auto& [key, exec] : graphs_) cudaGraphExecDestroy(exec);
  graphs_.clear();
}

int32_t graph_batch_bucket(int32_t n) {
  if (n <= 1) return 1;
  if (n <= 2) return 2;
  if (n <= 4) return 4;
  return (n + 7) / 8 * 8;
}

int32_t graph_stride_bucket(int32_t blocks) {
  int32_t s = 8;
  while (s < blocks) s *= 2;
  return s;
}

}  // namespace loom::cuda
