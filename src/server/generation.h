// One HTTP request's engine work: one engine request per (prompt, sample), their output
// streams, and the merge of their deltas into choices. Destroying it aborts whatever still
// runs, so a handler that returns early (client gone, write failed) frees the engine's blocks.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <vector>

#include "server/api_error.h"
#include "server/engine_port.h"

namespace loom {

class Generation {
 public:
  // Submits every request in order; if one is refused, aborts those already submitted and
  // returns the refusal as an API error (400 / 429 / 503).
  static std::variant<std::unique_ptr<Generation>, ApiError> start(EnginePort& engine,
                                                                   std::vector<Request> requests,
                                                                   int retry_after_s);
  ~Generation();
  Generation(const Generation&) = delete;
  Generation& operator=(const Generation&) = delete;

  struct Delta {
    int32_t choice = 0;  // index into the submitted requests
    RequestOutput output;
  };
  // The next delta of any unfinished choice (round-robin so that no choice starves), or nullopt
  // after `timeout` without one. Blocks only the calling (connection) thread.
  std::optional<Delta> next(std::chrono::milliseconds timeout);
  bool finished() const { return num_finished_ == streams_.size(); }
  int32_t size() const { return static_cast<int32_t>(streams_.size()); }
  // Aborts every unfinished engine request at once.
  void abort_all();

 private:
  explicit Generation(EnginePort& engine) : engine_(engine) {}
  EnginePort& engine_;
  std::vector<std::shared_ptr<RequestStream>> streams_;
  std::vector<bool> done_;
  size_t num_finished_ = 0;
  size_t cursor_ = 0;
  bool aborted_ = false;
};

// The engine's submit refusal as the HTTP error it maps to.
ApiError submit_error(const SubmitResult& result, int retry_after_s);

}  // namespace loom
