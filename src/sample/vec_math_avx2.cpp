// AVX2 + FMA versions of vec_math.h (this file is compiled with -mavx2 -mfma; only called after
// the CPU check in vec_math.cpp).
#include <immintrin.h>

#include <cfloat>
#include <cmath>
#include <limits>

#include "sample/vec_math.h"

namespace loom::vec::detail {
namespace {

// exp(x) for x <= 0 (shifted logits): Cephes-style range reduction x = n ln2 + r, |r| <= ln2/2,
// and a degree-6 polynomial for exp(r); relative error ~2 ulp. x < -87.3 (and NaN) give 0.
inline __m256 exp_nonpositive(__m256 x) {
  const __m256 min_x = _mm256_set1_ps(-87.3f);
  const __m256 valid = _mm256_cmp_ps(x, min_x, _CMP_GE_OQ);  // false for NaN and tiny x
  x = _mm256_max_ps(x, min_x);
  x = _mm256_min_ps(x, _mm256_set1_ps(0.0f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i pow2n =
      _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  const __m256 result = _mm256_mul_ps(p, _mm256_castsi256_ps(pow2n));
  return _mm256_and_ps(result, valid);
}

inline double add_to_double(__m256 v) {
  const __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
  const __m256d hi = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
  const __m256d s = _mm256_add_pd(lo, hi);
  alignas(32) double parts[4];
  _mm256_store_pd(parts, s);
  return (parts[0] + parts[1]) + (parts[2] + parts[3]);
}

}  // namespace

float scale_clean_max_avx2(const float* logits, float* z, int32_t n, float scale) {
  const float neg_inf = -std::numeric_limits<float>::infinity();
  const __m256 vscale = _mm256_set1_ps(scale);
  const __m256 vneg_inf = _mm256_set1_ps(neg_inf);
  const __m256 vmax = _mm256_set1_ps(FLT_MAX);
  const __m256 vmin = _mm256_set1_ps(-FLT_MAX);
  __m256 best = vneg_inf;
  int32_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 v = _mm256_mul_ps(_mm256_loadu_ps(logits + i), vscale);
    const __m256 is_nan = _mm256_cmp_ps(v, v, _CMP_UNORD_Q);
    const __m256 is_neg_inf = _mm256_cmp_ps(v, vneg_inf, _CMP_EQ_OQ);
    v = _mm256_min_ps(_mm256_max_ps(v, vmin), vmax);  // clamps +-inf; NaN handled next
    v = _mm256_blendv_ps(v, vneg_inf, _mm256_or_ps(is_nan, is_neg_inf));
    _mm256_storeu_ps(z + i, v);
    best = _mm256_max_ps(best, v);
  }
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, best);
  float m = neg_inf;
  for (float l : lanes) m = l > m ? l : m;
  for (; i < n; ++i) {
    float v = logits[i] * scale;
    if (std::isnan(v) || v == neg_inf) {
      v = neg_inf;
    } else {
      v = v > FLT_MAX ? FLT_MAX : (v < -FLT_MAX ? -FLT_MAX : v);
    }
    z[i] = v;
    m = v > m ? v : m;
  }
  return m;
}

double exp_shifted_avx2(const float* x, float* w, int32_t n, float shift) {
  const __m256 vshift = _mm256_set1_ps(shift);
  // Float partial sums over 64 values at most before moving into double: keeps the sum exact to
  // ~1e-7 relative however long the row.
  double sum = 0.0;
  int32_t i = 0;
  while (i + 8 <= n) {
    __m256 acc = _mm256_setzero_ps();
    for (int k = 0; k < 8 && i + 8 <= n; ++k, i += 8) {
      const __m256 e = exp_nonpositive(_mm256_sub_ps(_mm256_loadu_ps(x + i), vshift));
      if (w != nullptr) _mm256_storeu_ps(w + i, e);
      acc = _mm256_add_ps(acc, e);
    }
    sum += add_to_double(acc);
  }
  for (; i < n; ++i) {
    float e = std::exp(x[i] - shift);
    if (std::isnan(e)) e = 0.0f;
    if (w != nullptr) w[i] = e;
    sum += e;
  }
  return sum;
}

}  // namespace loom::vec::detail

