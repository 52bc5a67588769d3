// Dequantization of GGML tensor types and quantization of float activations.
// Rows are whole blocks: n is a multiple of the type's block size (core/dtype.h), checked.
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace loom::cpu {

// Whether dequantize_row / matmul / embedding_rows accept this weight type.
bool kernel_supports(DType type);

// dst[0..n) = the n values of the row `src` of type `type`.
void dequantize_row(DType type, const void* src, float* dst, int64_t n);

// GGML activation formats. Q8_0: per 32 values d = max|x| / 127, q = round(x / d), d stored fp16.
// Q8_1: as Q8_0 plus s = d * sum(q). Q8_K: per 256 values float d = max / -127 where max is the
// value of largest magnitude (so it maps to -127), plus the sums of each 16 q.
void quantize_row_q8_0(const float* x, void* dst, int64_t n);
void quantize_row_q8_1(const float* x, void* dst, int64_t n);
void quantize_row_q8_K(const float* x, void* dst, int64_t n);

// Dot product of one weight row (type `type`, n values) with an activation row already quantized
// to the partner type (Q8_0 for Q4_0/Q5_0/Q8_0, Q8_1 for Q4_1/Q5_1, Q8_K for Q4_K/Q5_K/Q6_K),
// portable reference code. Float weights (F32/F16/BF16) take float (F32) activations.
DType vec_dot_partner(DType type);
float vec_dot(DType type, const void* w, const void* a, int64_t n);

}  // namespace loom::cpu
