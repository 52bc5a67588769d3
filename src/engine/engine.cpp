#include "engine/engine.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <random>
#include <thread>
#include <unordered_map>

#include "engine/output_processor.h"
#include "runner/model_runner.h"
#include "sample/sampler.h"
#include "sched/scheduler.h"
#include "util/check.h"
#include "util/clock.h"
#include "util/log.h"

namespace loom {

struct Engine::Impl {
  Impl(std::unique_ptr<Backend> b, std::shared_ptr<const Tokenizer> t, ModelConfig mc,
       EngineConfig c)
      : backend(std::move(b)),
        tokenizer(std::move(t)),
        model_config(std::move(mc)),
        config(std::move(c)),
        pool(backend->kv_pool()),
        runner(*backend) {
    SchedulerConfig& sc = config.scheduler;
    sc.block_size = pool.block_size;
    sc.num_device_blocks = pool.num_device_blocks;
    sc.num_host_blocks = pool.num_host_blocks;
    sc.kv_bytes_per_block = pool.bytes_per_block;
    sc.max_model_len = std::min(sc.max_model_len, model_config.max_context);
    scheduler = std::make_unique<Scheduler>(sc);
    measure_swap_bandwidth();
    metrics.kv_blocks_total = pool.num_device_blocks;
    metrics.host_blocks_total = pool.num_host_blocks;
  }

  // --- shared with client threads (under mu) ---
  struct Command {
    enum class Kind { kSubmit, kAbort } kind;
    SeqId id = 0;
    Request request;
    std::shared_ptr<RequestStream> stream;
    uint64_t seed = 0;
  };
  std::mutex mu;
  std::condition_variable cv;
  std::deque<Command> inbox;
  int64_t inbox_prompt_tokens = 0;
  int32_t waiting_snapshot = 0;         // scheduler's waiting requests at the last iteration
  int64_t waiting_tokens_snapshot = 0;  // their prompt tokens
  bool stop_requested = false;
  std::atomic<bool> accepting{false};
  std::atomic<SeqId> next_id{1};
  std::atomic<int64_t> num_live{0};  // submitted and not yet finished (the drain waits for 0)
  std::mt19937_64 seed_rng{std::random_device{}()};

  // --- engine thread only ---
  std::unique_ptr<Backend> backend;
  std::shared_ptr<const Tokenizer> tokenizer;
  ModelConfig model_config;
  EngineConfig config;
  KvPoolInfo pool;
  ModelRunner runner;
  std::unique_ptr<Scheduler> scheduler;
  std::unordered_map<SeqId, std::unique_ptr<SeqOutput>> outputs;
  // A launched step whose tokens have not been read yet. With overlapped steps one stays in
  // flight while the next is planned and launched.
  struct StepInFlight {
    StepPlan plan;
    std::vector<SampleInput> rows;  // the sampled rows, in plan order
    std::vector<SeqId> ids;         // parallel to rows
    std::vector<SampleOutput> out;
    int64_t launch_us = 0;
  };
  std::optional<StepInFlight> in_flight;
  StepInFlight spare;  // the finished record, reused for its vectors' capacity
  int64_t last_complete_us = 0;
  // Live requests whose sampling reads the ids of earlier outputs (penalties) or runs on the
  // host (logprobs): while any is live, each step completes before the next is planned.
  int32_t num_live_serial_requests = 0;
  int64_t last_preempt_swap = 0, last_preempt_recompute = 0;
  int64_t last_prefix_query = 0, last_prefix_hit = 0;
  // The preemption cost model's rates (SchedulerConfig): measured, not guessed.
  double swap_bytes_per_us = 0.0;
  double prefill_tokens_per_us = 0.0;  // moving average over steps that carried prefill
  EngineMetrics metrics;
  std::thread thread;

