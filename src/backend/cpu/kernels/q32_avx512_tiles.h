// Internal, included only by *_avx512.cpp files: the AVX-512 tiling of the 32-value block gemm
// (q32.h), shared by the 8-bit (vpdpbusd) and 16-bit (vpdpwssd) activation formats.
//
// Weights use one layout for both formats: k is walked in steps of 64 values (2 blocks), each
// step 64 bytes of q ordered [b0 0..15 | b1 0..15 | b0 16..31 | b1 16..31] then 16 float lane
// scales [d0 x4 | d1 x4 | d0 x4 | d1 x4]. The activation format (Act below) decides how its own
// step is laid out and how one step's 16 int32 lane sums are formed; every lane stays inside one
// block, so the lane scales and the float arithmetic are the same for both.
//
// Everything here has internal linkage (anonymous namespace, static inline): a copy compiled
// with AVX-512 flags can never be picked by the linker for portable code.
#pragma once

#include <immintrin.h>

#include <cstring>
#include <type_traits>

#include "backend/cpu/kernels/blocks.h"
#include "backend/cpu/kernels/q32.h"

namespace loom::cpu::avx512 {
namespace {

constexpr int kWeightStepBytes = 128;   // 64 q bytes + 16 float scales
constexpr int kMaxDirectBlocks = 1024;  // k <= 32768 for the direct path's local min terms

template <DType kType>
constexpr int64_t kBlockBytes = kType == DType::kQ4_0   ? 18
                                : kType == DType::kQ4_1 ? 20
                                : kType == DType::kQ5_0 ? 22
                                : kType == DType::kQ5_1 ? 24
                                                        : 34;

struct Geometry {
  int64_t k, nb, nb16, num_steps;
  size_t stride;      // panel column bytes
  size_t tail;        // offset of the mw floats in a panel column
  size_t act_stride;  // activation row bytes
  size_t act_tail;    // offset of the s floats in an activation row
};

// act_step_bytes: bytes per 64-value step of the activation format.
static inline Geometry geometry(int64_t k, size_t act_step_bytes) {
  Geometry g;
  g.k = k;
  g.nb = k / kQK;
  g.nb16 = (g.nb + 15) / 16 * 16;
  g.num_steps = (g.nb + 1) / 2;
  g.tail = static_cast<size_t>(g.num_steps * kWeightStepBytes);
  g.stride = (g.tail + static_cast<size_t>(g.nb16) * 4 + 63) / 64 * 64;
  g.act_tail = static_cast<size_t>(g.num_steps) * act_step_bytes;
  g.act_stride = (g.act_tail + static_cast<size_t>(g.nb16) * 4 + 63) / 64 * 64;
  return g;
}

// Lane pattern [d0 x4 | d1 x4 | d0 x4 | d1 x4] from f = [d0, d1, ...].
static inline __m512 spread_scales(__m128 f) {
  const __m512i idx = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1);
  return _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(f));
}

// [lo nibbles of qs0 | lo of qs1 | hi of qs0 | hi of qs1]: the step byte order.
static inline __m512i spread_nibbles(__m128i qs0, __m128i qs1) {
  const __m256i y = _mm256_inserti128_si256(_mm256_castsi128_si256(qs0), qs1, 1);
  const __m256i mask = _mm256_set1_epi8(0x0F);
  const __m256i lo = _mm256_and_si256(y, mask);
  const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(y, 4), mask);
  return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

// Bit 4 of every byte of a Q5 step: bit j of qh goes to element j of its block.
static inline __m512i add_fifth_bits(__m512i q, const uint8_t* qh0, const uint8_t* qh1) {
  uint32_t h0 = 0, h1 = 0;
  std::memcpy(&h0, qh0, 4);
  if (qh1 != nullptr) std::memcpy(&h1, qh1, 4);
  const uint64_t bits = (h0 & 0xFFFFull) | (static_cast<uint64_t>(h1 & 0xFFFF) << 16) |
                        (static_cast<uint64_t>(h0 >> 16) << 32) |
                        (static_cast<uint64_t>(h1 >> 16) << 48);
  return _mm512_mask_blend_epi8(bits, q, _mm512_or_si512(q, _mm512_set1_epi8(0x10)));
}

