// The iteration-level scheduler. Every engine iteration:
//   StepPlan plan = scheduler.schedule(now_us);
//   (backend: plan.swap_out, plan.swap_in, plan.copies, then the forward over plan.seqs)
//   scheduler.update(plan, result, now_us);   // append sampled tokens, advance computed tokens
//   scheduler.finish(id, reason, now_us);     // for each sequence the engine decides is done
// All calls on one thread (the engine's). Policies are fixed by SchedulerConfig at start-up.
//
// Overlapped steps (the engine plans step N+1 while the device runs step N): update() is then
// split in two.
//   plan = schedule(); (launch it); commit(plan);   // computed tokens advance; every sampled
//                                                  // sequence gets a kPendingToken at its end
//   ... schedule(), launch and commit the next plan ...
//   resolve(plan, result);                         // the pending tokens get their ids
// Plans are resolved in the order they were committed, at most two in flight. A decode whose
// input is still pending is scheduled as usual (the backend reads the id on the device); a
// sequence with a pending token is never prefilled, admitted or swapped in until it resolves;
// a sequence whose pending tokens reach max_tokens is not scheduled again (the engine finishes
// it when they resolve). update(plan, result) == commit(plan) + resolve(plan, result).
//
// One step (schedule), in order:
//   1. Decodes of running sequences (1 token each), in priority order.
//   2. Prefill chunks of running sequences still prefilling (chunked prefill on: as many tokens
//      as the budget leaves; off: the rest of the prompt whole).
//   3. Swap-ins of swapped sequences (priority order), each then scheduled like 1-2.
//   4. Admissions from the waiting queue (head first, no skipping), which may preempt running
//      sequences of strictly lower priority (priority_preemption).
//   Steps 3 and 4 are skipped in a step that had to preempt for memory; step 4 also waits while
//   sequences are swapped out, unless the head outranks every one of them.
// Token budget: plan.num_tokens <= max_num_batched_tokens, with one exception: with chunked
// prefill off, the first prefill of a step is scheduled whole even when it exceeds what the
// budget has left (decodes still run with it), so no prompt starves; further prefills of that
// step must fit. Sequence cap: at most max_num_seqs running sequences.
//
// Memory: a running sequence that needs a block when none is available preempts the running
// sequence of lowest priority, latest arrival (possibly itself). Mechanisms: recompute (blocks
// freed; back to the waiting queue at its original order, num_computed_tokens = 0, generated
// tokens kept, so the re-prefill covers prompt + output so far) or swap (computed blocks copied
// to host blocks through plan.swap_out, later back into fresh device blocks through
// plan.swap_in, num_computed_tokens kept). kAuto swaps when moving the bytes out and back costs
// less than recomputing; swap (either mode) falls back to recompute when the host pool is full.
//
// Admission (whether the waiting head may start), with B = blocks it will need and R = blocks
// still reserved by running sequences (their targets minus what they hold):
//   optimistic    B = blocks of the tokens to prefill;  admit if B <= available - R - watermark
//   conservative  B = blocks of prompt + max_tokens;    admit if B <= available - R
//   profiled      B = blocks of prompt + min(max_tokens, learned quantile of output lengths);
//                 admit if B <= available - R - reservation_buffer (conservative until
//                 profiled_min_samples requests have finished)
// Cache hits reduce B; hits on unreferenced cached blocks count as used up. With nothing running
// or swapped the head is admitted whenever its tokens fit at all (progress guarantee).
//
// Priorities: lower value first; the waiting order and aging are described in waiting_queue.h.
// A waiting request may preempt a running sequence only if its raw priority value is strictly
// lower (so two requests can never preempt each other back and forth) and it would also come
// first in the aged waiting order (so a request that aging let in is not thrown out again by
// the newer requests it overtook).
//
// Batching modes: continuous admits at every step. Static forms a batch of up to max_num_seqs
// from the queue when nothing runs, then admits nothing new until every member finished.
// Dynamic forms a batch only when max_num_seqs requests wait or the oldest has waited
// dynamic_window_us (see next_event_us()), then runs it like static. In both, a member preempted
// by recompute is re-admitted before anything else; priority preemption is off.
//
// Lifetime: a finished sequence stays readable through find() until the next schedule(), whose
// plan lists it in plan.finished (or, when a plan in flight still holds it, the first
// schedule() after that plan resolves).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <unordered_map>
#include <vector>

#include "core/request.h"
#include "core/sequence.h"
#include "core/step.h"
#include "kv/block_manager.h"
#include "sched/output_length_profile.h"
#include "sched/scheduler_config.h"
#include "sched/scheduler_stats.h"
#include "sched/waiting_queue.h"
#include "util/result.h"

namespace loom {

class Scheduler {
 public:
  explicit Scheduler(SchedulerConfig config);  // config must validate()
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // A request that can never run: empty prompt, max_tokens < 1, prompt + max_tokens longer than
  // max_model_len, or longer than the whole KV pool (it could not finish even alone).
  Status check_request(const Request& r) const;
  // The waiting queue is at its request or token bound (retry later).
  Status check_queue_room(const Request& r) const;
  // Queues a request (kWaiting). `id` must be new; r.arrival_us == 0 becomes now_us.
  void add(SeqId id, Request r, int64_t now_us);

