#include "sched/output_length_profile.h"

#include <algorithm>
#include <cmath>

#include "util/check.h"

namespace loom {

OutputLengthProfile::OutputLengthProfile(int32_t window, int32_t max_len) : max_len_(max_len) {
  LOOM_CHECK(window >= 1 && max_len >= 0);
  ring_.assign(static_cast<size_t>(window), 0);
  tree_.assign(static_cast<size_t>(max_len) + 2, 0);
  while (top_bit_ * 2 <= max_len + 1) top_bit_ *= 2;
}

void OutputLengthProfile::add(int32_t length, int32_t delta) {
  for (size_t i = static_cast<size_t>(length) + 1; i < tree_.size(); i += i & (~i + 1)) {
    tree_[i] += delta;
  }
}

void OutputLengthProfile::record(int32_t num_output_tokens) {
  const int32_t length = std::clamp(num_output_tokens, 0, max_len_);
  cached_q_ = -1.0;
  if (num_samples_ == static_cast<int32_t>(ring_.size())) {
    add(ring_[ring_next_], -1);  // forget the oldest
  } else {
    ++num_samples_;
  }
  ring_[ring_next_] = length;
  add(length, +1);
  ring_next_ = (ring_next_ + 1) % ring_.size();
}

int32_t OutputLengthProfile::quantile(double q) const {
  LOOM_CHECK(num_samples_ > 0, "quantile of an empty profile");
  if (q == cached_q_) return cached_value_;
  const int32_t rank =
      std::clamp(static_cast<int32_t>(std::ceil(q * num_samples_)), 1, num_samples_);
  // Fenwick descent: the largest position whose prefix count is < rank; the answer is the next.
  size_t pos = 0;
  int32_t below = 0;
  for (size_t step = static_cast<size_t>(top_bit_); step > 0; step >>= 1) {
    const size_t next = pos + step;
    if (next < tree_.size() && below + tree_[next] < rank) {
      pos = next;
      below += tree_[next];
    }
  }
  cached_q_ = q;
  cached_value_ = static_cast<int32_t>(pos);  // 1-based position pos + 1 holds length pos
  return cached_value_;
}

}  // namespace loom
