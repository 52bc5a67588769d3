// Matrix multiplication against weight tensors of any supported type (quant.h), the CPU
// backend's hot path.
#pragma once

#include <cstdint>

#include "model/tensor.h"
#include "util/result.h"

namespace loom::cpu {

// y[m][n_out] = x[m][k] * W^T, W = w with ne = {k, n_out} (rows of type w.type, row-major).
// x and y are dense row-major float; y must not alias x. Quantized weights multiply activations
// quantized per row to Q8_0-style blocks (32-value types; 8 or 16 bits, activation_precision())
// or Q8_K (k-quants) with integer dot products; float weights use float FMA.
// Batch invariant: row i of y is bit-identical whatever m, the other rows of x and the thread
// count are (for a given active_isa()). Runs on omp_get_max_threads() threads.
void matmul(const TensorView& w, const float* x, int64_t m, float* y);

// out[n][hidden] = rows ids[0..n) of table (ne = {hidden, vocab}), dequantized. An id outside
// [0, vocab) is an input error: nothing is written past the rows checked so far.
Status embedding_rows(const TensorView& table, const int32_t* ids, int64_t n, float* out);

// How matmul quantizes activations for the 32-value block weight types (Q4_0, Q4_1, Q5_0, Q5_1,
// Q8_0): kInt8 (per 32 values d = max|x| / 127, 8-bit integer dot products, fastest) or kInt16
// (d = max|x| / 32767, 16-bit integer dot products: about 250x less activation rounding error).
// K-quant and float weights are unaffected. Process-wide; the default is kInt8, or
// LOOM_CPU_ACT_PRECISION=int8|int16 read once at first use (an unknown value logs a warning and
// keeps int8). Batch invariance holds in both modes. Not thread-safe against running kernels.
enum class ActivationPrecision { kInt8, kInt16 };
void set_activation_precision(ActivationPrecision p);
ActivationPrecision activation_precision();
const char* activation_precision_name(ActivationPrecision p);

// Threads used by the kernels (OpenMP); n <= 0 restores the default (OMP_NUM_THREADS or cores).
void set_num_threads(int n);
int num_threads();

}  // namespace loom::cpu
