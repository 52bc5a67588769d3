// Benchmark workloads for `loom bench`: seeded, reproducible lists of requests made of random
// token ids, each with the time it arrives (seconds after the run starts). The same list drives
// the engine in-process (offline) and any OpenAI-compatible server (online, as token-id prompts).
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "core/ids.h"
#include "util/result.h"

namespace loom::bench {

enum class WorkloadKind {
  kFixed,          // every request input_len in, output_len out
  kUniform,        // lengths uniform in [input_len, input_len_max], [output_len, output_len_max]
  kAnyscale,       // Anyscale 2023: 512-token prompts, outputs exponential (mean 128) under a cap
  kLongPromptMix,  // short chats with a few prompts of several thousand tokens arriving among them
  kTierMix,        // interactive chats arriving while long batch jobs saturate the engine
  kSharedPrefix    // every prompt = one long shared system prompt + a short own suffix
};

const char* workload_name(WorkloadKind kind);
Result<WorkloadKind> parse_workload(const std::string& name);

struct WorkloadOptions {
  WorkloadKind kind = WorkloadKind::kFixed;
  int32_t num_requests = 64;  // kLongPromptMix: chats; kTierMix: interactive chats
  uint64_t seed = 0;
  int32_t vocab_size = 0;      // token ids are drawn from [min_token_id, vocab_size)
  int32_t min_token_id = 100;  // keeps special tokens (BOS, EOS, chat markers) out of prompts
  // Foreground lengths, tokens. *_max = 0 means "same as the minimum" (fixed length).
  int32_t input_len = 128;
  int32_t input_len_max = 0;
  int32_t output_len = 128;
  int32_t output_len_max = 0;
  // Poisson arrivals of the foreground requests, per second; <= 0: all arrive at t = 0.
  double request_rate = 0.0;
  // kAnyscale.
  int32_t anyscale_prompt_len = 512;
  double anyscale_mean_output = 128.0;
  int32_t output_cap = 128;  // outputs resampled until <= cap
  // kLongPromptMix: num_long prompts of long_prompt_len, the k-th arriving at
  // long_first_s + k * long_every_s.
  int32_t num_long = 2;
  int32_t long_prompt_len = 4096;
  int32_t long_output_len = 16;
  double long_first_s = 2.0;
  double long_every_s = 4.0;
  // kTierMix: num_batch batch jobs all at t = 0; the interactive chats arrive after
  // interactive_start_s at request_rate (or all at once at interactive_start_s).
  int32_t num_batch = 16;
  int32_t batch_prompt_len = 256;
  int32_t batch_output_len = 256;
  double interactive_start_s = 2.0;
  bool tiers = true;  // false: every request is sent with the standard priority (FCFS)
  // kSharedPrefix: every prompt starts with the same prefix_len tokens.
  int32_t prefix_len = 1024;

  Status validate() const;
};

// One request of a workload. `group` names its class for per-group statistics
// ("all", "chat", "long", "interactive", "batch").
struct BenchRequest {
  int32_t index = 0;
  std::string group = "all";
  std::vector<TokenId> prompt;
  int32_t max_tokens = 1;
  bool ignore_eos = true;  // exact output lengths: the workload, not the model, decides them
  std::string tier;        // "" = none; else interactive / standard / batch
  double arrival_s = 0.0;  // seconds after the start
};

// Deterministic in (options): the same options give the same requests on every machine
// (mt19937_64 is fully specified; the distributions below are written out, not std::'s).
// The list is sorted by arrival time (stable, so ties keep index order).
std::vector<BenchRequest> make_workload(const WorkloadOptions& options);

// Pieces, exposed for tests.
class BenchRng {
 public:
  explicit BenchRng(uint64_t seed) : engine_(seed) {}
  uint64_t next() { return engine_(); }
  double uniform01();                           // [0, 1)
  int64_t uniform_int(int64_t lo, int64_t hi);  // [lo, hi], inclusive
  double exponential(double mean);              // > 0
 private:
  std::mt19937_64 engine_;
};

// Output length for the Anyscale workload: round(exponential(mean)), at least 1, drawn again
// until it is <= cap.
int32_t anyscale_output_len(BenchRng& rng, double mean, int32_t cap);
// Arrival times of a Poisson process of `rate` per second starting at `start_s`
// (exponential gaps of mean 1/rate); rate <= 0 gives `count` times equal to start_s.
std::vector<double> poisson_arrivals(BenchRng& rng, int32_t count, double rate, double start_s);

}  // namespace loom::bench
