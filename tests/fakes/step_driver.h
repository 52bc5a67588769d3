// Drives a Scheduler with the FakeRunner the way the engine does:
//   schedule -> fake execute -> update -> finish(kLength) at max_tokens (or kStop at a chosen
//   output length) -> check_invariants()
// or, overlapped (as the engine with Backend::supports_overlap): schedule step N+1 ->
//   fake execute -> commit -> resolve step N -> finishes of step N's sequences.
// and records, per iteration, the running / waiting / swapped sets right after schedule() and
// what the plan scheduled, for table-driven tests.
#pragma once

#include <algorithm>
#include <functional>
#include <map>
#include <set>
#include <utility>
#include <vector>

#include "fakes/fake_runner.h"
#include "sched/scheduler.h"

namespace loom::fakes {

struct IterationRecord {
  int64_t iteration = 0;
  std::vector<SeqId> running, waiting, swapped;      // sorted ids, as schedule() left them
  std::vector<std::pair<SeqId, int32_t>> scheduled;  // (id, num_new_tokens), plan order
  int32_t num_tokens = 0;
  int32_t num_padding_rows = 0;
  std::vector<SeqId> preempted;
  size_t num_swap_out = 0;
  size_t num_swap_in = 0;
};

struct FinishedRecord {
  FinishReason reason = FinishReason::kStop;
  int32_t num_prompt_tokens = 0;
  std::vector<TokenId> output;  // generated tokens
  int32_t num_preemptions = 0;
  int32_t num_cached_prompt_tokens = 0;
  RequestTimings timings;
};

// A request of `num_prompt` tokens. Token ids come from `salt`: requests with the same salt
// share their prompt prefix (for prefix-cache tests); salt < 0 makes them unique per call.
inline Request make_request(int32_t num_prompt, int32_t max_tokens, int32_t priority = 0,
                            int64_t salt = -1) {
  static int64_t unique = 1000000;
  const int64_t s = salt >= 0 ? salt : unique++;
  Request r;
  r.prompt.resize(static_cast<size_t>(num_prompt));
  for (int32_t i = 0; i < num_prompt; ++i) r.prompt[static_cast<size_t>(i)] = fake_token(s, i);
  r.sampling.max_tokens = max_tokens;
  r.priority = priority;
  return r;
}

class StepDriver {
 public:
  StepDriver(Scheduler& sched, bool verify = true, int64_t step_us = 1000, bool overlapped = false)
      : sched_(sched),
        runner_(sched.config(), verify),
        step_us_(step_us),
        overlapped_(overlapped) {}

  // Queues a request now; aborts if the scheduler would refuse it (tests check refusals
  // through check_request / check_queue_room directly).
  void add(SeqId id, Request r) {
    LOOM_CHECK(sched_.check_request(r).ok() && sched_.check_queue_room(r).ok(),
               "request %lld refused", (long long)id);
    sched_.add(id, std::move(r), now_us_);
    live_.insert(id);
  }
  void abort(SeqId id) {
    sched_.finish(id, FinishReason::kAbort, now_us_);
    record_finish(id);
  }
  // Finish with kStop once the sequence has generated this many tokens (an "EOS").
  void stop_after(SeqId id, int32_t num_output_tokens) { stop_after_[id] = num_output_tokens; }
  // Called before each iteration with the number that iteration will get (1-based).
  void on_iteration(std::function<void(int64_t)> hook) { hook_ = std::move(hook); }

  // One iteration. Returns false (and does nothing) when the scheduler has no work.
  bool step() {
    const int64_t iteration = sched_.stats().iteration + 1;
    if (hook_) hook_(iteration);
    if (!sched_.has_work() && in_flight_.empty()) return false;
    StepPlan plan = sched_.schedule(now_us_);
    IterationRecord rec;
    rec.iteration = plan.iteration;
    for (SeqId id : live_) {
      const Sequence* s = sched_.find(id);
      if (s->status == SeqStatus::kRunning) rec.running.push_back(id);
      if (s->status == SeqStatus::kWaiting) rec.waiting.push_back(id);
      if (s->status == SeqStatus::kSwapped) rec.swapped.push_back(id);
    }
    for (const ScheduledSeq& ss : plan.seqs) {
      rec.scheduled.emplace_back(ss.id, ss.num_new_tokens);
      num_pending_inputs_ += ss.new_tokens.back() == kPendingToken ? 1 : 0;
    }
    rec.num_tokens = plan.num_tokens;
    rec.num_padding_rows = plan.num_padding_rows;
    rec.preempted = plan.preempted;
    rec.num_swap_out = plan.swap_out.size();
    rec.num_swap_in = plan.swap_in.size();
    sched_.check_invariants();
    StepResult result = runner_.execute(plan, sched_);
    if (!overlapped_) {
      now_us_ += step_us_;
      sched_.update(plan, result, now_us_);
      finish_done(plan);
    } else if (plan.seqs.empty()) {
      // Nothing launched: the steps in flight are read first (as the engine does).
      while (!in_flight_.empty()) resolve_oldest();
      now_us_ += step_us_;
      sched_.update(plan, result, now_us_);
    } else {
      sched_.commit(plan);
      in_flight_.push_back({std::move(plan), std::move(result)});
      if (in_flight_.size() == 2) resolve_oldest();
    }
    sched_.check_invariants();
    history_.push_back(std::move(rec));
    return true;
  }

