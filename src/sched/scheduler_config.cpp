#include "sched/scheduler_config.h"

#include <cmath>

namespace loom {

const char* batching_mode_name(BatchingMode m) {
  switch (m) {
    case BatchingMode::kContinuous:
      return "continuous";
    case BatchingMode::kStatic:
      return "static";
    case BatchingMode::kDynamic:
      return "dynamic";
  }
  return "?";
}

const char* admission_policy_name(AdmissionPolicy p) {
  switch (p) {
    case AdmissionPolicy::kOptimistic:
      return "optimistic";
    case AdmissionPolicy::kConservative:
      return "conservative";
    case AdmissionPolicy::kProfiled:
      return "profiled";
  }
  return "?";
}

const char* preemption_mode_name(PreemptionMode m) {
  switch (m) {
    case PreemptionMode::kRecompute:
      return "recompute";
    case PreemptionMode::kSwap:
      return "swap";
    case PreemptionMode::kAuto:
      return "auto";
  }
  return "?";
}

Result<BatchingMode> parse_batching_mode(const std::string& s) {
  if (s == "continuous") return BatchingMode::kContinuous;
  if (s == "static") return BatchingMode::kStatic;
  if (s == "dynamic") return BatchingMode::kDynamic;
  return make_error("unknown batching mode '%s' (expected continuous, static or dynamic)",
                    s.c_str());
}

Result<AdmissionPolicy> parse_admission_policy(const std::string& s) {
  if (s == "optimistic") return AdmissionPolicy::kOptimistic;
  if (s == "conservative") return AdmissionPolicy::kConservative;
  if (s == "profiled") return AdmissionPolicy::kProfiled;
  return make_error("unknown admission policy '%s' (expected optimistic, conservative or profiled)",
                    s.c_str());
}

Result<PreemptionMode> parse_preemption_mode(const std::string& s) {
  if (s == "recompute") return PreemptionMode::kRecompute;
  if (s == "swap") return PreemptionMode::kSwap;
  if (s == "auto") return PreemptionMode::kAuto;
  return make_error("unknown preemption mode '%s' (expected recompute, swap or auto)", s.c_str());
}

Status SchedulerConfig::validate() const {
  auto share = [](float x) { return std::isfinite(x) && x >= 0.0f && x < 1.0f; };
  if (block_size < 1 || block_size > 1024)
    return make_error("block_size must be in [1, 1024], got %d", block_size);
  if (num_device_blocks < 1)
    return make_error("num_device_blocks must be >= 1, got %d", num_device_blocks);
  if (num_host_blocks < 0)
    return make_error("num_host_blocks must be >= 0, got %d", num_host_blocks);
  if (max_num_batched_tokens < 1)
    return make_error("max_num_batched_tokens must be >= 1, got %d", max_num_batched_tokens);
  if (max_num_seqs < 1) return make_error("max_num_seqs must be >= 1, got %d", max_num_seqs);
  if (max_model_len < 2) return make_error("max_model_len must be >= 2, got %d", max_model_len);
  if (dynamic_window_us < 0)
    return make_error("dynamic_window_us must be >= 0, got %lld",
                      static_cast<long long>(dynamic_window_us));
  if (!share(watermark)) return make_error("watermark must be in [0, 1), got %g", watermark);
  if (!std::isfinite(profiled_quantile) || profiled_quantile <= 0.0f || profiled_quantile > 1.0f)
    return make_error("profiled_quantile must be in (0, 1], got %g", profiled_quantile);
  if (!share(reservation_buffer))
    return make_error("reservation_buffer must be in [0, 1), got %g", reservation_buffer);
  if (profiled_min_samples < 0)
    return make_error("profiled_min_samples must be >= 0, got %d", profiled_min_samples);
  if (profiled_window < 1)
    return make_error("profiled_window must be >= 1, got %d", profiled_window);
  if (aging_us_per_level < 0)
    return make_error("aging_us_per_level must be >= 0 (0 = off), got %lld",
                      static_cast<long long>(aging_us_per_level));
  if (max_waiting_requests < 1)
    return make_error("max_waiting_requests must be >= 1, got %d", max_waiting_requests);
  if (max_waiting_tokens < 1)
    return make_error("max_waiting_tokens must be >= 1, got %lld",
                      static_cast<long long>(max_waiting_tokens));
  if (!std::isfinite(swap_bytes_per_us) || swap_bytes_per_us <= 0.0)
    return make_error("swap_bytes_per_us must be > 0, got %g", swap_bytes_per_us);
  if (!std::isfinite(recompute_tokens_per_us) || recompute_tokens_per_us <= 0.0)
    return make_error("recompute_tokens_per_us must be > 0, got %g", recompute_tokens_per_us);
  return ok_status();
}

}  // namespace loom
