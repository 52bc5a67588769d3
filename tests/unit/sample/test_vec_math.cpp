// The row kernels against plain scalar loops (on an AVX2 machine this checks the AVX2 code,
// including the polynomial exp), on lengths that are not multiples of the vector width.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "sample/vec_math.h"

namespace loom {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

std::vector<float> random_row(int n, uint32_t seed, float sd) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, sd);
  std::vector<float> x(n);
  for (float& v : x) v = dist(rng);
  return x;
}

void check_ExpShiftedMatchesLibm() {
  for (int n : {1, 7, 8, 63, 64, 65, 1000, 49152}) {
    auto x = random_row(n, n, 10.0f);
    if (n > 1) x[0] = -kInf;
    if (n > 3) x[3] = NAN;
    float max_x = -kInf;
    for (float v : x)
      if (v > max_x) max_x = v;
    std::vector<float> w(n);
    const double sum = vec::exp_shifted(x.data(), w.data(), n, max_x);
    double ref_sum = 0.0;
    for (int i = 0; i < n; ++i) {
      // The float subtraction is part of the contract; the exp itself must be ~1 ulp.
      const float diff = x[i] - max_x;
      const double ref = std::isnan(x[i]) ? 0.0 : std::exp(static_cast<double>(diff));
      ref_sum += ref;
      if (diff >= -87.0f) {
        EXPECT_NEAR(w[i] / ref, 1.0, 1e-6) << "x=" << x[i];
      } else {
        EXPECT_LE(w[i], 2e-38) << "x=" << x[i];
      }
    }
    EXPECT_NEAR(sum / ref_sum, 1.0, 1e-6);
    const double sum_only = vec::exp_shifted(x.data(), nullptr, n, max_x);
    EXPECT_EQ(sum_only, sum);
  }
  // The max itself maps to exactly 1 (min_p = 1 relies on it).
  std::vector<float> one = {3.5f, 2.0f};
  std::vector<float> w(2);
  vec::exp_shifted(one.data(), w.data(), 2, 3.5f);
  EXPECT_EQ(w[0], 1.0f);
}

void check_ScaleCleanMax() {
  std::vector<float> x = random_row(37, 1, 3.0f);
  x[5] = NAN;
  x[9] = kInf;
  x[20] = -kInf;
  x[36] = 1e38f;  // overflows when scaled by 10
  std::vector<float> z(x.size());
  const float m = vec::scale_clean_max(x.data(), z.data(), 37, 10.0f);
  EXPECT_EQ(m, std::numeric_limits<float>::max());
  EXPECT_EQ(z[5], -kInf);
  EXPECT_EQ(z[9], std::numeric_limits<float>::max());
  EXPECT_EQ(z[20], -kInf);
  EXPECT_EQ(z[36], std::numeric_limits<float>::max());
  for (int i : {0, 1, 17, 35}) EXPECT_EQ(z[i], x[i] * 10.0f);
  std::vector<float> masked = {-kInf, NAN, -kInf};
  EXPECT_EQ(vec::scale_clean_max(masked.data(), z.data(), 3, 1.0f), -kInf);
}

void check_ArgmaxFirstGreaterAndMax() {
  for (int n : {1, 5, 8, 31, 32, 33, 49152}) {
    auto x = random_row(n, n + 100, 2.0f);
    int expected = 0;
    for (int i = 1; i < n; ++i)
      if (x[i] > x[expected]) expected = i;
    EXPECT_EQ(vec::argmax(x.data(), n), expected);
    EXPECT_EQ(vec::max_ignoring_nan(x.data(), n), x[expected]);
    if (n > 2) {
      x[n - 1] = x[expected];  // a later tie does not win
      EXPECT_EQ(vec::argmax(x.data(), n), expected);
    }
    const float t = 1.5f;
    int first = n;
    for (int i = 3 < n ? 3 : n; i < n; ++i)
      if (x[i] > t) {
        first = i;
        break;
      }
    EXPECT_EQ(vec::first_greater(x.data(), 3 < n ? 3 : n, n, t), first);
  }
  std::vector<float> nan_row = {NAN, NAN, -kInf};
  EXPECT_EQ(vec::argmax(nan_row.data(), 3), -1);
  EXPECT_EQ(vec::max_ignoring_nan(nan_row.data(), 3), -kInf);
}