  // Steps until the scheduler has no work (or `max_iterations`); returns iterations run.
  int64_t run(int64_t max_iterations = 100000) {
    int64_t n = 0;
    while (n < max_iterations && step()) ++n;
    return n;
  }

  void advance_time(int64_t us) { now_us_ += us; }
  int64_t now_us() const { return now_us_; }
  const std::vector<IterationRecord>& history() const { return history_; }
  const std::map<SeqId, FinishedRecord>& finished() const { return finished_; }
  const FakeRunner& runner() const { return runner_; }
  // Overlapped: decodes scheduled while their input token was still pending.
  int64_t num_pending_inputs() const { return num_pending_inputs_; }

 private:
  // Finishes the plan's sampled sequences that reached max_tokens or their stop length; the
  // counts are of known tokens (later steps' may be pending), and never pass the limit.
  void finish_done(const StepPlan& plan) {
    for (const ScheduledSeq& ss : plan.seqs) {
      if (!ss.sample) continue;
      const Sequence* s = sched_.find(ss.id);
      if (s == nullptr || s->finished()) continue;
      const int32_t num_output = s->num_known_tokens() - s->num_prompt_tokens;
      const int32_t max_tokens = s->request.sampling.max_tokens;
      auto stop = stop_after_.find(ss.id);
      LOOM_CHECK(num_output <= max_tokens, "seq %lld: %d tokens of %d", (long long)ss.id,
                 num_output, max_tokens);
      if (num_output == max_tokens) {
        sched_.finish(ss.id, FinishReason::kLength, now_us_);
        record_finish(ss.id);
      } else if (stop != stop_after_.end() && num_output >= stop->second) {
        sched_.finish(ss.id, FinishReason::kStop, now_us_);
        record_finish(ss.id);
      }
    }
  }
  void resolve_oldest() {
    InFlight f = std::move(in_flight_.front());
    in_flight_.erase(in_flight_.begin());
    now_us_ += step_us_;
    sched_.resolve(f.plan, f.result, now_us_);
    finish_done(f.plan);
  }

  void record_finish(SeqId id) {
    const Sequence* s = sched_.find(id);
    if (s == nullptr || !live_.count(id)) return;
    FinishedRecord f;
    f.reason = s->finish_reason.value_or(FinishReason::kError);
    f.num_prompt_tokens = s->num_prompt_tokens;
    LOOM_CHECK(s->num_pending_tokens == 0, "seq %lld finished with pending tokens", (long long)id);
    f.output.assign(s->tokens.begin() + s->num_prompt_tokens, s->tokens.end());
    f.num_preemptions = s->timings.num_preemptions;
    f.num_cached_prompt_tokens = s->num_cached_prompt_tokens;
    f.timings = s->timings;
    finished_[id] = std::move(f);
    live_.erase(id);
  }

  Scheduler& sched_;
  FakeRunner runner_;
  int64_t step_us_;
  bool overlapped_;
  struct InFlight {
    StepPlan plan;
    StepResult result;
  };
  std::vector<InFlight> in_flight_;  // overlapped: committed, unresolved steps (at most 2)
  int64_t num_pending_inputs_ = 0;
  int64_t now_us_ = 1000000;
  std::set<SeqId> live_;
  std::map<SeqId, int32_t> stop_after_;
  std::function<void(int64_t)> hook_;
  std::vector<IterationRecord> history_;
  std::map<SeqId, FinishedRecord> finished_;
};

}  // namespace loom::fakes
