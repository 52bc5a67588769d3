// select_largest against a full sort on random rows, with and without many equal weights.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <set>
#include <vector>

#include "sample/select_largest.h"

namespace loom {
namespace {

std::vector<WeightedToken> random_row(std::mt19937& rng, int n, int num_distinct) {
  std::vector<WeightedToken> row;
  std::uniform_real_distribution<float> uni(0.0f, 1.0f);
  std::vector<float> values;
  for (int i = 0; i < num_distinct; ++i) values.push_back(std::exp(-12.0f * uni(rng)));
  for (int i = 0; i < n; ++i) row.push_back({values[rng() % values.size()], i});
  std::shuffle(row.begin(), row.end(), rng);
  return row;
}

// Reference: sort everything, take the prefix.
std::set<TokenId> reference(std::vector<WeightedToken> row, double target, bool by_mass) {
  std::sort(row.begin(), row.end(), larger);
  std::set<TokenId> kept;
  double acc = 0.0;
  for (const auto& t : row) {
    kept.insert(t.id);
    acc += by_mass ? t.w : 1.0;
    if (acc >= target) break;
  }
  return kept;
}

std::set<TokenId> run(std::vector<WeightedToken> row, double target, bool by_mass) {
  const size_t n = select_largest(row, target, by_mass);
  std::set<TokenId> kept;
  for (size_t i = 0; i < n; ++i) kept.insert(row[i].id);
  return kept;
}

TEST(SelectLargest, CountModeMatchesSort) {
  std::mt19937 rng(1);
  for (int trial = 0; trial < 24; ++trial) {
    const int n = trial % 3 == 0 ? 50 : 20000;
    const int distinct = trial % 2 == 0 ? 3 : 100000;  // heavy ties or almost none
    const auto row = random_row(rng, n, distinct);
    for (double k : {1.0, 7.0, 50.0, 1000.0, static_cast<double>(n), n + 5.0}) {
      EXPECT_EQ(run(row, k, false), reference(row, k, false)) << "trial " << trial << " k " << k;
    }
  }
}

TEST(SelectLargest, MassModeMatchesSort) {
  std::mt19937 rng(2);
  for (int trial = 0; trial < 24; ++trial) {
    const int n = trial % 3 == 0 ? 50 : 20000;
    const int distinct = trial % 2 == 0 ? 2 : 100000;
    const auto row = random_row(rng, n, distinct);
    double total = 0.0;
    for (const auto& t : row) total += t.w;
    for (double frac : {0.0, 0.013, 0.31, 0.5, 0.9, 0.999, 1.5}) {
      const double target = frac * total;
      EXPECT_EQ(run(row, target, true), reference(row, target, true))
          << "trial " << trial << " frac " << frac;
    }
  }
}

TEST(SelectLargest, AllEqualWeightsKeepLowestIds) {
  std::vector<WeightedToken> row;
  for (int i = 0; i < 10000; ++i) row.push_back({0.25f, 9999 - i});
  const size_t n = select_largest(row, 0.25 * 1234.5, true);  // needs 1235 tokens
  ASSERT_EQ(n, 1235u);
  std::set<TokenId> kept;
  for (size_t i = 0; i < n; ++i) kept.insert(row[i].id);
  EXPECT_EQ(*kept.begin(), 0);
  EXPECT_EQ(*kept.rbegin(), 1234);
}

}  // namespace
}  // namespace loom
