// AVX2 gemm for the 32-value block types with 16-bit activations (q32.h), over the natural
// layouts: q32::pack_act16 rows (int16) times q32::pack_col / avx2::q32_pack_col panels (bytes).
// One block per step: its 32 weight bytes are widened to two ymm of 16 int16 (zero-extended, or
// sign-extended for Q8_0), vpmaddwd with the two activation ymm gives int32 pairs, and their sum
// leaves 8 int32 lanes of 4 products each (exact: 4 * 32767 * 128 < 2^31), converted to float and
// scaled by dw * da as the 8-bit kernel does.
#include <immintrin.h>

#include "backend/cpu/kernels/blocks.h"
#include "backend/cpu/kernels/q32.h"

namespace loom::cpu::avx2 {
namespace {

static inline float hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

struct Geometry {
  int64_t k, nb, nb8;
  size_t w_stride, a_stride;
};

struct Widened {
  __m256i lo, hi;  // values 0..15, 16..31 of a block as int16
};

template <bool kSigned>
static inline Widened widen(const uint8_t* q) {
  const __m128i lo = _mm_load_si128(reinterpret_cast<const __m128i*>(q));
  const __m128i hi = _mm_load_si128(reinterpret_cast<const __m128i*>(q + 16));
  if constexpr (kSigned) return {_mm256_cvtepi8_epi16(lo), _mm256_cvtepi8_epi16(hi)};
  return {_mm256_cvtepu8_epi16(lo), _mm256_cvtepu8_epi16(hi)};
}

// y[MR][NR] for MR activation rows and NR weight columns. Every element goes through exactly
// the same instruction sequence whatever MR and NR are (batch invariance).
template <int MR, int NR, bool kSigned>
static void tile(const Geometry& g, const uint8_t* const* w, const uint8_t* const* a, float* y,
                 int64_t ldy) {
  __m256 acc[MR][NR];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 16
    for (int j = 0; j < NR; ++j) acc[i][j] = _mm256_setzero_ps();
  const float* dw[NR];
  const float* da[MR];
#pragma GCC unroll 16
  for (int j = 0; j < NR; ++j) dw[j] = reinterpret_cast<const float*>(w[j] + g.k);
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) da[i] = reinterpret_cast<const float*>(a[i] + 2 * g.k);

  for (int64_t b = 0; b < g.nb; ++b) {
    Widened wq[NR];
    __m256 ws[NR];
#pragma GCC unroll 16
    for (int j = 0; j < NR; ++j) {
      wq[j] = widen<kSigned>(w[j] + b * kQK);
      ws[j] = _mm256_broadcast_ss(dw[j] + b);
    }
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const auto* ab = reinterpret_cast<const __m256i*>(a[i] + b * 2 * kQK);
      const __m256i a0 = _mm256_load_si256(ab), a1 = _mm256_load_si256(ab + 1);
      const __m256 as = _mm256_broadcast_ss(da[i] + b);
#pragma GCC unroll 16
      for (int j = 0; j < NR; ++j) {
        const __m256i dot =
            _mm256_add_epi32(_mm256_madd_epi16(wq[j].lo, a0), _mm256_madd_epi16(wq[j].hi, a1));
        acc[i][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_mul_ps(ws[j], as), acc[i][j]);
      }
    }
  }
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) {
    const float* sa = da[i] + g.nb8;
#pragma GCC unroll 16
    for (int j = 0; j < NR; ++j) {
      const float* mw = dw[j] + g.nb8;
      __m256 macc = _mm256_setzero_ps();
      for (int64_t b = 0; b < g.nb8; b += 8) {
        macc = _mm256_fmadd_ps(_mm256_loadu_ps(mw + b), _mm256_loadu_ps(sa + b), macc);
      }
      y[i * ldy + j] = hsum8(acc[i][j]) + hsum8(macc);
    }
  }
}

template <int MR, bool kSigned>
static void row_tile(const Geometry& g, const uint8_t* panel, int64_t ncols,
                     const uint8_t* const* a, float* y, int64_t ldy) {
  constexpr int NR = 2;
  int64_t j = 0;
  for (; j + NR <= ncols; j += NR) {
    const uint8_t* w[NR] = {panel + j * g.w_stride, panel + (j + 1) * g.w_stride};
    tile<MR, NR, kSigned>(g, w, a, y + j, ldy);
  }
  if (j < ncols) {
    const uint8_t* w[1] = {panel + j * g.w_stride};
    tile<MR, 1, kSigned>(g, w, a, y + j, ldy);
  }
}

template <bool kSigned>
static void gemm_impl(const Geometry& g, const uint8_t* panel, int64_t ncols, const uint8_t* act,
                      int64_t nrows, float* y, int64_t ldy) {
  constexpr int MR = 4;
  int64_t i = 0;
  for (; i + MR <= nrows; i += MR) {
    const uint8_t* a[MR];
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) a[r] = act + (i + r) * g.a_stride;
    row_tile<MR, kSigned>(g, panel, ncols, a, y + i * ldy, ldy);
  }
  for (; i < nrows; ++i) {
    const uint8_t* a[1] = {act + i * g.a_stride};
    row_tile<1, kSigned>(g, panel, ncols, a, y + i * ldy, ldy);
  }
}

}  // namespace

void q32_gemm16(DType type, const uint8_t* panel, int64_t ncols, const uint8_t* act, int64_t nrows,
                int64_t k, float* y, int64_t ldy) {
  Geometry g;
  g.k = k;
  g.nb = k / kQK;
  g.nb8 = (g.nb + 7) / 8 * 8;
  g.w_stride = q32::col_bytes(k);
  g.a_stride = q32::act16_row_bytes(k);
  if (type == DType::kQ8_0) {
    gemm_impl<true>(g, panel, ncols, act, nrows, y, ldy);
  } else {
    gemm_impl<false>(g, panel, ncols, act, nrows, y, ldy);
  }
}

}  // namespace loom::cpu::avx2
