#include "sample/select_largest.h"

#include <algorithm>
#include <cstdint>
#include <cstring>

namespace loom {
namespace {

inline uint32_t bits_of(float w) {
  uint32_t b;
  std::memcpy(&b, &w, sizeof b);
  return b;  // w >= 0: the bit patterns order like the values
}

// Below this many undecided entries a plain sort beats another histogram pass.
constexpr size_t kSortBelow = 128;

// The mass-mode end game on [lo, hi), where the radix levels could not split further (many
// equal weights): quickselect on `larger` (a total order, ids are unique) that keeps whole upper
// parts while they stay below `remaining`, then a sort of the last few. Expected O(n).
size_t select_by_mass(std::span<WeightedToken> tokens, size_t lo, size_t hi, double remaining) {
  // Pivots from three pseudo-random positions: partitions leave orders (e.g. nearly sorted by
  // id) on which fixed positions pick extreme pivots and the loop turns quadratic. A fixed
  // generator keeps the result deterministic.
  uint64_t rng_state = 0x9E3779B97F4A7C15ULL;
  auto next = [&rng_state]() {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
  };
  while (hi - lo > kSortBelow) {
    auto first = tokens.begin() + lo;
    auto last = tokens.begin() + hi;
    // Median of three as the pivot, moved to the end of the range.
    auto a = first + next() % (hi - lo), b = first + next() % (hi - lo),
         c = first + next() % (hi - lo);
    if (larger(*b, *a)) std::swap(a, b);
    if (larger(*c, *b)) std::swap(b, c);
    if (larger(*b, *a)) std::swap(a, b);
    std::iter_swap(b, last - 1);
    const WeightedToken pivot = *(last - 1);
    auto mid =
        std::partition(first, last - 1, [&](const WeightedToken& t) { return larger(t, pivot); });
    double above = 0.0;
    for (auto it = first; it != mid; ++it) above += it->w;
    if (above >= remaining) {  // the cut lies among the larger ones; drop pivot and below
      hi = static_cast<size_t>(mid - tokens.begin());
      continue;
    }
    std::iter_swap(mid, last - 1);  // the pivot right after the larger ones, all kept
    remaining -= above + pivot.w;
    lo = static_cast<size_t>(mid - tokens.begin()) + 1;
    if (remaining <= 0.0) return lo;
  }
  std::sort(tokens.begin() + lo, tokens.begin() + hi, larger);
  double acc = 0.0;
  for (size_t i = lo; i < hi; ++i) {
    acc += tokens[i].w;
    if (acc >= remaining) return i + 1;
  }
  return hi;
}

}  // namespace

size_t select_largest(std::span<WeightedToken> tokens, double target, bool by_mass) {
  if (tokens.empty()) return 0;
  // [0, lo) kept for sure, [lo, hi) undecided, [hi, n) dropped; `remaining` is what the
  // undecided part must still contribute (a count or a mass).
  size_t lo = 0, hi = tokens.size();
  double remaining = target;
  size_t kept = hi;  // when the target is out of reach, everything stays
  bool decided = false;
  // Levels: bits 30..23 (the exponent; bit 31 is the sign, always 0), 22..15, 14..7.
  for (int shift : {23, 15, 7}) {
    if (hi - lo <= kSortBelow) break;
    uint32_t count[256] = {};
    double mass[256] = {};
    for (size_t i = lo; i < hi; ++i) {
      const uint32_t b = (bits_of(tokens[i].w) >> shift) & 0xFF;
      ++count[b];
      if (by_mass) mass[b] += tokens[i].w;
    }
    // The bucket where the running total (from the top) first reaches `remaining` holds the cut;
    // every bucket above it is kept whole.
    int pivot = -1;
    double above = 0.0;
    for (int b = 255; b >= 0; --b) {
      const double add = by_mass ? mass[b] : static_cast<double>(count[b]);
      if (above + add >= remaining) {
        pivot = b;
        break;
      }
      above += add;
    }
    if (pivot < 0) {  // target out of reach: keep all that is not dropped yet
      kept = hi;
      decided = true;
      break;
    }
    auto key = [shift](const WeightedToken& t) {
      return static_cast<int>((bits_of(t.w) >> shift) & 0xFF);
    };
    auto first = tokens.begin() + lo;
    auto mid = std::partition(first, tokens.begin() + hi,
                              [&](const WeightedToken& t) { return key(t) > pivot; });
    auto end = std::partition(mid, tokens.begin() + hi,
                              [&](const WeightedToken& t) { return key(t) == pivot; });
    remaining -= above;
    lo = static_cast<size_t>(mid - tokens.begin());
    hi = static_cast<size_t>(end - tokens.begin());
  }
  if (!decided) {
    auto first = tokens.begin() + lo;
    auto last = tokens.begin() + hi;
    kept = hi;
    if (!by_mass) {
      const size_t need = remaining <= 0.0 ? 0 : static_cast<size_t>(remaining);
      if (need < hi - lo) {
        if (need > 0) std::nth_element(first, first + (need - 1), last, larger);
        kept = lo + need;
      }
    } else {
      kept = select_by_mass(tokens, lo, hi, remaining);
    }
  }
  if (kept == 0) {  // a target <= 0: the largest entry alone
    std::iter_swap(tokens.begin(), std::min_element(tokens.begin(), tokens.end(), larger));
    kept = 1;
  }
  return kept;
}

}  // namespace loom
