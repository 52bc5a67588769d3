// AVX-512 VNNI gemm for the 32-value block types (q32.h), 16-bit activations.
// Weights keep the 8-bit panel layout (q32_avx512_tiles.h) and are widened to int16 in registers:
// unpacklo/hi_epi8 with zero splits a step's 64 bytes W into
//   W0 = [b0 0..7 | b1 0..7 | b0 16..23 | b1 16..23],  W1 = [b0 8..15 | b1 8..15 | b0 24..31 | ...]
// (bytes 0..7 and 8..15 of each 128-bit lane), and the activation step stores its int16 values in
// the same two orders (A0, A1). Two vpdpwssd (A0*W0 then A1*W1, pairs of int16 products into
// int32) leave int32 lane l with 4 products of one block, lanes [b0 x4 | b1 x4 | b0 x4 | b1 x4]:
// the 8-bit lane scales apply unchanged. Exactness: |qa| <= 32767, weights 0..255 (Q8_0 is
// q + 128 as in the 8-bit path), so a lane holds at most 4 * 32767 * 255 < 2^31.

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

// Activation step (2 blocks): A0 (32 int16), A1 (32 int16), 16 float lane scales.
struct Int16Act {
  static constexpr size_t kStepBytes = 192;
  static constexpr size_t kScaleOffset = 128;
  struct Weights {
    __m512i lo, hi;
  };
  static inline Weights weights(__m512i wq) {
    const __m512i zero = _mm512_setzero_si512();
    return {_mm512_unpacklo_epi8(wq, zero), _mm512_unpackhi_epi8(wq, zero)};
  }
  static inline __m512i dot(const Weights& w, const uint8_t* a) {
    const __m512i lo = _mm512_dpwssd_epi32(_mm512_setzero_si512(), w.lo, _mm512_load_si512(a));
    return _mm512_dpwssd_epi32(lo, w.hi, _mm512_load_si512(a + 64));
  }
};

Geometry geometry16(int64_t k) {
  return geometry(k, Int16Act::kStepBytes);
}

}  // namespace

size_t q32_act16_row_bytes(int64_t k) {
  return geometry16(k).act_stride;
}

// Quantizes as q32::pack_act16 does (same float operations, ties to even), straight into steps.
void q32_pack_act16(const float* x, int64_t k, uint8_t* dst, uint8_t* /*scratch*/) {
  const Geometry g = geometry16(k);
  auto* s = reinterpret_cast<float*>(dst + g.act_tail);
  std::memset(s + (g.nb & ~1), 0, static_cast<size_t>(g.nb16 - (g.nb & ~1)) * sizeof(float));
  const __m512 sign = _mm512_set1_ps(-0.0f);
  for (int64_t t = 0; t < g.num_steps; ++t) {
    uint8_t* step = dst + t * Int16Act::kStepBytes;
    float d[2] = {0.0f, 0.0f};
    for (int h = 0; h < 2; ++h) {
      const int64_t b = 2 * t + h;
      // Block h's values 0..7 / 16..23 go to A0, 8..15 / 24..31 to A1 (16 bytes each).
      __m128i* a0_first = reinterpret_cast<__m128i*>(step + 16 * h);
      __m128i* a0_second = reinterpret_cast<__m128i*>(step + 32 + 16 * h);
      __m128i* a1_first = reinterpret_cast<__m128i*>(step + 64 + 16 * h);
      __m128i* a1_second = reinterpret_cast<__m128i*>(step + 96 + 16 * h);
      if (b >= g.nb) {
        _mm_store_si128(a0_first, _mm_setzero_si128());
        _mm_store_si128(a0_second, _mm_setzero_si128());
        _mm_store_si128(a1_first, _mm_setzero_si128());
        _mm_store_si128(a1_second, _mm_setzero_si128());
        s[b] = 0.0f;
        continue;
      }
      const __m512 v0 = _mm512_loadu_ps(x + b * kQK);
      const __m512 v1 = _mm512_loadu_ps(x + b * kQK + 16);
      const float amax = _mm512_reduce_max_ps(
          _mm512_max_ps(_mm512_andnot_ps(sign, v0), _mm512_andnot_ps(sign, v1)));
      d[h] = amax / 32767.0f;
      const __m512 id = _mm512_set1_ps(d[h] != 0.0f ? 1.0f / d[h] : 0.0f);
      const __m512i q0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, id));  // MXCSR: nearest even
      const __m512i q1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, id));
      const __m256i w0 = _mm512_cvtepi32_epi16(q0);  // values 0..15 (in range: no saturation)
      const __m256i w1 = _mm512_cvtepi32_epi16(q1);  // values 16..31
      _mm_store_si128(a0_first, _mm256_castsi256_si128(w0));
      _mm_store_si128(a1_first, _mm256_extracti128_si256(w0, 1));
      _mm_store_si128(a0_second, _mm256_castsi256_si128(w1));
      _mm_store_si128(a1_second, _mm256_extracti128_si256(w1, 1));
      s[b] = d[h] * static_cast<float>(_mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1)));
    }
    _mm512_store_ps(step + Int16Act::kScaleOffset,
                    spread_scales(_mm_setr_ps(d[0], d[1], 0.0f, 0.0f)));
  }
}

void q32_gemm16(DType /*type*/, const uint8_t* panel, int64_t ncols, const uint8_t* act,
                int64_t nrows, int64_t k, float* y, int64_t ldy) {
  gemm_panel<Int16Act>(geometry16(k), panel, ncols, act, nrows, y, ldy);
}

bool q32_gemm16_direct(DType type, const uint8_t* w, size_t w_stride, int64_t ncols,
                       const uint8_t* act, int64_t nrows, int64_t k, float* y, int64_t ldy) {
  return gemm_direct<Int16Act>(type, geometry16(k), w, w_stride, ncols, act, nrows, y, ldy);
}

}  // namespace loom::cpu::avx512