  SubmitResult submit(Request request);
  void measure_swap_bandwidth();
  void observe_step_speed(const StepPlan& plan, int64_t execute_us);
  void loop();
  void drain_inbox();
  bool step();
  bool overlap_now() const;
  void complete(StepInFlight& step);
  static bool needs_serial_steps(const SamplingParams& p);
  void finish(SeqId id, FinishReason reason, RequestOutput delta, const std::string& error = "");
  void publish_gauges();
};

// Times a round trip of real blocks through the host swap pool (before any sequence exists, so
// the contents do not matter) and hands the bandwidth to the scheduler's cost model.
void Engine::Impl::measure_swap_bandwidth() {
  const int32_t n = std::min({pool.num_host_blocks, pool.num_device_blocks, 8});
  if (n <= 0) return;
  std::vector<BlockCopy> out, in;
  for (int32_t b = 0; b < n; ++b) {
    out.push_back({b, b});
    in.push_back({b, b});
  }
  backend->swap_out(out);  // first touch: page faults of fresh pools, not bandwidth
  backend->swap_in(in);
  const int64_t t0 = now_us();
  backend->swap_out(out);
  backend->swap_in(in);
  const int64_t us = std::max<int64_t>(1, now_us() - t0);
  swap_bytes_per_us = 2.0 * n * static_cast<double>(pool.bytes_per_block) / us;
  scheduler->set_cost_model(swap_bytes_per_us, config.scheduler.recompute_tokens_per_us);
  LOOM_LOG_DEBUG("swap bandwidth %.0f MB/s", swap_bytes_per_us);
}

// Prefill speed, from steps whose tokens are mostly prefill (decode-only steps say little).
void Engine::Impl::observe_step_speed(const StepPlan& plan, int64_t execute_us) {
  int32_t prefill_tokens = 0;
  for (const ScheduledSeq& s : plan.seqs)
    prefill_tokens += s.num_new_tokens > 1 ? s.num_new_tokens : 0;
  if (prefill_tokens < 32 || execute_us <= 0) return;
  const double rate = static_cast<double>(plan.num_tokens) / execute_us;
  prefill_tokens_per_us =
      prefill_tokens_per_us == 0.0 ? rate : 0.9 * prefill_tokens_per_us + 0.1 * rate;
  if (swap_bytes_per_us > 0.0) scheduler->set_cost_model(swap_bytes_per_us, prefill_tokens_per_us);
}

SubmitResult Engine::Impl::submit(Request request) {
  SubmitResult r;
  auto fail = [&](SubmitErrorCode code, std::string message) {
    r.code = code;
    r.error = std::move(message);
    if (code == SubmitErrorCode::kQueueFull)
      metrics.rejected_queue_full.fetch_add(1);
    else
      metrics.rejected_invalid.fetch_add(1);
    return r;
  };
  if (!accepting.load()) return fail(SubmitErrorCode::kShuttingDown, "the server is shutting down");
  const int32_t vocab = tokenizer->vocab_size();
  if (request.prompt.empty()) return fail(SubmitErrorCode::kInvalid, "the prompt is empty");
  for (TokenId t : request.prompt) {
    if (t < 0 || t >= vocab)
      return fail(SubmitErrorCode::kInvalid, "prompt token id " + std::to_string(t) +
                                                 " is outside the vocabulary [0, " +
                                                 std::to_string(vocab) + ")");
  }
  if (Status s = request.sampling.validate(vocab); !s.ok())
    return fail(SubmitErrorCode::kInvalid, s.error());
  if (Status s = scheduler->check_request(request); !s.ok())
    return fail(SubmitErrorCode::kTooLong, s.error());
  if (request.arrival_us == 0) request.arrival_us = now_us();

  std::lock_guard<std::mutex> lock(mu);
  const SchedulerConfig& sc = config.scheduler;
  const int64_t prompt_tokens = static_cast<int64_t>(request.prompt.size());
  if (waiting_snapshot + static_cast<int64_t>(inbox.size()) >= sc.max_waiting_requests)
    return fail(SubmitErrorCode::kQueueFull, "the waiting queue is full (" +
                                                 std::to_string(sc.max_waiting_requests) +
                                                 " requests); retry later");
  if (waiting_tokens_snapshot + inbox_prompt_tokens + prompt_tokens > sc.max_waiting_tokens)
    return fail(SubmitErrorCode::kQueueFull, "the waiting queue is full (" +
                                                 std::to_string(sc.max_waiting_tokens) +
                                                 " prompt tokens); retry later");
  Command cmd;
  cmd.kind = Command::Kind::kSubmit;
  cmd.id = next_id.fetch_add(1);
  cmd.seed = request.sampling.seed ? *request.sampling.seed : seed_rng();
  cmd.stream = std::make_shared<RequestStream>(cmd.id);
  cmd.request = std::move(request);
  r.stream = cmd.stream;
  inbox_prompt_tokens += prompt_tokens;
  num_live.fetch_add(1);
  inbox.push_back(std::move(cmd));
  cv.notify_one();
  return r;
}

void Engine::Impl::drain_inbox() {
  std::deque<Command> cmds;
  {
    std::lock_guard<std::mutex> lock(mu);
    cmds.swap(inbox);
    inbox_prompt_tokens = 0;
  }
  const int64_t now = now_us();
  for (Command& c : cmds) {
    if (c.kind == Command::Kind::kSubmit) {
      const int32_t prompt_tokens = static_cast<int32_t>(c.request.prompt.size());
      scheduler->add(c.id, std::move(c.request), now);
      // SeqOutput keeps a reference to the params: the scheduler's copy, stable while it lives.
      const Sequence* seq = scheduler->find(c.id);
      LOOM_CHECK(seq != nullptr);
      outputs.emplace(
          c.id, std::make_unique<SeqOutput>(c.stream, *tokenizer, seq->request.sampling, c.seed));
      metrics.prompt_tokens.fetch_add(prompt_tokens);
      if (needs_serial_steps(seq->request.sampling)) ++num_live_serial_requests;
    } else {
      if (outputs.count(c.id) == 0) continue;  // already finished
      finish(c.id, FinishReason::kAbort, RequestOutput{});
    }
  }
}

void Engine::Impl::finish(SeqId id, FinishReason reason, RequestOutput delta,
                          const std::string& error) {
  auto it = outputs.find(id);
  LOOM_CHECK(it != outputs.end(), "finish of unknown seq %ld", static_cast<long>(id));
  const int64_t now = now_us();
  Sequence* seq = scheduler->find(id);
  LOOM_CHECK(seq != nullptr);
  // Text held back (an incomplete character, a possible stop-string prefix) goes out now,
  // unless a stop string ended the sequence (flush() knows).
  it->second->flush(delta);
  delta.seq_id = id;
  delta.finish = reason;
  delta.error = error;
  delta.num_prompt_tokens = seq->num_prompt_tokens;
  delta.num_cached_prompt_tokens = seq->num_cached_prompt_tokens;
  delta.num_output_tokens = seq->num_known_tokens() - seq->num_prompt_tokens;
  delta.timings = seq->timings;
  delta.timings.finished_us = now;
  if (needs_serial_steps(seq->request.sampling)) --num_live_serial_requests;
  scheduler->finish(id, reason, now);
  metrics.finished_by_reason[static_cast<int>(reason)].fetch_add(1);
  if (delta.timings.arrival_us > 0) metrics.e2e_s.observe((now - delta.timings.arrival_us) * 1e-6);
  it->second->stream().push(std::move(delta));
  outputs.erase(it);
  num_live.fetch_sub(1);
}

bool Engine::Impl::needs_serial_steps(const SamplingParams& p) {
  return p.logprobs >= 0 || p.repetition_penalty != 1.0f || p.presence_penalty != 0.0f ||
         p.frequency_penalty != 0.0f;
}

// Whether the next step may be launched before the one in flight is read: the backend fills
// pending input tokens on its device, and no live request needs the ids on the host first.
// Padded static batching copies decode rows, pending ones included: it stays serial.
bool Engine::Impl::overlap_now() const {
  return config.overlap_steps && backend->supports_overlap() && num_live_serial_requests == 0 &&
         !config.scheduler.static_padding;
}

// One iteration. Serial: plan, launch, wait, read. Overlapped: plan step N+1 and launch it
// while step N runs, then wait for step N and read it (so step N's stop checks, text and
// streaming also run while step N+1 computes).
bool Engine::Impl::step() {
  if (in_flight && !overlap_now()) {
    complete(*in_flight);
    in_flight.reset();
  }
  const int64_t t0 = now_us();
  StepPlan plan = scheduler->schedule(t0);
  if (plan.seqs.empty()) {
    // Nothing to launch: read the step in flight (its sequences may all be finishing), and do
    // the plan's block moves, if any, after it.
    const bool had_step = in_flight.has_value();
    if (in_flight) {
      complete(*in_flight);
      in_flight.reset();
    }
    if (plan.swap_out.empty() && plan.swap_in.empty() && plan.copies.empty()) return had_step;
    runner.launch(plan, {});
    runner.finish({});
    scheduler->update(plan, StepResult{}, now_us());
    return true;
  }
  for (const ScheduledSeq& s : plan.seqs) {
    SeqOutput& out = *outputs.at(s.id);
    if (!out.first_scheduled_recorded) {
      out.first_scheduled_recorded = true;
      Sequence* seq = scheduler->find(s.id);
      seq->timings.first_scheduled_us = t0;
      metrics.queue_s.observe((t0 - seq->request.arrival_us) * 1e-6);
    }
  }
  // One sampling input per sampled row, in plan order; the runner samples them.
  StepInFlight next = std::move(spare);
  next.rows.clear();
  next.ids.clear();
  for (const ScheduledSeq& s : plan.seqs) {
    if (!s.sample) continue;
    const Sequence* seq = scheduler->find(s.id);
    const SamplingParams& params = seq->request.sampling;
    SampleInput in;
    in.vocab_size = runner.vocab_size();
    in.params = &params;
    in.prompt = std::span<const TokenId>(seq->tokens.data(), seq->num_prompt_tokens);
    // Pending ids (overlapped steps) are only read by penalties, which keep steps serial.
    in.output = std::span<const TokenId>(seq->tokens.data() + seq->num_prompt_tokens,
                                         seq->num_output_tokens());
    in.seed = outputs.at(s.id)->seed();
    in.step = seq->num_output_tokens();
    in.eos_ids = params.ignore_eos ? std::span<const TokenId>() : tokenizer->eos_ids();
    next.rows.push_back(in);
    next.ids.push_back(s.id);
  }
  next.out.assign(next.rows.size(), SampleOutput{});
  next.launch_us = now_us();
  runner.launch(plan, next.rows);
  scheduler->commit(plan);  // after the launch: it appends to the tokens the rows point into
  next.plan = std::move(plan);
  std::optional<StepInFlight> previous = std::move(in_flight);
  in_flight = std::move(next);
  if (previous) {
    complete(*previous);  // overlapped with the step just launched
    spare = std::move(*previous);
  }
  if (!overlap_now()) {
    complete(*in_flight);
    spare = std::move(*in_flight);
    in_flight.reset();
  }
  return true;
}

// Waits for a launched step, hands its tokens to the scheduler, and turns them into deltas,
// stop checks and finishes.
void Engine::Impl::complete(StepInFlight& st) {
  runner.finish(st.out);
  StepResult result;
  result.ids = std::move(st.ids);  // the record is reused as the next spare
  result.sampled.reserve(st.out.size());
  result.logprobs.reserve(st.out.size());
  for (SampleOutput& o : st.out) {
    result.sampled.push_back(o.token);
    result.logprobs.push_back(std::move(o.logprobs));
  }
  const int64_t t1 = now_us();
  // Device time of this step: from its launch, or from the end of the step before it when it
  // queued behind that one.
  result.execute_us = t1 - std::max(st.launch_us, last_complete_us);
  last_complete_us = t1;
  observe_step_speed(st.plan, result.execute_us);
  scheduler->resolve(st.plan, result, t1);
  metrics.iterations.fetch_add(1);

  // Deltas, stop checks, finishes.
  for (size_t i = 0; i < result.ids.size(); ++i) {
    const SeqId id = result.ids[i];
    auto it = outputs.find(id);
    if (it == outputs.end()) continue;  // finished while this step ran: its token is dropped
    Sequence* seq = scheduler->find(id);
    SeqOutput& out = *it->second;
    // Counts as of this token: later steps' tokens may already be pending.
    const int32_t num_tokens = seq->num_known_tokens();
    const int32_t num_output = num_tokens - seq->num_prompt_tokens;
    if (num_output == 1 && out.last_token_us == 0) {
      metrics.ttft_s.observe((t1 - seq->request.arrival_us) * 1e-6);
    } else if (out.last_token_us > 0) {
      metrics.itl_s.observe((t1 - out.last_token_us) * 1e-6);
    }
    out.last_token_us = t1;
    metrics.generation_tokens.fetch_add(1);
    RequestOutput delta;
    delta.seq_id = id;
    const TokenLogprobs* lp = seq->request.sampling.logprobs >= 0 ? &result.logprobs[i] : nullptr;
    std::optional<FinishReason> reason = out.on_token(result.sampled[i], lp, num_output, num_tokens,
                                                      config.scheduler.max_model_len, delta);
    delta.num_prompt_tokens = seq->num_prompt_tokens;
    delta.num_output_tokens = num_output;
    if (reason) {
      finish(id, *reason, std::move(delta));
    } else {
      out.stream().push(std::move(delta));
    }
  }
}

void Engine::Impl::publish_gauges() {
  const SchedulerStats st = scheduler->stats();
  for (int t = 0; t < 3; ++t) {
    metrics.running[t] = st.running_by_tier[t];
    metrics.waiting[t] = st.waiting_by_tier[t];
    metrics.swapped[t] = st.swapped_by_tier[t];
  }
  metrics.kv_blocks_used = st.num_used_blocks;
  metrics.kv_blocks_cached = st.num_cached_blocks;
  metrics.host_blocks_used = st.num_host_blocks_used;
  metrics.preemptions_swap += st.num_preemptions_swap - last_preempt_swap;
  metrics.preemptions_recompute += st.num_preemptions_recompute - last_preempt_recompute;
  metrics.prefix_cache_query_tokens += st.prefix_query_tokens - last_prefix_query;
  metrics.prefix_cache_hit_tokens += st.prefix_hit_tokens - last_prefix_hit;
  last_preempt_swap = st.num_preemptions_swap;
  last_preempt_recompute = st.num_preemptions_recompute;
  last_prefix_query = st.prefix_query_tokens;
  last_prefix_hit = st.prefix_hit_tokens;
  std::lock_guard<std::mutex> lock(mu);
  waiting_snapshot = st.num_waiting;
  waiting_tokens_snapshot = st.num_waiting_tokens;
}

void Engine::Impl::loop() {
  while (true) {
    drain_inbox();
    {
      std::unique_lock<std::mutex> lock(mu);
      if (stop_requested) break;
    }
    const bool worked = (scheduler->has_work() || in_flight) && step();
    publish_gauges();
#ifndef NDEBUG
    scheduler->check_invariants();
#endif
    if (!worked) {
      std::unique_lock<std::mutex> lock(mu);
      // Idle, or waiting for a dynamic batch window: sleep until new input (or a short tick).
      int64_t wait_us = scheduler->has_work() ? 1000 : 100000;
      if (auto event = scheduler->next_event_us())
        wait_us = std::max<int64_t>(0, *event - now_us());
      cv.wait_for(lock, std::chrono::microseconds(wait_us),
                  [&] { return !inbox.empty() || stop_requested; });
    }
  }
  if (in_flight) {  // its tokens go out before the aborts
    complete(*in_flight);
    in_flight.reset();
  }
  // Abort whatever is left so no client waits forever.
  std::vector<SeqId> left;
  for (auto& [id, out] : outputs) left.push_back(id);
  for (SeqId id : left) finish(id, FinishReason::kAbort, RequestOutput{});
  publish_gauges();
}

Engine::Engine(std::unique_ptr<Backend> backend, std::shared_ptr<const Tokenizer> tokenizer,
               ModelConfig model_config, EngineConfig config)
    : impl_(std::make_unique<Impl>(std::move(backend), std::move(tokenizer),
                                   std::move(model_config), std::move(config))) {}

Engine::~Engine() {
  shutdown(std::chrono::milliseconds(0));
}

void Engine::start() {
  LOOM_CHECK(!impl_->thread.joinable(), "engine started twice");
  impl_->accepting = true;
  impl_->thread = std::thread([this] { impl_->loop(); });
}

void Engine::shutdown(std::chrono::milliseconds drain_deadline) {
  impl_->accepting = false;
  if (!impl_->thread.joinable()) return;
  const auto deadline = std::chrono::steady_clock::now() + drain_deadline;
  // Let queued and running work finish until the deadline.
  while (impl_->num_live.load() > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->stop_requested = true;
  }
  impl_->cv.notify_all();
  impl_->thread.join();
}

SubmitResult Engine::submit(Request request) {
  return impl_->submit(std::move(request));
}

void Engine::abort(SeqId id) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  Impl::Command cmd;
  cmd.kind = Impl::Command::Kind::kAbort;
  cmd.id = id;
  impl_->inbox.push_back(std::move(cmd));
  impl_->cv.notify_one();
}

bool Engine::accepting() const {
  return impl_->accepting.load();
}
EngineMetrics& Engine::metrics() {
  return impl_->metrics;
}
const Tokenizer& Engine::tokenizer() const {
  return *impl_->tokenizer;
}
const ModelConfig& Engine::model_config() const {
  return impl_->model_config;
}
const EngineConfig& Engine::config() const {
  return impl_->config;
}
const KvPoolInfo& Engine::kv_pool() const {
  return impl_->pool;
}

}  // namespace loom
