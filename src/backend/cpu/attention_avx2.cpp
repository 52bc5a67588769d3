// AVX2 + F16C build of the attention task.
#include <immintrin.h>

#include "backend/cpu/attention_task.h"
#include "util/check.h"

namespace {
inline float __attribute__((vector_size(64))) load_f16_avx2(const uint16_t* p) {
  float __attribute__((vector_size(64))) v;
  __m256 lo = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  __m256 hi = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 8)));
  __builtin_memcpy(&v, &lo, 32);
  __builtin_memcpy(reinterpret_cast<char*>(&v) + 32, &hi, 32);
  return v;
}
}  // namespace

#define LOOM_ATTN_NS avx2
#define LOOM_ATTN_LOAD_F16(p) load_f16_avx2(p)
#define LOOM_ATTN_F16_TO_F32(h) _cvtsh_ss(h)
#include "backend/cpu/attention_impl.inc"
