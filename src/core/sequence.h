// One sequence as the engine tracks it: its tokens, how much of them is in the KV cache, and where.
// Owned by the scheduler, mutated only on the engine thread.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "core/ids.h"
#include "core/request.h"

namespace loom {

// Status transitions (anything else is a bug and aborts):
//   kWaiting  -> kRunning   admitted: blocks allocated (prefix-cache hits count as computed)
//   kRunning  -> kWaiting   preempted by recompute: blocks freed, num_computed_tokens reset
//   kRunning  -> kSwapped   preempted by swap: blocks copied to the host pool, device blocks freed
//   kSwapped  -> kRunning   swapped back in: host blocks copied to fresh device blocks
//   any       -> kFinished  stop / length / abort / error: every block freed in the same step
enum class SeqStatus { kWaiting, kRunning, kSwapped, kFinished };
const char* seq_status_name(SeqStatus status);

struct Sequence {
  SeqId id = 0;
  Request request;              // prompt, sampling params, priority, arrival
  std::vector<TokenId> tokens;  // prompt followed by generated tokens
  // Trailing entries of `tokens` that are still kPendingToken: sampled by a step in flight whose
  // tokens have not come back (overlapped steps; see Scheduler::commit). At most two.
  int32_t num_pending_tokens = 0;
  int32_t num_prompt_tokens = 0;
  int32_t num_computed_tokens = 0;  // leading tokens whose K/V are in the cache
  SeqStatus status = SeqStatus::kWaiting;
  std::vector<BlockId> block_table;  // device blocks, in order; covers num_computed_tokens + more
  std::vector<BlockId> host_blocks;  // host swap-pool blocks while kSwapped
  int32_t num_cached_prompt_tokens = 0;  // prompt tokens found in the prefix cache at admission
  int32_t effective_priority = 0;        // request.priority minus aging credit; scheduler-owned
  std::optional<FinishReason> finish_reason;
  RequestTimings timings;

  int32_t num_tokens() const { return static_cast<int32_t>(tokens.size()); }
  int32_t num_output_tokens() const { return num_tokens() - num_prompt_tokens; }
  // Tokens whose ids are known: all but the pending ones.
  int32_t num_known_tokens() const { return num_tokens() - num_pending_tokens; }
  bool finished() const { return status == SeqStatus::kFinished; }
};

}  // namespace loom
