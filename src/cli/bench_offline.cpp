#include "cli/bench_offline.h"

#include <algorithm>
#include <chrono>
#include <memory>
#include <thread>

#include "cli/bench_report.h"
#include "util/clock.h"

namespace loom::bench {
namespace {

// How often the client looks at its streams when nothing arrived: coarse enough to leave the
// engine's threads the CPU, fine enough against step times of milliseconds or more.
constexpr int64_t kPollUs = 1000;

struct InFlight {
  size_t index = 0;  // into the workload and the records
  std::shared_ptr<RequestStream> stream;
  int64_t send_us = 0;
  int64_t last_token_us = 0;
};

Request to_request(const BenchRequest& b) {
  Request r;
  r.external_id = "bench-" + std::to_string(b.index);
  r.prompt = b.prompt;
  r.sampling.temperature = 0.0f;
  r.sampling.max_tokens = b.max_tokens;
  r.sampling.ignore_eos = b.ignore_eos;
  if (!b.tier.empty()) {
    auto tier = parse_tier(b.tier);
    LOOM_CHECK(tier.has_value(), "workload tier '%s'", b.tier.c_str());
    r.priority = tier_priority(*tier);
  }
  return r;
}

// Reads every delta waiting on `f`'s stream into `rec`. Returns true when the request is done.
bool drain(InFlight& f, RequestRecord& rec, bool& progressed) {
  while (auto d = f.stream->next(std::chrono::milliseconds(0))) {
    progressed = true;
    const int64_t t = now_us();
    if (!d->new_tokens.empty()) {
      if (rec.output_tokens == 0) {
        rec.ttft_s = (t - f.send_us) * 1e-6;
      } else {
        rec.itl_s.push_back((t - f.last_token_us) * 1e-6);
      }
      f.last_token_us = t;
      rec.output_tokens += static_cast<int32_t>(d->new_tokens.size());
    }
    if (d->finish) {
      rec.e2e_s = (t - f.send_us) * 1e-6;
      rec.ok = *d->finish == FinishReason::kStop || *d->finish == FinishReason::kLength;
      if (!rec.ok)
        rec.error = d->error.empty() ? std::string(finish_reason_name(*d->finish)) : d->error;
      if (d->num_prompt_tokens > 0) rec.prompt_tokens = d->num_prompt_tokens;
      return true;
    }
  }
  return false;
}

}  // namespace

Status warm_up(Engine& engine, int32_t num_requests, int32_t vocab_size) {
  std::vector<std::shared_ptr<RequestStream>> streams;
  BenchRng rng(12345);
  for (int32_t i = 0; i < num_requests; ++i) {
    Request r;
    for (int k = 0; k < 16; ++k)
      r.prompt.push_back(static_cast<TokenId>(rng.uniform_int(100, vocab_size - 1)));
    r.sampling.temperature = 0.0f;
    r.sampling.max_tokens = 4;
    r.sampling.ignore_eos = true;
    SubmitResult s = engine.submit(std::move(r));
    if (!s.ok()) return make_error("warm-up request refused: %s", s.error.c_str());
    streams.push_back(s.stream);
  }
  for (auto& s : streams) {
    while (true) {
      auto d = s->next(std::chrono::milliseconds(static_cast<int64_t>(kStallTimeoutS * 1000)));
      if (!d) return make_error("warm-up request got no output in %.0f s", kStallTimeoutS);
      if (d->finish) break;
    }
  }
  return ok_status();
}

DriveResult run_offline(Engine& engine, const std::vector<BenchRequest>& workload,
                        const DriveOptions& options) {
  DriveResult result;
  result.records.resize(workload.size());
  EngineMetrics& m = engine.metrics();
  const int64_t swap0 = m.preemptions_swap.load(), recompute0 = m.preemptions_recompute.load();
  const int64_t query0 = m.prefix_cache_query_tokens.load(),
                hit0 = m.prefix_cache_hit_tokens.load(), iter0 = m.iterations.load();
  double peak_kv = 0.0;

  const int64_t start_us = now_us();
  const int64_t deadline_us = options.max_duration_s > 0
                                  ? start_us + static_cast<int64_t>(options.max_duration_s * 1e6)
                                  : INT64_MAX;
  std::vector<InFlight> in_flight;
  std::vector<int64_t> first_attempt_us(workload.size(), -1);
  size_t next = 0, num_done = 0, num_sent = 0;
  int64_t tokens = 0, last_print_us = 0, last_delta_us = start_us, end_us = start_us;
  bool timed_out = false;
  while (num_done < workload.size()) {
    int64_t now = now_us();
    if (now >= deadline_us) {
      timed_out = true;
      break;
    }
    // Submit what has arrived, while concurrency allows. A full queue is back-pressure: the
    // request is retried next round and its clock keeps running from its first attempt.
    while (next < workload.size() &&
           (options.max_concurrency <= 0 ||
            in_flight.size() < static_cast<size_t>(options.max_concurrency)) &&
           start_us + static_cast<int64_t>(workload[next].arrival_s * 1e6) <= now) {
      RequestRecord& rec = result.records[next];
      if (first_attempt_us[next] < 0) first_attempt_us[next] = now;
      rec.send_s = (first_attempt_us[next] - start_us) * 1e-6;
      SubmitResult s = engine.submit(to_request(workload[next]));
      if (s.code == SubmitErrorCode::kQueueFull) break;
      rec.group = workload[next].group;
      rec.prompt_tokens = static_cast<int32_t>(workload[next].prompt.size());
      ++num_sent;
      if (!s.ok()) {
        rec.error = s.error;
        ++num_done;
      } else {
        in_flight.push_back(InFlight{next, s.stream, first_attempt_us[next], 0});
      }
      ++next;
    }
    bool progressed = false;
    for (size_t i = 0; i < in_flight.size();) {
      RequestRecord& rec = result.records[in_flight[i].index];
      const int32_t before = rec.output_tokens;
      const bool done = drain(in_flight[i], rec, progressed);
      tokens += rec.output_tokens - before;
      if (done) {
        ++num_done;
        end_us = std::max(end_us, now_us());
        in_flight[i] = std::move(in_flight.back());
        in_flight.pop_back();
      } else {
        ++i;
      }
    }
    now = now_us();
    if (progressed) last_delta_us = now;
    const int32_t total_blocks = m.kv_blocks_total.load();
    if (total_blocks > 0)
      peak_kv = std::max(peak_kv, static_cast<double>(m.kv_blocks_used.load()) / total_blocks);
    if (!in_flight.empty() && now - last_delta_us > static_cast<int64_t>(kStallTimeoutS * 1e6)) {
      timed_out = true;  // a hung engine: end the run rather than wait forever
      break;
    }
    if (options.progress && now - last_print_us > 500000) {
      print_bench_progress(num_done, workload.size(), tokens, (now - start_us) * 1e-6);
      last_print_us = now;
    }
    if (!progressed) std::this_thread::sleep_for(std::chrono::microseconds(kPollUs));
  }
  if (timed_out) {
    end_us = now_us();
    for (InFlight& f : in_flight) {
      engine.abort(f.stream->id());
      RequestRecord& rec = result.records[f.index];
      rec.ok = false;
      rec.error = "cut off by the time bound";
    }
    // Let the aborts land so the next run starts on an idle engine.
    for (InFlight& f : in_flight) {
      while (!f.stream->finished()) f.stream->next(std::chrono::milliseconds(100));
    }
  }
  if (options.progress) {
    print_bench_progress(num_done, workload.size(), tokens, (end_us - start_us) * 1e-6);
    std::fputc('\n', stderr);
  }
  result.records.resize(num_sent);  // requests are sent in workload order
  result.num_not_sent = static_cast<int64_t>(workload.size() - num_sent);
  result.duration_s = (end_us - start_us) * 1e-6;
  result.server.preemptions_swap = m.preemptions_swap.load() - swap0;
  result.server.preemptions_recompute = m.preemptions_recompute.load() - recompute0;
  result.server.prefix_cache_query_tokens = m.prefix_cache_query_tokens.load() - query0;
  result.server.prefix_cache_hit_tokens = m.prefix_cache_hit_tokens.load() - hit0;
  result.server.iterations = m.iterations.load() - iter0;
  result.server.peak_kv_usage = peak_kv;
  return result;
}

}  // namespace loom::bench