// Decodes step t (blocks 2t, 2t+1; a missing odd block reads as zeros) of a raw GGUF row into
// the step's weight bytes, lane scales, and the two blocks' min coefficients mw. Q8_0 weights
// are made unsigned by flipping the sign bit (q + 128), with mw = -128 dw.
template <DType kType>
static inline void decode_step(const uint8_t* row, int64_t t, int64_t nb, __m512i* q, __m512* s,
                               float* mw) {
  const int64_t b0 = 2 * t;
  const bool has1 = b0 + 1 < nb;
  __m128 f;  // [d0, d1, m0, m1]
  if constexpr (kType == DType::kQ4_1 || kType == DType::kQ5_1) {
    using Block = std::conditional_t<kType == DType::kQ4_1, BlockQ4_1, BlockQ5_1>;
    const Block* b = reinterpret_cast<const Block*>(row) + b0;
    const __m128i zero = _mm_setzero_si128();
    const __m128i qs0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b[0].qs));
    const __m128i qs1 = has1 ? _mm_loadu_si128(reinterpret_cast<const __m128i*>(b[1].qs)) : zero;
    *q = spread_nibbles(qs0, qs1);
    if constexpr (kType == DType::kQ5_1) *q = add_fifth_bits(*q, b[0].qh, has1 ? b[1].qh : nullptr);
    __m128i h = _mm_cvtsi32_si128(b[0].d);
    h = _mm_insert_epi16(h, has1 ? b[1].d : 0, 1);
    h = _mm_insert_epi16(h, b[0].m, 2);
    h = _mm_insert_epi16(h, has1 ? b[1].m : 0, 3);
    f = _mm_cvtph_ps(h);
    mw[0] = f[2];
    mw[1] = f[3];
  } else {
    __m128i h;
    if constexpr (kType == DType::kQ8_0) {
      const BlockQ8_0* b = reinterpret_cast<const BlockQ8_0*>(row) + b0;
      const __m512i y0 =
          _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b[0].qs)));
      const __m512i y1 = has1 ? _mm512_castsi256_si512(
                                    _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b[1].qs)))
                              : _mm512_setzero_si512();
      const __m512i idx = _mm512_setr_epi64(0, 1, 8, 9, 2, 3, 10, 11);
      *q = _mm512_xor_si512(_mm512_permutex2var_epi64(y0, idx, y1), _mm512_set1_epi8(-128));
      h = _mm_insert_epi16(_mm_cvtsi32_si128(b[0].d), has1 ? b[1].d : 0, 1);
    } else {
      using Block = std::conditional_t<kType == DType::kQ4_0, BlockQ4_0, BlockQ5_0>;
      const Block* b = reinterpret_cast<const Block*>(row) + b0;
      const __m128i qs0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b[0].qs));
      const __m128i qs1 =
          has1 ? _mm_loadu_si128(reinterpret_cast<const __m128i*>(b[1].qs)) : _mm_setzero_si128();
      *q = spread_nibbles(qs0, qs1);
      if constexpr (kType == DType::kQ5_0)
        *q = add_fifth_bits(*q, b[0].qh, has1 ? b[1].qh : nullptr);
      h = _mm_insert_epi16(_mm_cvtsi32_si128(b[0].d), has1 ? b[1].d : 0, 1);
    }
    f = _mm_cvtph_ps(h);
    constexpr float kOffset = kType == DType::kQ8_0   ? -128.0f
                              : kType == DType::kQ4_0 ? -8.0f
                                                      : -16.0f;
    mw[0] = kOffset * f[0];
    mw[1] = kOffset * f[1];
  }
  *s = spread_scales(f);
}

