// Scheduler::schedule(): running decodes, running prefill chunks, swap-ins, admissions; and the
// preemption that memory pressure or a higher-priority arrival causes. See scheduler.h.
#include <algorithm>

#include "sched/scheduler.h"
#include "util/check.h"

namespace loom {

StepPlan Scheduler::schedule(int64_t now_us) {
  StepPlan plan;
  plan.iteration = ++iteration_;
  // Sequences finished since the last plan leave for good now: the engine has read them.
  // Those a plan in flight still holds stay until it resolves.
  plan.finished.swap(finished_since_plan_);
  std::vector<SeqId> held;
  auto release = [&](SeqId id) {
    auto it = entries_.find(id);
    if (it->second.plans_in_flight > 0) {
      held.push_back(id);
      return;
    }
    const Sequence& s = it->second.seq;
    --num_by_status_tier_[static_cast<size_t>(SeqStatus::kFinished)]
                         [static_cast<size_t>(tier_of_priority(s.request.priority))];
    entries_.erase(it);
  };
  for (SeqId id : finished_held_) release(id);
  for (SeqId id : plan.finished) release(id);
  finished_held_.swap(held);
  // Host blocks swapped in by the last plan were read by its swap_in copies; reusable now.
  for (BlockId b : host_blocks_to_free_) blocks_.host().free(b);
  host_blocks_to_free_.clear();

  plan_ = &plan;
  budget_left_ = config_.max_num_batched_tokens;
  preempted_for_memory_ = false;
  prefill_scheduled_ = false;
  decode_entries_.clear();
  prefill_entries_.clear();

  schedule_running_decodes();
  schedule_running_prefills();
  if (!preempted_for_memory_) {
    swap_in_sequences();
    admit_waiting(now_us);
  }

  // Decodes first, then prefill chunks; spans are taken last, when no table grows any more.
  plan_entries_.clear();
  plan_entries_.insert(plan_entries_.end(), decode_entries_.begin(), decode_entries_.end());
  plan_entries_.insert(plan_entries_.end(), prefill_entries_.begin(), prefill_entries_.end());
  plan.seqs.reserve(plan_entries_.size());
  for (Entry* e : plan_entries_) {
    const Sequence& s = e->seq;
    ScheduledSeq ss;
    ss.id = s.id;
    ss.start_pos = s.num_computed_tokens;
    ss.num_new_tokens = e->scheduled_tokens;
    ss.sample = ss.start_pos + ss.num_new_tokens == s.num_tokens();
    ss.new_tokens = std::span<const TokenId>(s.tokens).subspan(
        static_cast<size_t>(ss.start_pos), static_cast<size_t>(ss.num_new_tokens));
    ss.block_table =
        std::span<const BlockId>(s.block_table)
            .first(static_cast<size_t>(blocks_.blocks_for(ss.start_pos + ss.num_new_tokens)));
    plan.num_tokens += ss.num_new_tokens;
    plan.seqs.push_back(ss);
  }
  if (config_.static_padding && config_.batching != BatchingMode::kContinuous)
    plan.num_padding_rows = batch_size_ - num_batch_unfinished_;
  plan_ = nullptr;
  return plan;
}

int32_t Scheduler::tokens_to_schedule(const Entry& e) const {
  const int32_t remaining = e.seq.num_tokens() - e.seq.num_computed_tokens;
  LOOM_CHECK(remaining >= 1, "sequence %lld has nothing to compute", (long long)e.seq.id);
  if (remaining == 1) return budget_left_ >= 1 ? 1 : 0;
  if (config_.chunked_prefill) return std::max(0, std::min(remaining, budget_left_));
  // Chunking off: whole, and the first prefill of a step may exceed the budget (see header).
  if (remaining <= budget_left_ || !prefill_scheduled_) return remaining;
  return 0;
}

void Scheduler::schedule_running_decodes() {
  // Victims are taken from the back of running_, so indices before i never shift.
  for (size_t i = 0; i < running_.size() && budget_left_ > 0; ++i) {
    Entry& e = *running_[i];
    const Sequence& s = e.seq;
    if (s.num_tokens() - s.num_computed_tokens != 1) continue;
    // Its last pending token is its last token: it finishes when that resolves.
    if (s.num_pending_tokens > 0 && s.num_output_tokens() >= s.request.sampling.max_tokens)
      continue;
    schedule_tokens(e, 1, /*allow_preempt=*/true);
  }
}

void Scheduler::schedule_running_prefills() {
  for (size_t i = 0; i < running_.size(); ++i) {
    Entry& e = *running_[i];
    if (e.scheduled_iter == iteration_) continue;
    if (e.seq.num_tokens() - e.seq.num_computed_tokens == 1) continue;  // a skipped decode
    const int32_t n = tokens_to_schedule(e);
    if (n == 0) {
      if (budget_left_ <= 0) break;
      continue;
    }
    schedule_tokens(e, n, /*allow_preempt=*/true);
  }
}

bool Scheduler::schedule_tokens(Entry& e, int32_t num_tokens, bool allow_preempt) {
  Sequence& s = e.seq;
  LOOM_CHECK(num_tokens >= 1 && e.scheduled_iter != iteration_);
  // Only a decode may read a pending token (the backend fills it on the device); every plan
  // before this one has resolved but the last, so at most one is pending.
  LOOM_CHECK(s.num_pending_tokens == 0 ||
                 (s.num_pending_tokens == 1 && s.num_tokens() - s.num_computed_tokens == 1),
             "seq %lld: %d tokens scheduled, %d pending", static_cast<long long>(s.id), num_tokens,
             s.num_pending_tokens);
  int32_t need = blocks_.blocks_for(static_cast<int64_t>(s.num_computed_tokens) + num_tokens);
  while (!blocks_.grow(s.block_table, need)) {
    if (!allow_preempt) {
      // Schedule only what fits in the blocks there are (never a partial whole-prompt prefill).
      const int32_t max_blocks =
          static_cast<int32_t>(s.block_table.size()) + blocks_.device().num_available();
      const int32_t fit = max_blocks * config_.block_size - s.num_computed_tokens;
      const bool whole = !config_.chunked_prefill && num_tokens > 1;
      if (fit < 1 || whole) return true;  // stays running, nothing this step
      num_tokens = std::min(num_tokens, fit);
      need = blocks_.blocks_for(static_cast<int64_t>(s.num_computed_tokens) + num_tokens);
      continue;
    }
    Entry* victim = running_.back();
    preempt(*victim, Cause::kMemory);
    if (victim == &e) return false;
  }
  e.scheduled_iter = iteration_;
  e.scheduled_tokens = num_tokens;
  budget_left_ -= num_tokens;
  const bool decode = s.num_tokens() - s.num_computed_tokens == 1;
  if (decode) {
    decode_entries_.push_back(&e);
  } else {
    prefill_entries_.push_back(&e);
    prefill_scheduled_ = true;
  }
  return true;
}

void Scheduler::unschedule(Entry& e) {
  if (e.scheduled_iter != iteration_) return;
  auto drop = [&](std::vector<Entry*>& list) {
    auto it = std::find(list.begin(), list.end(), &e);
    if (it == list.end()) return false;
    list.erase(it);
    return true;
  };
  LOOM_CHECK(drop(decode_entries_) || drop(prefill_entries_));
  budget_left_ += e.scheduled_tokens;
  e.scheduled_iter = -1;
  e.scheduled_tokens = 0;
}

void Scheduler::set_cost_model(double swap_bytes_per_us, double recompute_tokens_per_us) {
  LOOM_CHECK(swap_bytes_per_us > 0.0 && recompute_tokens_per_us > 0.0);
  config_.swap_bytes_per_us = swap_bytes_per_us;
  config_.recompute_tokens_per_us = recompute_tokens_per_us;
}

bool Scheduler::choose_swap(const Entry& victim) const {
  const int32_t num_computed = victim.seq.num_computed_tokens;
  const int32_t num_blocks = blocks_.blocks_for(num_computed);
  if (num_computed == 0 || config_.preemption == PreemptionMode::kRecompute) return false;
  if (config_.preemption == PreemptionMode::kSwap) return true;
  // kAuto: the bytes go out and come back (two copies) versus prefilling the tokens again.
  const double swap_us = 2.0 * static_cast<double>(num_blocks) *
                         static_cast<double>(config_.kv_bytes_per_block) /
                         config_.swap_bytes_per_us;
  const double recompute_us = static_cast<double>(num_computed) / config_.recompute_tokens_per_us;
  return swap_us < recompute_us;
}

void Scheduler::preempt(Entry& victim, Cause cause) {
  Sequence& s = victim.seq;
  LOOM_CHECK(s.status == SeqStatus::kRunning);
  unschedule(victim);
  erase_running(&victim);
  // Blocks beyond the computed tokens (grown for this step) hold nothing yet.
  blocks_.shrink(s.block_table, blocks_.blocks_for(s.num_computed_tokens));
  bool swap = choose_swap(victim);
  if (swap && !blocks_.host().can_allocate(static_cast<int32_t>(s.block_table.size()))) {
    swap = false;
    ++counters_.num_swap_fallbacks;
  }
  if (swap) {
    LOOM_CHECK(s.host_blocks.empty());
    const bool ok =
        blocks_.host().allocate(static_cast<int32_t>(s.block_table.size()), s.host_blocks);
    LOOM_CHECK(ok);
    for (size_t i = 0; i < s.block_table.size(); ++i) {
      plan_->swap_out.push_back({s.block_table[i], s.host_blocks[i]});
    }
    blocks_.release(s.block_table);
    victim.num_registered_blocks = 0;  // fresh device blocks on the way back
    set_status(victim, SeqStatus::kSwapped);
    insert_swapped(&victim);
    ++counters_.num_preemptions_swap;
  } else {
    blocks_.release(s.block_table);
    victim.num_registered_blocks = 0;
    s.num_computed_tokens = 0;
    set_status(victim, SeqStatus::kWaiting);
    queue_of(victim).insert(victim.key, s.num_tokens());
    ++counters_.num_preemptions_recompute;
  }
  ++s.timings.num_preemptions;
  plan_->preempted.push_back(s.id);
  if (cause == Cause::kPriority) {
    ++counters_.num_preemptions_for_priority;
  } else {
    preempted_for_memory_ = true;
  }
}

void Scheduler::swap_in_sequences() {
  while (!swapped_.empty() && static_cast<int32_t>(running_.size()) < config_.max_num_seqs) {
    Entry& e = *swapped_.front();
    Sequence& s = e.seq;
    if (s.num_pending_tokens > 0) break;  // swapped out while its last step ran: next step
    // Room for its K/V and the block of its next token, keeping the admission reserve unless
    // nothing else runs.
    const int32_t need = blocks_.blocks_for(static_cast<int64_t>(s.num_computed_tokens) + 1);
    const int32_t keep = running_.empty() ? 0 : keep_free_blocks();
    if (need > blocks_.device().num_available() - keep) break;
    const size_t num_host = s.host_blocks.size();
    const bool ok = blocks_.grow(s.block_table, static_cast<int32_t>(num_host));
    LOOM_CHECK(ok && s.block_table.size() == num_host);
    for (size_t i = 0; i < num_host; ++i) {
      plan_->swap_in.push_back({s.host_blocks[i], s.block_table[i]});
      host_blocks_to_free_.push_back(s.host_blocks[i]);
    }
    s.host_blocks.clear();
    swapped_.erase(swapped_.begin());
    set_status(e, SeqStatus::kRunning);
    insert_running(&e);
    e.entered_running_iter = iteration_;
    const int32_t n = tokens_to_schedule(e);
    if (n > 0) schedule_tokens(e, n, /*allow_preempt=*/false);
  }
}

}  // namespace loom
