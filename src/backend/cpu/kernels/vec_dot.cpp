// Portable dot products of one weight row with one quantized activation row (quant.h).
// Integer sums per block, then one float multiply-add per block: the same arithmetic the SIMD
// kernels do, so these also serve as their reference in tests.
#include <cstring>

#include "backend/cpu/kernels/blocks.h"
#include "backend/cpu/kernels/fp16.h"
#include "backend/cpu/kernels/quant.h"
#include "util/check.h"

namespace loom::cpu {
namespace {

// Integer values of one 32-value block as unsigned q, and the offset to subtract (x = d*(q-off))
// or the min (x = d*q + m) of the _1 types.
template <typename Block>
void nibbles(const Block& b, int* q) {
  for (int j = 0; j < kQK / 2; ++j) {
    q[j] = b.qs[j] & 0xF;
    q[j + kQK / 2] = b.qs[j] >> 4;
  }
}

template <typename Block>
void fifth_bits(const Block& b, int* q) {
  uint32_t qh;
  std::memcpy(&qh, b.qh, 4);
  for (int j = 0; j < kQK / 2; ++j) {
    q[j] |= static_cast<int>(((qh >> j) & 1) << 4);
    q[j + kQK / 2] |= static_cast<int>(((qh >> (j + 16)) & 1) << 4);
  }
}

int dot32(const int* q, const int8_t* a) {
  int sum = 0;
  for (int j = 0; j < kQK; ++j) sum += q[j] * a[j];
  return sum;
}

// Offset types (Q4_0, Q5_0) against Q8_0: sum (q - off) * a.
template <typename Block, bool kFiveBit>
float dot_offset(const Block* w, const BlockQ8_0* a, int64_t nb, int off) {
  float acc = 0.0f;
  int q[kQK];
  for (int64_t i = 0; i < nb; ++i) {
    nibbles(w[i], q);
    if constexpr (kFiveBit) fifth_bits(w[i], q);
    for (int& v : q) v -= off;
    acc += static_cast<float>(dot32(q, a[i].qs)) * (fp16_to_fp32(w[i].d) * fp16_to_fp32(a[i].d));
  }
  return acc;
}

// Min types (Q4_1, Q5_1) against Q8_1: d_w d_a sum(q a) + m_w s_a.
template <typename Block, bool kFiveBit>
float dot_min(const Block* w, const BlockQ8_1* a, int64_t nb) {
  float acc = 0.0f;
  int q[kQK];
  for (int64_t i = 0; i < nb; ++i) {
    nibbles(w[i], q);
    if constexpr (kFiveBit) fifth_bits(w[i], q);
    acc += static_cast<float>(dot32(q, a[i].qs)) * (fp16_to_fp32(w[i].d) * fp16_to_fp32(a[i].d)) +
           fp16_to_fp32(w[i].m) * fp16_to_fp32(a[i].s);
  }
  return acc;
}

float dot_q8_0(const BlockQ8_0* w, const BlockQ8_0* a, int64_t nb) {
  float acc = 0.0f;
  for (int64_t i = 0; i < nb; ++i) {
    int sum = 0;
    for (int j = 0; j < kQK; ++j) sum += w[i].qs[j] * a[i].qs[j];
    acc += static_cast<float>(sum) * (fp16_to_fp32(w[i].d) * fp16_to_fp32(a[i].d));
  }
  return acc;
}

// Q4_K / Q5_K: per sub-block of 32, integer sum(q a) weighted by the 6-bit scale; the mins use
// the activation's 16-value sums.
template <typename Block, bool kFiveBit>
float dot_q45_k(const Block* w, const BlockQ8_K* a, int64_t nb) {
  float acc = 0.0f;
  for (int64_t i = 0; i < nb; ++i) {
    int32_t scaled = 0, mins = 0;
    for (int c = 0; c < 4; ++c) {
      const uint8_t* q = w[i].qs + 32 * c;
      for (int h = 0; h < 2; ++h) {
        const int sub = 2 * c + h;
        uint8_t sc, mn;
        k_scale_min(w[i].scales, sub, &sc, &mn);
        int32_t sum = 0;
        for (int l = 0; l < 32; ++l) {
          int v = h == 0 ? (q[l] & 0xF) : (q[l] >> 4);
          if constexpr (kFiveBit) v |= ((w[i].qh[l] >> sub) & 1) << 4;
          sum += v * a[i].qs[32 * sub + l];
        }
        scaled += sc * sum;
        mins += mn * (a[i].bsums[2 * sub] + a[i].bsums[2 * sub + 1]);
      }
    }
    acc += a[i].d * (fp16_to_fp32(w[i].d) * static_cast<float>(scaled) -
                     fp16_to_fp32(w[i].dmin) * static_cast<float>(mins));
  }
  return acc;
}

float dot_q6_k(const BlockQ6_K* w, const BlockQ8_K* a, int64_t nb) {
  float acc = 0.0f;
  for (int64_t i = 0; i < nb; ++i) {
    int q[kQKK];
    const uint8_t* ql = w[i].ql;
    const uint8_t* qh = w[i].qh;
    for (int half = 0; half < 2; ++half, ql += 64, qh += 32) {
      int* y = q + 128 * half;
      for (int l = 0; l < 32; ++l) {
        y[l] = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
        y[l + 32] = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
        y[l + 64] = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        y[l + 96] = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      }
    }
    int32_t sum = 0;
    for (int s = 0; s < 16; ++s) {
      int32_t part = 0;
      for (int l = 0; l < 16; ++l) part += q[16 * s + l] * a[i].qs[16 * s + l];
      sum += w[i].scales[s] * part;
    }
    acc += a[i].d * fp16_to_fp32(w[i].d) * static_cast<float>(sum);
  }
  return acc;
}

}  // namespace

DType vec_dot_partner(DType type) {
  switch (type) {
    case DType::kQ4_0:
    case DType::kQ5_0:
    case DType::kQ8_0:
      return DType::kQ8_0;
    case DType::kQ4_1:
    case DType::kQ5_1:
      return DType::kQ8_1;
    case DType::kQ4_K:
    case DType::kQ5_K:
    case DType::kQ6_K:
      return DType::kQ8_K;
    default:
      return DType::kF32;
  }
}

float vec_dot(DType type, const void* w, const void* a, int64_t n) {
  LOOM_CHECK(kernel_supports(type), "vec_dot: unsupported type %s", dtype_name(type));
  const int64_t nb = n / dtype_info(type).block_elems;
  LOOM_CHECK(nb * dtype_info(type).block_elems == n, "vec_dot: n=%lld", static_cast<long long>(n));
  switch (type) {
    case DType::kQ4_0:
      return dot_offset<BlockQ4_0, false>(static_cast<const BlockQ4_0*>(w),
                                          static_cast<const BlockQ8_0*>(a), nb, 8);
    case DType::kQ5_0:
      return dot_offset<BlockQ5_0, true>(static_cast<const BlockQ5_0*>(w),
                                         static_cast<const BlockQ8_0*>(a), nb, 16);
    case DType::kQ8_0:
      return dot_q8_0(static_cast<const BlockQ8_0*>(w), static_cast<const BlockQ8_0*>(a), nb);
    case DType::kQ4_1:
      return dot_min<BlockQ4_1, false>(static_cast<const BlockQ4_1*>(w),
                                       static_cast<const BlockQ8_1*>(a), nb);
    case DType::kQ5_1:
      return dot_min<BlockQ5_1, true>(static_cast<const BlockQ5_1*>(w),
                                      static_cast<const BlockQ8_1*>(a), nb);
    case DType::kQ4_K:
      return dot_q45_k<BlockQ4_K, false>(static_cast<const BlockQ4_K*>(w),
                                         static_cast<const BlockQ8_K*>(a), nb);
    case DType::kQ5_K:
      return dot_q45_k<BlockQ5_K, true>(static_cast<const BlockQ5_K*>(w),
                                        static_cast<const BlockQ8_K*>(a), nb);
    case DType::kQ6_K:
      return dot_q6_k(static_cast<const BlockQ6_K*>(w), static_cast<const BlockQ8_K*>(a), nb);
    default: {  // float weights against float activations
      const float* x = static_cast<const float*>(a);
      float acc = 0.0f;
      float buf[256];
      for (int64_t i = 0; i < n; i += 256) {
        const int64_t len = n - i < 256 ? n - i : 256;
        const size_t elem_bytes = static_cast<size_t>(dtype_info(type).block_bytes);
        dequantize_row(type, static_cast<const uint8_t*>(w) + i * elem_bytes, buf, len);
        for (int64_t j = 0; j < len; ++j) acc += buf[j] * x[i + j];
      }
      return acc;
    }
  }
}

}  // namespace loom::cpu
