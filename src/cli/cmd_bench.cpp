// `loom bench`: runs a seeded workload through the engine in-process (offline) or through any
// OpenAI-compatible server (online) and reports throughput, latency percentiles and goodput as
// a table and as JSON (tools/plot_bench.py draws the JSON).
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <memory>

#include "cli/bench_offline.h"
#include "cli/bench_online.h"
#include "cli/bench_report.h"
#include "cli/commands.h"
#include "cli/engine_options.h"
#include "model/model_file.h"

namespace loom::cli {
namespace {

using nlohmann::json;

struct BenchOptions {
  EngineOptions engine;
  std::string mode = "offline";
  std::string workload = "fixed";
  bench::WorkloadOptions w;
  bench::DriveOptions drive;
  bench::OnlineTarget target;
  int32_t vocab_size = 0;
  int32_t warmup_requests = 2;
  double goodput_ttft_ms = 0, goodput_tpot_ms = 0;
  std::string json_out, label;
  bool no_progress = false;
};

std::string cpu_model_name() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("model name", 0) == 0) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos) return line.substr(line.find_first_not_of(' ', colon + 1));
    }
  }
  return "unknown";
}

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

json workload_json(const std::string& name, const bench::WorkloadOptions& w) {
  json j = {{"name", name},
            {"num_requests", w.num_requests},
            {"seed", w.seed},
            {"request_rate", w.request_rate}};
  switch (w.kind) {
    case bench::WorkloadKind::kAnyscale:
      j["prompt_len"] = w.anyscale_prompt_len;
      j["mean_output"] = w.anyscale_mean_output;
      j["output_cap"] = w.output_cap;
      return j;
    case bench::WorkloadKind::kLongPromptMix:
      j["num_long"] = w.num_long;
      j["long_prompt_len"] = w.long_prompt_len;
      j["long_output_len"] = w.long_output_len;
      j["long_first_s"] = w.long_first_s;
      j["long_every_s"] = w.long_every_s;
      break;
    case bench::WorkloadKind::kTierMix:
      j["num_batch"] = w.num_batch;
      j["batch_prompt_len"] = w.batch_prompt_len;
      j["batch_output_len"] = w.batch_output_len;
      j["interactive_start_s"] = w.interactive_start_s;
      j["tiers"] = w.tiers;
      break;
    case bench::WorkloadKind::kSharedPrefix:
      j["prefix_len"] = w.prefix_len;
      break;
    default:
      break;
  }
  j["input_len"] = w.input_len;
  j["input_len_max"] = std::max(w.input_len, w.input_len_max);
  j["output_len"] = w.output_len;
  j["output_len_max"] = std::max(w.output_len, w.output_len_max);
  return j;
}

json engine_json(const EngineOptions& e) {
  return {{"batching", e.batching},
          {"admission", e.admission},
          {"preemption", e.preemption},
          {"chunked_prefill", !e.no_chunked_prefill},
          {"prefix_caching", !e.no_prefix_caching},
          {"kv_cache_mib", e.kv_cache_mib},
          {"swap_space_mib", e.swap_space_mib},
          {"max_num_seqs", e.max_num_seqs},
          {"max_num_batched_tokens", e.max_num_batched_tokens},
          {"threads", e.threads}};
}

