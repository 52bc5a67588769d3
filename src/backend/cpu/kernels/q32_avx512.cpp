// AVX-512 VNNI gemm for the 32-value block types (q32.h), 8-bit activations.
// One vpdpbusd multiplies 64 unsigned weight bytes by 64 signed activation bytes (two blocks)
// into 16 int32 lanes, each lane inside one block; lanes are converted to float and scaled by
// dw * da of their block. Q8_0 weights are made unsigned by flipping the sign bit (q + 128); the
// extra 128 * sum(qa) goes into the min term with mw = -128 dw.
//
// Two ways to feed weights, with identical arithmetic per output element (batch invariance):
// for a few activation rows the raw GGUF blocks are decoded in registers at each step ("direct",
// weights streamed once); for more rows a panel of columns is decoded once into memory and
// reused by every row tile (q32_avx512_tiles.h).

// GCC 12 warns falsely about the undefined upper halves inside its own AVX-512 intrinsics.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <cstring>

#include "backend/cpu/kernels/blocks.h"
#include "backend/cpu/kernels/q32.h"
#include "backend/cpu/kernels/q32_avx512_tiles.h"

namespace loom::cpu::avx512 {
namespace {

// Activation step: 64 signed q bytes in the weights' byte order, then 16 float lane scales.
struct Int8Act {
  static constexpr size_t kStepBytes = 128;
  static constexpr size_t kScaleOffset = 64;
  using Weights = __m512i;
  static inline Weights weights(__m512i wq) { return wq; }
  static inline __m512i dot(Weights w, const uint8_t* a) {
    return _mm512_dpbusd_epi32(_mm512_setzero_si512(), w, _mm512_load_si512(a));
  }
};

Geometry geometry8(int64_t k) {
  return geometry(k, Int8Act::kStepBytes);
}

}  // namespace

size_t q32_act_row_bytes(int64_t k) {
  return geometry8(k).act_stride;
}
size_t q32_col_bytes(int64_t k) {
  return geometry8(k).stride;
}

// Quantizes as q32::pack_act does (same float operations, ties to even), straight into steps.
void q32_pack_act(const float* x, int64_t k, uint8_t* dst, uint8_t* /*scratch*/) {
  const Geometry g = geometry8(k);
  auto* s = reinterpret_cast<float*>(dst + g.act_tail);
  std::memset(s + (g.nb & ~1), 0, static_cast<size_t>(g.nb16 - (g.nb & ~1)) * sizeof(float));
  const __m512 sign = _mm512_set1_ps(-0.0f);
  for (int64_t t = 0; t < g.num_steps; ++t) {
    uint8_t* step = dst + t * Int8Act::kStepBytes;
    float d[2] = {0.0f, 0.0f};
    for (int h = 0; h < 2; ++h) {
      const int64_t b = 2 * t + h;
      if (b >= g.nb) {
        _mm_store_si128(reinterpret_cast<__m128i*>(step + 16 * h), _mm_setzero_si128());
        _mm_store_si128(reinterpret_cast<__m128i*>(step + 32 + 16 * h), _mm_setzero_si128());
        s[b] = 0.0f;
        continue;
      }
      const __m512 v0 = _mm512_loadu_ps(x + b * kQK);
      const __m512 v1 = _mm512_loadu_ps(x + b * kQK + 16);
      const float amax = _mm512_reduce_max_ps(
          _mm512_max_ps(_mm512_andnot_ps(sign, v0), _mm512_andnot_ps(sign, v1)));
      d[h] = amax / 127.0f;
      const __m512 id = _mm512_set1_ps(d[h] != 0.0f ? 1.0f / d[h] : 0.0f);
      const __m512i q0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, id));  // MXCSR: nearest even
      const __m512i q1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, id));
      _mm_store_si128(reinterpret_cast<__m128i*>(step + 16 * h), _mm512_cvtepi32_epi8(q0));
      _mm_store_si128(reinterpret_cast<__m128i*>(step + 32 + 16 * h), _mm512_cvtepi32_epi8(q1));
      s[b] = d[h] * static_cast<float>(_mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1)));
    }
    _mm512_store_ps(step + Int8Act::kScaleOffset,
                    spread_scales(_mm_setr_ps(d[0], d[1], 0.0f, 0.0f)));
  }
}

void q32_pack_col(DType type, const void* row, int64_t k, uint8_t* dst, uint8_t* /*scratch*/) {
  const Geometry g = geometry8(k);
  const auto* r = static_cast<const uint8_t*>(row);
  switch (type) {
    case DType::kQ4_0:
      return pack_col_typed<DType::kQ4_0>(g, r, dst);
    case DType::kQ4_1:
      return pack_col_typed<DType::kQ4_1>(g, r, dst);
    case DType::kQ5_0:
      return pack_col_typed<DType::kQ5_0>(g, r, dst);
    case DType::kQ5_1:
      return pack_col_typed<DType::kQ5_1>(g, r, dst);
    default:
      return pack_col_typed<DType::kQ8_0>(g, r, dst);
  }
}

void q32_gemm(DType /*type*/, const uint8_t* panel, int64_t ncols, const uint8_t* act,
              int64_t nrows, int64_t k, float* y, int64_t ldy) {
  gemm_panel<Int8Act>(geometry8(k), panel, ncols, act, nrows, y, ldy);
}

bool q32_gemm_direct(DType type, const uint8_t* w, size_t w_stride, int64_t ncols,
                     const uint8_t* act, int64_t nrows, int64_t k, float* y, int64_t ldy) {
  return gemm_direct<Int8Act>(type, geometry8(k), w, w_stride, ncols, act, nrows, y, ldy);
}

}  // namespace loom::cpu::avx512
