#include "sched/waiting_queue.h"

#include "util/check.h"

namespace loom {

void WaitingQueue::insert(const WaitKey& key, int64_t num_tokens) {
  const bool inserted = order_.insert(key).second;
  LOOM_CHECK(inserted, "sequence %lld queued twice", static_cast<long long>(key.id));
  if (track_oldest_) by_arrival_.emplace(key.arrival_us, key.id);
  num_tokens_ += num_tokens;
}

void WaitingQueue::erase(const WaitKey& key, int64_t num_tokens) {
  const size_t erased = order_.erase(key);
  LOOM_CHECK(erased == 1, "sequence %lld is not queued", static_cast<long long>(key.id));
  if (track_oldest_) by_arrival_.erase({key.arrival_us, key.id});
  num_tokens_ -= num_tokens;
  LOOM_CHECK(num_tokens_ >= 0);
}

int64_t WaitingQueue::oldest_arrival_us() const {
  LOOM_CHECK(track_oldest_ && !by_arrival_.empty());
  return by_arrival_.begin()->first;
}

}  // namespace loom
