// Formats of the CPU KV cache's rows and their scalar quantize / dequantize code.
//
// One row is one token's K (or V) for one KV head: head_dim values. Every row is quantized on its
// own, when write_kv stores it, with scales of its own ("per token per head"). Per-block scales
// would need the whole block before any row could be stored, and requantizing a block as it fills
// would make a row's value depend on later tokens and on how prefill was chunked, which breaks
// batch and chunk invariance. Row-local scales keep every stored row a pure function of its floats.
//
//   f16   head_dim x 2 bytes.
//   int8  head_dim x int8 (symmetric, q in [-127, 127]), + 1 f16 scale:  x = q * scale.
//   int4  head_dim / 2 bytes, + per group of kKvInt4Group values an f16 (scale, min) pair:
//         x = min + q * scale, q in [0, 15]. In each 32-value chunk, byte i holds value i in its
//         low nibble and value i + 16 in its high nibble (one 16-byte load unpacks 32 values).
// Row bytes for head_dim 64: f16 128, int8 66 (1.94x fewer), int4 40 (3.2x fewer).
//
// Scales are rounded to f16 *upwards* (and int4 mins downwards), so no value is ever clamped:
// the error of every value is at most scale / 2 of its group (the format's error bound).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "util/result.h"

namespace loom::cpu {

enum class KvDtype : int32_t { kF16 = 0, kInt8 = 1, kInt4 = 2 };

// int4 values per (scale, min) pair. 32 rather than a whole 64-value row: keys have outlier
// channels, and halving the group measurably improves greedy agreement on the default model
// (docs/benchmarks-kvquant.md) for 8 more bytes per row.
constexpr int32_t kKvInt4Group = 32;

const char* kv_dtype_name(KvDtype d);
Result<KvDtype> parse_kv_dtype(const std::string& s);  // "f16", "int8", "int4"

// Bytes of one row's values, and of its scale parameters, for `head_dim` values.
size_t kv_row_data_bytes(KvDtype d, int32_t head_dim);
size_t kv_row_param_bytes(KvDtype d, int32_t head_dim);

// Whether the format can store rows of `head_dim` values (int4 needs whole 32-value chunks).
bool kv_dtype_supports(KvDtype d, int32_t head_dim);

// int8: q[n], *scale (f16 bits). Any n >= 1.
void quantize_row_int8(const float* x, int32_t n, int8_t* q, uint16_t* scale);
void dequantize_row_int8(const int8_t* q, uint16_t scale, int32_t n, float* x);

// int4: q[n / 2] packed as above, params[n / kKvInt4Group][2] = (scale, min) as f16 bits.
// n must be a multiple of kKvInt4Group.
void quantize_row_int4(const float* x, int32_t n, uint8_t* q, uint16_t* params);
void dequantize_row_int4(const uint8_t* q, const uint16_t* params, int32_t n, float* x);

}  // namespace loom::cpu
