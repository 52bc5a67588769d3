// Admission from the waiting queue: batching mode, admission policy, prefix-cache match and
// preemption for a higher-priority request. See scheduler.h for the rules.
#include <algorithm>

#include "sched/scheduler.h"
#include "util/check.h"

namespace loom {

int64_t Scheduler::target_tokens(const Entry& e) const {
  const Sequence& s = e.seq;
  const int64_t full = static_cast<int64_t>(s.num_prompt_tokens) + s.request.sampling.max_tokens;
  int64_t target = full;
  switch (config_.admission) {
    case AdmissionPolicy::kOptimistic:
      target = s.num_tokens();
      break;
    case AdmissionPolicy::kConservative:
      break;
    case AdmissionPolicy::kProfiled:
      if (profile_.num_samples() >= std::max(1, config_.profiled_min_samples)) {
        const int64_t expected = profile_.quantile(config_.profiled_quantile);
        target = s.num_prompt_tokens + std::min<int64_t>(expected, s.request.sampling.max_tokens);
      }
      break;
  }
  return std::max<int64_t>(target, s.num_tokens());
}

int32_t Scheduler::outstanding_blocks(const Entry& e) const {
  const int32_t held = static_cast<int32_t>(e.seq.block_table.size());
  return std::max(0, blocks_.blocks_for(target_tokens(e)) - held);
}

int32_t Scheduler::reserved_blocks_of_running() const {
  int32_t sum = 0;
  for (const Entry* e : running_) sum += outstanding_blocks(*e);
  return sum;
}

int32_t Scheduler::keep_free_blocks() const {
  const double total = config_.num_device_blocks;
  switch (config_.admission) {
    case AdmissionPolicy::kOptimistic:
      return static_cast<int32_t>(config_.watermark * total);
    case AdmissionPolicy::kConservative:
      return 0;
    case AdmissionPolicy::kProfiled:
      return static_cast<int32_t>(config_.reservation_buffer * total);
  }
  return 0;
}

bool Scheduler::may_preempt(const Entry& waiting, const Entry& running) const {
  // Strictly lower raw priority value (so preemption chains cannot cycle), and the waiting one
  // would also come first in the aged waiting order (so a request that aging let in is not
  // thrown out again by the newer, nominally more urgent ones it overtook). Not a sequence that
  // entered the batch in this same step (its swap-in copies are still pending).
  return waiting.seq.request.priority < running.seq.request.priority && waiting.key < running.key &&
         running.entered_running_iter != iteration_;
}

Scheduler::Entry* Scheduler::priority_victim(const Entry& waiting) const {
  // The lowest priority, latest arrival among those it may preempt.
  for (size_t i = running_.size(); i-- > 0;) {
    Entry* e = running_[i];
    if (e->seq.request.priority <= waiting.seq.request.priority) return nullptr;
    if (may_preempt(waiting, *e)) return e;
  }
  return nullptr;
}

void Scheduler::admit_waiting(int64_t now_us) {
  switch (config_.batching) {
    case BatchingMode::kContinuous:
      admit_from(waiting_, config_.priority_preemption, now_us);
      return;
    case BatchingMode::kStatic:
    case BatchingMode::kDynamic:
      break;
  }
  if (num_batch_unfinished_ > 0) {
    admit_from(batch_waiting_, false, now_us);  // members sent back by recompute
    return;
  }
  if (waiting_.empty()) return;
  batch_size_ = 0;  // the last batch has ended; a new one forms below
  if (config_.batching == BatchingMode::kDynamic && waiting_.size() < config_.max_num_seqs &&
      now_us - waiting_.oldest_arrival_us() < config_.dynamic_window_us) {
    return;  // neither a full batch nor a timed-out window yet
  }
  admit_from(waiting_, false, now_us);
}

void Scheduler::admit_from(WaitingQueue& queue, bool allow_priority_preemption, int64_t now_us) {
  const bool forming_batch = config_.batching != BatchingMode::kContinuous && &queue == &waiting_;
  std::vector<BlockId> hits;  // small; only allocated when something is admitted
  int32_t reserved = -1;      // blocks reserved by running sequences, computed on first need
  while (!queue.empty()) {
    Entry& e = *entry(queue.front().id);
    Sequence& s = e.seq;
    // Preempted by recompute while its last step ran: its prefill needs that token's id.
    if (s.num_pending_tokens > 0) return;
    // Swapped sequences go back in first, unless this one outranks all of them.
    if (!swapped_.empty() && s.request.priority >= swapped_.front()->seq.request.priority) return;
    // Token budget (a batch being formed takes its members now and prefills them over steps).
    if (!forming_batch) {
      const bool whole_first = !config_.chunked_prefill && !prefill_scheduled_;
      if (budget_left_ <= 0 && !whole_first) return;
      if (!config_.chunked_prefill && !whole_first && s.num_tokens() > budget_left_) return;
    }

    const bool seat_free = static_cast<int32_t>(running_.size()) < config_.max_num_seqs;
    // All seats taken and nobody to preempt: stop before any per-request work (the common case
    // of a saturated server, so it must cost nothing).
    if (!seat_free && (!allow_priority_preemption || priority_victim(e) == nullptr)) return;
    // Longest cached prefix; at least the last token is computed so there are logits.
    hits.clear();
    int32_t num_hit_blocks = 0;
    if (blocks_.prefix_caching()) {
      blocks_.extend_hashes(s.tokens, e.block_hashes);
      num_hit_blocks = blocks_.match_prefix(s.tokens, e.block_hashes,
                                            (s.num_tokens() - 1) / config_.block_size, hits);
    }
    const int32_t num_unref_hits = blocks_.num_unreferenced(hits);
    if (reserved < 0) reserved = reserved_blocks_of_running();
    const int32_t available = blocks_.device().num_available();
    bool fits;
    int32_t shortfall;
    if (running_.empty() && swapped_.empty()) {  // progress guarantee
      const int32_t need = blocks_.blocks_for(s.num_tokens()) - num_hit_blocks + num_unref_hits;
      shortfall = need - available;
    } else {
      const int32_t need = blocks_.blocks_for(target_tokens(e)) - num_hit_blocks + num_unref_hits;
      shortfall = need - (available - reserved - keep_free_blocks());
    }
    fits = shortfall <= 0;

    if (!seat_free || !fits) {
      if (!allow_priority_preemption) return;
      Entry* victim = priority_victim(e);
      if (victim == nullptr) return;
      // Preempt only if all eligible victims together would make room.
      int32_t freeable = 0;
      for (const Entry* v : running_) {
        if (!may_preempt(e, *v)) continue;
        freeable += outstanding_blocks(*v);
        for (BlockId b : v->seq.block_table) freeable += blocks_.device().ref_count(b) == 1;
      }
      if (freeable < shortfall) return;
      preempt(*victim, Cause::kPriority);
      reserved = -1;
      continue;
    }

    // Admit.
    queue.erase(e.key, s.num_tokens());
    LOOM_CHECK(s.block_table.empty() && s.num_computed_tokens == 0);
    blocks_.share(hits, s.block_table);
    s.num_computed_tokens = num_hit_blocks * config_.block_size;
    e.num_registered_blocks = num_hit_blocks;
    counters_.prefix_query_tokens += s.num_tokens();
    counters_.prefix_hit_tokens += s.num_computed_tokens;
    set_status(e, SeqStatus::kRunning);
    insert_running(&e);
    e.entered_running_iter = iteration_;
    if (config_.aging_us_per_level > 0) {
      s.effective_priority = static_cast<int32_t>(
          s.request.priority - (now_us - s.request.arrival_us) / config_.aging_us_per_level);
    }
    if (!e.admitted_once) {
      e.admitted_once = true;
      s.num_cached_prompt_tokens = std::min(s.num_computed_tokens, s.num_prompt_tokens);
      s.timings.first_scheduled_us = now_us;
      const int64_t wait_us = now_us - s.request.arrival_us;
      const size_t tier = static_cast<size_t>(tier_of_priority(s.request.priority));
      ++counters_.num_admitted;
      counters_.admission_wait_total_us += wait_us;
      counters_.admission_wait_max_us = std::max(counters_.admission_wait_max_us, wait_us);
      ++counters_.admitted_by_tier[tier];
      counters_.admission_wait_total_us_by_tier[tier] += wait_us;
    }
    if (forming_batch) {
      e.batch_member = true;
      ++num_batch_unfinished_;
      ++batch_size_;
    }
    const int32_t n = tokens_to_schedule(e);
    if (n > 0) schedule_tokens(e, n, /*allow_preempt=*/false);
    reserved += outstanding_blocks(e);
  }
}

}  // namespace loom
