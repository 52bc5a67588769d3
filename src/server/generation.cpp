#include "server/generation.h"

namespace loom {

ApiError submit_error(const SubmitResult& result, int retry_after_s) {
  switch (result.code) {
    case SubmitErrorCode::kQueueFull:
      return queue_full(
          result.error.empty() ? "The request queue is full; retry later." : result.error,
          retry_after_s);
    case SubmitErrorCode::kShuttingDown:
      return shutting_down();
    case SubmitErrorCode::kTooLong:
      return invalid_request(result.error, "max_tokens", "context_length_exceeded");
    case SubmitErrorCode::kInvalid:
    case SubmitErrorCode::kNone:
      break;
  }
  // The engine's message starts with the field name ("top_k must be ...").
  std::string param = result.error.substr(0, result.error.find(' '));
  return invalid_request(result.error, param);
}

std::variant<std::unique_ptr<Generation>, ApiError> Generation::start(EnginePort& engine,
                                                                      std::vector<Request> requests,
                                                                      int retry_after_s) {
  std::unique_ptr<Generation> gen(new Generation(engine));
  for (Request& r : requests) {
    SubmitResult result = engine.submit(std::move(r));
    if (!result.ok()) return submit_error(result, retry_after_s);  // ~Generation aborts the rest
    gen->streams_.push_back(std::move(result.stream));
    gen->done_.push_back(false);
  }
  return gen;
}

Generation::~Generation() {
  abort_all();
}

void Generation::abort_all() {
  if (aborted_) return;
  aborted_ = true;
  for (size_t i = 0; i < streams_.size(); ++i)
    if (!done_[i]) engine_.abort(streams_[i]->id());
}

std::optional<Generation::Delta> Generation::next(std::chrono::milliseconds timeout) {
  const size_t n = streams_.size();
  if (finished()) return std::nullopt;
  auto take = [&](size_t i, std::chrono::milliseconds wait) -> std::optional<Delta> {
    std::optional<RequestOutput> out = streams_[i]->next(wait);
    if (!out) return std::nullopt;
    if (out->finish) {
      done_[i] = true;
      ++num_finished_;
    }
    cursor_ = (i + 1) % n;
    return Delta{static_cast<int32_t>(i), std::move(*out)};
  };
  // A pass that takes whatever is already there, starting after the last choice served.
  for (size_t k = 0; k < n; ++k) {
    size_t i = (cursor_ + k) % n;
    if (done_[i]) continue;
    if (auto d = take(i, std::chrono::milliseconds(0))) return d;
  }
  // Nothing ready: with one stream wait on it; with several, wait a short slice on each in turn
  // (a stream has no shared wake-up), until the timeout is spent.
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  const auto slice = n == 1 ? timeout : std::chrono::milliseconds(2);
  do {
    for (size_t k = 0; k < n; ++k) {
      size_t i = (cursor_ + k) % n;
      if (done_[i]) continue;
      if (auto d = take(i, slice)) return d;
      if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    }
  } while (std::chrono::steady_clock::now() < deadline);
  return std::nullopt;
}

}  // namespace loom
