#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <deque>
#include <random>

#include "sched/output_length_profile.h"

namespace loom {
namespace {

// Reference: sort the window, take the ceil(q * n)-th smallest.
int32_t sorted_quantile(std::deque<int32_t> window, double q) {
  std::vector<int32_t> v(window.begin(), window.end());
  std::sort(v.begin(), v.end());
  const size_t rank = std::clamp<size_t>(static_cast<size_t>(std::ceil(q * v.size())), 1, v.size());
  return v[rank - 1];
}

TEST(OutputLengthProfile, MatchesSortingOverASlidingWindow) {
  OutputLengthProfile p(/*window=*/50, /*max_len=*/300);
  std::deque<int32_t> window;
  std::mt19937 rng(3);
  std::uniform_int_distribution<int32_t> len(0, 300);
  for (int i = 0; i < 400; ++i) {
    const int32_t x = len(rng);
    p.record(x);
    window.push_back(x);
    if (window.size() > 50) window.pop_front();
    ASSERT_EQ(p.num_samples(), static_cast<int32_t>(window.size()));
    for (double q : {0.01, 0.5, 0.9, 1.0}) {
      ASSERT_EQ(p.quantile(q), sorted_quantile(window, q)) << "i=" << i << " q=" << q;
    }
  }
}

TEST(OutputLengthProfile, ClipsToMaxLen) {
  OutputLengthProfile p(4, 10);
  p.record(500);
  p.record(-3);
  EXPECT_EQ(p.quantile(1.0), 10);
  EXPECT_EQ(p.quantile(0.5), 0);
}

}  // namespace
}  // namespace loom
