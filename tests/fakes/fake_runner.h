// A model-free runner for scheduler tests and benchmarks. It "samples" a deterministic token per
// sequence and position, and (with verify on) simulates the KV pools: every slot a forward
// writes records a hash of the whole token prefix up to that position, swap and copy plans move
// slot contents between pools, and before each forward every position the sequence already had
// computed is checked against its tokens. A wrong prefix-cache hit, a lost swap, or a block
// table that does not cover the computed tokens aborts (LOOM_CHECK) with the position.
#pragma once

#include <cstdint>
#include <vector>

#include "core/step.h"
#include "sched/scheduler.h"
#include "util/check.h"

namespace loom::fakes {

// The token a sequence "generates" at `position` (index into its tokens): depends only on the
// sequence and the position, so preemption, chunking or batching must never change outputs.
inline TokenId fake_token(SeqId id, int32_t position) {
  uint64_t x = static_cast<uint64_t>(id) * 0x9e3779b97f4a7c15ull + static_cast<uint64_t>(position);
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return static_cast<TokenId>(x % 1000);
}

class FakeRunner {
 public:
  FakeRunner(const SchedulerConfig& config, bool verify = true)
      : block_size_(config.block_size), verify_(verify) {
    if (verify_) {
      device_.assign(static_cast<size_t>(config.num_device_blocks) * block_size_, 0);
      host_.assign(static_cast<size_t>(config.num_host_blocks) * block_size_, 0);
    }
  }

  // Takes the scheduler only to read sequences' full token lists for verification.
  StepResult execute(const StepPlan& plan, const Scheduler& sched) {
    StepResult result;
    if (verify_) {
      // Same order as a backend: swap out, swap in, copies, then the forward.
      for (const BlockCopy& c : plan.swap_out) copy_block(device_, c.src, host_, c.dst);
      for (const BlockCopy& c : plan.swap_in) copy_block(host_, c.src, device_, c.dst);
      for (const BlockCopy& c : plan.copies) copy_block(device_, c.src, device_, c.dst);
    }
    for (const ScheduledSeq& ss : plan.seqs) {
      const Sequence* s = sched.find(ss.id);
      LOOM_CHECK(s != nullptr, "plan names unknown seq %lld", (long long)ss.id);
      if (verify_) verify_and_write(ss, *s);
      if (ss.sample) {
        result.ids.push_back(ss.id);
        result.sampled.push_back(fake_token(ss.id, ss.start_pos + ss.num_new_tokens));
      }
    }
    return result;
  }

  int64_t num_verified_slots() const { return num_verified_slots_; }

 private:
  static uint64_t mix(uint64_t h, TokenId t) {
    h ^= static_cast<uint64_t>(static_cast<uint32_t>(t)) + 0x9e3779b97f4a7c15ull + (h << 6) +
         (h >> 2);
    return h * 0xff51afd7ed558ccdull + 1;
  }

  void copy_block(const std::vector<uint64_t>& from, BlockId src, std::vector<uint64_t>& to,
                  BlockId dst) {
    const size_t bs = static_cast<size_t>(block_size_);
    LOOM_CHECK(src >= 0 && (static_cast<size_t>(src) + 1) * bs <= from.size(), "src %d", src);
    LOOM_CHECK(dst >= 0 && (static_cast<size_t>(dst) + 1) * bs <= to.size(), "dst %d", dst);
    std::copy_n(from.begin() + static_cast<ptrdiff_t>(src * bs), bs,
                to.begin() + static_cast<ptrdiff_t>(dst * bs));
  }

  uint64_t& slot(const ScheduledSeq& ss, int32_t pos) {
    const BlockId b = ss.block_table[static_cast<size_t>(pos / block_size_)];
    return device_[static_cast<size_t>(b) * block_size_ + static_cast<size_t>(pos % block_size_)];
  }

  void verify_and_write(const ScheduledSeq& ss, const Sequence& s) {
    const int32_t end = ss.start_pos + ss.num_new_tokens;
    LOOM_CHECK(ss.num_new_tokens >= 1 && end <= s.num_tokens());
    LOOM_CHECK(ss.start_pos == s.num_computed_tokens);
    LOOM_CHECK(ss.new_tokens.size() == static_cast<size_t>(ss.num_new_tokens));
    LOOM_CHECK(ss.block_table.size() * block_size_ >= static_cast<size_t>(end),
               "block table of seq %lld does not cover its tokens", (long long)ss.id);
    for (int32_t p = 0; p < ss.num_new_tokens; ++p) {
      LOOM_CHECK(ss.new_tokens[p] == s.tokens[static_cast<size_t>(ss.start_pos + p)]);
    }
    uint64_t h = 0x1234;
    for (int32_t p = 0; p < end; ++p) {
      // A pending token (overlapped steps) is what this runner sampled there; a device fills
      // it in the same way before the forward reads it.
      const TokenId t = s.tokens[static_cast<size_t>(p)];
      LOOM_CHECK(t != kPendingToken || p >= s.num_known_tokens(), "seq %lld: pending token %d",
                 (long long)ss.id, p);
      h = mix(h, t == kPendingToken ? fake_token(ss.id, p) : t);
      if (p < ss.start_pos) {
        LOOM_CHECK(slot(ss, p) == h, "seq %lld: K/V at position %d is not what its tokens computed",
                   (long long)ss.id, p);
        ++num_verified_slots_;
      } else {
        slot(ss, p) = h;
      }
    }
  }

  int32_t block_size_;
  bool verify_;
  std::vector<uint64_t> device_;  // [num_device_blocks][block_size] prefix hash per slot
  std::vector<uint64_t> host_;    // [num_host_blocks][block_size]
  int64_t num_verified_slots_ = 0;
};

}  // namespace loom::fakes
