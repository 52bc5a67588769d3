// Internal: integer matmul kernels for the 32-value block types (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0).
//
// Every weight value is written w = dw * q + mw per block, q an integer (unsigned 0..31 with the
// offset folded into mw = -8 dw / -16 dw / -128 dw, or signed -127..127 for Q8_0 where the ISA can
// multiply signed by signed). Activations are quantized per block of 32 as Q8_0 does (q = round(x /
// d), d = max|x| / 127) with d kept in float and s = d * sum(q). One output element is then
//   y = sum_b (dw_b * d_b) * isum_b  +  sum_b mw_b * s_b,      isum_b = sum_j qw_j * qa_j,
// accumulated in a fixed order per ISA (block order, one SIMD reduction tree), whatever the tile
// or thread that computes it: this is what makes matmul batch invariant.
//
// Weight columns and activation rows are first unpacked into a per-ISA "panel" layout; the gemm
// functions then compute y[nrows][ncols] for a panel of ncols weight columns.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/dtype.h"

namespace loom::cpu {

static inline int64_t round_up(int64_t v, int64_t to) {
  return (v + to - 1) / to * to;
}

namespace q32 {

bool is_q32(DType type);

// Natural layout (scalar and AVX2). Activation row: int8 q[k] | float d[pad8(nb)] | float
// s[pad8(nb)]. Weight column: q[k] (uint8, int8 for Q8_0) | float dw[pad8(nb)] | float
// mw[pad8(nb)]. Sizes are multiples of 64 bytes; padding is zero.
size_t act_row_bytes(int64_t k);
size_t col_bytes(int64_t k);
void pack_act(const float* x, int64_t k, uint8_t* dst, uint8_t* scratch);  // scratch unused
void pack_col(DType type, const void* row, int64_t k, uint8_t* dst, uint8_t* scratch = nullptr);
void gemm(DType type, const uint8_t* panel, int64_t ncols, const uint8_t* act, int64_t nrows,
          int64_t k, float* y, int64_t ldy);

// 16-bit activations (ActivationPrecision::kInt16): per block of 32, d = max|x| / 32767,
// q = round(x / d) (ties to even), s = d * sum(q), the same combination as above. Weights use the
// 8-bit panels unchanged and are widened to int16 by the gemm. Natural activation row layout:
// int16 q[k] | float d[pad8(nb)] | float s[pad8(nb)], a multiple of 64 bytes, padding zero.
// Every block's isum is exact in int32: 32 * 32767 * 255 < 2^31.
size_t act16_row_bytes(int64_t k);
void pack_act16(const float* x, int64_t k, uint8_t* dst, uint8_t* scratch);  // scratch unused
void gemm16(DType type, const uint8_t* panel, int64_t ncols, const uint8_t* act, int64_t nrows,
            int64_t k, float* y, int64_t ldy);

}  // namespace q32

namespace avx2 {
void q32_pack_col(DType type, const void* row, int64_t k, uint8_t* dst, uint8_t* scratch);
void q32_gemm(DType type, const uint8_t* panel, int64_t ncols, const uint8_t* act, int64_t nrows,
              int64_t k, float* y, int64_t ldy);
// 16-bit activations: q32::pack_act16 rows times q32_pack_col panels.
void q32_gemm16(DType type, const uint8_t* panel, int64_t ncols, const uint8_t* act, int64_t nrows,
                int64_t k, float* y, int64_t ldy);
}  // namespace avx2

// AVX-512 layout: k is walked in steps of 64 values (2 blocks, zero-padded to an even count).
// Each step holds 64 bytes of q ordered [b0 0..15 | b1 0..15 | b0 16..31 | b1 16..31] (so one
// load of two Q4 blocks' nibbles lines up) then 16 float scales, one per int32 lane of vpdpbusd
// ([d0 x4 | d1 x4 | d0 x4 | d1 x4]). After the steps: s (activations) or mw (weights),
// pad16(nb) floats.
namespace avx512 {
size_t q32_act_row_bytes(int64_t k);
size_t q32_col_bytes(int64_t k);
// scratch: q32::act_row_bytes(k) bytes (the natural layout is made first, then reordered).
void q32_pack_act(const float* x, int64_t k, uint8_t* dst, uint8_t* scratch);
void q32_pack_col(DType type, const void* row, int64_t k, uint8_t* dst, uint8_t* scratch);
void q32_gemm(DType type, const uint8_t* panel, int64_t ncols, const uint8_t* act, int64_t nrows,
              int64_t k, float* y, int64_t ldy);
// The same products with weights decoded from the raw rows (w, w_stride bytes apart) in
// registers, for few activation rows. Returns false (nothing done) if k is too long for it.
bool q32_gemm_direct(DType type, const uint8_t* w, size_t w_stride, int64_t ncols,
                     const uint8_t* act, int64_t nrows, int64_t k, float* y, int64_t ldy);

// 16-bit activations (q32_int16_avx512.cpp). The activation step is 192 bytes: two vectors of
// 32 int16 (A0 = values [b0 0..7 | b1 0..7 | b0 16..23 | b1 16..23], A1 = [b0 8..15 | b1 8..15 |
// b0 24..31 | b1 24..31]) then the 16 lane scales; s after the steps, pad16(nb) floats. Weight
// panels are q32_pack_col's.
size_t q32_act16_row_bytes(int64_t k);
void q32_pack_act16(const float* x, int64_t k, uint8_t* dst, uint8_t* scratch);
void q32_gemm16(DType type, const uint8_t* panel, int64_t ncols, const uint8_t* act, int64_t nrows,
                int64_t k, float* y, int64_t ldy);
bool q32_gemm16_direct(DType type, const uint8_t* w, size_t w_stride, int64_t ncols,
                       const uint8_t* act, int64_t nrows, int64_t k, float* y, int64_t ldy);
}  // namespace avx512

}  // namespace loom::cpu
