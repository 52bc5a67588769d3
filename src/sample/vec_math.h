// Vectorized loops over one row of logits ([vocab] floats) for the sampler: scaling, max and
// exp-sums. An AVX2+FMA version is chosen at run time when the CPU has it, else portable code.
// The two versions may differ in the last bits of exp (a polynomial vs libm), so a seeded draw
// right at a probability boundary can differ between machines, never between runs on one.
#pragma once

#include <cstddef>
#include <cstdint>

#include "sample/select_largest.h"

namespace loom::vec {

// z[i] = logits[i] * scale with NaN -> -inf and +-overflow clamped to +-FLT_MAX (+inf -> FLT_MAX,
// -inf stays -inf). Returns max z, or -inf when every entry is -inf / NaN.
float scale_clean_max(const float* logits, float* z, int32_t n, float scale);

// Largest value ignoring NaN (+inf counts); -inf when none.
float max_ignoring_nan(const float* x, int32_t n);

// Sum of exp(x[i] - shift) over i, accumulated in double; when w is not null also stores each
// term in w[i] (w may alias x). NaN inputs contribute 0. Needs shift >= every x[i] to stay in
// range (callers pass the max).
double exp_shifted(const float* x, float* w, int32_t n, float shift);

// Index of the largest value, ties to the lowest index (NaN never wins); -1 when every value is
// -inf or NaN.
int32_t argmax(const float* x, int32_t n);

// First index i in [from, n) with x[i] > threshold (NaN never is), or n.
int32_t first_greater(const float* x, int32_t from, int32_t n, float threshold);

// Weights are summed in blocks of kBlock values (float inside a block, double across blocks);
// sum_at_least and find_cumulative use the same blocks, so a target below the total is found.
inline constexpr int32_t kBlock = 64;

// Sum of the w[i] >= t over i (t > 0), and their count when `count` is not null.
double sum_at_least(const float* w, int32_t n, float t, int64_t* count);

// The first index where the running sum of the w[i] >= t (t > 0) exceeds `target`, with the
// sums grouped as in sum_at_least; the last index with such a weight when rounding leaves the
// target out of reach; -1 when there is none.
int32_t find_cumulative(const float* w, int32_t n, float t, double target);

// Appends {w[i], i} for every w[i] >= t (t > 0) to `out` (room for n entries); returns the count.
size_t gather_at_least(const float* w, int32_t n, float t, WeightedToken* out);

// Forces the portable code even on an AVX2 machine (tests compare the two; not for serving).
void set_portable_only(bool portable_only);

namespace detail {
float max_ignoring_nan_avx2(const float* x, int32_t n);
int32_t first_greater_avx2(const float* x, int32_t from, int32_t n, float threshold);
float block_sum_avx2(const float* w, float t, int32_t* count);  // kBlock values
size_t gather_at_least_avx2(const float* w, int32_t n, float t, WeightedToken* out);
float scale_clean_max_avx2(const float* logits, float* z, int32_t n, float scale);
double exp_shifted_avx2(const float* x, float* w, int32_t n, float shift);
}  // namespace detail

}  // namespace loom::vec