void check_SumGatherAndFindCumulative() {
  for (int n : {3, 64, 100, 49152}) {
    std::vector<float> w = random_row(n, n + 7, 1.0f);
    for (float& v : w) v = std::fabs(v) > 1.0f ? 0.0f : std::fabs(v);
    const float t = 0.25f;
    double ref = 0.0;
    int64_t ref_count = 0;
    for (float v : w)
      if (v >= t) ref += v, ++ref_count;
    int64_t count = 0;
    const double total = vec::sum_at_least(w.data(), n, t, &count);
    EXPECT_EQ(count, ref_count);
    EXPECT_NEAR(total, ref, 1e-5 * ref + 1e-9);
    std::vector<WeightedToken> out(n);
    ASSERT_EQ(vec::gather_at_least(w.data(), n, t, out.data()), static_cast<size_t>(ref_count));
    for (int64_t i = 0; i < ref_count; ++i) EXPECT_GE(out[i].w, t);
    for (int64_t i = 1; i < ref_count; ++i) EXPECT_LT(out[i - 1].id, out[i].id);
    // find_cumulative agrees with a scalar walk except within rounding of a boundary.
    for (double frac : {0.0, 0.1, 0.5, 0.9, 0.999999, 1.0, 2.0}) {
      const double target = frac * total;
      const int32_t got = vec::find_cumulative(w.data(), n, t, target);
      ASSERT_GE(got, 0);
      EXPECT_GE(w[got], t);
      double before = 0.0;
      for (int32_t i = 0; i < got; ++i)
        if (w[i] >= t) before += w[i];
      if (frac < 1.0) {
        EXPECT_LE(before, target + 1e-5 * total);
        EXPECT_GT(before + w[got], target - 1e-5 * total);
      } else {
        int32_t last = n - 1;
        while (w[last] < t) --last;
        EXPECT_EQ(got, last);
      }
    }
  }
}

// Every test above again with the portable code, and the two versions side by side.
class VecMathPortable : public ::testing::Test {
 protected:
  void SetUp() override { vec::set_portable_only(true); }
  void TearDown() override { vec::set_portable_only(false); }
};

TEST_F(VecMathPortable, MatchesTheVectorizedVersion) {
  auto x = random_row(49152 + 5, 9, 4.0f);
  x[10] = NAN;
  x[11] = -kInf;
  std::vector<float> z_portable(x.size()), z_fast(x.size());
  const int n = static_cast<int>(x.size());
  const float m_portable = vec::scale_clean_max(x.data(), z_portable.data(), n, 1.25f);
  const double s_portable = vec::exp_shifted(z_portable.data(), z_portable.data(), n, m_portable);
  const int32_t a_portable = vec::argmax(x.data(), n);
  int64_t c_portable = 0;
  const double at_least_portable = vec::sum_at_least(z_portable.data(), n, 1e-3f, &c_portable);
  std::vector<WeightedToken> g_portable(n);
  const size_t ng_portable = vec::gather_at_least(z_portable.data(), n, 1e-3f, g_portable.data());
  vec::set_portable_only(false);
  const float m_fast = vec::scale_clean_max(x.data(), z_fast.data(), n, 1.25f);
  const double s_fast = vec::exp_shifted(z_fast.data(), z_fast.data(), n, m_fast);
  EXPECT_EQ(m_portable, m_fast);
  EXPECT_NEAR(s_portable / s_fast, 1.0, 1e-6);
  EXPECT_EQ(a_portable, vec::argmax(x.data(), n));
  for (int i = 0; i < n; ++i) ASSERT_NEAR(z_portable[i], z_fast[i], 2e-6f * z_portable[i] + 1e-38f);
  int64_t c_fast = 0;
  EXPECT_NEAR(at_least_portable, vec::sum_at_least(z_fast.data(), n, 1e-3f, &c_fast),
              1e-5 * at_least_portable);
  EXPECT_NEAR(static_cast<double>(c_portable), static_cast<double>(c_fast), 2.0);  // boundary ulps
  std::vector<WeightedToken> g_fast(n);
  EXPECT_NEAR(static_cast<double>(ng_portable),
              static_cast<double>(vec::gather_at_least(z_fast.data(), n, 1e-3f, g_fast.data())),
              2.0);
}

TEST(VecMath, ExpShiftedMatchesLibm) {
  check_ExpShiftedMatchesLibm();
}
TEST_F(VecMathPortable, ExpShiftedMatchesLibm) {
  check_ExpShiftedMatchesLibm();
}
TEST(VecMath, ScaleCleanMax) {
  check_ScaleCleanMax();
}
TEST_F(VecMathPortable, ScaleCleanMax) {
  check_ScaleCleanMax();
}
TEST(VecMath, ArgmaxFirstGreaterAndMax) {
  check_ArgmaxFirstGreaterAndMax();
}
TEST_F(VecMathPortable, ArgmaxFirstGreaterAndMax) {
  check_ArgmaxFirstGreaterAndMax();
}
TEST(VecMath, SumGatherAndFindCumulative) {
  check_SumGatherAndFindCumulative();
}
TEST_F(VecMathPortable, SumGatherAndFindCumulative) {
  check_SumGatherAndFindCumulative();
}

}  // namespace
}  // namespace loom
