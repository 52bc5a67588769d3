#include "cli/bench_workload.h"

#include <algorithm>
#include <cmath>

namespace loom::bench {
namespace {

// Independent streams for prompts, lengths and arrivals, so that changing the arrival rate
// (say) leaves the prompts and output lengths of a run exactly as they were.
constexpr uint64_t kPromptStream = 0x9e3779b97f4a7c15ull;
constexpr uint64_t kLengthStream = 0xbf58476d1ce4e5b9ull;
constexpr uint64_t kArrivalStream = 0x94d049bb133111ebull;

std::vector<TokenId> random_tokens(BenchRng& rng, int32_t count, const WorkloadOptions& o) {
  std::vector<TokenId> ids(static_cast<size_t>(count));
  for (TokenId& id : ids)
    id = static_cast<TokenId>(rng.uniform_int(o.min_token_id, o.vocab_size - 1));
  return ids;
}

int32_t length_in(BenchRng& rng, int32_t lo, int32_t hi) {
  return hi > lo ? static_cast<int32_t>(rng.uniform_int(lo, hi)) : lo;
}

void add_foreground(std::vector<BenchRequest>& out, const WorkloadOptions& o, const char* group,
                    const char* tier, BenchRng& prompts, BenchRng& lengths,
                    const std::vector<double>& arrivals) {
  for (int32_t i = 0; i < o.num_requests; ++i) {
    BenchRequest r;
    r.group = group;
    r.tier = tier;
    r.prompt = random_tokens(prompts, length_in(lengths, o.input_len, o.input_len_max), o);
    r.max_tokens = length_in(lengths, o.output_len, o.output_len_max);
    r.arrival_s = arrivals[static_cast<size_t>(i)];
    out.push_back(std::move(r));
  }
}

}  // namespace

const char* workload_name(WorkloadKind kind) {
  switch (kind) {
    case WorkloadKind::kFixed:
      return "fixed";
    case WorkloadKind::kUniform:
      return "uniform";
    case WorkloadKind::kAnyscale:
      return "anyscale";
    case WorkloadKind::kLongPromptMix:
      return "long-prompt-mix";
    case WorkloadKind::kTierMix:
      return "tier-mix";
    case WorkloadKind::kSharedPrefix:
      return "shared-prefix";
  }
  return "?";
}

Result<WorkloadKind> parse_workload(const std::string& name) {
  for (WorkloadKind k :
       {WorkloadKind::kFixed, WorkloadKind::kUniform, WorkloadKind::kAnyscale,
        WorkloadKind::kLongPromptMix, WorkloadKind::kTierMix, WorkloadKind::kSharedPrefix}) {
    if (name == workload_name(k)) return k;
  }
  return make_error(
      "unknown workload '%s' (fixed, uniform, anyscale, long-prompt-mix, tier-mix, shared-prefix)",
      name.c_str());
}

Status WorkloadOptions::validate() const {
  if (num_requests < 0) return make_error("the number of requests must be >= 0");
  if (vocab_size <= min_token_id)
    return make_error("vocabulary size %d leaves no token ids at or above %d", vocab_size,
                      min_token_id);
  if (min_token_id < 0) return make_error("the smallest token id must be >= 0");
  if (input_len < 1 || output_len < 1) return make_error("input and output lengths must be >= 1");
  if (input_len_max != 0 && input_len_max < input_len)
    return make_error("--input-len-max %d is below --input-len %d", input_len_max, input_len);
  if (output_len_max != 0 && output_len_max < output_len)
    return make_error("--output-len-max %d is below --output-len %d", output_len_max, output_len);
  if (!std::isfinite(request_rate)) return make_error("the request rate must be finite");
  if (kind == WorkloadKind::kAnyscale) {
    if (output_cap < 1) return make_error("--output-cap must be >= 1");
    if (anyscale_prompt_len < 1) return make_error("the Anyscale prompt length must be >= 1");
    if (!(anyscale_mean_output > 0)) return make_error("the Anyscale output mean must be > 0");
  }
  if (kind == WorkloadKind::kLongPromptMix &&
      (num_long < 0 || long_prompt_len < 1 || long_output_len < 1 || long_every_s < 0 ||
       long_first_s < 0))
    return make_error("long-prompt mix: counts, lengths and times must be positive");
  if (kind == WorkloadKind::kTierMix &&
      (num_batch < 0 || batch_prompt_len < 1 || batch_output_len < 1 || interactive_start_s < 0))
    return make_error("tier mix: counts, lengths and times must be positive");
  if (kind == WorkloadKind::kSharedPrefix && prefix_len < 1)
    return make_error("--prefix-len must be >= 1");
  return ok_status();
}

double BenchRng::uniform01() {
  return static_cast<double>(engine_() >> 11) * (1.0 / 9007199254740992.0);  // 53 bits
}

int64_t BenchRng::uniform_int(int64_t lo, int64_t hi) {
  LOOM_CHECK(hi >= lo, "uniform_int(%lld, %lld)", static_cast<long long>(lo),
             static_cast<long long>(hi));
  const uint64_t span = static_cast<uint64_t>(hi - lo) + 1;
  // Rejection keeps it exactly uniform: draw below the largest multiple of span.
  const uint64_t limit = span == 0 ? 0 : UINT64_MAX - (UINT64_MAX % span);
  uint64_t x = engine_();
  while (span != 0 && x >= limit) x = engine_();
  return lo + static_cast<int64_t>(span == 0 ? x : x % span);
}

double BenchRng::exponential(double mean) {
  // Inverse CDF; 1 - u is in (0, 1], so the log is finite.
  return -mean * std::log(1.0 - uniform01());
}

int32_t anyscale_output_len(BenchRng& rng, double mean, int32_t cap) {
  LOOM_CHECK(cap >= 1 && mean > 0);
  while (true) {
    const double x = std::round(rng.exponential(mean));
    const int32_t len = x < 1.0 ? 1 : (x > 1e9 ? INT32_MAX : static_cast<int32_t>(x));
    if (len <= cap) return len;
  }
}

std::vector<double> poisson_arrivals(BenchRng& rng, int32_t count, double rate, double start_s) {
  std::vector<double> times(static_cast<size_t>(std::max(count, 0)), start_s);
  if (rate <= 0) return times;
  double t = start_s;
  for (double& x : times) {
    t += rng.exponential(1.0 / rate);
    x = t;
  }
  return times;
}

std::vector<BenchRequest> make_workload(const WorkloadOptions& o) {
  LOOM_CHECK(o.validate().ok(), "make_workload on options that do not validate");
  BenchRng prompts(o.seed ^ kPromptStream), lengths(o.seed ^ kLengthStream),
      arrival_rng(o.seed ^ kArrivalStream);
  std::vector<BenchRequest> out;
  switch (o.kind) {
    case WorkloadKind::kFixed:
    case WorkloadKind::kUniform: {
      WorkloadOptions fixed = o;
      if (o.kind == WorkloadKind::kFixed) fixed.input_len_max = fixed.output_len_max = 0;
      add_foreground(out, fixed, "all", "", prompts, lengths,
                     poisson_arrivals(arrival_rng, o.num_requests, o.request_rate, 0.0));
      break;
    }
    case WorkloadKind::kAnyscale: {
      const auto arrivals = poisson_arrivals(arrival_rng, o.num_requests, o.request_rate, 0.0);
      for (int32_t i = 0; i < o.num_requests; ++i) {
        BenchRequest r;
        r.prompt = random_tokens(prompts, o.anyscale_prompt_len, o);
        r.max_tokens = anyscale_output_len(lengths, o.anyscale_mean_output, o.output_cap);
        r.arrival_s = arrivals[static_cast<size_t>(i)];
        out.push_back(std::move(r));
      }
      break;
    }
    case WorkloadKind::kLongPromptMix: {
      add_foreground(out, o, "chat", "", prompts, lengths,
                     poisson_arrivals(arrival_rng, o.num_requests, o.request_rate, 0.0));
      for (int32_t k = 0; k < o.num_long; ++k) {
        BenchRequest r;
        r.group = "long";
        r.prompt = random_tokens(prompts, o.long_prompt_len, o);
        r.max_tokens = o.long_output_len;
        r.arrival_s = o.long_first_s + k * o.long_every_s;
        out.push_back(std::move(r));
      }
      break;
    }
    case WorkloadKind::kTierMix: {
      for (int32_t k = 0; k < o.num_batch; ++k) {
        BenchRequest r;
        r.group = "batch";
        r.tier = o.tiers ? "batch" : "";
        r.prompt = random_tokens(prompts, o.batch_prompt_len, o);
        r.max_tokens = o.batch_output_len;
        out.push_back(std::move(r));
      }
      add_foreground(
          out, o, "interactive", o.tiers ? "interactive" : "", prompts, lengths,
          poisson_arrivals(arrival_rng, o.num_requests, o.request_rate, o.interactive_start_s));
      break;
    }
    case WorkloadKind::kSharedPrefix: {
      const std::vector<TokenId> prefix = random_tokens(prompts, o.prefix_len, o);
      add_foreground(out, o, "all", "", prompts, lengths,
                     poisson_arrivals(arrival_rng, o.num_requests, o.request_rate, 0.0));
      for (BenchRequest& r : out) r.prompt.insert(r.prompt.begin(), prefix.begin(), prefix.end());
      break;
    }
  }
  std::stable_sort(out.begin(), out.end(), [](const BenchRequest& a, const BenchRequest& b) {
    return a.arrival_s < b.arrival_s;
  });
  for (size_t i = 0; i < out.size(); ++i) out[i].index = static_cast<int32_t>(i);
  return out;
}

}  // namespace loom::bench
