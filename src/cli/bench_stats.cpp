#include "cli/bench_stats.h"

#include <algorithm>
#include <cmath>

#include "util/check.h"

namespace loom::bench {

double percentile_sorted(const std::vector<double>& sorted, double q) {
  LOOM_CHECK(!sorted.empty() && q >= 0 && q <= 100, "percentile of %zu values at %g", sorted.size(),
             q);
  const double rank = q / 100.0 * static_cast<double>(sorted.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(rank));
  const size_t hi = std::min(lo + 1, sorted.size() - 1);
  const double frac = rank - static_cast<double>(lo);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * frac;
}

Summary summarize(std::vector<double> values) {
  values.erase(std::remove_if(values.begin(), values.end(), [](double v) { return std::isnan(v); }),
               values.end());
  Summary s;
  s.count = static_cast<int64_t>(values.size());
  if (values.empty()) return s;
  std::sort(values.begin(), values.end());
  double sum = 0;
  for (double v : values) sum += v;
  s.mean = sum / static_cast<double>(values.size());
  s.p50 = percentile_sorted(values, 50);
  s.p90 = percentile_sorted(values, 90);
  s.p99 = percentile_sorted(values, 99);
  s.max = values.back();
  return s;
}

double tpot_s(const RequestRecord& r) {
  if (r.output_tokens < 2 || std::isnan(r.ttft_s) || std::isnan(r.e2e_s)) return kNaN;
  return (r.e2e_s - r.ttft_s) / static_cast<double>(r.output_tokens - 1);
}

bool meets_limits(const RequestRecord& r, const GoodputLimits& limits) {
  if (!r.ok) return false;
  if (limits.ttft_s > 0 && !(r.ttft_s <= limits.ttft_s)) return false;
  const double tpot = tpot_s(r);
  // A one-token answer has no TPOT to miss.
  if (limits.tpot_s > 0 && !std::isnan(tpot) && tpot > limits.tpot_s) return false;
  return true;
}

GroupReport make_group_report(const std::string& group, const std::vector<RequestRecord>& records,
                              double duration_s, const GoodputLimits& limits) {
  GroupReport g;
  g.group = group;
  std::vector<double> ttft, itl, tpot, e2e;
  for (const RequestRecord& r : records) {
    if (group != "all" && r.group != group) continue;
    ++g.num_requests;
    if (r.ok) {
      ++g.num_ok;
    } else {
      ++g.num_failed;
    }
    if (r.output_tokens > 0) g.input_tokens += r.prompt_tokens;
    g.output_tokens += r.output_tokens;
    ttft.push_back(r.ttft_s);
    itl.insert(itl.end(), r.itl_s.begin(), r.itl_s.end());
    if (r.ok) {
      tpot.push_back(tpot_s(r));
      e2e.push_back(r.e2e_s);
    }
    if (meets_limits(r, limits)) ++g.num_good;
  }
  g.ttft_s = summarize(std::move(ttft));
  g.itl_s = summarize(std::move(itl));
  g.tpot_s = summarize(std::move(tpot));
  g.e2e_s = summarize(std::move(e2e));
  if (duration_s > 0) {
    g.requests_per_s = static_cast<double>(g.num_ok) / duration_s;
    g.input_tokens_per_s = static_cast<double>(g.input_tokens) / duration_s;
    g.output_tokens_per_s = static_cast<double>(g.output_tokens) / duration_s;
  }
  if (limits.any() && g.num_requests > 0) {
    g.goodput_share = static_cast<double>(g.num_good) / static_cast<double>(g.num_requests);
    if (duration_s > 0) g.goodput_requests_per_s = static_cast<double>(g.num_good) / duration_s;
  }
  return g;
}

std::vector<GroupReport> make_reports(const std::vector<RequestRecord>& records, double duration_s,
                                      const GoodputLimits& limits) {
  std::vector<GroupReport> out;
  out.push_back(make_group_report("all", records, duration_s, limits));
  std::vector<std::string> groups;
  for (const RequestRecord& r : records) {
    if (std::find(groups.begin(), groups.end(), r.group) == groups.end()) groups.push_back(r.group);
  }
  if (groups.size() > 1 || (groups.size() == 1 && groups[0] != "all")) {
    for (const std::string& name : groups) {
      if (name != "all") out.push_back(make_group_report(name, records, duration_s, limits));
    }
  }
  return out;
}

}  // namespace loom::bench
