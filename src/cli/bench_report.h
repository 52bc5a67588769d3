// `loom bench` output: a table for people on the terminal and JSON for the plotting script.
#pragma once

#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/bench_run.h"
#include "cli/bench_stats.h"

namespace loom::bench {

// `config` describes the run (label, mode, workload, engine or target settings); it is printed
// as the table's header and copied into the JSON under "config".
void print_report(std::FILE* out, const nlohmann::json& config, const DriveResult& result,
                  const std::vector<GroupReport>& reports, const GoodputLimits& limits);
nlohmann::json report_json(const nlohmann::json& config, const DriveResult& result,
                           const std::vector<GroupReport>& reports, const GoodputLimits& limits);

// One "\r[====    ] done/total requests, tok/s" line on stderr.
void print_bench_progress(size_t done, size_t total, int64_t tokens, double elapsed_s);

}  // namespace loom::bench
