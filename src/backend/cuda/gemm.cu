#include "backend/cuda/gemm.cuh"
#include "backend/cuda/gemv.cuh"

namespace loom::cuda {

#define LOOM_CUBLAS_CHECK(expr)                                                  \
  do {                                                                           \
    const cublasStatus_t loom_st_ = (expr);                                      \
    LOOM_CHECK(loom_st_ == CUBLAS_STATUS_SUCCESS, "%s: cuBLAS status %d", #expr, \
               static_cast<int>(loom_st_));                                      \
  } while (0)

Gemm::Gemm() {
  LOOM_CUBLAS_CHECK(cublasCreate(&handle_));
  // A fixed workspace keeps cuBLAS from allocating during a step (and during graph capture).
  LOOM_CUDA_CHECK(cudaMalloc(&workspace_, workspace_bytes_));
  LOOM_CUBLAS_CHECK(cublasSetWorkspace(handle_, workspace_, workspace_bytes_));
}

Gemm::~Gemm() {
  if (handle_) cublasDestroy(handle_);
  if (workspace_) cudaFree(workspace_);
}

void Gemm::run(const bf16* x, int32_t num_tokens, int32_t in, const bf16* w, int32_t out, void* y,
               bool y_f32, cudaStream_t stream) {
  if (num_tokens == 0) return;
  // A few rows: a bandwidth-bound pass over the weights (gemv.cuh) beats cuBLAS's tiles.
  if (num_tokens <= kGemvMaxRows && in % 8 == 0) {
    launch_gemv(x, num_tokens, in, w, out, y, y_f32, stream);
    return;
  }
  run_cublas(x, num_tokens, in, w, out, y, y_f32, stream);
}

void Gemm::run_cublas(const bf16* x, int32_t num_tokens, int32_t in, const bf16* w, int32_t out,
                      void* y, bool y_f32, cudaStream_t stream) {
  if (num_tokens == 0) return;
  LOOM_CUBLAS_CHECK(cublasSetStream(handle_, stream));
  const float alpha = 1.0f, beta = 0.0f;
  // Column-major view: Y^T [out x T] = W^T' ... i.e. op(A) = W^T with A = W stored [in x out]
  // column-major (lda = in), B = X^T stored [in x T] column-major (ldb = in), C ldc = out.
  LOOM_CUBLAS_CHECK(cublasGemmEx(handle_, CUBLAS_OP_T, CUBLAS_OP_N, out, num_tokens, in, &alpha, w,
                                 CUDA_R_16BF, in, x, CUDA_R_16BF, in, &beta, y,
                                 y_f32 ? CUDA_R_32F : CUDA_R_16BF, out, CUBLAS_COMPUTE_32F,
                                 CUBLAS_GEMM_DEFAULT));
}

}  // namespace loom::cuda
