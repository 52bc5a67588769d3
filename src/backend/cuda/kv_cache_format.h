// The GPU KV cache's block format: bf16 values, or one byte per value (fp8 e4m3 or int8) with one
// f16 scale per row. Free of CUDA headers: the CLI sizes caches with it (`loom info`); the kernels
// (rope_kv.cu writes rows, attention.cu reads them) call the same offset functions on the device.
//
// A row is one token's K (or V) for one KV head: head_dim values. As on the CPU
// (backend/cpu/kv_quant.h), every row is quantized on its own, with a scale of its own, by the
// kernel that writes it: a stored row is a pure function of its floats, never of later tokens or
// of how a prefill was chunked, so batch, chunk and preemption invariance hold as for bf16.
//
// One block (all layers, K and V, scales included) is one contiguous byte range, so swaps and
// copy-on-write move it as a single copy:
//   values  [num_layers][2 (K, V)][num_kv_heads][block_size][head_dim]   2 (bf16) or 1 byte each
//   scales  [num_layers][2 (K, V)][num_kv_heads][block_size]             f16, quantized dtypes only
//   padding up to a multiple of 16 bytes, so every block's rows start 16-byte aligned.
// Keeping all values before all scales (rather than a scale after each row) keeps every row of
// head_dim (64 or 128) bytes 16-byte aligned for vector loads, whatever the block size.
//
//   bf16  x = value.
//   fp8   e4m3, symmetric: scale = absmax / 448 (448 = largest finite e4m3), x = fp8 * scale.
//   int8  symmetric: q = round(x / scale) in [-127, 127], scale = absmax / 127, x = q * scale.
// The scale is rounded *up* to f16 (never down), so |x / scale| never exceeds 448 (fp8) or 127
// (int8): no value saturates, and each value's error stays within half a step of its row (int8:
// scale / 2; fp8: 2^-4 of the value, or scale * 2^-10 among e4m3's subnormals). A row of zeros
// has scale 0 and values 0, and dequantizes to exact zeros.
//
// Why f16 scales and not f32: a row is head_dim bytes, so the scale's size is the format's whole
// overhead. At head_dim 64 (Llama-3.2-1B, SmolLM2) a row takes 64 + 2 = 66 bytes with an f16
// scale, 1.94x fewer than bf16's 128, against 68 bytes (1.88x) with f32. Rounding the scale up
// costs at most 2^-10 of the row's step. f16 covers absmax up to 65504 * 127 ~ 8e6, far beyond
// any K or V; rows with absmax below ~0.03 get a subnormal f16 scale, which rounding up keeps
// valid (the row then uses a little less than the full code range).
#pragma once

#include <cstdint>
#include <string>

#include "util/result.h"

#if defined(__CUDACC__)
#define LOOM_KV_HD __host__ __device__
#else
#define LOOM_KV_HD
#endif

namespace loom::cuda {

enum class KvCacheDtype : int32_t { kBf16 = 0, kFp8 = 1, kInt8 = 2 };

// "bf16", "fp8", "int8".
const char* kv_cache_dtype_name(KvCacheDtype d);
// "bf16", "f16" and "auto" name the 16-bit default (bf16 on the GPU); "fp8" (e4m3) and "int8".
// int4 (a CPU format) and anything else is an error naming the accepted names.
Result<KvCacheDtype> parse_kv_cache_dtype(const std::string& s);

struct KvCacheShape {
  int32_t num_layers = 0;
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;
  int32_t block_size = 16;
  KvCacheDtype dtype = KvCacheDtype::kBf16;

  LOOM_KV_HD int64_t head_elems() const { return int64_t{block_size} * head_dim; }
  // Values of one block (all layers, K and V).
  LOOM_KV_HD int64_t block_elems() const {
    return int64_t{num_layers} * 2 * num_kv_heads * head_elems();
  }
  // Rows of one block; each has one scale in the quantized dtypes.
  LOOM_KV_HD int64_t block_rows() const {
    return int64_t{num_layers} * 2 * num_kv_heads * block_size;
  }
  LOOM_KV_HD int32_t value_bytes() const { return dtype == KvCacheDtype::kBf16 ? 2 : 1; }
  LOOM_KV_HD int32_t scale_bytes() const { return dtype == KvCacheDtype::kBf16 ? 0 : 2; }
  LOOM_KV_HD bool quantized() const { return dtype != KvCacheDtype::kBf16; }
  // Bytes from a block's start to its scales.
  LOOM_KV_HD int64_t scales_offset() const { return block_elems() * value_bytes(); }
  // The exact byte size of one block: the pool's stride, the unit of swaps and copies.
  LOOM_KV_HD int64_t block_bytes() const {
    if (!quantized()) return scales_offset();
    return (scales_offset() + block_rows() * scale_bytes() + 15) / 16 * 16;
  }
  // Index, within its block, of the row (layer, K=0 / V=1, kv head, token offset in block).
  LOOM_KV_HD int64_t row_in_block(int32_t layer, int32_t kv, int32_t head,
                                  int32_t slot_in_block) const {
    return ((int64_t{layer} * 2 + kv) * num_kv_heads + head) * block_size + slot_in_block;
  }
  // bf16 only: element offset of (block, layer, kv, head, slot, dim 0) in a bf16 array (a bf16
  // block is block_elems() values).
  LOOM_KV_HD int64_t offset(int64_t block, int32_t layer, int32_t kv, int32_t head,
                            int32_t slot_in_block) const {
    return block * block_elems() + row_in_block(layer, kv, head, slot_in_block) * head_dim;
  }
  // Any dtype: byte offset from the pool's start of a row's first value, and of its scale.
  LOOM_KV_HD int64_t value_byte_offset(int64_t block, int32_t layer, int32_t kv, int32_t head,
                                       int32_t slot_in_block) const {
    return block * block_bytes() +
           row_in_block(layer, kv, head, slot_in_block) * head_dim * value_bytes();
  }
  LOOM_KV_HD int64_t scale_byte_offset(int64_t block, int32_t layer, int32_t kv, int32_t head,
                                       int32_t slot_in_block) const {
    return block * block_bytes() + scales_offset() +
           row_in_block(layer, kv, head, slot_in_block) * scale_bytes();
  }
};

}  // namespace loom::cuda
