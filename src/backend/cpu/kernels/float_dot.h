// Internal: dot products of float-typed weight rows (F32, F16, BF16) with float activations.
// Each accumulates in a fixed order (for batch invariance); the SIMD versions differ from the
// scalar one only by rounding. The AVX-512 ISA uses the AVX2 version (float weights are not on
// the hot path of quantized models).
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace loom::cpu {
namespace avx2 {
float float_dot(DType type, const void* w, const float* x, int64_t n);
}  // namespace avx2
}  // namespace loom::cpu
