// Shared by the CUDA benchmark programs (bench_cuda, bench_cuda_gemv).
#pragma once

#include <algorithm>
#include <vector>

#include "backend/cuda/cuda_common.cuh"

namespace loom::bench {

// Device-to-device copy of 2 GiB: bytes read + written per second.
inline double measure_copy_bandwidth() {
  const size_t bytes = size_t{2} << 30;
  void *a = nullptr, *b = nullptr;
  LOOM_CUDA_CHECK(cudaMalloc(&a, bytes));
  LOOM_CUDA_CHECK(cudaMalloc(&b, bytes));
  LOOM_CUDA_CHECK(cudaMemset(a, 1, bytes));
  cudaEvent_t e0, e1;
  LOOM_CUDA_CHECK(cudaEventCreate(&e0));
  LOOM_CUDA_CHECK(cudaEventCreate(&e1));
  std::vector<float> ms;
  for (int i = 0; i < 6; ++i) {
    LOOM_CUDA_CHECK(cudaEventRecord(e0));
    LOOM_CUDA_CHECK(cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice));
    LOOM_CUDA_CHECK(cudaEventRecord(e1));
    LOOM_CUDA_CHECK(cudaEventSynchronize(e1));
    float t = 0;
    LOOM_CUDA_CHECK(cudaEventElapsedTime(&t, e0, e1));
    if (i > 0) ms.push_back(t);
  }
  std::sort(ms.begin(), ms.end());
  cudaFree(a);
  cudaFree(b);
  return 2.0 * bytes / (ms[ms.size() / 2] * 1e-3);
}

}  // namespace loom::bench