  StepPlan schedule(int64_t now_us);
  void update(const StepPlan& plan, const StepResult& result, int64_t now_us);
  void commit(const StepPlan& plan);
  void resolve(const StepPlan& plan, const StepResult& result, int64_t now_us);
  int32_t num_plans_in_flight() const { return static_cast<int32_t>(in_flight_.size()); }
  // Ends a sequence in any state and frees its blocks at once. Unknown or finished ids are ignored.
  void finish(SeqId id, FinishReason reason, int64_t now_us);

  const Sequence* find(SeqId id) const;
  Sequence* find(SeqId id);
  bool has_work() const;
  // Earliest time a currently idle scheduler could act without new input (dynamic batching's
  // window), or nullopt. The engine may sleep until then when a plan comes back empty.
  std::optional<int64_t> next_event_us() const;
  SchedulerStats stats() const;
  const SchedulerConfig& config() const { return config_; }
  // The kAuto cost model's rates, as the engine measures them (copy bandwidth at start-up,
  // prefill speed from the steps it runs). Both must be > 0.
  void set_cost_model(double swap_bytes_per_us, double recompute_tokens_per_us);
  const BlockManager& blocks() const { return blocks_; }

  // Aborts on any broken invariant: block conservation, exact reference counts, block tables
  // covering computed tokens, host pool conservation, queue contents and counters. O(state).
  void check_invariants() const;

 private:
  struct Entry {
    Sequence seq;
    WaitKey key;
    std::vector<uint64_t> block_hashes;  // one per full block of seq.tokens, computed lazily
    int32_t num_registered_blocks = 0;   // leading blocks already offered to the prefix cache
    int64_t scheduled_iter = -1;         // last iteration that gave it tokens
    int32_t scheduled_tokens = 0;        // tokens it got in that iteration
    int64_t entered_running_iter = -1;   // iteration of its last admission / swap-in
    bool batch_member = false;           // static / dynamic: part of the running batch
    bool admitted_once = false;
    int32_t plans_in_flight = 0;  // committed, unresolved plans that hold it (keeps it alive)
  };
  // A committed plan waiting for its tokens: its entries, and for each sampled row the index
  // of the pending token it fills (-1: the sequence had finished before the commit).
  struct InFlightPlan {
    int64_t iteration = 0;
    std::vector<Entry*> entries;
    std::vector<int32_t> pending_pos;
  };
  enum class Cause { kMemory, kPriority };

  // Steps of schedule().
  void schedule_running_decodes();
  void schedule_running_prefills();
  void swap_in_sequences();
  void admit_waiting(int64_t now_us);
  void admit_from(WaitingQueue& queue, bool allow_priority_preemption, int64_t now_us);

  // Gives `e` tokens this step, growing its block table. With allow_preempt, preempts victims
  // until it fits (returns false when `e` itself was the victim); without, schedules what fits.
  bool schedule_tokens(Entry& e, int32_t num_tokens, bool allow_preempt);
  int32_t tokens_to_schedule(const Entry& e) const;
  void unschedule(Entry& e);
  void preempt(Entry& victim, Cause cause);
  bool choose_swap(const Entry& victim) const;
  bool may_preempt(const Entry& waiting, const Entry& running) const;
  Entry* priority_victim(const Entry& waiting) const;

  // Admission policy.
  int64_t target_tokens(const Entry& e) const;
  int32_t outstanding_blocks(const Entry& e) const;
  int32_t reserved_blocks_of_running() const;
  int32_t keep_free_blocks() const;

  // Containers and counters.
  void insert_running(Entry* e);
  void erase_running(Entry* e);
  void insert_swapped(Entry* e);
  void erase_swapped(Entry* e);
  WaitingQueue& queue_of(const Entry& e);
  void set_status(Entry& e, SeqStatus status);
  Entry* entry(SeqId id);
  const Entry* entry(SeqId id) const;

  SchedulerConfig config_;
  BlockManager blocks_;
  std::unordered_map<SeqId, Entry> entries_;  // node-based: Entry addresses are stable
  WaitingQueue waiting_;
  WaitingQueue batch_waiting_;   // static / dynamic: batch members sent back by recompute
  std::vector<Entry*> running_;  // sorted by (priority, arrival, id); the back is the victim
  std::vector<Entry*> swapped_;  // same order; the front swaps in first
  OutputLengthProfile profile_;
  int32_t num_batch_unfinished_ = 0;
  int32_t batch_size_ = 0;  // members the current static / dynamic batch formed with

  // Per-step state (valid during schedule(); the scratch vectors keep their capacity).
  int64_t iteration_ = 0;
  StepPlan* plan_ = nullptr;
  int32_t budget_left_ = 0;
  bool preempted_for_memory_ = false;
  bool prefill_scheduled_ = false;
  std::vector<Entry*> decode_entries_;
  std::vector<Entry*> prefill_entries_;
  std::vector<Entry*> plan_entries_;  // parallel to the last plan's seqs, for update()
  std::vector<SeqId> finished_since_plan_;
  std::vector<SeqId> finished_held_;     // finished, but a plan in flight still holds them
  std::vector<InFlightPlan> in_flight_;  // committed, unresolved plans, oldest first
  void register_full_blocks(Entry& e);
  std::vector<BlockId> host_blocks_to_free_;  // swapped in this step: free from the next step

  // Counters.
  std::array<std::array<int32_t, kNumTiers>, 4> num_by_status_tier_{};  // [SeqStatus][Tier]
  SchedulerStats counters_;
};

}  // namespace loom
