// Scheduler: construction, request intake, update after a step, finish, queries and counters.
// schedule() lives in scheduler_step.cpp, admission in scheduler_admission.cpp.
#include "sched/scheduler.h"

#include <algorithm>

#include "util/check.h"

namespace loom {
namespace {

int tier_index(int32_t priority) {
  return static_cast<int>(tier_of_priority(priority));
}

// Running / swapped order: priority first (lower value first), then arrival, then id.
bool runs_before(const Sequence& a, const Sequence& b) {
  if (a.request.priority != b.request.priority) return a.request.priority < b.request.priority;
  if (a.request.arrival_us != b.request.arrival_us)
    return a.request.arrival_us < b.request.arrival_us;
  return a.id < b.id;
}

}  // namespace

Scheduler::Scheduler(SchedulerConfig config)
    : config_(config),
      blocks_(config.num_device_blocks, config.num_host_blocks, config.block_size,
              config.prefix_caching),
      waiting_(config.batching == BatchingMode::kDynamic),
      profile_(config.profiled_window, config.max_model_len) {
  const Status valid = config_.validate();
  LOOM_CHECK(valid.ok(), "invalid scheduler config: %s", valid.ok() ? "" : valid.error().c_str());
  running_.reserve(static_cast<size_t>(config_.max_num_seqs));
  decode_entries_.reserve(static_cast<size_t>(config_.max_num_seqs));
  prefill_entries_.reserve(static_cast<size_t>(config_.max_num_seqs));
  plan_entries_.reserve(static_cast<size_t>(config_.max_num_seqs));
}

Status Scheduler::check_request(const Request& r) const {
  const int64_t num_prompt = static_cast<int64_t>(r.prompt.size());
  const int64_t max_tokens = r.sampling.max_tokens;
  if (num_prompt == 0) return make_error("the prompt is empty");
  if (max_tokens < 1) return make_error("max_tokens must be >= 1, got %lld", (long long)max_tokens);
  if (num_prompt + max_tokens > config_.max_model_len) {
    return make_error(
        "the prompt (%lld tokens) plus max_tokens (%lld) is longer than the model's context "
        "(max_model_len %d tokens)",
        (long long)num_prompt, (long long)max_tokens, config_.max_model_len);
  }
  const int64_t capacity = static_cast<int64_t>(config_.num_device_blocks) * config_.block_size;
  if (num_prompt + max_tokens > capacity) {
    return make_error(
        "the prompt (%lld tokens) plus max_tokens (%lld) can never fit in the KV cache "
        "(%lld tokens in all)",
        (long long)num_prompt, (long long)max_tokens, (long long)capacity);
  }
  return ok_status();
}

Status Scheduler::check_queue_room(const Request& r) const {
  const int32_t num_waiting = waiting_.size() + batch_waiting_.size();
  if (num_waiting >= config_.max_waiting_requests) {
    return make_error("the waiting queue is full (%d requests waiting, limit %d); retry later",
                      num_waiting, config_.max_waiting_requests);
  }
  const int64_t tokens = waiting_.num_tokens() + batch_waiting_.num_tokens();
  if (tokens + static_cast<int64_t>(r.prompt.size()) > config_.max_waiting_tokens) {
    return make_error(
        "the waiting queue is full (%lld prompt tokens waiting, this request adds %zu, limit "
        "%lld); retry later",
        (long long)tokens, r.prompt.size(), (long long)config_.max_waiting_tokens);
  }
  return ok_status();
}

void Scheduler::add(SeqId id, Request r, int64_t now_us) {
  LOOM_CHECK(!r.prompt.empty() && r.sampling.max_tokens >= 1, "add() of an unchecked request");
  if (r.arrival_us == 0) r.arrival_us = now_us;
  auto [it, inserted] = entries_.try_emplace(id);
  LOOM_CHECK(inserted, "sequence id %lld added twice", static_cast<long long>(id));
  Entry& e = it->second;
  Sequence& s = e.seq;
  s.id = id;
  s.request = std::move(r);
  s.num_prompt_tokens = static_cast<int32_t>(s.request.prompt.size());
  s.tokens = s.request.prompt;  // appends happen in update(), after the plan's spans were used
  s.status = SeqStatus::kWaiting;
  s.effective_priority = s.request.priority;
  s.timings.arrival_us = s.request.arrival_us;
  e.key.rank = config_.aging_us_per_level > 0
                   ? static_cast<int64_t>(s.request.priority) * config_.aging_us_per_level +
                         s.request.arrival_us
                   : s.request.priority;
  e.key.arrival_us = s.request.arrival_us;
  e.key.id = id;
  waiting_.insert(e.key, s.num_tokens());
  ++num_by_status_tier_[static_cast<size_t>(SeqStatus::kWaiting)]
                       [static_cast<size_t>(tier_index(s.request.priority))];
}

void Scheduler::update(const StepPlan& plan, const StepResult& result, int64_t now_us) {
  commit(plan);
  resolve(plan, result, now_us);
}

void Scheduler::commit(const StepPlan& plan) {
  LOOM_CHECK(plan.iteration == iteration_ && plan.seqs.size() == plan_entries_.size(),
             "commit() of a plan that is not the last one scheduled");
  LOOM_CHECK(in_flight_.empty() || in_flight_.back().iteration < plan.iteration,
             "plan %lld committed twice", static_cast<long long>(plan.iteration));
  LOOM_CHECK(in_flight_.size() < 2, "a third plan in flight");
  InFlightPlan f;
  f.iteration = plan.iteration;
  f.entries = plan_entries_;
  for (size_t i = 0; i < plan.seqs.size(); ++i) {
    const ScheduledSeq& ss = plan.seqs[i];
    Entry& e = *plan_entries_[i];
    Sequence& s = e.seq;
    LOOM_CHECK(s.id == ss.id, "plan entry %zu changed", i);
    ++e.plans_in_flight;
    if (s.status != SeqStatus::kRunning) {  // finished between schedule() and commit()
      if (ss.sample) f.pending_pos.push_back(-1);
      continue;
    }
    LOOM_CHECK(s.num_computed_tokens == ss.start_pos);
    s.num_computed_tokens += ss.num_new_tokens;
    if (ss.sample) {
      LOOM_CHECK(s.num_computed_tokens == s.num_tokens());
      f.pending_pos.push_back(s.num_tokens());
      s.tokens.push_back(kPendingToken);
      ++s.num_pending_tokens;
    }
  }
  in_flight_.push_back(std::move(f));
}

void Scheduler::resolve(const StepPlan& plan, const StepResult& result, int64_t now_us) {
  LOOM_CHECK(!in_flight_.empty() && in_flight_.front().iteration == plan.iteration,
             "resolve() of plan %lld out of commit order", static_cast<long long>(plan.iteration));
  const InFlightPlan f = std::move(in_flight_.front());
  in_flight_.erase(in_flight_.begin());
  LOOM_CHECK(f.entries.size() == plan.seqs.size());
  size_t r = 0;
  for (size_t i = 0; i < plan.seqs.size(); ++i) {
    const ScheduledSeq& ss = plan.seqs[i];
    Entry& e = *f.entries[i];
    Sequence& s = e.seq;
    LOOM_CHECK(s.id == ss.id && e.plans_in_flight > 0, "plan entry %zu changed", i);
    --e.plans_in_flight;
    if (ss.sample) {
      LOOM_CHECK(r < result.ids.size() && result.ids[r] == ss.id,
                 "result is missing the token of sequence %lld", static_cast<long long>(ss.id));
      const int32_t pos = f.pending_pos[r];
      const TokenId token = result.sampled[r++];
      // A finished sequence dropped its pending tokens; any other (running, or preempted while
      // the step ran) keeps the token.
      if (pos >= 0 && !s.finished()) {
        LOOM_CHECK(pos == s.num_known_tokens() && s.tokens[pos] == kPendingToken,
                   "seq %lld: token %d is not its oldest pending one", static_cast<long long>(s.id),
                   pos);
        s.tokens[pos] = token;
        --s.num_pending_tokens;
        if (pos == s.num_prompt_tokens && s.timings.first_token_us == 0) {
          s.timings.first_token_us = now_us;
        }
      }
    }
    if (s.status == SeqStatus::kRunning) register_full_blocks(e);
  }
  LOOM_CHECK(r == result.ids.size(), "result has %zu tokens, the plan sampled %zu",
             result.ids.size(), r);
}

// Blocks that are full of computed tokens with known ids join the prefix cache.
void Scheduler::register_full_blocks(Entry& e) {
  Sequence& s = e.seq;
  const int32_t num_full =
      std::min(s.num_computed_tokens, s.num_known_tokens()) / config_.block_size;
  if (num_full <= e.num_registered_blocks) return;
  if (blocks_.prefix_caching()) {
    const std::span<const TokenId> tokens(s.tokens.data(),
                                          static_cast<size_t>(num_full) * config_.block_size);
    blocks_.extend_hashes(tokens, e.block_hashes);
    blocks_.register_blocks(s.block_table, tokens, e.block_hashes, e.num_registered_blocks,
                            num_full);
  }
  e.num_registered_blocks = num_full;
}

void Scheduler::finish(SeqId id, FinishReason reason, int64_t now_us) {
  Entry* e = entry(id);
  if (e == nullptr || e->seq.finished()) return;
  Sequence& s = e->seq;
  switch (s.status) {
    case SeqStatus::kWaiting:
      queue_of(*e).erase(e->key, s.num_tokens());
      break;
    case SeqStatus::kRunning:
      erase_running(e);
      blocks_.release(s.block_table);
      break;
    case SeqStatus::kSwapped:
      erase_swapped(e);
      for (BlockId b : s.host_blocks) blocks_.host().free(b);
      s.host_blocks.clear();
      break;
    case SeqStatus::kFinished:
      break;
  }
  set_status(*e, SeqStatus::kFinished);
  // Tokens still pending belong to steps after the end: they are dropped when they resolve.
  s.tokens.resize(static_cast<size_t>(s.num_known_tokens()));
  s.num_pending_tokens = 0;
  s.finish_reason = reason;
  s.timings.finished_us = now_us;
  if (e->batch_member) {
    e->batch_member = false;
    --num_batch_unfinished_;
  }
  if (reason == FinishReason::kStop || reason == FinishReason::kLength) {
    profile_.record(s.num_output_tokens());
  }
  ++counters_.num_finished;
  finished_since_plan_.push_back(id);
}

Scheduler::Entry* Scheduler::entry(SeqId id) {
  auto it = entries_.find(id);
  return it == entries_.end() ? nullptr : &it->second;
}

const Scheduler::Entry* Scheduler::entry(SeqId id) const {
  auto it = entries_.find(id);
  return it == entries_.end() ? nullptr : &it->second;
}

const Sequence* Scheduler::find(SeqId id) const {
  const Entry* e = entry(id);
  return e ? &e->seq : nullptr;
}

Sequence* Scheduler::find(SeqId id) {
  Entry* e = entry(id);
  return e ? &e->seq : nullptr;
}

bool Scheduler::has_work() const {
  return !running_.empty() || !swapped_.empty() || !waiting_.empty() || !batch_waiting_.empty();
}

std::optional<int64_t> Scheduler::next_event_us() const {
  if (config_.batching != BatchingMode::kDynamic || num_batch_unfinished_ > 0 || waiting_.empty()) {
    return std::nullopt;
  }
  return waiting_.oldest_arrival_us() + config_.dynamic_window_us;
}

SchedulerStats Scheduler::stats() const {
  SchedulerStats st = counters_;
  st.iteration = iteration_;
  st.num_waiting = waiting_.size() + batch_waiting_.size();
  st.num_running = static_cast<int32_t>(running_.size());
  st.num_swapped = static_cast<int32_t>(swapped_.size());
  st.num_waiting_tokens = waiting_.num_tokens() + batch_waiting_.num_tokens();
  st.waiting_by_tier = num_by_status_tier_[static_cast<size_t>(SeqStatus::kWaiting)];
  st.running_by_tier = num_by_status_tier_[static_cast<size_t>(SeqStatus::kRunning)];
  st.swapped_by_tier = num_by_status_tier_[static_cast<size_t>(SeqStatus::kSwapped)];
  const BlockPool& pool = blocks_.device();
  st.num_device_blocks = pool.num_total();
  st.num_free_blocks = pool.num_free();
  st.num_used_blocks = pool.num_used();
  st.num_cached_blocks = pool.num_cached();
  st.num_host_blocks = blocks_.host().num_total();
  st.num_host_blocks_used = blocks_.host().num_used();
  return st;
}

void Scheduler::insert_running(Entry* e) {
  auto pos = std::upper_bound(running_.begin(), running_.end(), e,
                              [](Entry* a, Entry* b) { return runs_before(a->seq, b->seq); });
  running_.insert(pos, e);
}

void Scheduler::erase_running(Entry* e) {
  // Victims come from the back, so look there first.
  for (size_t i = running_.size(); i-- > 0;) {
    if (running_[i] == e) {
      running_.erase(running_.begin() + static_cast<ptrdiff_t>(i));
      return;
    }
  }
  LOOM_CHECK(false, "sequence %lld is not running", static_cast<long long>(e->seq.id));
}

void Scheduler::insert_swapped(Entry* e) {
  auto pos = std::upper_bound(swapped_.begin(), swapped_.end(), e,
                              [](Entry* a, Entry* b) { return runs_before(a->seq, b->seq); });
  swapped_.insert(pos, e);
}

void Scheduler::erase_swapped(Entry* e) {
  auto it = std::find(swapped_.begin(), swapped_.end(), e);
  LOOM_CHECK(it != swapped_.end(), "sequence %lld is not swapped",
             static_cast<long long>(e->seq.id));
  swapped_.erase(it);
}

WaitingQueue& Scheduler::queue_of(const Entry& e) {
  return e.batch_member ? batch_waiting_ : waiting_;
}

void Scheduler::set_status(Entry& e, SeqStatus status) {
  const size_t tier = static_cast<size_t>(tier_index(e.seq.request.priority));
  --num_by_status_tier_[static_cast<size_t>(e.seq.status)][tier];
  ++num_by_status_tier_[static_cast<size_t>(status)][tier];
  e.seq.status = status;
}

}  // namespace loom
