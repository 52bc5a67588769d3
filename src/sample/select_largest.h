// Partial selection of the largest weights of a row, for top-k and top-p without sorting the
// vocabulary: a radix select on the float bits of the weights (which order like the weights, as
// all are >= 0), 8 bits per level, then a sort of the few that share the top 24 bits.
#pragma once

#include <cstddef>
#include <span>

#include "core/ids.h"

namespace loom {

struct WeightedToken {
  float w;  // exp(z - max z) in [0, 1]: the probability relative to the best token
  TokenId id;
};

// Order of "larger": w descending, ties to the lower id.
inline bool larger(const WeightedToken& a, const WeightedToken& b) {
  return a.w > b.w || (a.w == b.w && a.id < b.id);
}

// Reorders `tokens` so that its first `result` entries (in no particular order) are
//   by_mass == false: the `target` largest (target = k >= 1);
//   by_mass == true:  the smallest set of largest entries whose weights sum to >= target.
// Keeps everything when the target is not reachable, and at least the largest entry always.
size_t select_largest(std::span<WeightedToken> tokens, double target, bool by_mass);

}  // namespace loom
