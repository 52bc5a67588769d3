// Host references for the GPU KV cache, written from the format's definition
// (backend/cuda/kv_cache_format.h) and independent of the kernels and of the format header's
// offset arithmetic: scalar f16 / e4m3 decoders, the block layout, a row reader that
// dequantizes, and a float64 causal attention over the values a downloaded cache holds.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <map>
#include <vector>

#include "backend/cuda/kv_cache_format.h"
#include "cuda/cuda_test_util.h"

namespace loom::testing {

inline float half_bits_to_float(uint16_t h) {
  const int exp = (h >> 10) & 0x1f, man = h & 0x3ff;
  if (exp == 31) return man ? NAN : ((h >> 15) ? -INFINITY : INFINITY);
  const float v = exp == 0 ? std::ldexp(static_cast<float>(man), -24)  // subnormal: man * 2^-24
                           : std::ldexp(static_cast<float>(man + 1024), exp - 25);
  return (h >> 15) ? -v : v;
}

// e4m3 (OCP FP8, as __nv_fp8_e4m3): bias 7, no infinities, S.1111.111 is NaN, max 448.
inline float e4m3_to_float(uint8_t b) {
  const int exp = (b >> 3) & 0xf, man = b & 7;
  if (exp == 15 && man == 7) return NAN;
  const float v = exp == 0
                      ? std::ldexp(static_cast<float>(man), -9)             // man/8 * 2^-6
                      : std::ldexp(static_cast<float>(man + 8), exp - 10);  // (1+man/8) 2^(e-7)
  return (b >> 7) ? -v : v;
}

// Byte positions of the documented block layout: all values of a block, then one f16 scale per
// row (quantized dtypes), the block padded to 16 bytes.
struct KvLayout {
  int32_t L, KVH, D, bs;
  cuda::KvCacheDtype dtype;
  int64_t vb() const { return dtype == cuda::KvCacheDtype::kBf16 ? 2 : 1; }
  int64_t rows() const { return int64_t{L} * 2 * KVH * bs; }
  int64_t block_bytes() const {
    if (dtype == cuda::KvCacheDtype::kBf16) return rows() * D * 2;
    return (rows() * (D + 2) + 15) / 16 * 16;
  }
  int64_t row(int32_t layer, int32_t kv, int32_t head, int32_t slot) const {
    return ((int64_t{layer} * 2 + kv) * KVH + head) * bs + slot;
  }
  int64_t value_at(int64_t block, int32_t layer, int32_t kv, int32_t head, int32_t slot) const {
    return block * block_bytes() + row(layer, kv, head, slot) * D * vb();
  }
  int64_t scale_at(int64_t block, int32_t layer, int32_t kv, int32_t head, int32_t slot) const {
    return block * block_bytes() + rows() * D + row(layer, kv, head, slot) * 2;
  }
};

inline KvLayout layout_of(const cuda::KvCacheShape& s) {
  return KvLayout{s.num_layers, s.num_kv_heads, s.head_dim, s.block_size, s.dtype};
}

// One row of a downloaded cache as floats (dequantized), and its scale (1 for bf16).
inline std::vector<float> read_row(const std::vector<uint8_t>& cache, const KvLayout& lay,
                                   int64_t block, int32_t layer, int32_t kv, int32_t head,
                                   int32_t slot, float* scale_out = nullptr) {
  std::vector<float> out(lay.D);
  const uint8_t* v = cache.data() + lay.value_at(block, layer, kv, head, slot);
  if (lay.dtype == cuda::KvCacheDtype::kBf16) {
    for (int d = 0; d < lay.D; ++d) {
      uint16_t b;
      std::memcpy(&b, v + 2 * d, 2);
      out[d] = from_bf16(b);
    }
    if (scale_out) *scale_out = 1.0f;
    return out;
  }
  uint16_t sb;
  std::memcpy(&sb, cache.data() + lay.scale_at(block, layer, kv, head, slot), 2);
  const float scale = half_bits_to_float(sb);
  for (int d = 0; d < lay.D; ++d) {
    const float q = lay.dtype == cuda::KvCacheDtype::kFp8
                        ? e4m3_to_float(v[d])
                        : static_cast<float>(static_cast<int8_t>(v[d]));
    out[d] = q * scale;
  }
  if (scale_out) *scale_out = scale;
  return out;
}

// Causal grouped-query attention in float64 over a downloaded cache: token t (of sequence
// seq_of_token[t]) attends to keys [0, positions[t]] of its sequence, read through
// tables[seq * max_blocks + key / block_size]. q: [T][num_heads][D] with RoPE applied, not yet
// scaled. Returns [T][num_heads][D]. Each sequence's rows are read once.
inline std::vector<double> reference_paged_attention(
    const std::vector<uint8_t>& cache, const KvLayout& lay, int32_t layer,
    const std::vector<float>& q, int32_t num_heads, float scale,
    const std::vector<int32_t>& seq_of_token, const std::vector<int32_t>& positions,
    const std::vector<int32_t>& tables, int32_t max_blocks) {
  const int32_t T = static_cast<int32_t>(positions.size()), D = lay.D, KVH = lay.KVH;
  const int32_t G = num_heads / KVH;
  std::map<int32_t, std::vector<int32_t>> tokens_of;  // sequence -> its tokens
  for (int32_t t = 0; t < T; ++t) tokens_of[seq_of_token[t]].push_back(t);
  std::vector<double> ref(static_cast<size_t>(T) * num_heads * D, 0.0);
  for (const auto& [s, tokens] : tokens_of) {
    int32_t n_ctx = 0;
    for (int32_t t : tokens) n_ctx = std::max(n_ctx, positions[t] + 1);
    for (int32_t kvh = 0; kvh < KVH; ++kvh) {
      std::vector<std::vector<float>> K(n_ctx), V(n_ctx);
      for (int32_t k = 0; k < n_ctx; ++k) {
        const int64_t blk = tables[s * max_blocks + k / lay.bs];
        K[k] = read_row(cache, lay, blk, layer, 0, kvh, k % lay.bs);
        V[k] = read_row(cache, lay, blk, layer, 1, kvh, k % lay.bs);
      }
      for (int32_t t : tokens) {
        const int32_t n = positions[t] + 1;
        for (int32_t h = kvh * G; h < (kvh + 1) * G; ++h) {
          std::vector<double> sc(n);
          double mx = -1e300;
          for (int32_t k = 0; k < n; ++k) {
            double dot = 0;
            for (int d = 0; d < D; ++d) dot += double(q[(t * num_heads + h) * D + d]) * K[k][d];
            sc[k] = dot * scale;
            mx = std::max(mx, sc[k]);
          }
          double sum = 0;
          for (double& v : sc) sum += (v = std::exp(v - mx));
          for (int32_t k = 0; k < n; ++k)
            for (int d = 0; d < D; ++d) ref[(t * num_heads + h) * D + d] += sc[k] / sum * V[k][d];
        }
      }
    }
  }
  return ref;
}

}  // namespace loom::testing