namespace loom::vec::detail {

float max_ignoring_nan_avx2(const float* x, int32_t n) {
  const float neg_inf = -std::numeric_limits<float>::infinity();
  // Four accumulators hide maxps latency; maxps(v, acc) returns acc when v is NaN.
  __m256 acc0 = _mm256_set1_ps(neg_inf), acc1 = acc0, acc2 = acc0, acc3 = acc0;
  int32_t i = 0;
  for (; i + 32 <= n; i += 32) {
    acc0 = _mm256_max_ps(_mm256_loadu_ps(x + i), acc0);
    acc1 = _mm256_max_ps(_mm256_loadu_ps(x + i + 8), acc1);
    acc2 = _mm256_max_ps(_mm256_loadu_ps(x + i + 16), acc2);
    acc3 = _mm256_max_ps(_mm256_loadu_ps(x + i + 24), acc3);
  }
  for (; i + 8 <= n; i += 8) acc0 = _mm256_max_ps(_mm256_loadu_ps(x + i), acc0);
  const __m256 acc = _mm256_max_ps(_mm256_max_ps(acc0, acc1), _mm256_max_ps(acc2, acc3));
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, acc);
  float best = neg_inf;
  for (float l : lanes) best = l > best ? l : best;
  for (; i < n; ++i) best = x[i] > best ? x[i] : best;
  return best;
}

int32_t first_greater_avx2(const float* x, int32_t from, int32_t n, float threshold) {
  const __m256 t = _mm256_set1_ps(threshold);
  int32_t i = from;
  for (; i + 8 <= n; i += 8) {
    const int mask = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(x + i), t, _CMP_GT_OQ));
    if (mask != 0) return i + __builtin_ctz(static_cast<unsigned>(mask));
  }
  for (; i < n; ++i) {
    if (x[i] > threshold) return i;
  }
  return n;
}

float block_sum_avx2(const float* w, float t, int32_t* count) {
  const __m256 vt = _mm256_set1_ps(t);
  __m256 sum = _mm256_setzero_ps();
  int32_t c = 0;
  for (int32_t i = 0; i < kBlock; i += 8) {
    const __m256 v = _mm256_loadu_ps(w + i);
    const __m256 keep = _mm256_cmp_ps(v, vt, _CMP_GE_OQ);
    sum = _mm256_add_ps(sum, _mm256_and_ps(v, keep));
    c += __builtin_popcount(static_cast<unsigned>(_mm256_movemask_ps(keep)));
  }
  if (count != nullptr) *count = c;
  // Horizontal sum in a fixed order.
  const __m128 lo = _mm256_castps256_ps128(sum);
  const __m128 hi = _mm256_extractf128_ps(sum, 1);
  __m128 s = _mm_add_ps(lo, hi);
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}

size_t gather_at_least_avx2(const float* w, int32_t n, float t, WeightedToken* out) {
  // A compare and movemask per 8 values, then one store per passing value (no branch per value,
  // which mispredicts when a few percent pass at random).
  const __m256 vt = _mm256_set1_ps(t);
  size_t count = 0;
  int32_t i = 0;
  for (; i + 8 <= n; i += 8) {
    unsigned mask = static_cast<unsigned>(
        _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(w + i), vt, _CMP_GE_OQ)));
    while (mask != 0) {
      const int32_t j = i + __builtin_ctz(mask);
      out[count++] = {w[j], j};
      mask &= mask - 1;
    }
  }
  for (; i < n; ++i) {
    if (w[i] >= t) out[count++] = {w[i], i};
  }
  return count;
}

}  // namespace loom::vec::detail
