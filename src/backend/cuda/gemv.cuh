// Matrix products for a handful of rows (decode at batch 1-8): y[m][n] = sum_k x[m][k] W[n][k].
//
// At so few rows a product is a pass over the weights, bound by memory bandwidth; cuBLAS's GEMM
// kernels tile for many rows and read the weights at well under the copy rate there. Here one
// warp owns one output row n at a time: its lanes stream W's row n in 16-byte loads (bypassing
// L1: each weight is read once), take the M rows of x from L1/L2 (small, shared by every warp),
// and reduce the M dot products across the warp. Shapes: in % 8 == 0 (16-byte rows).
#pragma once

#include "backend/cuda/cuda_common.cuh"

namespace loom::cuda {

constexpr int32_t kGemvMaxRows = 8;

// x: [rows][in] bf16, w: [out][in] bf16, y: [rows][out] f32 (y_f32) or bf16. rows in [1, 8].
void launch_gemv(const bf16* x, int32_t rows, int32_t in, const bf16* w, int32_t out, void* y,
                 bool y_f32, cudaStream_t stream);

}  // namespace loom::cuda
