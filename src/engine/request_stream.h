// The per-request output channel: the engine thread pushes deltas, one client thread pops them.
// Unbounded on purpose (a request's output is bounded by max_tokens): the engine never waits
// for a slow reader.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>

#include "core/request.h"

namespace loom {

class RequestStream {
 public:
  explicit RequestStream(SeqId id) : id_(id) {}
  SeqId id() const { return id_; }

  // Engine side.
  void push(RequestOutput out) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (out.finish) finished_ = true;
      queue_.push_back(std::move(out));
    }
    cv_.notify_one();
  }

  // Client side: the next delta, or nullopt on timeout. After the delta with `finish` set,
  // no more come.
  std::optional<RequestOutput> next(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    if (!cv_.wait_for(lock, timeout, [&] { return !queue_.empty(); })) return std::nullopt;
    RequestOutput out = std::move(queue_.front());
    queue_.pop_front();
    return out;
  }
  bool finished() const {
    std::lock_guard<std::mutex> lock(mu_);
    return finished_;
  }

 private:
  SeqId id_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<RequestOutput> queue_;
  bool finished_ = false;
};

}  // namespace loom
