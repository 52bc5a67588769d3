// Online distribution of output lengths (generated tokens) of recently finished requests, for the
// profiled admission policy: a bounded window (the last `window` samples, older ones forgotten)
// and a Fenwick tree of counts over lengths [0, max_len], so record and quantile are O(log
// max_len).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace loom {

class OutputLengthProfile {
 public:
  OutputLengthProfile(int32_t window, int32_t max_len);

  void record(int32_t num_output_tokens);  // clipped to [0, max_len]
  int32_t num_samples() const { return num_samples_; }
  // The smallest length L with at least ceil(q * n) of the n samples <= L. Needs a sample.
  int32_t quantile(double q) const;

 private:
  void add(int32_t length, int32_t delta);

  int32_t max_len_;
  std::vector<int32_t> ring_;  // [window] the samples, oldest at ring_next_ once full
  size_t ring_next_ = 0;
  int32_t num_samples_ = 0;
  std::vector<int32_t> tree_;  // Fenwick tree, 1-based, over lengths 0..max_len
  int32_t top_bit_ = 1;        // highest power of two <= tree size, for the descent
  // The scheduler asks for the same quantile for every running sequence each step.
  mutable double cached_q_ = -1.0;
  mutable int32_t cached_value_ = 0;
};

}  // namespace loom
