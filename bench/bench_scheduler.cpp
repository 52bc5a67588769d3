// Scheduler cost per step with a fake runner (no model): one schedule() + update() with 256
// sequences decoding and 10,000 waiting. Target: under 50 us per step.
//   build/bench_scheduler [--benchmark_filter=...]
// Reports manual time = schedule() + update() only (the fake runner's work is excluded).
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdio>

#include "fakes/fake_runner.h"
#include "fakes/step_driver.h"
#include "sched/scheduler.h"

namespace loom {
namespace {

constexpr int32_t kNumRunning = 256;
constexpr int32_t kNumWaiting = 10000;
constexpr int32_t kPromptTokens = 64;

SchedulerConfig bench_config(int32_t max_tokens) {
  SchedulerConfig c;
  c.block_size = 16;
  c.max_num_seqs = kNumRunning;
  c.max_num_batched_tokens = 8192;  // the warm-up admits all 256 prompts in one step
  c.max_model_len = kPromptTokens + max_tokens;
  // Room for every running sequence's whole reservation plus the default 5% buffer.
  c.num_device_blocks = kNumRunning * ((kPromptTokens + max_tokens) / c.block_size + 2) * 11 / 10;
  c.num_host_blocks = 1024;
  c.max_waiting_requests = kNumWaiting + kNumRunning + 16;
  return c;
}

// Steady decode: 256 running with outputs long enough never to finish during the run.
void BM_ScheduleUpdateDecode(benchmark::State& state) {
  const int32_t max_tokens = 8192;
  Scheduler sched(bench_config(max_tokens));
  fakes::FakeRunner runner(sched.config(), /*verify=*/false);
  int64_t now = 1;
  SeqId next_id = 1;
  for (int32_t i = 0; i < kNumRunning + kNumWaiting; ++i) {
    sched.add(next_id++, fakes::make_request(kPromptTokens, max_tokens), now);
  }
  auto step = [&](double* seconds) {
    const auto t0 = std::chrono::steady_clock::now();
    StepPlan plan = sched.schedule(now);
    const auto t1 = std::chrono::steady_clock::now();
    StepResult result = runner.execute(plan, sched);
    const auto t2 = std::chrono::steady_clock::now();
    sched.update(plan, result, ++now);
    const auto t3 = std::chrono::steady_clock::now();
    if (seconds) *seconds = std::chrono::duration<double>((t1 - t0) + (t3 - t2)).count();
    return plan.seqs.size();
  };
  for (int i = 0; i < 4; ++i) step(nullptr);  // admit and prefill the 256, then decode
  sched.check_invariants();
  if (sched.stats().num_running != kNumRunning || sched.stats().num_waiting != kNumWaiting) {
    state.SkipWithError("setup did not reach 256 running / 10000 waiting");
    return;
  }
  double total = 0;
  int64_t steps = 0;
  for (auto _ : state) {
    double seconds = 0;
    const size_t n = step(&seconds);
    benchmark::DoNotOptimize(n);
    state.SetIterationTime(seconds);
    total += seconds;
    ++steps;
  }
  sched.check_invariants();
  state.counters["us_per_step"] = total / static_cast<double>(steps) * 1e6;
  state.counters["running"] = sched.stats().num_running;
  state.counters["waiting"] = sched.stats().num_waiting;
}
BENCHMARK(BM_ScheduleUpdateDecode)
    ->UseManualTime()
    ->Iterations(4000)
    ->Unit(benchmark::kMicrosecond);

// With churn: short outputs, so sequences finish every few steps and waiting ones are admitted
// (prefill chunks mixed with decodes); the queue is refilled to stay at 10,000.
void BM_ScheduleUpdateChurn(benchmark::State& state) {
  const int32_t max_tokens = 128;
  Scheduler sched(bench_config(max_tokens));
  fakes::FakeRunner runner(sched.config(), /*verify=*/false);
  int64_t now = 1;
  SeqId next_id = 1;
  uint64_t rng = 12345;
  auto next_max_tokens = [&] {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return 16 + static_cast<int32_t>((rng >> 33) % (max_tokens - 16));
  };
  for (int32_t i = 0; i < kNumRunning + kNumWaiting; ++i) {
    sched.add(next_id++, fakes::make_request(kPromptTokens, next_max_tokens()), now);
  }
  double total = 0;
  int64_t steps = 0;
  std::vector<SeqId> done;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    StepPlan plan = sched.schedule(now);
    const auto t1 = std::chrono::steady_clock::now();
    StepResult result = runner.execute(plan, sched);
    const auto t2 = std::chrono::steady_clock::now();
    sched.update(plan, result, ++now);
    const auto t3 = std::chrono::steady_clock::now();
    // The engine's part: finish at max_tokens, and keep the queue full (not timed).
    done.clear();
    for (const ScheduledSeq& ss : plan.seqs) {
      const Sequence* s = sched.find(ss.id);
      if (ss.sample && s->num_output_tokens() >= s->request.sampling.max_tokens)
        done.push_back(ss.id);
    }
    for (SeqId id : done) {
      sched.finish(id, FinishReason::kLength, now);
      sched.add(next_id++, fakes::make_request(kPromptTokens, next_max_tokens()), now);
    }
    const double seconds = std::chrono::duration<double>((t1 - t0) + (t3 - t2)).count();
    state.SetIterationTime(seconds);
    total += seconds;
    ++steps;
  }
  sched.check_invariants();
  state.counters["us_per_step"] = total / static_cast<double>(steps) * 1e6;
  state.counters["finished"] = static_cast<double>(sched.stats().num_finished);
}
BENCHMARK(BM_ScheduleUpdateChurn)->UseManualTime()->Iterations(4000)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace loom

BENCHMARK_MAIN();
