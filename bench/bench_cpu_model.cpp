// Model-level CPU benchmark of loom on the default model (a program, not a test):
//   prefill tok/s of one 512-token prompt, single-stream decode tok/s, and aggregate throughput
//   at N concurrent sequences (each a 128-token prompt generating 128 tokens, as llama.cpp's
//   llama-batched-bench measures), all through the engine. Prints a table and, with --json,
//   a JSON object. tools/bench_vs_llamacpp.py runs it next to llama.cpp's tools.
//
//   bench_cpu_model [--model PATH] [--repeats 3] [--batches 1,4,16,64] [--json out.json]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/kernels/cpu_features.h"
#include "backend/cpu/kernels/matmul.h"
#include "engine/engine.h"
#include "model/model_file.h"
#include "tokenizer/tokenizer.h"
#include "util/clock.h"
#include "util/openmp_env.h"

namespace {

using namespace loom;

struct Args {
  std::string model = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
  int repeats = 3;
  std::vector<int> batches = {1, 4, 16, 64};
  int prefill_tokens = 512;
  int decode_tokens = 128;
  int batch_prompt = 128;
  int batch_gen = 128;
  std::string json_path;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

std::vector<TokenId> random_prompt(std::mt19937& rng, int n, int vocab) {
  std::uniform_int_distribution<int> d(100, vocab - 100);
  std::vector<TokenId> p(n);
  for (auto& t : p) t = d(rng);
  return p;
}

std::unique_ptr<Engine> make_engine(std::shared_ptr<const ModelFile> model,
                                    std::shared_ptr<const Tokenizer> tok, int budget,
                                    int max_seqs) {
  cpu::CpuBackendOptions bo;
  bo.kv_cache_bytes = size_t{1} << 30;
  bo.swap_space_bytes = 0;
  auto backend = cpu::CpuBackend::create(model, bo);
  if (!backend.ok()) {
    std::fprintf(stderr, "%s\n", backend.error().c_str());
    std::exit(1);
  }
  EngineConfig ec;
  ec.scheduler.max_num_batched_tokens = budget;
  ec.scheduler.max_num_seqs = max_seqs;
  ec.scheduler.prefix_caching = false;  // random prompts, but never let repeats hit a cache
  ec.scheduler.admission = AdmissionPolicy::kOptimistic;
  auto e = std::make_unique<Engine>(std::move(backend).value(), tok, model->config(), ec);
  e->start();
  return e;
}

// Runs the requests at once; returns per-request token receive times (us).
struct Timeline {
  int64_t start_us = 0;
  std::vector<std::vector<int64_t>> token_us;  // [request][token]
  std::vector<RequestTimings> timings;
};

Timeline run(Engine& engine, const std::vector<Request>& reqs) {
  Timeline tl;
  tl.token_us.resize(reqs.size());
  tl.timings.resize(reqs.size());
  std::vector<std::shared_ptr<RequestStream>> streams;
  tl.start_us = now_us();
  for (const Request& r : reqs) {
    SubmitResult s = engine.submit(r);
    if (!s.ok()) {
      std::fprintf(stderr, "submit: %s\n", s.error.c_str());
      std::exit(1);
    }
    streams.push_back(s.stream);
  }
  std::vector<std::thread> readers;
  for (size_t i = 0; i < streams.size(); ++i) {
    readers.emplace_back([&, i] {
      while (true) {
        auto d = streams[i]->next(std::chrono::milliseconds(60000));
        if (!d) continue;
        const int64_t t = now_us();
        for (size_t k = 0; k < d->new_tokens.size(); ++k) tl.token_us[i].push_back(t);
        if (d->finish) {
          tl.timings[i] = d->timings;
          break;
        }
      }
    });
  }
  for (auto& t : readers) t.join();
  return tl;
}

}  // namespace

int main(int argc, char** argv) {
  ensure_openmp_wait_policy(argv);
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    auto next = [&] { return i + 1 < argc ? std::string(argv[++i]) : std::string(); };
    if (k == "--model")
      a.model = next();
    else if (k == "--repeats")
      a.repeats = std::stoi(next());
    else if (k == "--json")
      a.json_path = next();
    else if (k == "--prefill-tokens")
      a.prefill_tokens = std::stoi(next());
    else if (k == "--decode-tokens")
      a.decode_tokens = std::stoi(next());
    else if (k == "--batches") {
      a.batches.clear();
      std::stringstream ss(next());
      std::string item;
      while (std::getline(ss, item, ',')) a.batches.push_back(std::stoi(item));
    } else {
      std::fprintf(stderr, "unknown argument %s\n", k.c_str());
      return 2;
    }
  }
  auto m = ModelFile::open(a.model);
  if (!m.ok()) {
    std::fprintf(stderr, "%s\n", m.error().c_str());
    return 1;
  }
  std::shared_ptr<const ModelFile> model(std::move(m).value());
  std::shared_ptr<const Tokenizer> tok(
      Tokenizer::create(model->tokenizer_spec()).value().release());
  const int vocab = model->config().vocab_size;
  std::mt19937 rng(1234);
  nlohmann::json out;
  out["isa"] = cpu::isa_name(cpu::active_isa());
  out["threads"] = cpu::num_threads();

