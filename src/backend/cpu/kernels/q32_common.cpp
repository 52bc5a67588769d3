// Portable part of the 32-value block kernels (q32.h): activation quantization, weight unpacking
// to the natural layout, and the scalar gemm.
#include <cmath>
#include <cstring>

#include "backend/cpu/kernels/blocks.h"
#include "backend/cpu/kernels/fp16.h"
#include "backend/cpu/kernels/q32.h"

namespace loom::cpu::q32 {
namespace {

template <typename Block>
void nibbles(const Block& b, uint8_t* q) {
  for (int j = 0; j < kQK / 2; ++j) {
    q[j] = b.qs[j] & 0xF;
    q[j + kQK / 2] = b.qs[j] >> 4;
  }
}

template <typename Block>
void add_fifth_bits(const Block& b, uint8_t* q) {
  uint32_t qh;
  std::memcpy(&qh, b.qh, 4);
  for (int j = 0; j < kQK / 2; ++j) {
    q[j] |= static_cast<uint8_t>(((qh >> j) & 1) << 4);
    q[j + kQK / 2] |= static_cast<uint8_t>(((qh >> (j + 16)) & 1) << 4);
  }
}

int64_t pad8_blocks(int64_t k) {
  return round_up(k / kQK, 8);
}

}  // namespace

bool is_q32(DType type) {
  return type == DType::kQ4_0 || type == DType::kQ4_1 || type == DType::kQ5_0 ||
         type == DType::kQ5_1 || type == DType::kQ8_0;
}

size_t act_row_bytes(int64_t k) {
  return static_cast<size_t>(round_up(k + 8 * pad8_blocks(k), 64));
}

size_t col_bytes(int64_t k) {
  return act_row_bytes(k);
}

void pack_act(const float* x, int64_t k, uint8_t* dst, uint8_t* /*scratch*/) {
  const int64_t nb = k / kQK, nb8 = pad8_blocks(k);
  auto* q = reinterpret_cast<int8_t*>(dst);
  auto* d = reinterpret_cast<float*>(dst + k);
  float* s = d + nb8;
  std::memset(d, 0, static_cast<size_t>(2 * nb8) * sizeof(float));
  for (int64_t b = 0; b < nb; ++b) {
    const float* xb = x + b * kQK;
    int8_t* qb = q + b * kQK;
    float amax = 0.0f;
    for (int j = 0; j < kQK; ++j) amax = std::fmax(amax, std::fabs(xb[j]));
    const float db = amax / 127.0f;
    const float id = db != 0.0f ? 1.0f / db : 0.0f;
    int sum = 0;
    for (int j = 0; j < kQK; ++j) {
      qb[j] = static_cast<int8_t>(std::nearbyintf(xb[j] * id));  // ties to even, as SIMD
      sum += qb[j];
    }
    d[b] = db;
    s[b] = db * static_cast<float>(sum);
  }
}

void pack_col(DType type, const void* row, int64_t k, uint8_t* dst, uint8_t* /*scratch*/) {
  const int64_t nb = k / kQK, nb8 = pad8_blocks(k);
  uint8_t* q = dst;
  auto* dw = reinterpret_cast<float*>(dst + k);
  float* mw = dw + nb8;
  std::memset(dw, 0, static_cast<size_t>(2 * nb8) * sizeof(float));
  for (int64_t b = 0; b < nb; ++b) {
    uint8_t* qb = q + b * kQK;
    switch (type) {
      case DType::kQ4_0: {
        const auto& blk = static_cast<const BlockQ4_0*>(row)[b];
        nibbles(blk, qb);
        dw[b] = fp16_to_fp32(blk.d);
        mw[b] = -8.0f * dw[b];
        break;
      }
      case DType::kQ4_1: {
        const auto& blk = static_cast<const BlockQ4_1*>(row)[b];
        nibbles(blk, qb);
        dw[b] = fp16_to_fp32(blk.d);
        mw[b] = fp16_to_fp32(blk.m);
        break;
      }
      case DType::kQ5_0: {
        const auto& blk = static_cast<const BlockQ5_0*>(row)[b];
        nibbles(blk, qb);
        add_fifth_bits(blk, qb);
        dw[b] = fp16_to_fp32(blk.d);
        mw[b] = -16.0f * dw[b];
        break;
      }
      case DType::kQ5_1: {
        const auto& blk = static_cast<const BlockQ5_1*>(row)[b];
        nibbles(blk, qb);
        add_fifth_bits(blk, qb);
        dw[b] = fp16_to_fp32(blk.d);
        mw[b] = fp16_to_fp32(blk.m);
        break;
      }
      default: {  // Q8_0: signed q, no min
        const auto& blk = static_cast<const BlockQ8_0*>(row)[b];
        std::memcpy(qb, blk.qs, kQK);
        dw[b] = fp16_to_fp32(blk.d);
        break;
      }
    }
  }
}

void gemm(DType type, const uint8_t* panel, int64_t ncols, const uint8_t* act, int64_t nrows,
          int64_t k, float* y, int64_t ldy) {
  const int64_t nb = k / kQK, nb8 = pad8_blocks(k);
  const size_t stride = col_bytes(k);
  const bool signed_w = type == DType::kQ8_0;
  for (int64_t i = 0; i < nrows; ++i) {
    const uint8_t* a = act + static_cast<size_t>(i) * stride;
    const auto* qa = reinterpret_cast<const int8_t*>(a);
    const auto* da = reinterpret_cast<const float*>(a + k);
    const float* sa = da + nb8;
    for (int64_t j = 0; j < ncols; ++j) {
      const uint8_t* w = panel + static_cast<size_t>(j) * stride;
      const auto* dw = reinterpret_cast<const float*>(w + k);
      const float* mw = dw + nb8;
      float acc = 0.0f;
      for (int64_t b = 0; b < nb; ++b) {
        int32_t isum = 0;
        for (int l = 0; l < kQK; ++l) {
          const int wq = signed_w ? static_cast<int8_t>(w[b * kQK + l]) : w[b * kQK + l];
          isum += wq * qa[b * kQK + l];
        }
        acc += static_cast<float>(isum) * (dw[b] * da[b]);
      }
      float macc = 0.0f;
      for (int64_t b = 0; b < nb; ++b) macc += mw[b] * sa[b];
      y[i * ldy + j] = acc + macc;
    }
  }
}

}  // namespace loom::cpu::q32
