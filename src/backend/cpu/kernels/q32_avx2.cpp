// AVX2 gemm for the 32-value block types over the natural panel layout (q32.h).
// One block (32 values) per ymm: vpmaddubsw (u8 x s8 -> s16 pairs) then vpmaddwd with ones
// (-> 8 int32 lanes), converted to float and scaled by dw * da. Q8_0 weights are signed: their
// magnitude goes into the u8 operand and their sign onto the activation (vpsignb), which keeps
// vpmaddubsw from saturating (127 * 127 * 2 < 32767).
#include <immintrin.h>

#include <cstring>

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
  size_t stride;
};

// y[MR][NR] for MR activation rows and NR weight columns. Every element goes through exactly
// the same instruction sequence whatever MR and NR are (batch invariance).
template <int MR, int NR, bool kSigned>
static void tile(const Geometry& g, const uint8_t* const* w, const uint8_t* const* a, float* y,
                 int64_t ldy) {
  const __m256i ones = _mm256_set1_epi16(1);
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
  for (int i = 0; i < MR; ++i) da[i] = reinterpret_cast<const float*>(a[i] + g.k);

  for (int64_t b = 0; b < g.nb; ++b) {
    __m256i wq[NR];
    __m256 ws[NR];
#pragma GCC unroll 16
    for (int j = 0; j < NR; ++j) {
      wq[j] = _mm256_load_si256(reinterpret_cast<const __m256i*>(w[j] + b * kQK));
      ws[j] = _mm256_broadcast_ss(dw[j] + b);
    }
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const __m256i aq = _mm256_load_si256(reinterpret_cast<const __m256i*>(a[i] + b * kQK));
      const __m256 as = _mm256_broadcast_ss(da[i] + b);
#pragma GCC unroll 16
      for (int j = 0; j < NR; ++j) {
        __m256i p16;
        if constexpr (kSigned) {
          p16 = _mm256_maddubs_epi16(_mm256_abs_epi8(wq[j]), _mm256_sign_epi8(aq, wq[j]));
        } else {
          p16 = _mm256_maddubs_epi16(wq[j], aq);
        }
        const __m256 p = _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, ones));
        acc[i][j] = _mm256_fmadd_ps(p, _mm256_mul_ps(ws[j], as), acc[i][j]);
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
        macc = _mm256_fmadd_ps(_mm256_load_ps(mw + b), _mm256_load_ps(sa + b), macc);
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
    const uint8_t* w[NR] = {panel + j * g.stride, panel + (j + 1) * g.stride};
    tile<MR, NR, kSigned>(g, w, a, y + j, ldy);
  }
  if (j < ncols) {
    const uint8_t* w[1] = {panel + j * g.stride};
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
    for (int r = 0; r < MR; ++r) a[r] = act + (i + r) * g.stride;
    row_tile<MR, kSigned>(g, panel, ncols, a, y + i * ldy, ldy);
  }
  for (; i < nrows; ++i) {
    const uint8_t* a[1] = {act + i * g.stride};
    row_tile<1, kSigned>(g, panel, ncols, a, y + i * ldy, ldy);
  }
}

// Low nibbles to q[0..16), high nibbles to q[16..32).
static inline void store_nibbles(const uint8_t* qs, uint8_t* q) {
  const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m128i mask = _mm_set1_epi8(0x0F);
  _mm_store_si128(reinterpret_cast<__m128i*>(q), _mm_and_si128(v, mask));
  _mm_store_si128(reinterpret_cast<__m128i*>(q + 16), _mm_and_si128(_mm_srli_epi16(v, 4), mask));
}

// Bit j of qh becomes bit 4 of q[j].
static inline void or_fifth_bits(const uint8_t* qh, uint8_t* q) {
  uint32_t bits;
  std::memcpy(&bits, qh, 4);
  const __m256i spread =
      _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(bits)),
                          _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2,
                                           2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
  const __m256i bit = _mm256_set1_epi64x(static_cast<int64_t>(0x8040201008040201ull));
  const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
  const __m256i v = _mm256_load_si256(reinterpret_cast<const __m256i*>(q));
  _mm256_store_si256(reinterpret_cast<__m256i*>(q),
                     _mm256_or_si256(v, _mm256_and_si256(set, _mm256_set1_epi8(0x10))));
}

}  // namespace

// Same bytes and floats as q32::pack_col (integer unpacking and exact fp16 conversions), faster.
void q32_pack_col(DType type, const void* row, int64_t k, uint8_t* dst, uint8_t* /*scratch*/) {
  const int64_t nb = k / kQK, nb8 = (nb + 7) / 8 * 8;
  uint8_t* q = dst;
  auto* dw = reinterpret_cast<float*>(dst + k);
  float* mw = dw + nb8;
  std::memset(dw + nb, 0, static_cast<size_t>(nb8 - nb) * sizeof(float));
  std::memset(mw + nb, 0, static_cast<size_t>(nb8 - nb) * sizeof(float));
  for (int64_t b = 0; b < nb; ++b) {
    uint8_t* qb = q + b * kQK;
    switch (type) {
      case DType::kQ4_0: {
        const auto& blk = static_cast<const BlockQ4_0*>(row)[b];
        store_nibbles(blk.qs, qb);
        dw[b] = _cvtsh_ss(blk.d);
        mw[b] = -8.0f * dw[b];
        break;
      }
      case DType::kQ4_1: {
        const auto& blk = static_cast<const BlockQ4_1*>(row)[b];
        store_nibbles(blk.qs, qb);
        dw[b] = _cvtsh_ss(blk.d);
        mw[b] = _cvtsh_ss(blk.m);
        break;
      }
      case DType::kQ5_0: {
        const auto& blk = static_cast<const BlockQ5_0*>(row)[b];
        store_nibbles(blk.qs, qb);
        or_fifth_bits(blk.qh, qb);
        dw[b] = _cvtsh_ss(blk.d);
        mw[b] = -16.0f * dw[b];
        break;
      }
      case DType::kQ5_1: {
        const auto& blk = static_cast<const BlockQ5_1*>(row)[b];
        store_nibbles(blk.qs, qb);
        or_fifth_bits(blk.qh, qb);
        dw[b] = _cvtsh_ss(blk.d);
        mw[b] = _cvtsh_ss(blk.m);
        break;
      }
      default: {
        const auto& blk = static_cast<const BlockQ8_0*>(row)[b];
        std::memcpy(qb, blk.qs, kQK);
        dw[b] = _cvtsh_ss(blk.d);
        mw[b] = 0.0f;
        break;
      }
    }
  }
}

void q32_gemm(DType type, const uint8_t* panel, int64_t ncols, const uint8_t* act, int64_t nrows,
              int64_t k, float* y, int64_t ldy) {
  Geometry g;
  g.k = k;
  g.nb = k / kQK;
  g.nb8 = (g.nb + 7) / 8 * 8;
  g.stride = q32::col_bytes(k);
  if (type == DType::kQ8_0) {
    gemm_impl<true>(g, panel, ncols, act, nrows, y, ldy);
  } else {
    gemm_impl<false>(g, panel, ncols, act, nrows, y, ldy);
  }
}

}  // namespace loom::cpu::avx2
