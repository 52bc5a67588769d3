#include <immintrin.h>

#include "backend/cpu/kernels/float_dot.h"

namespace loom::cpu::avx2 {
namespace {

static inline __m256 load8(DType type, const void* w, int64_t i) {
  if (type == DType::kF32) return _mm256_loadu_ps(static_cast<const float*>(w) + i);
  const auto* h = reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(w) + i);
  if (type == DType::kF16) return _mm256_cvtph_ps(_mm_loadu_si128(h));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(h)), 16));
}

static inline float load1(DType type, const void* w, int64_t i) {
  if (type == DType::kF32) return static_cast<const float*>(w)[i];
  const uint16_t v = static_cast<const uint16_t*>(w)[i];
  if (type == DType::kF16) return _cvtsh_ss(v);
  return _mm_cvtss_f32(_mm_castsi128_ps(_mm_cvtsi32_si128(static_cast<int>(v) << 16)));
}

}  // namespace

// Four independent accumulators of 8 lanes, summed in a fixed tree, then the scalar tail.
float float_dot(DType type, const void* w, const float* x, int64_t n) {
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                   _mm256_setzero_ps()};
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    for (int u = 0; u < 4; ++u) {
      acc[u] = _mm256_fmadd_ps(load8(type, w, i + 8 * u), _mm256_loadu_ps(x + i + 8 * u), acc[u]);
    }
  }
  for (; i + 8 <= n; i += 8)
    acc[0] = _mm256_fmadd_ps(load8(type, w, i), _mm256_loadu_ps(x + i), acc[0]);
  const __m256 v = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  float sum = _mm_cvtss_f32(s);
  for (; i < n; ++i) sum += load1(type, w, i) * x[i];
  return sum;
}

}  // namespace loom::cpu::avx2