static inline float hsum16(__m512 v) {
  // Fixed tree: 512 -> 256 -> 128 -> 64 -> 32.
  const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(v),
                                 _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// The per-element arithmetic, shared by both weight feeds. Act provides:
//   kStepBytes: activation bytes per step, lane scales at offset kScaleOffset of the step;
//   Weights: the weight step as Act multiplies it, made once per column from the step bytes;
//   dot(w, a): 16 int32 lane sums of the step (a = the activation step).
template <class Act, int MR, int NR>
struct Accumulators {
  __m512 acc[MR][NR];

  Accumulators() {
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 16
      for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_setzero_ps();
  }

  inline void step(const __m512i* wq, const __m512* ws, const uint8_t* const* a, int64_t t) {
    const size_t off = static_cast<size_t>(t) * Act::kStepBytes;
    typename Act::Weights w[NR];
#pragma GCC unroll 16
    for (int j = 0; j < NR; ++j) w[j] = Act::weights(wq[j]);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const __m512 as = _mm512_load_ps(a[i] + off + Act::kScaleOffset);
#pragma GCC unroll 16
      for (int j = 0; j < NR; ++j) {
        const __m512i dot = Act::dot(w[j], a[i] + off);
        acc[i][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(ws[j], as), acc[i][j]);
      }
    }
  }

  inline void finish(const Geometry& g, const float* const* mw, const uint8_t* const* a, float* y,
                     int64_t ldy) {
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const auto* sa = reinterpret_cast<const float*>(a[i] + g.act_tail);
#pragma GCC unroll 16
      for (int j = 0; j < NR; ++j) {
        __m512 macc = _mm512_setzero_ps();
        for (int64_t b = 0; b < g.nb16; b += 16) {
          macc = _mm512_fmadd_ps(_mm512_loadu_ps(mw[j] + b), _mm512_load_ps(sa + b), macc);
        }
        y[i * ldy + j] = hsum16(acc[i][j]) + hsum16(macc);
      }
    }
  }
};

template <class Act, int MR, int NR>
static void panel_tile(const Geometry& g, const uint8_t* const* w, const uint8_t* const* a,
                       float* y, int64_t ldy) {
  Accumulators<Act, MR, NR> acc;
  for (int64_t t = 0; t < g.num_steps; ++t) {
    const size_t off = static_cast<size_t>(t) * kWeightStepBytes;
    __m512i wq[NR];
    __m512 ws[NR];
#pragma GCC unroll 16
    for (int j = 0; j < NR; ++j) {
      wq[j] = _mm512_load_si512(w[j] + off);
      ws[j] = _mm512_load_ps(w[j] + off + 64);
    }
    acc.step(wq, ws, a, t);
  }
  const float* mw[NR];
#pragma GCC unroll 16
  for (int j = 0; j < NR; ++j) mw[j] = reinterpret_cast<const float*>(w[j] + g.tail);
  acc.finish(g, mw, a, y, ldy);
}

template <class Act, DType kType, int MR, int NR>
static void direct_tile(const Geometry& g, const uint8_t* const* rows, const uint8_t* const* a,
                        float* y, int64_t ldy) {
  alignas(64) float mw[NR][kMaxDirectBlocks + 32];
#pragma GCC unroll 16
  for (int j = 0; j < NR; ++j) std::memset(mw[j] + (g.nb & ~1), 0, 18 * sizeof(float));
  Accumulators<Act, MR, NR> acc;
  for (int64_t t = 0; t < g.num_steps; ++t) {
    __m512i wq[NR];
    __m512 ws[NR];
#pragma GCC unroll 16
    for (int j = 0; j < NR; ++j) {
      // Streamed rows: while this tile's NR rows (adjacent in memory) are decoded, fetch the
      // next tile's, one line per row and step (hardware prefetch alone lags behind several
      // interleaved rows when the matrix comes from DRAM). Prefetch never faults past the end.
      _mm_prefetch(reinterpret_cast<const char*>(rows[0] + NR * g.nb * kBlockBytes<kType> +
                                                 (t * NR + j) * 64),
                   _MM_HINT_T0);
      decode_step<kType>(rows[j], t, g.nb, &wq[j], &ws[j], mw[j] + 2 * t);
    }
    acc.step(wq, ws, a, t);
  }
  const float* mwp[NR];
#pragma GCC unroll 16
  for (int j = 0; j < NR; ++j) mwp[j] = mw[j];
  acc.finish(g, mwp, a, y, ldy);
}

template <DType kType>
static void pack_col_typed(const Geometry& g, const uint8_t* row, uint8_t* dst) {
  auto* mw = reinterpret_cast<float*>(dst + g.tail);
  std::memset(mw + (g.nb & ~1), 0, static_cast<size_t>(g.nb16 - (g.nb & ~1)) * sizeof(float));
  for (int64_t t = 0; t < g.num_steps; ++t) {
    __m512i q;
    __m512 s;
    decode_step<kType>(row, t, g.nb, &q, &s, mw + 2 * t);
    _mm512_store_si512(dst + t * kWeightStepBytes, q);
    _mm512_store_ps(dst + t * kWeightStepBytes + 64, s);
  }
}

