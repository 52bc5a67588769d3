// The engine's own cost per step, without a model: the scheduler, batch building, sampling
// inputs, detokenization, stop checks and streaming, measured against a null backend that
// "computes" for a fixed device time. With a device time of 0 the step time is the CPU cost
// alone; with a device time like a real GPU step's, the step time shows how much of that CPU
// cost stays on the critical path (all of it when the engine waits for each step before it
// plans the next; little when it plans step N+1 while step N runs).
//   build/bench/bench_engine_overhead [--seqs 256] [--tokens 256] [--device-us 0,2000]
//                                     [--json out.json] [--gguf models/...gguf]
// The tokenizer is the default model's (49,152 tokens); the backend (tests/fakes/timed_backend.h)
// returns ordinary ids.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "engine/engine.h"
#include "fakes/timed_backend.h"
#include "model/model_file.h"
#include "util/clock.h"

namespace loom {
namespace {

struct RunResult {
  int64_t device_us = 0;
  double wall_s = 0;
  int64_t steps = 0;
  int64_t tokens = 0;
  double step_us() const { return wall_s * 1e6 / std::max<int64_t>(steps, 1); }
};

RunResult run(std::shared_ptr<const Tokenizer> tok, int32_t seqs, int32_t tokens, int64_t device_us,
              bool overlap) {
  const int32_t blocks = seqs * ((2 * tokens) / 16 + 2) + 64;
  auto backend = std::make_unique<fakes::TimedBackend>(tok->vocab_size(), blocks, device_us);
  fakes::TimedBackend* nb = backend.get();
  ModelConfig mc;
  mc.vocab_size = tok->vocab_size();
  mc.max_context = 4 * tokens + 64;
  EngineConfig ec;
  ec.scheduler.max_num_seqs = seqs;
  ec.scheduler.max_num_batched_tokens = std::max(8192, seqs * tokens);
  ec.scheduler.max_model_len = mc.max_context;
  ec.overlap_steps = overlap;
  Engine engine(std::move(backend), tok, mc, ec);
  engine.start();
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (int32_t i = 0; i < seqs; ++i) {
    Request r;
    for (int32_t k = 0; k < tokens; ++k) r.prompt.push_back(300 + (i * 131 + k * 17) % 40000);
    r.sampling.temperature = 0.0f;
    r.sampling.max_tokens = tokens;
    r.sampling.ignore_eos = true;
    SubmitResult s = engine.submit(std::move(r));
    if (!s.ok()) {
      std::fprintf(stderr, "submit: %s\n", s.error.c_str());
      std::exit(1);
    }
    streams.push_back(s.stream);
  }
  // Wait for the prefill to pass, then time the decode steps only.
  int64_t steps0 = -1, t_decode = 0;
  RunResult r;
  size_t done = 0;
  std::vector<bool> finished(streams.size(), false);
  while (done < streams.size()) {
    bool any = false;
    for (size_t i = 0; i < streams.size(); ++i) {
      if (finished[i]) continue;
      while (auto d = streams[i]->next(std::chrono::milliseconds(0))) {
        any = true;
        r.tokens += static_cast<int64_t>(d->new_tokens.size());
        if (steps0 < 0 && d->num_output_tokens >= 2) {
          steps0 = nb->steps();
          t_decode = now_us();
        }
        if (d->finish) {
          finished[i] = true;
          ++done;
          break;
        }
      }
    }
    if (!any) std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  const int64_t t1 = now_us();
  engine.shutdown(std::chrono::milliseconds(0));
  r.device_us = device_us;
  r.steps = nb->steps() - steps0;
  r.wall_s = (t1 - t_decode) * 1e-6;
  return r;
}

std::vector<int64_t> parse_list(const char* s) {
  std::vector<int64_t> v;
  for (const char* p = s; *p;) {
    v.push_back(std::strtoll(p, nullptr, 10));
    p = std::strchr(p, ',');
    if (!p) break;
    ++p;
  }
  return v;
}

}  // namespace
}  // namespace loom

int main(int argc, char** argv) {
  using namespace loom;
  int32_t seqs = 256, tokens = 256;
  std::vector<int64_t> device = {0, 2000};
  std::string json, gguf = std::string(LOOM_SOURCE_DIR) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    if (k == "--seqs")
      seqs = std::atoi(argv[i + 1]);
    else if (k == "--tokens")
      tokens = std::atoi(argv[i + 1]);
    else if (k == "--device-us")
      device = parse_list(argv[i + 1]);
    else if (k == "--json")
      json = argv[i + 1];
    else if (k == "--gguf")
      gguf = argv[i + 1];
    else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      return 2;
    }
  }
  auto mf = ModelFile::open(gguf);
  if (!mf.ok()) {
    std::fprintf(stderr, "%s (run scripts/fetch_model.sh)\n", mf.error().c_str());
    return 2;
  }
  auto tk = Tokenizer::create((*mf)->tokenizer_spec());
  if (!tk.ok()) {
    std::fprintf(stderr, "tokenizer: %s\n", tk.error().c_str());
    return 2;
  }
  std::shared_ptr<const Tokenizer> tok(std::move(tk).value());
  std::printf("%d sequences decoding, %d-token prompts and outputs; decode steps only\n\n", seqs,
              tokens);
  std::printf("| device us/step | mode | step us | engine cost us/step | tok/s |\n");
  std::printf("| ---: | --- | ---: | ---: | ---: |\n");
  std::string out = "[";
  for (int64_t d : device) {
    for (bool overlap : {false, true}) {
      const RunResult r = run(tok, seqs, tokens, d, overlap);
      const double step = r.step_us();
      std::printf("| %ld | %s | %.0f | %.0f | %.0f |\n", static_cast<long>(d),
                  overlap ? "overlapped" : "serial", step, step - static_cast<double>(d),
                  r.steps > 0 ? seqs * 1e6 / step : 0.0);
      char buf[256];
      std::snprintf(buf, sizeof buf,
                    "%s{\"device_us\":%ld,\"overlap\":%s,\"step_us\":%.1f,\"steps\":%ld}",
                    out.size() > 1 ? "," : "", static_cast<long>(d), overlap ? "true" : "false",
                    step, static_cast<long>(r.steps));
      out += buf;
    }
  }
  out += "]\n";
  if (!json.empty()) {
    FILE* f = std::fopen(json.c_str(), "w");
    if (f) {
      std::fputs(out.c_str(), f);
      std::fclose(f);
    }
  }
  return 0;
}
