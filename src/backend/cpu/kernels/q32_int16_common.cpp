// Portable part of the 16-bit activation kernels (q32.h): activation quantization to int16 blocks
// and the scalar gemm against q32::pack_col panels.
#include <cmath>
#include <cstring>

#include "backend/cpu/kernels/blocks.h"
#include "backend/cpu/kernels/q32.h"

namespace loom::cpu::q32 {
namespace {

int64_t pad8_blocks(int64_t k) {
  return round_up(k / kQK, 8);
}

}  // namespace

size_t act16_row_bytes(int64_t k) {
  return static_cast<size_t>(round_up(2 * k + 8 * pad8_blocks(k), 64));
}

void pack_act16(const float* x, int64_t k, uint8_t* dst, uint8_t* /*scratch*/) {
  const int64_t nb = k / kQK, nb8 = pad8_blocks(k);
  auto* q = reinterpret_cast<int16_t*>(dst);
  auto* d = reinterpret_cast<float*>(dst + 2 * k);
  float* s = d + nb8;
  std::memset(d, 0, static_cast<size_t>(2 * nb8) * sizeof(float));
  for (int64_t b = 0; b < nb; ++b) {
    const float* xb = x + b * kQK;
    int16_t* qb = q + b * kQK;
    float amax = 0.0f;
    for (int j = 0; j < kQK; ++j) amax = std::fmax(amax, std::fabs(xb[j]));
    const float db = amax / 32767.0f;
    const float id = db != 0.0f ? 1.0f / db : 0.0f;
    int sum = 0;
    for (int j = 0; j < kQK; ++j) {
      // |x * id| <= 32767 up to one rounding of the product, so the result stays in int16.
      qb[j] = static_cast<int16_t>(std::nearbyintf(xb[j] * id));  // ties to even, as SIMD
      sum += qb[j];
    }
    d[b] = db;
    s[b] = db * static_cast<float>(sum);
  }
}

void gemm16(DType type, const uint8_t* panel, int64_t ncols, const uint8_t* act, int64_t nrows,
            int64_t k, float* y, int64_t ldy) {
  const int64_t nb = k / kQK, nb8 = pad8_blocks(k);
  const size_t w_stride = col_bytes(k), a_stride = act16_row_bytes(k);
  const bool signed_w = type == DType::kQ8_0;
  for (int64_t i = 0; i < nrows; ++i) {
    const uint8_t* a = act + static_cast<size_t>(i) * a_stride;
    const auto* qa = reinterpret_cast<const int16_t*>(a);
    const auto* da = reinterpret_cast<const float*>(a + 2 * k);
    const float* sa = da + nb8;
    for (int64_t j = 0; j < ncols; ++j) {
      const uint8_t* w = panel + static_cast<size_t>(j) * w_stride;
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
