// Overlapped steps (EngineConfig::overlap_steps): the engine plans and launches step N+1 while
// step N runs, with step N+1's decode inputs filled by the backend from step N's samples. The
// fake backend samples ids that depend only on a row's input token and position, so every
// request must get exactly the same tokens, text, finish reason and counts as with serial
// steps: a pending token filled from the wrong row, a token past a stop, or a lost one changes
// them.
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "engine/engine.h"
#include "fakes/timed_backend.h"
#include "tokenizer/tokenizer_json.h"

namespace loom {
namespace {

std::shared_ptr<const Tokenizer> tiny_tokenizer() {
  const std::string dir = std::string(LOOM_SOURCE_DIR) + "/tests/golden/model/tiny_hf/llama_f32/";
  auto spec = load_tokenizer_json(dir + "tokenizer.json", dir + "tokenizer_config.json");
  LOOM_CHECK(spec.ok(), "%s", spec.ok() ? "" : spec.error().c_str());
  auto tok = Tokenizer::create(std::move(spec).value());
  LOOM_CHECK(tok.ok());
  return std::shared_ptr<const Tokenizer>(std::move(tok).value());
}

struct Outcome {
  std::vector<TokenId> tokens;
  std::string text;
  FinishReason reason = FinishReason::kError;
  int32_t num_output_tokens = 0;
};

struct RunStats {
  std::vector<Outcome> outcomes;
  int64_t pending_filled = 0;  // decode inputs the backend filled from its previous step
  int64_t steps = 0;
  int64_t preemptions = 0;
};

// An engine on the timed fake backend: prefills chunk between decodes (64-token budget), a
// 256-token context.
struct EngineSetup {
  bool overlap = true;
  int32_t max_num_seqs = 8;
  int32_t num_blocks = 512;
  int64_t device_us = 200;
  bool eos = true;          // position 22, 45, ... samples EOS
  bool optimistic = false;  // admission that admits, then preempts
};

std::unique_ptr<Engine> make_engine(const EngineSetup& setup, fakes::TimedBackend** backend_out) {
  auto tok = tiny_tokenizer();
  auto backend = std::make_unique<fakes::TimedBackend>(tok->vocab_size(), setup.num_blocks,
                                                       setup.device_us, true);
  backend->first_id = 3;  // past the special tokens
  if (setup.eos) {
    backend->eos_id = tok->eos_ids().at(0);
    backend->eos_every = 23;
  }
  if (backend_out) *backend_out = backend.get();
  ModelConfig mc;
  mc.vocab_size = tok->vocab_size();
  mc.max_context = 256;
  EngineConfig ec;
  ec.scheduler.max_num_seqs = setup.max_num_seqs;
  ec.scheduler.max_num_batched_tokens = 64;
  ec.scheduler.max_model_len = 256;
  ec.overlap_steps = setup.overlap;
  if (setup.optimistic) ec.scheduler.admission = AdmissionPolicy::kOptimistic;
  auto engine = std::make_unique<Engine>(std::move(backend), tok, mc, ec);
  engine->start();
  return engine;
}

RunStats run(const std::vector<Request>& requests, bool overlap, int32_t max_num_seqs = 8,
             int32_t num_blocks = 512, bool optimistic = false) {
  fakes::TimedBackend* tb = nullptr;
  EngineSetup setup;
  setup.overlap = overlap;
  setup.max_num_seqs = max_num_seqs;
  setup.num_blocks = num_blocks;
  setup.optimistic = optimistic;
  std::unique_ptr<Engine> engine = make_engine(setup, &tb);
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (const Request& r : requests) {
    SubmitResult s = engine->submit(r);
    LOOM_CHECK(s.ok(), "%s", s.error.c_str());
    streams.push_back(s.stream);
  }
  RunStats st;
  for (auto& stream : streams) {
    Outcome o;
    while (true) {
      auto d = stream->next(std::chrono::milliseconds(20000));
      LOOM_CHECK(d.has_value(), "no delta within 20 s");
      o.tokens.insert(o.tokens.end(), d->new_tokens.begin(), d->new_tokens.end());
      o.text += d->new_text;
      if (d->finish) {
        o.reason = *d->finish;
        o.num_output_tokens = d->num_output_tokens;
        break;
      }
    }
    st.outcomes.push_back(std::move(o));
  }
  st.pending_filled = tb->pending_filled();
  st.steps = tb->steps();
  st.preemptions =
      engine->metrics().preemptions_recompute.load() + engine->metrics().preemptions_swap.load();
  engine->shutdown(std::chrono::milliseconds(1000));
  return st;
}

std::vector<Request> mixed_requests(int n) {
  std::vector<Request> out;
  for (int i = 0; i < n; ++i) {
    Request r;
    for (int k = 0; k < 5 + (i * 7) % 40; ++k) r.prompt.push_back(3 + (i * 13 + k * 5) % 50);
    r.sampling.temperature = 0.0f;
    r.sampling.max_tokens = 1 + (i * 11) % 60;  // some end by length, some by EOS
    r.sampling.ignore_eos = i % 5 == 0;
    out.push_back(std::move(r));
  }
  return out;
}

void expect_same(const RunStats& a, const RunStats& b) {
  ASSERT_EQ(a.outcomes.size(), b.outcomes.size());
  for (size_t i = 0; i < a.outcomes.size(); ++i) {
    SCOPED_TRACE(::testing::Message() << "request " << i);
    EXPECT_EQ(a.outcomes[i].tokens, b.outcomes[i].tokens);
    EXPECT_EQ(a.outcomes[i].text, b.outcomes[i].text);
    EXPECT_EQ(a.outcomes[i].reason, b.outcomes[i].reason);
    EXPECT_EQ(a.outcomes[i].num_output_tokens, b.outcomes[i].num_output_tokens);
    EXPECT_EQ(a.outcomes[i].num_output_tokens, static_cast<int32_t>(a.outcomes[i].tokens.size()));
  }
}

TEST(EngineOverlap, SameOutputsAsSerialSteps) {
  const std::vector<Request> requests = mixed_requests(40);
  const RunStats serial = run(requests, false);
  const RunStats overlapped = run(requests, true);
  expect_same(serial, overlapped);
  EXPECT_EQ(serial.pending_filled, 0);
  EXPECT_GT(overlapped.pending_filled, 100);  // it did overlap
  // Both end reasons occur.
  int stops = 0, lengths = 0;
  for (const Outcome& o : serial.outcomes) {
    stops += o.reason == FinishReason::kStop;
    lengths += o.reason == FinishReason::kLength;
  }
  EXPECT_GT(stops, 3);
  EXPECT_GT(lengths, 3);
}

// Stop strings end a sequence only after its text is decoded, one step after the next step
// was launched: that step's token must not reach the client.
TEST(EngineOverlap, StopStringsEndAtTheSameToken) {
  std::vector<Request> requests = mixed_requests(24);
  for (Request& r : requests) {
    r.sampling.max_tokens = 60;
    r.sampling.ignore_eos = true;
  }
  const RunStats plain = run(requests, false);
  int with_stop = 0;
  for (size_t i = 0; i < requests.size(); ++i) {
    const std::string& text = plain.outcomes[i].text;
    if (text.size() < 12) continue;
    requests[i].sampling.stop = {text.substr(text.size() / 2, 3)};  // ends mid-output
    ++with_stop;
  }
  ASSERT_GT(with_stop, 10);
  const RunStats serial = run(requests, false);
  const RunStats overlapped = run(requests, true);
  expect_same(serial, overlapped);
  int stopped_early = 0;
  for (size_t i = 0; i < requests.size(); ++i)
    stopped_early += serial.outcomes[i].tokens.size() < plain.outcomes[i].tokens.size();
  EXPECT_GT(stopped_early, 10);
  EXPECT_GT(overlapped.pending_filled, 0);
}

// A request with penalties reads earlier output ids on the host: while it lives the engine
// runs serial steps; outputs stay the same either way.
TEST(EngineOverlap, PenaltiesFallBackToSerialSteps) {
  std::vector<Request> requests = mixed_requests(6);
  for (Request& r : requests) r.sampling.presence_penalty = 0.5f;
  const RunStats serial = run(requests, false);
  const RunStats overlapped = run(requests, true);
  expect_same(serial, overlapped);
  EXPECT_EQ(overlapped.pending_filled, 0);
}

// One sequence alone: every step's input is the previous step's pending token.
TEST(EngineOverlap, SingleSequence) {
  std::vector<Request> requests = mixed_requests(1);
  requests[0].sampling.max_tokens = 100;
  requests[0].sampling.ignore_eos = true;
  const RunStats serial = run(requests, false, 1);
  const RunStats overlapped = run(requests, true, 1);
  expect_same(serial, overlapped);
  EXPECT_EQ(overlapped.pending_filled, 99);
  EXPECT_EQ(serial.steps, overlapped.steps);  // no step wasted: max_tokens is known ahead
}

// A KV pool too small for every sequence at once: sequences are preempted (recompute), some
// while their last step is in flight, and resume with the same tokens.
TEST(EngineOverlap, PreemptionUnderMemoryPressure) {
  std::vector<Request> requests = mixed_requests(16);
  for (Request& r : requests) {
    r.sampling.max_tokens = 50;
    r.sampling.ignore_eos = true;
  }
  const RunStats serial = run(requests, false, 8, 24, true);
  const RunStats overlapped = run(requests, true, 8, 24, true);
  expect_same(serial, overlapped);
  EXPECT_GT(overlapped.pending_filled, 0);
  EXPECT_GT(serial.preemptions, 0);
  EXPECT_GT(overlapped.preemptions, 0);
}

// Clients abort while steps are in flight: every stream ends (aborted or done), nothing hangs,
// and every block comes back.
TEST(EngineOverlap, AbortsWhileStepsAreInFlight) {
  EngineSetup setup;
  setup.device_us = 300;
  setup.eos = false;
  std::unique_ptr<Engine> engine = make_engine(setup, nullptr);
  std::vector<Request> requests = mixed_requests(24);
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (Request& r : requests) {
    r.sampling.max_tokens = 80;
    r.sampling.ignore_eos = true;
    SubmitResult s = engine->submit(r);
    ASSERT_TRUE(s.ok()) << s.error;
    streams.push_back(s.stream);
  }
  // Every third request is aborted once the first has a token (80 tokens take 24 ms at least):
  // running ones mid-flight, later ones while they wait.
  auto first = streams[0]->next(std::chrono::milliseconds(20000));
  ASSERT_TRUE(first.has_value() && !first->finish);
  for (size_t i = 0; i < streams.size(); i += 3) engine->abort(streams[i]->id());
  int aborted = 0, done = 0;
  for (size_t i = 0; i < streams.size(); ++i) {
    int32_t tokens = i == 0 ? static_cast<int32_t>(first->new_tokens.size()) : 0;
    while (true) {
      auto d = streams[i]->next(std::chrono::milliseconds(20000));
      ASSERT_TRUE(d.has_value()) << "stream " << i << " hung";
      tokens += static_cast<int32_t>(d->new_tokens.size());
      EXPECT_EQ(d->num_output_tokens, tokens);
      if (d->finish) {
        if (*d->finish == FinishReason::kAbort) {
          ++aborted;
        } else {
          ++done;
          EXPECT_EQ(tokens, 80);
        }
        break;
      }
    }
  }
  EXPECT_EQ(aborted, 8);
  EXPECT_EQ(done, 16);
  // The gauges are published every iteration; wait for the engine to go idle.
  for (int k = 0; k < 200 && engine->metrics().kv_blocks_used.load() != 0; ++k)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_EQ(engine->metrics().kv_blocks_used.load(), 0);
  engine->shutdown(std::chrono::milliseconds(1000));
}

// A long prompt alone: its first chunks sample no row, and those launches are finished too.
TEST(EngineOverlap, PrefillChunksWithoutSampledRows) {
  std::vector<Request> requests = mixed_requests(1);
  requests[0].prompt.assign(200, 7);
  requests[0].sampling.max_tokens = 40;
  requests[0].sampling.ignore_eos = true;
  const RunStats serial = run(requests, false, 1);
  const RunStats overlapped = run(requests, true, 1);
  expect_same(serial, overlapped);
  EXPECT_EQ(overlapped.outcomes[0].tokens.size(), 40u);
  EXPECT_EQ(serial.steps, overlapped.steps);
}

}  // namespace
}  // namespace loom
