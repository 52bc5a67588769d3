// The waiting queue: requests not yet admitted (or sent back by recompute preemption), ordered
// by a key fixed when they enter, so the head is found in O(1) and no step scans the queue.
//
// Order: (rank, arrival_us, id) ascending, where rank = priority without aging, and
// rank = priority * aging_us_per_level + arrival_us with aging. The second form is aging in
// continuous form: a request that has waited w us ranks like one of priority
// `priority - w / aging_us_per_level` arriving now, i.e. it gains one level per
// aging_us_per_level waited, and the order between two waiting requests never changes with time
// (both age at the same rate), which is what lets an ordered set hold it.
// A recompute victim re-enters with its original key: back at its original arrival order.
#pragma once

#include <compare>
#include <cstdint>
#include <set>
#include <utility>

#include "core/ids.h"

namespace loom {

struct WaitKey {
  int64_t rank = 0;
  int64_t arrival_us = 0;
  SeqId id = 0;
  auto operator<=>(const WaitKey&) const = default;
};

class WaitingQueue {
 public:
  // track_oldest: also keep an index by arrival time (dynamic batching needs the oldest wait).
  explicit WaitingQueue(bool track_oldest = false) : track_oldest_(track_oldest) {}

  void insert(const WaitKey& key, int64_t num_tokens);
  void erase(const WaitKey& key, int64_t num_tokens);
  bool empty() const { return order_.empty(); }
  int32_t size() const { return static_cast<int32_t>(order_.size()); }
  int64_t num_tokens() const { return num_tokens_; }
  const WaitKey& front() const { return *order_.begin(); }
  // Arrival time of the longest-waiting request; needs track_oldest and a non-empty queue.
  int64_t oldest_arrival_us() const;
  bool contains(const WaitKey& key) const { return order_.count(key) != 0; }

  auto begin() const { return order_.begin(); }
  auto end() const { return order_.end(); }

 private:
  bool track_oldest_;
  std::set<WaitKey> order_;
  std::set<std::pair<int64_t, SeqId>> by_arrival_;
  int64_t num_tokens_ = 0;  // prompt (or prompt + output, for recompute victims) tokens queued
};

}  // namespace loom
