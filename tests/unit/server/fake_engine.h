// A scripted engine for HTTP tests: each request "generates" the letters of its prompt text
// back (one token per step, `step_ms` apart) on its own thread, honours abort, and records what
// it was given.
#pragma once

#include <atomic>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "server/engine_port.h"
#include "unit/server/fake_tokenizer.h"

namespace loom::testing {

class FakeEngine final : public EnginePort {
 public:
  explicit FakeEngine(int step_ms = 1) : step_ms_(step_ms) {}
  ~FakeEngine() override {
    for (auto& t : threads_) t.join();
  }

  SubmitResult submit(Request request) override {
    SubmitResult r;
    if (refuse_code != SubmitErrorCode::kNone) {
      r.code = refuse_code;
      r.error = "refused by the test";
      return r;
    }
    std::lock_guard<std::mutex> lock(mu_);
    const SeqId id = next_id_++;
    submitted.push_back(request);
    auto stream = std::make_shared<RequestStream>(id);
    r.stream = stream;
    threads_.emplace_back([this, id, stream, request] { run(id, *stream, request); });
    return r;
  }
  void abort(SeqId id) override {
    std::lock_guard<std::mutex> lock(mu_);
    aborted.insert(id);
  }
  bool accepting() const override { return true; }
  EngineMetrics& metrics() override { return metrics_; }
  const Tokenizer& tokenizer() const override { return tokenizer_; }
  int32_t max_context() const override { return 64; }
  int32_t kv_block_size() const override { return 16; }

  size_t num_aborted() {
    std::lock_guard<std::mutex> lock(mu_);
    return aborted.size();
  }
  std::vector<Request> requests() {
    std::lock_guard<std::mutex> lock(mu_);
    return submitted;
  }

  SubmitErrorCode refuse_code = SubmitErrorCode::kNone;
  std::vector<Request> submitted;
  std::set<SeqId> aborted;

 private:
  bool is_aborted(SeqId id) {
    std::lock_guard<std::mutex> lock(mu_);
    return aborted.count(id) > 0;
  }
  // Echoes the prompt's bytes (prompt[i] with ignore_eos cycling) up to max_tokens; with
  // logprobs, each token gets logprob -1 and one alternative.
  void run(SeqId id, RequestStream& stream, Request request) {
    const auto& prompt = request.prompt;
    const int32_t n = request.sampling.max_tokens;
    for (int32_t i = 0; i < n; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(step_ms_));
      RequestOutput out;
      out.seq_id = id;
      out.num_prompt_tokens = static_cast<int32_t>(prompt.size());
      if (is_aborted(id)) {
        out.finish = FinishReason::kAbort;
        out.num_output_tokens = i;
        stream.push(std::move(out));
        return;
      }
      TokenId t = prompt[static_cast<size_t>(i) % prompt.size()];
      out.new_tokens = {t};
      out.new_text = tokenizer_.token_bytes(t);
      if (request.sampling.logprobs >= 0)
        out.new_logprobs = {TokenLogprobs{{t, -1.0f}, {{t, -1.0f}}}};
      out.num_output_tokens = i + 1;
      if (i + 1 == n) out.finish = FinishReason::kLength;
      stream.push(std::move(out));
    }
  }

  int step_ms_;
  std::mutex mu_;
  SeqId next_id_ = 1;
  std::vector<std::thread> threads_;
  EngineMetrics metrics_;
  ByteTokenizer tokenizer_;
};

}  // namespace loom::testing