template <class Act, DType kType, int MR>
static void direct_rows(const Geometry& g, const uint8_t* w, size_t w_stride, int64_t ncols,
                        const uint8_t* const* a, float* y, int64_t ldy) {
  constexpr int NR = 4;
  int64_t j = 0;
  for (; j + NR <= ncols; j += NR) {
    const uint8_t* rows[NR];
#pragma GCC unroll 16
    for (int c = 0; c < NR; ++c) rows[c] = w + (j + c) * w_stride;
    direct_tile<Act, kType, MR, NR>(g, rows, a, y + j, ldy);
  }
  for (; j < ncols; ++j) {
    const uint8_t* rows[1] = {w + j * w_stride};
    direct_tile<Act, kType, MR, 1>(g, rows, a, y + j, ldy);
  }
}

template <class Act, DType kType>
static void direct_typed(const Geometry& g, const uint8_t* w, size_t w_stride, int64_t ncols,
                         const uint8_t* act, int64_t nrows, float* y, int64_t ldy) {
  int64_t i = 0;
  for (; i + 2 <= nrows; i += 2) {
    const uint8_t* a[2] = {act + i * g.act_stride, act + (i + 1) * g.act_stride};
    direct_rows<Act, kType, 2>(g, w, w_stride, ncols, a, y + i * ldy, ldy);
  }
  if (i < nrows) {
    const uint8_t* a[1] = {act + i * g.act_stride};
    direct_rows<Act, kType, 1>(g, w, w_stride, ncols, a, y + i * ldy, ldy);
  }
}

template <class Act, int MR>
static void panel_rows(const Geometry& g, const uint8_t* panel, int64_t ncols,
                       const uint8_t* const* a, float* y, int64_t ldy) {
  constexpr int NR = 4;
  int64_t j = 0;
  for (; j + NR <= ncols; j += NR) {
    const uint8_t* w[NR];
#pragma GCC unroll 16
    for (int c = 0; c < NR; ++c) w[c] = panel + (j + c) * g.stride;
    panel_tile<Act, MR, NR>(g, w, a, y + j, ldy);
  }
  for (; j < ncols; ++j) {
    const uint8_t* w[1] = {panel + j * g.stride};
    panel_tile<Act, MR, 1>(g, w, a, y + j, ldy);
  }
}

// y[nrows][ncols] from a packed panel (4x4 tiles of rows x columns, then leftovers).
template <class Act>
static void gemm_panel(const Geometry& g, const uint8_t* panel, int64_t ncols, const uint8_t* act,
                       int64_t nrows, float* y, int64_t ldy) {
  constexpr int MR = 4;
  int64_t i = 0;
  for (; i + MR <= nrows; i += MR) {
    const uint8_t* a[MR];
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) a[r] = act + (i + r) * g.act_stride;
    panel_rows<Act, MR>(g, panel, ncols, a, y + i * ldy, ldy);
  }
  for (; i < nrows; ++i) {
    const uint8_t* a[1] = {act + i * g.act_stride};
    panel_rows<Act, 1>(g, panel, ncols, a, y + i * ldy, ldy);
  }
}

// The same products with weights decoded from raw rows; false if k is too long for it.
template <class Act>
static bool gemm_direct(DType type, const Geometry& g, const uint8_t* w, size_t w_stride,
                        int64_t ncols, const uint8_t* act, int64_t nrows, float* y, int64_t ldy) {
  if (g.nb > kMaxDirectBlocks) return false;
  switch (type) {
    case DType::kQ4_0:
      direct_typed<Act, DType::kQ4_0>(g, w, w_stride, ncols, act, nrows, y, ldy);
      break;
    case DType::kQ4_1:
      direct_typed<Act, DType::kQ4_1>(g, w, w_stride, ncols, act, nrows, y, ldy);
      break;
    case DType::kQ5_0:
      direct_typed<Act, DType::kQ5_0>(g, w, w_stride, ncols, act, nrows, y, ldy);
      break;
    case DType::kQ5_1:
      direct_typed<Act, DType::kQ5_1>(g, w, w_stride, ncols, act, nrows, y, ldy);
      break;
    default:
      direct_typed<Act, DType::kQ8_0>(g, w, w_stride, ncols, act, nrows, y, ldy);
      break;
  }
  return true;
}

}  // namespace
}  // namespace loom::cpu::avx512
