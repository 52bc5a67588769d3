// What `loom bench` measures per request, and the arithmetic that turns those records into a
// report: throughput, latency percentiles and goodput, overall and per request group.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace loom::bench {

inline constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// One request as the client saw it. Times are seconds; send_s is after the run's start, the
// others after the request was sent.
struct RequestRecord {
  std::string group = "all";
  bool ok = false;    // finished normally (stop or length)
  std::string error;  // why not, when !ok
  int32_t prompt_tokens = 0;
  int32_t output_tokens = 0;  // received, even when the request did not finish
  double send_s = 0.0;
  double ttft_s = kNaN;       // send -> first output token
  double e2e_s = kNaN;        // send -> last delta
  std::vector<double> itl_s;  // gaps between consecutive deliveries of tokens
};

// Mean and percentiles of a sample; count 0 leaves the rest NaN.
struct Summary {
  int64_t count = 0;
  double mean = kNaN;
  double p50 = kNaN;
  double p90 = kNaN;
  double p99 = kNaN;
  double max = kNaN;
};

// q in [0, 100], linear interpolation between closest ranks (numpy's default "linear"):
// rank = q/100 * (n - 1). `sorted` ascending and non-empty.
double percentile_sorted(const std::vector<double>& sorted, double q);
Summary summarize(std::vector<double> values);  // NaNs are dropped first

// A request is "good" when it finished and met both limits; a limit <= 0 is not applied.
struct GoodputLimits {
  double ttft_s = 0.0;
  double tpot_s = 0.0;
  bool any() const { return ttft_s > 0 || tpot_s > 0; }
};

// Time per output token after the first: (e2e - ttft) / (output_tokens - 1); NaN with fewer
// than two output tokens or without the two times.
double tpot_s(const RequestRecord& r);
bool meets_limits(const RequestRecord& r, const GoodputLimits& limits);

struct GroupReport {
  std::string group;
  int64_t num_requests = 0;
  int64_t num_ok = 0;
  int64_t num_failed = 0;       // finished with an error or aborted by the time bound
  int64_t input_tokens = 0;     // prompts of requests that got at least one token
  int64_t output_tokens = 0;    // every token received
  double requests_per_s = 0.0;  // finished requests over the run's duration
  double input_tokens_per_s = 0.0;
  double output_tokens_per_s = 0.0;
  Summary ttft_s, itl_s, tpot_s, e2e_s;
  int64_t num_good = 0;         // finished and within the goodput limits
  double goodput_share = kNaN;  // num_good / num_requests; NaN without limits
  double goodput_requests_per_s = kNaN;
};

// `duration_s` is the run's wall time (start to the last delta, or to the time bound).
GroupReport make_group_report(const std::string& group, const std::vector<RequestRecord>& records,
                              double duration_s, const GoodputLimits& limits);
// The "all" report first, then one per distinct group in order of first appearance (only
// when there is more than one group).
std::vector<GroupReport> make_reports(const std::vector<RequestRecord>& records, double duration_s,
                                      const GoodputLimits& limits);

}  // namespace loom::bench