  // Prefill: one prompt in one step (budget = prompt length); time = first scheduled -> first
  // token.
  {
    auto engine = make_engine(model, tok, std::max(512, a.prefill_tokens), 1);
    std::vector<double> rates;
    for (int r = 0; r < a.repeats + 1; ++r) {
      Request req;
      req.prompt = random_prompt(rng, a.prefill_tokens, vocab);
      req.sampling.max_tokens = 1;
      req.sampling.temperature = 0;
      Timeline tl = run(*engine, {req});
      const double s = (tl.timings[0].first_token_us - tl.timings[0].first_scheduled_us) * 1e-6;
      if (r > 0) rates.push_back(a.prefill_tokens / s);  // first run warms up
    }
    out["prefill_tokens"] = a.prefill_tokens;
    out["prefill_tok_s"] = median(rates);
    out["prefill_tok_s_runs"] = rates;
  }
  // Single-stream decode from a 1-token prompt.
  {
    auto engine = make_engine(model, tok, 512, 1);
    std::vector<double> rates;
    for (int r = 0; r < a.repeats; ++r) {
      Request req;
      req.prompt = random_prompt(rng, 1, vocab);
      req.sampling.max_tokens = a.decode_tokens + 1;
      req.sampling.temperature = 0;
      req.sampling.ignore_eos = true;
      Timeline tl = run(*engine, {req});
      const auto& t = tl.timings[0];
      rates.push_back(a.decode_tokens / ((t.finished_us - t.first_token_us) * 1e-6));
    }
    out["decode_tokens"] = a.decode_tokens;
    out["decode_tok_s"] = median(rates);
    out["decode_tok_s_runs"] = rates;
  }
  // Aggregate throughput at N concurrent sequences.
  out["batched"] = nlohmann::json::array();
  for (int n : a.batches) {
    std::vector<double> gen_rates, total_rates;
    for (int r = 0; r < a.repeats; ++r) {
      auto engine = make_engine(model, tok, 512, std::max(n, 1));
      std::vector<Request> reqs;
      for (int i = 0; i < n; ++i) {
        Request req;
        req.prompt = random_prompt(rng, a.batch_prompt, vocab);
        req.sampling.max_tokens = a.batch_gen;
        req.sampling.temperature = 0;
        req.sampling.ignore_eos = true;
        reqs.push_back(req);
      }
      Timeline tl = run(*engine, reqs);
      int64_t last_first = 0, end = 0;
      for (auto& v : tl.token_us) {
        last_first = std::max(last_first, v.front());
        end = std::max(end, v.back());
      }
      int64_t gen_after = 0;
      for (auto& v : tl.token_us)
        for (int64_t t : v) gen_after += t > last_first ? 1 : 0;
      const double window = (end - last_first) * 1e-6;
      gen_rates.push_back(window > 0 ? gen_after / window : 0);
      total_rates.push_back(n * double(a.batch_prompt + a.batch_gen) /
                            ((end - tl.start_us) * 1e-6));
    }
    out["batched"].push_back({{"concurrency", n},
                              {"prompt", a.batch_prompt},
                              {"gen", a.batch_gen},
                              {"decode_tok_s", median(gen_rates)},
                              {"total_tok_s", median(total_rates)},
                              {"decode_tok_s_runs", gen_rates}});
  }

  std::printf("loom CPU model benchmark (%s, %d threads, medians of %d)\n",
              out["isa"].get<std::string>().c_str(), out["threads"].get<int>(), a.repeats);
  std::printf("  prefill %d tokens        %10.1f tok/s\n", a.prefill_tokens,
              out["prefill_tok_s"].get<double>());
  std::printf("  decode single stream     %10.1f tok/s\n", out["decode_tok_s"].get<double>());
  for (auto& b : out["batched"])
    std::printf("  %3d concurrent: decode %10.1f tok/s, total %10.1f tok/s\n",
                b["concurrency"].get<int>(), b["decode_tok_s"].get<double>(),
                b["total_tok_s"].get<double>());
  if (!a.json_path.empty()) {
    FILE* f = std::fopen(a.json_path.c_str(), "w");
    if (f) {
      std::fputs(out.dump(1).c_str(), f);
      std::fclose(f);
    }
  }
  return 0;
}
