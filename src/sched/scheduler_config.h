// Every scheduling knob, chosen once at start-up. Defaults are what a server should run with.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "util/result.h"

namespace loom {

enum class BatchingMode {
  kContinuous,  // Orca: admit and retire at every iteration (default)
  kStatic,      // gather up to max_num_seqs, run all to the end of the longest, then the next batch
  kDynamic      // TF-Serving: a batch forms by size or time window, then runs atomically
};
enum class AdmissionPolicy {
  kOptimistic,    // admit when the prompt's blocks fit above the watermark; rely on preemption
  kConservative,  // reserve prompt + max_tokens; never preempt for memory
  kProfiled       // reserve prompt + quantile of learned output lengths (clipped) + buffer
};
enum class PreemptionMode {
  kRecompute,  // free the victim's blocks, prefill again later
  kSwap,       // copy the victim's blocks to the host pool, copy back later
  kAuto  // per victim, the cheaper of the two by the cost model; recompute if the pool is full
};

const char* batching_mode_name(BatchingMode m);
const char* admission_policy_name(AdmissionPolicy p);
const char* preemption_mode_name(PreemptionMode m);
Result<BatchingMode> parse_batching_mode(const std::string& s);
Result<AdmissionPolicy> parse_admission_policy(const std::string& s);
Result<PreemptionMode> parse_preemption_mode(const std::string& s);

struct SchedulerConfig {
  int32_t block_size = 16;               // tokens per KV block
  int32_t num_device_blocks = 0;         // KV pool size (from the backend)
  int32_t num_host_blocks = 0;           // swap pool size (0 = swapping impossible)
  int32_t max_num_batched_tokens = 512;  // token budget per step
  int32_t max_num_seqs = 64;             // sequences per step
  int32_t max_model_len = 8192;          // prompt + output, tokens
  bool chunked_prefill = true;           // off: a prompt is prefilled whole in one step
  bool prefix_caching = true;
  BatchingMode batching = BatchingMode::kContinuous;
  int64_t dynamic_window_us = 20000;  // kDynamic: wait at most this long for a full batch
  // kStatic / kDynamic: finished members keep costing one row of compute until the whole batch
  // ends, as padded static batching does (HF transformers' generate over a [batch, length]
  // tensor). Off, finished members leave the compute batch at once (static with early exit).
  bool static_padding = false;
  AdmissionPolicy admission = AdmissionPolicy::kProfiled;
  float watermark = 0.01f;            // share of blocks kept free when admitting (optimistic)
  float profiled_quantile = 0.9f;     // kProfiled: quantile of observed output lengths
  float reservation_buffer = 0.05f;   // kProfiled: extra share of the pool kept in reserve
  int32_t profiled_min_samples = 16;  // below this many finished requests, reserve max_tokens
  int32_t profiled_window = 1000;     // kProfiled: learn from the last this many finished
  PreemptionMode preemption = PreemptionMode::kAuto;
  bool priority_preemption = true;       // a waiting higher-priority request may preempt
  int64_t aging_us_per_level = 5000000;  // waiting this long raises priority by one level (0 = off)
  int32_t max_waiting_requests = 4096;   // queue bound by requests
  int64_t max_waiting_tokens = 4 << 20;  // queue bound by prompt tokens
  // Cost model for kAuto (measured by the engine at start-up, refreshed while running).
  double swap_bytes_per_us = 5000.0;     // host<->device copy bandwidth
  double recompute_tokens_per_us = 0.5;  // prefill speed
  size_t kv_bytes_per_block = 0;         // for the swap cost

  Status validate() const;
};

}  // namespace loom
