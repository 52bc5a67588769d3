// The per-iteration contract: the scheduler's plan in, the runner's sampled tokens out.
// One engine step = plan = scheduler.schedule(); result = runner.execute(plan);
//                   scheduler.update(plan, result).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "core/ids.h"
#include "core/request.h"

namespace loom {

// One sequence's share of a step: a prefill chunk (num_new_tokens >= 1 prompt tokens, or the
// tokens to recompute after preemption) or a decode (num_new_tokens == 1).
// The spans point into the scheduler's Sequence and stay valid until update() returns.
struct ScheduledSeq {
  SeqId id = 0;
  int32_t start_pos = 0;  // == num_computed_tokens before this step
  int32_t num_new_tokens =
      0;                // tokens fed this step: tokens[start_pos, start_pos + num_new_tokens)
  bool sample = false;  // true when this step reaches the end of the known tokens
  std::span<const TokenId> new_tokens;   // size num_new_tokens
  std::span<const BlockId> block_table;  // device blocks covering start_pos + num_new_tokens
};

struct BlockCopy {
  BlockId src = kNoBlock;
  BlockId dst = kNoBlock;
};

struct StepPlan {
  std::vector<ScheduledSeq> seqs;   // decodes first, then prefill chunks
  std::vector<BlockCopy> swap_out;  // device src -> host dst; done before the forward
  std::vector<BlockCopy> swap_in;   // host src -> device dst; done before the forward
  std::vector<BlockCopy> copies;    // device -> device (copy-on-write); before the forward
  std::vector<SeqId> preempted;     // left the batch this step (runner drops per-seq state)
  std::vector<SeqId> finished;      // finished/aborted since the last plan
  int32_t num_tokens = 0;           // sum of num_new_tokens; <= max_num_batched_tokens
  // Padded static batching (SchedulerConfig::static_padding): rows of compute the batch's
  // finished members still cost. The runner repeats decode rows of the plan that many times;
  // their results are discarded.
  int32_t num_padding_rows = 0;
  int64_t iteration = 0;

  bool empty() const { return seqs.empty(); }
};

// Parallel arrays over the plan's seqs with sample == true, in plan order.
struct StepResult {
  std::vector<SeqId> ids;
  std::vector<TokenId> sampled;
  std::vector<TokenLogprobs> logprobs;  // empty, or parallel to ids (entries may be empty)
  int64_t execute_us = 0;               // wall time of the forward + sampling
};

}  // namespace loom
