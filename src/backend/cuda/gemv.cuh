// Matrix products for a handful of rows (decode at batch 1-8): y[m][n] = sum_k x[m][k] W[n][k],
// with the decode layer's neighbours fused in where that saves a kernel.
//
// At so few rows a product is a pass over the weights, bound by memory bandwidth. cuBLAS streams
// large matrices well even here (an H200 at 1 row, weights from DRAM: 80-88% of the copy rate
// for 67-235 MB), small ones at 28-67% like these kernels; these exist for the fusions, which
// remove a kernel and its launch gap (benchmarks-cuda.md, "The small-batch products"). Two kernels:
//   CUDA cores (gemv.cu): one warp owns one output row at a time, streams W's row in 16-byte
//     loads and reduces the M dot products across the warp; best at 1-2 rows.
//   tensor cores (gemv_mma.cu): one CTA owns 16 weight rows, mma.m16n8k16 against up to 8
//     tokens; the instruction count per weight byte does not grow with the rows, so it wins from
//     3 rows on (an H200, weights from DRAM: 8 rows at 28-56% of the copy rate against 20-42%
//     on the CUDA cores).
//
// Fusions (each removes a kernel and its launch gap from every layer of a decode step):
//   input  kBf16     x: [M][in] bf16, as is.
//          kRmsNorm  x: the f32 residual stream [M][in]; each CTA computes RMSNorm(x) * norm_w
//                    into shared memory first (what add_rmsnorm would have written).
//   output kStoreF32 / kStoreBf16   y[m][n] = dot.
//          kAddF32   y[m][n] += dot: the residual add of o_proj / down_proj, into the f32 stream.
//          kSwiGlu   W has 2 * out rows (gate rows, then up rows); y[m][n] = silu(gate_n) * up_n
//                    in bf16: the MLP's activation, without writing gate/up.
//          kRopeKv   W is the fused QKV matrix; `out` counts rotation pairs, (Q heads + 2 KV
//                    heads) x head_dim / 2. Each pair's two rows are computed together, the bias
//                    added, Q and K rotated (rope_kv.cuh's arithmetic), Q stored in f32 and K, V
//                    written to their bf16 cache slots: the RoPE + KV-write kernel, fused.
// Paired outputs (kSwiGlu, kRopeKv) make a warp (CUDA cores) or a fragment row pair (tensor
// cores) compute the two rows that one output needs.
// Launched with programmatic dependent launch (pdl_launch.cuh): weights, constant through a step,
// are requested before waiting for the previous kernel. Shapes: in % 8 == 0 (16-byte rows).
#pragma once

#include "backend/cuda/cuda_common.cuh"
#include "backend/cuda/rope_kv.cuh"

namespace loom::cuda {

// Most rows (tokens) a product here takes.
constexpr int32_t kGemvMaxRows = 8;
// From this many rows on, kAuto takes the tensor-core kernel.
constexpr int32_t kGemvTensorCoreMinRows = 3;

// Which kernel launch_gemv() runs: kAuto picks by rows; the others force one (benchmarks and
// tests).
enum class GemvKernel { kAuto, kCudaCores, kTensorCores };
void set_gemv_kernel(GemvKernel kernel);
GemvKernel gemv_kernel_choice();
// Whether the CUDA-core kernel loads its first weights before waiting for the previous kernel
// (default on; off for comparisons).
void set_gemv_preload(bool on);
bool gemv_preload();

enum class GemvIn { kBf16, kRmsNorm };
enum class GemvOut { kStoreF32, kStoreBf16, kAddF32, kSwiGlu, kRopeKv };

struct GemvArgs {
  int32_t rows = 0;               // M in [1, kGemvMaxRows]
  int32_t in = 0;                 // K, a multiple of 8
  int32_t out = 0;                // N: outputs per row (kSwiGlu: W has 2N rows; kRopeKv: pairs)
  const bf16* w = nullptr;        // [out][in] (kSwiGlu / kRopeKv: [2 * out][in]), 16-byte aligned
  GemvIn input = GemvIn::kBf16;   //
  const bf16* x = nullptr;        // kBf16: [rows][in], 16-byte aligned
  const float* x_f32 = nullptr;   // kRmsNorm: [rows][in]
  const float* norm_w = nullptr;  // kRmsNorm: [in]
  float eps = 0.0f;               // kRmsNorm
  GemvOut output = GemvOut::kStoreF32;
  void* y = nullptr;  // [rows][out], f32 or bf16 as `output` says; unused by kRopeKv
  // kRopeKv: everything but .qkv and .num_tokens (the rows) of the RoPE + KV-write arguments;
  // the cache must be bf16.
  RopeKvArgs rope;
};

// Whether launch_gemv() takes these shapes (rows, and kRmsNorm's shared-memory copy of x).
bool gemv_supports(int32_t rows, int32_t in, GemvIn input);

void launch_gemv(const GemvArgs& args, cudaStream_t stream);

// The plain product: x [rows][in] bf16, y [rows][out] f32 (y_f32) or bf16.
void launch_gemv(const bf16* x, int32_t rows, int32_t in, const bf16* w, int32_t out, void* y,
                 bool y_f32, cudaStream_t stream);

}  // namespace loom::cuda
