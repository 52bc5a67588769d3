// AVX-512 build of the attention task.
#include <immintrin.h>

#include "backend/cpu/attention_task.h"
#include "util/check.h"

namespace {
inline float __attribute__((vector_size(64))) load_f16_avx512(const uint16_t* p) {
  __m512 v = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  return reinterpret_cast<float __attribute__((vector_size(64)))&>(v);
}
}  // namespace

#define LOOM_ATTN_NS avx512
#define LOOM_ATTN_LOAD_F16(p) load_f16_avx512(p)
#define LOOM_ATTN_F16_TO_F32(h) _cvtsh_ss(h)
#include "backend/cpu/attention_impl.inc"
