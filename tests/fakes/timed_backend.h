// A backend without a model for engine tests and benchmarks: each step "computes" for a fixed
// device time, as a GPU stream would (launch returns at once, the tokens are ready device_us
// after the step could start), and samples token ids that depend only on the row's input token
// and position. So serial and overlapped engines must produce the same streams, and a pending
// token filled wrongly changes every later token of its sequence.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <deque>
#include <span>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "util/check.h"
#include "util/clock.h"

namespace loom::fakes {

class TimedBackend : public Backend {
 public:
  // num_blocks of 16 tokens; sampled ids lie in [first_id, vocab) (special ids stay unused),
  // except that eos_every > 0 makes every eos_every-th position of a sequence sample `eos_id`.
  TimedBackend(int32_t vocab, int32_t num_blocks, int64_t device_us, bool overlap = true)
      : vocab_(vocab), num_blocks_(num_blocks), device_us_(device_us), overlap_(overlap) {}

  int32_t first_id = 200;
  int32_t eos_id = -1;
  int32_t eos_every = 0;

  std::string name() const override { return "timed"; }
  int32_t vocab_size() const override { return vocab_; }
  KvPoolInfo kv_pool() const override {
    KvPoolInfo p;
    p.block_size = 16;
    p.num_device_blocks = num_blocks_;
    p.num_host_blocks = num_blocks_ / 4;
    p.bytes_per_block = 1 << 16;
    p.dtype = "bf16";
    return p;
  }
  bool supports_overlap() const override { return overlap_; }

  // The token a row samples, given its input token and position.
  TokenId token_for(TokenId input, int32_t position) const {
    if (eos_every > 0 && eos_id >= 0 && (position + 1) % eos_every == 0) return eos_id;
    uint64_t h = static_cast<uint64_t>(input) * 0x9E3779B97F4A7C15ull ^
                 (static_cast<uint64_t>(position) + 0x632BE59BD9B4E019ull);
    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9ull;
    h ^= h >> 32;
    return static_cast<TokenId>(first_id + h % static_cast<uint64_t>(vocab_ - first_id));
  }

  void forward(const ForwardBatch& batch, float* logits) override {
    LOOM_CHECK(batch.pending_tokens.empty());
    wait_until(now_us() + device_us_);
    const size_t R = batch.logits_rows.size();
    std::fill(logits, logits + R * static_cast<size_t>(vocab_), 0.0f);
    for (size_t i = 0; i < R; ++i) {
      const int32_t t = batch.logits_rows[i];
      logits[i * vocab_ + token_for(batch.tokens[t], batch.positions[t])] = 1.0f;
    }
  }
  bool forward_sample(const ForwardBatch& batch, std::span<const SampleInput> rows,
                      std::span<SampleOutput> out) override {
    launch_sample(batch, rows);
    finish_sample(out);
    return true;
  }
  bool launch_sample(const ForwardBatch& batch, std::span<const SampleInput> rows) override {
    check_forward_batch(batch, 16, num_blocks_, vocab_);
    LOOM_CHECK(launched_.size() < (overlap_ ? 2u : 1u), "too many steps in flight");
    LOOM_CHECK(batch.pending_tokens.empty() || (overlap_ && !last_ids_.empty()));
    std::vector<TokenId> inputs(batch.tokens.begin(), batch.tokens.end());
    for (const PendingToken& p : batch.pending_tokens) {
      LOOM_CHECK(p.prev_row < static_cast<int32_t>(last_ids_.size()));
      inputs[p.index] = last_ids_[p.prev_row];
    }
    Step s;
    s.ready_us = std::max(now_us(), launched_.empty() ? 0 : launched_.back().ready_us) + device_us_;
    LOOM_CHECK(rows.size() == batch.logits_rows.size());
    for (size_t i = 0; i < rows.size(); ++i) {
      const int32_t t = batch.logits_rows[i];
      s.ids.push_back(token_for(inputs[t], batch.positions[t]));
    }
    last_ids_ = s.ids;
    launched_.push_back(std::move(s));
    ++steps_;
    pending_filled_.fetch_add(static_cast<int64_t>(batch.pending_tokens.size()));
    return true;
  }
  void finish_sample(std::span<SampleOutput> out) override {
    LOOM_CHECK(!launched_.empty());
    Step s = std::move(launched_.front());
    launched_.pop_front();
    LOOM_CHECK(out.size() == s.ids.size());
    wait_until(s.ready_us);
    for (size_t i = 0; i < out.size(); ++i) {
      out[i].token = s.ids[i];
      out[i].logprobs = TokenLogprobs{};
    }
  }
  void swap_out(std::span<const BlockCopy>) override {}
  void swap_in(std::span<const BlockCopy>) override {}
  void copy_blocks(std::span<const BlockCopy>) override {}

  int64_t steps() const { return steps_.load(); }
  int64_t pending_filled() const { return pending_filled_.load(); }

 private:
  struct Step {
    int64_t ready_us = 0;
    std::vector<TokenId> ids;
  };
  static void wait_until(int64_t t) {
    while (now_us() < t) {
    }
  }
  int32_t vocab_;
  int32_t num_blocks_;
  int64_t device_us_;
  bool overlap_;
  std::deque<Step> launched_;
  std::vector<TokenId> last_ids_;
  std::atomic<int64_t> steps_{0};  // read by other threads (benchmarks)
  std::atomic<int64_t> pending_filled_{0};
};

}  // namespace loom::fakes