int run_bench(BenchOptions& o) {
  auto kind = bench::parse_workload(o.workload);
  if (!kind.ok()) throw CLI::ValidationError("--workload", kind.error());
  o.w.kind = kind.value();
  o.drive.progress = !o.no_progress && isatty(STDERR_FILENO);
  const bool offline = o.mode == "offline";

  std::unique_ptr<LoadedEngine> le;
  if (offline) {
    auto loaded = load_engine(o.engine);
    if (!loaded.ok()) {
      std::fprintf(stderr, "loom bench: %s\n", loaded.error().c_str());
      return 1;
    }
    le = std::move(loaded).value();
    o.w.vocab_size = le->tokenizer->vocab_size();
  } else if (o.vocab_size > 0) {
    o.w.vocab_size = o.vocab_size;
  } else {
    // The prompts are token ids of the served model: take its vocabulary from the model file.
    auto model = ModelFile::open(o.engine.model_path);
    if (!model.ok()) {
      std::fprintf(stderr, "loom bench: %s (or give --vocab-size)\n", model.error().c_str());
      return 1;
    }
    o.w.vocab_size = model.value()->config().vocab_size;
  }
  if (Status s = o.w.validate(); !s.ok()) throw CLI::ValidationError("workload", s.error());
  const std::vector<bench::BenchRequest> workload = bench::make_workload(o.w);

  json config = {{"label", o.label},
                 {"mode", o.mode},
                 {"date_utc", utc_now()},
                 {"cpu", cpu_model_name()},
                 {"num_cpus", static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN))},
                 {"workload", workload_json(o.workload, o.w)},
                 {"max_concurrency", o.drive.max_concurrency},
                 {"max_duration_s", o.drive.max_duration_s}};
  if (offline) {
    config["engine"] = engine_json(o.engine);
    config["model"] = o.engine.model_path;
  } else {
    config["target"] = {{"base_url", o.target.base_url}, {"endpoint", o.target.endpoint}};
  }

  bench::DriveResult result;
  if (offline) {
    le->engine->start();
    if (o.warmup_requests > 0) {
      if (Status s = bench::warm_up(*le->engine, o.warmup_requests, o.w.vocab_size); !s.ok()) {
        std::fprintf(stderr, "loom bench: %s\n", s.error().c_str());
        return 1;
      }
    }
    result = bench::run_offline(*le->engine, workload, o.drive);
    le->engine->shutdown(std::chrono::milliseconds(0));
  } else {
    auto r = bench::run_online(o.target, workload, o.drive);
    if (!r.ok()) {
      std::fprintf(stderr, "loom bench: %s\n", r.error().c_str());
      return 1;
    }
    result = std::move(r).value();
  }

  bench::GoodputLimits limits{o.goodput_ttft_ms * 1e-3, o.goodput_tpot_ms * 1e-3};
  const auto reports = bench::make_reports(result.records, result.duration_s, limits);
  bench::print_report(stdout, config, result, reports, limits);
  for (const bench::RequestRecord& r : result.records) {
    if (!r.ok && r.error != "cut off by the time bound") {
      std::fprintf(stderr, "loom bench: a request failed: %s\n", r.error.c_str());
      break;
    }
  }
  if (!o.json_out.empty()) {
    std::ofstream out(o.json_out);
    if (!out) {
      std::fprintf(stderr, "loom bench: cannot write %s\n", o.json_out.c_str());
      return 1;
    }
    out << bench::report_json(config, result, reports, limits).dump(2) << '\n';
  }
  return 0;
}

}  // namespace

