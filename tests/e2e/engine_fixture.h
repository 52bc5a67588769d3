// Builds a real engine on the default model with a given scheduler config and KV budget, and
// runs batches of requests through it to completion.
#pragma once

#include <chrono>
#include <memory>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "e2e/model_fixture.h"
#include "engine/engine.h"
#include "tokenizer/tokenizer.h"

namespace loom::testing {

struct EngineRun {
  std::vector<TokenId> tokens;
  std::vector<TokenLogprobs> logprobs;
  std::string text;
  FinishReason finish = FinishReason::kError;
};

inline std::shared_ptr<const Tokenizer> default_tokenizer() {
  static std::shared_ptr<const Tokenizer> tok = [] {
    auto t = Tokenizer::create(default_model()->tokenizer_spec());
    if (!t.ok()) ADD_FAILURE() << t.error();
    return std::shared_ptr<const Tokenizer>(std::move(t).value());
  }();
  return tok;
}

inline std::unique_ptr<Engine> make_engine(SchedulerConfig sc, size_t kv_bytes,
                                           size_t swap_bytes = size_t{64} << 20) {
  cpu::CpuBackendOptions bo;
  bo.block_size = sc.block_size;
  bo.kv_cache_bytes = kv_bytes;
  bo.swap_space_bytes = swap_bytes;
  auto backend = cpu::CpuBackend::create(default_model(), bo);
  EXPECT_TRUE(backend.ok()) << backend.error();
  EngineConfig ec;
  ec.scheduler = sc;
  auto engine = std::make_unique<Engine>(std::move(backend).value(), default_tokenizer(),
                                         default_model()->config(), ec);
  engine->start();
  return engine;
}

// Submits every request at once and waits for all of them.
inline std::vector<EngineRun> run_requests(Engine& engine, const std::vector<Request>& requests) {
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (const Request& r : requests) {
    SubmitResult s = engine.submit(r);
    EXPECT_TRUE(s.ok()) << s.error;
    streams.push_back(s.stream);
  }
  std::vector<EngineRun> runs(requests.size());
  for (size_t i = 0; i < streams.size(); ++i) {
    if (!streams[i]) continue;
    while (true) {
      auto d = streams[i]->next(std::chrono::milliseconds(120000));
      if (!d) {
        ADD_FAILURE() << "request " << i << " produced nothing for 120 s";
        break;
      }
      runs[i].tokens.insert(runs[i].tokens.end(), d->new_tokens.begin(), d->new_tokens.end());
      runs[i].logprobs.insert(runs[i].logprobs.end(), d->new_logprobs.begin(),
                              d->new_logprobs.end());
      runs[i].text += d->new_text;
      if (d->finish) {
        runs[i].finish = *d->finish;
        break;
      }
    }
  }
  return runs;
}

}  // namespace loom::testing
