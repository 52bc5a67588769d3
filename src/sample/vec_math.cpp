#include "sample/vec_math.h"

#include <algorithm>
#include <atomic>
#include <cfloat>
#include <cmath>
#include <limits>

namespace loom::vec {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

std::atomic<bool> g_portable_only{false};

bool have_avx2() {
#if defined(__x86_64__) || defined(__i386__)
  static const bool yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return yes && !g_portable_only.load(std::memory_order_relaxed);
#else
  return false;
#endif
}

float scale_clean_max_generic(const float* logits, float* z, int32_t n, float scale) {
  float best = kNegInf;
  for (int32_t i = 0; i < n; ++i) {
    float v = logits[i] * scale;
    if (std::isnan(v)) v = kNegInf;
    v = v > FLT_MAX ? FLT_MAX : v;
    z[i] = v;
    best = v > best ? v : best;
  }
  return best;
}

double exp_shifted_generic(const float* x, float* w, int32_t n, float shift) {
  double sum = 0.0;
  for (int32_t i = 0; i < n; ++i) {
    float e = std::exp(x[i] - shift);
    if (std::isnan(e)) e = 0.0f;
    if (w != nullptr) w[i] = e;
    sum += e;
  }
  return sum;
}

float max_ignoring_nan_generic(const float* x, int32_t n) {
  float best = kNegInf;
  for (int32_t i = 0; i < n; ++i) best = x[i] > best ? x[i] : best;
  return best;
}

// Sum (and count) of the w >= t in one block of `len` values.
float block_sum(const float* w, int32_t len, float t, int32_t* count) {
  if (len == kBlock && have_avx2()) return detail::block_sum_avx2(w, t, count);
  float sum = 0.0f;
  int32_t c = 0;
  for (int32_t i = 0; i < len; ++i) {
    if (w[i] >= t) {
      sum += w[i];
      ++c;
    }
  }
  if (count != nullptr) *count = c;
  return sum;
}

}  // namespace

void set_portable_only(bool portable_only) {
  g_portable_only.store(portable_only);
}

float scale_clean_max(const float* logits, float* z, int32_t n, float scale) {
  return have_avx2() ? detail::scale_clean_max_avx2(logits, z, n, scale)
                     : scale_clean_max_generic(logits, z, n, scale);
}

float max_ignoring_nan(const float* x, int32_t n) {
  return have_avx2() ? detail::max_ignoring_nan_avx2(x, n) : max_ignoring_nan_generic(x, n);
}

double exp_shifted(const float* x, float* w, int32_t n, float shift) {
  return have_avx2() ? detail::exp_shifted_avx2(x, w, n, shift)
                     : exp_shifted_generic(x, w, n, shift);
}

int32_t first_greater(const float* x, int32_t from, int32_t n, float threshold) {
  if (have_avx2()) return detail::first_greater_avx2(x, from, n, threshold);
  for (int32_t i = from; i < n; ++i) {
    if (x[i] > threshold) return i;
  }
  return n;
}

int32_t argmax(const float* x, int32_t n) {
  const float best = max_ignoring_nan(x, n);
  if (!(best > kNegInf)) return -1;
  // The first index holding the max: the first one greater than the next float below it.
  return first_greater(x, 0, n, std::nextafter(best, kNegInf));
}

double sum_at_least(const float* w, int32_t n, float t, int64_t* count) {
  double sum = 0.0;
  int64_t total_count = 0;
  for (int32_t i = 0; i < n; i += kBlock) {
    int32_t c = 0;
    sum += block_sum(w + i, std::min(kBlock, n - i), t, &c);
    total_count += c;
  }
  if (count != nullptr) *count = total_count;
  return sum;
}

int32_t find_cumulative(const float* w, int32_t n, float t, double target) {
  double cum = 0.0;
  int32_t end = n;  // where to look back from when rounding leaves the target out of reach
  for (int32_t i = 0; i < n; i += kBlock) {
    const int32_t len = std::min(kBlock, n - i);
    const float s = block_sum(w + i, len, t, nullptr);
    if (cum + s <= target) {
      cum += s;
      continue;
    }
    // The target falls in this block: walk it one value at a time.
    for (int32_t j = i; j < i + len; ++j) {
      if (w[j] < t) continue;
      cum += w[j];
      if (cum > target) return j;
    }
    end = i + len;  // the block's float sum crossed, its double walk did not
    break;
  }
  for (int32_t j = end; j-- > 0;) {
    if (w[j] >= t) return j;
  }
  return -1;
}

size_t gather_at_least(const float* w, int32_t n, float t, WeightedToken* out) {
  if (have_avx2()) return detail::gather_at_least_avx2(w, n, t, out);
  size_t count = 0;
  for (int32_t i = 0; i < n; ++i) {
    if (w[i] >= t) out[count++] = {w[i], i};
  }
  return count;
}

}  // namespace loom::vec
