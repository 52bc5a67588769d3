// BF16 matrix products through cuBLAS (which picks cuBLASLt's Hopper kernels), f32 accumulation;
// up to kGemvMaxRows rows go to the bandwidth-bound kernels of gemv.cuh instead (at 16-64 rows
// cuBLAS beat a tensor-core extension of them on an H200: 1.17 vs 1.46 ms a 1B step at 16).
// Weights are row-major [out][in] as the checkpoints store them: y[T][N] = x[T][K] * W[N][K]^T.
#pragma once

#include <cublas_v2.h>

#include "backend/cuda/cuda_common.cuh"

namespace loom::cuda {

class Gemm {
 public:
  Gemm();
  ~Gemm();
  Gemm(const Gemm&) = delete;
  Gemm& operator=(const Gemm&) = delete;

  // x: [num_tokens][in] bf16, w: [out][in] bf16; y: [num_tokens][out], f32 or bf16.
  void run(const bf16* x, int32_t num_tokens, int32_t in, const bf16* w, int32_t out, void* y,
           bool y_f32, cudaStream_t stream);
  // The same product through cuBLAS whatever the rows (run() uses it above kGemvMaxRows).
  void run_cublas(const bf16* x, int32_t num_tokens, int32_t in, const bf16* w, int32_t out,
                  void* y, bool y_f32, cudaStream_t stream);

 private:
  cublasHandle_t handle_ = nullptr;
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = size_t{32} << 20;
};

}  // namespace loom::cuda