void add_bench_command(CLI::App& app) {
  auto o = std::make_shared<BenchOptions>();
  auto* cmd = app.add_subcommand("bench", "benchmark the engine (offline) or a server (online)");
  o->engine.add_to(*cmd);
  cmd->add_option("--mode", o->mode, "offline (engine in-process) or online (HTTP)")
      ->check(CLI::IsMember({"offline", "online"}))
      ->capture_default_str();
  cmd->add_option("--workload", o->workload,
                  "fixed, uniform, anyscale, long-prompt-mix, tier-mix, shared-prefix")
      ->capture_default_str();
  bench::WorkloadOptions& w = o->w;
  cmd->add_option("--num-requests", w.num_requests,
                  "requests (long-prompt-mix: chats; tier-mix: interactive chats)")
      ->capture_default_str();
  cmd->add_option("--seed", w.seed, "workload seed")->capture_default_str();
  cmd->add_option("--input-len", w.input_len, "prompt tokens (minimum when a range)")
      ->capture_default_str();
  cmd->add_option("--input-len-max", w.input_len_max, "prompt tokens, maximum (uniform)");
  cmd->add_option("--output-len", w.output_len, "output tokens (minimum when a range)")
      ->capture_default_str();
  cmd->add_option("--output-len-max", w.output_len_max, "output tokens, maximum (uniform)");
  cmd->add_option("--request-rate", w.request_rate, "Poisson arrivals per second (0 = all at once)")
      ->capture_default_str();
  cmd->add_option("--min-token-id", w.min_token_id, "smallest random prompt token id")
      ->capture_default_str();
  cmd->add_option("--anyscale-prompt-len", w.anyscale_prompt_len, "anyscale: prompt tokens")
      ->capture_default_str();
  cmd->add_option("--output-cap", w.output_cap, "anyscale: cap on output tokens")
      ->capture_default_str();
  cmd->add_option("--num-long", w.num_long, "long-prompt-mix: long prompts")->capture_default_str();
  cmd->add_option("--long-prompt-len", w.long_prompt_len, "long-prompt-mix: their tokens")
      ->capture_default_str();
  cmd->add_option("--long-output-len", w.long_output_len, "long-prompt-mix: their output")
      ->capture_default_str();
  cmd->add_option("--long-first-s", w.long_first_s, "long-prompt-mix: first arrival, s")
      ->capture_default_str();
  cmd->add_option("--long-every-s", w.long_every_s, "long-prompt-mix: gap between arrivals, s")
      ->capture_default_str();
  cmd->add_option("--num-batch", w.num_batch, "tier-mix: batch jobs")->capture_default_str();
  cmd->add_option("--batch-prompt-len", w.batch_prompt_len, "tier-mix: batch prompt tokens")
      ->capture_default_str();
  cmd->add_option("--batch-output-len", w.batch_output_len, "tier-mix: batch output tokens")
      ->capture_default_str();
  cmd->add_option("--interactive-start-s", w.interactive_start_s,
                  "tier-mix: first interactive arrival, s")
      ->capture_default_str();
  cmd->add_flag(
      "--no-tiers", [o](int64_t) { o->w.tiers = false; },
      "tier-mix: send every request with the standard priority");
  cmd->add_option("--prefix-len", w.prefix_len, "shared-prefix: shared prompt tokens")
      ->capture_default_str();
  cmd->add_option("--max-concurrency", o->drive.max_concurrency,
                  "requests in flight at most (0 = no bound)")
      ->capture_default_str();
  cmd->add_option("--max-duration", o->drive.max_duration_s,
                  "seconds before the run is cut off (0 = none)")
      ->capture_default_str();
  cmd->add_option("--warmup-requests", o->warmup_requests, "offline: short untimed requests first")
      ->capture_default_str();
  cmd->add_option("--goodput-ttft-ms", o->goodput_ttft_ms, "goodput limit on TTFT (0 = none)");
  cmd->add_option("--goodput-tpot-ms", o->goodput_tpot_ms, "goodput limit on TPOT (0 = none)");
  cmd->add_option("--base-url", o->target.base_url, "online: http://host:port");
  cmd->add_option("--endpoint", o->target.endpoint, "online: completions path")
      ->capture_default_str();
  cmd->add_option("--served-model-name", o->target.model_name, "online: the request's model");
  cmd->add_option("--api-key", o->target.api_key, "online: bearer token");
  cmd->add_option("--vocab-size", o->vocab_size, "online: vocabulary (0 = read from --model)");
  cmd->add_option("--json-out", o->json_out, "write the report as JSON here");
  cmd->add_option("--label", o->label, "a name for this run in the report");
  cmd->add_flag("--no-progress", o->no_progress, "no progress line");
  cmd->callback([o] {
    if (o->mode == "online" && o->target.base_url.empty())
      throw CLI::ValidationError("--base-url", "online mode needs the server's URL");
    const int rc = run_bench(*o);
    if (rc != 0) throw CLI::RuntimeError(rc);
  });
}

}  // namespace loom::cli
