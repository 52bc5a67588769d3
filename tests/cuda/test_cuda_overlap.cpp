// Overlapped steps on the GPU (Backend::supports_overlap()): step N+1 is launched before step N's
// tokens are collected, its decode inputs being the tokens step N sampled (pending_tokens, filled
// on the device from the sampler's ids).
//
// What must hold:
//   - the fill kernel writes tokens[index] = ids[prev_row] for each pair and nothing else;
//   - the DeviceSampler with two launches in flight returns each launch's own tokens (and
//     logprobs, for rows sampled on the host), exactly those of sample() on the same inputs,
//     even when the caller's SampleInputs are gone after the launch;
//   - greedy decoding through the backend overlapped (launch N+1, then finish N) gives exactly the
//     tokens of the serial run (forward_sample, tokens fed back by hand). Both runs launch the
//     very same batch shapes, so every kernel and cuBLAS call rounds the same way: the check is
//     bitwise equality of the token sequences, for graphed decode steps (batch sizes the graph
//     pads: 3 -> 4, 11 -> 16) and with graphs off, and for a schedule where sequences join with
//     a prefill chunk next to pending decode tokens (eager steps) and leave (so a pending token's
//     previous row is not its row in this step).
#include <algorithm>
#include <deque>
#include <random>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/device_sampler.cuh"
#include "backend/cuda/pending_tokens.cuh"
#include "cuda/backend_checks.h"
#include "cuda/cuda_test_util.h"
#include "e2e/model_fixture.h"
#include "sample/sampler.h"

namespace loom::testing {
namespace {

constexpr int32_t kBlockSize = 16;
constexpr int32_t kBlocksPerSeq = 8;  // room for 128 tokens a sequence
constexpr int32_t kSteps = 20;

std::unique_ptr<Backend> dummy_backend(bool graphs) {
  CudaBackendOptions o = test_backend_options(kBlockSize);
  o.max_num_batched_tokens = 512;
  o.max_num_seqs = 32;
  o.cuda_graphs = graphs;
  return dummy_cuda_backend(small_llama_config(), o);
}

// ---------------------------------------------------------------------------------------------
// The fill kernel alone.

TEST(CudaOverlap, FillKernelWritesOnlyThePendingTokens) {
  LOOM_REQUIRE_GPU();
  std::vector<int32_t> tokens(300);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<int32_t>(i % 97);
  std::vector<int32_t> ids(200);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>(1000 + 7 * i);
  // 150 pending tokens (more than one CTA), every other token, rows in a scrambled order.
  std::vector<int32_t> pairs;
  std::vector<int32_t> expected = tokens;
  for (int32_t k = 0; k < 150; ++k) {
    const int32_t index = 2 * k, row = (k * 37) % 200;
    pairs.push_back(index);
    pairs.push_back(row);
    tokens[index] = kPendingToken;
    expected[index] = ids[row];
  }
  DeviceVec<int32_t> d_tokens(tokens), d_ids(ids), d_pairs(pairs);
  cuda::launch_fill_pending_tokens(d_tokens.get(), d_pairs.get(), 150, d_ids.get(), 0);
  cuda::launch_fill_pending_tokens(d_tokens.get(), d_pairs.get(), 0, d_ids.get(), 0);  // no-op
  EXPECT_EQ(d_tokens.download(), expected);
}

// ---------------------------------------------------------------------------------------------
// The DeviceSampler with two launches in flight.

struct SamplerRow {
  SamplingParams params;
  std::vector<TokenId> prompt, output;
  uint64_t seed = 0;
  int32_t step = 0;
};

// Rows of every kind: argmax, penalized greedy and sampled (device rows), logprobs (host).
std::vector<SamplerRow> sampler_rows(int32_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<SamplerRow> rows(n);
  for (int32_t i = 0; i < n; ++i) {
    SamplerRow& r = rows[i];
    r.seed = rng();
    r.step = static_cast<int32_t>(rng() % 50);
    r.prompt = {static_cast<TokenId>(rng() % 64), static_cast<TokenId>(rng() % 64)};
    r.output = {static_cast<TokenId>(rng() % 64)};
    switch (i % 4) {
      case 0:
        r.params.temperature = 0.0f;
        break;
      case 1:
        r.params.temperature = 0.0f;
        r.params.repetition_penalty = 1.3f;
        break;
      case 2:
        r.params.temperature = 0.8f;
        r.params.top_k = 40;
        break;
      case 3:
        r.params.temperature = 0.7f;
        r.params.logprobs = 3;
        break;
    }
  }
  return rows;
}

std::vector<SampleInput> inputs_of(const std::vector<SamplerRow>& rows, int32_t vocab) {
  std::vector<SampleInput> in;
  for (const SamplerRow& r : rows) {
    SampleInput s;
    s.vocab_size = vocab;
    s.params = &r.params;
    s.prompt = r.prompt;
    s.output = r.output;
    s.seed = r.seed;
    s.step = r.step;
    in.push_back(s);
  }
  return in;
}

void expect_same(const std::vector<SampleOutput>& a, const std::vector<SampleOutput>& b,
                 const char* what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].token, b[i].token) << what << " row " << i;
    EXPECT_EQ(a[i].logprobs.sampled.token, b[i].logprobs.sampled.token) << what << " row " << i;
    EXPECT_EQ(a[i].logprobs.sampled.logprob, b[i].logprobs.sampled.logprob) << what << " row " << i;
    ASSERT_EQ(a[i].logprobs.top.size(), b[i].logprobs.top.size()) << what << " row " << i;
    for (size_t k = 0; k < a[i].logprobs.top.size(); ++k) {
      EXPECT_EQ(a[i].logprobs.top[k].token, b[i].logprobs.top[k].token) << what << " row " << i;
      EXPECT_EQ(a[i].logprobs.top[k].logprob, b[i].logprobs.top[k].logprob) << what << " row " << i;
    }
  }
}

TEST(CudaOverlap, SamplerReturnsEachLaunchsOwnTokens) {
  LOOM_REQUIRE_GPU();
  constexpr int32_t V = 4096;
  cudaStream_t stream = nullptr;
  ASSERT_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  cuda::DeviceSampler sampler(V, 16);

  // Three steps of different sizes and logits.
  const int32_t sizes[3] = {7, 4, 9};
  std::vector<std::vector<SamplerRow>> rows;
  std::vector<std::vector<float>> logits;
  for (int s = 0; s < 3; ++s) {
    rows.push_back(sampler_rows(sizes[s], 10 + s));
    logits.push_back(random_floats(static_cast<size_t>(sizes[s]) * V, 20 + s, -4.0f, 4.0f));
  }

  // References: sample(), one step at a time (device rows rewrite their logits: fresh copies).
  std::vector<std::vector<SampleOutput>> want(3);
  for (int s = 0; s < 3; ++s) {
    DeviceVec<float> d(logits[s]);
    want[s].resize(sizes[s]);
    const std::vector<SampleInput> in = inputs_of(rows[s], V);
    sampler.sample(d.get(), in, want[s], stream);
  }

  // launch 0, launch 1, finish 0, launch 2, finish 1, finish 2. The inputs are dropped after each
  // launch: the host rows' copies must carry them to finish.
  DeviceVec<float> d0(logits[0]), d1(logits[1]), d2(logits[2]);
  std::vector<std::vector<SampleOutput>> got(3);
  for (int s = 0; s < 3; ++s) got[s].assign(sizes[s], SampleOutput{-7, {}});
  auto launch = [&](int s, float* d) {
    std::vector<SampleInput> in = inputs_of(rows[s], V);
    sampler.launch(d, in, stream);
    in.assign(in.size(), SampleInput{});
  };
  launch(0, d0.get());
  EXPECT_EQ(sampler.in_flight(), 1);
  launch(1, d1.get());
  EXPECT_EQ(sampler.in_flight(), 2);
  EXPECT_EQ(sampler.last_rows(), sizes[1]);
  sampler.finish(got[0]);
  launch(2, d2.get());
  sampler.finish(got[1]);
  sampler.finish(got[2]);
  EXPECT_EQ(sampler.in_flight(), 0);
  for (int s = 0; s < 3; ++s) expect_same(got[s], want[s], s == 0 ? "0" : s == 1 ? "1" : "2");

  // The device ids of the last launch, for its device rows only (every fourth row is a logprobs
  // row, sampled on the host).
  std::vector<int32_t> ids(sizes[2]);
  ASSERT_CUDA(cudaMemcpy(ids.data(), sampler.device_ids(), ids.size() * 4, cudaMemcpyDeviceToHost));
  for (int32_t r = 0; r < sizes[2]; ++r) {
    EXPECT_EQ(sampler.last_row_on_device(r), r % 4 != 3) << r;
    if (sampler.last_row_on_device(r)) {
      EXPECT_EQ(ids[r], want[2][r].token) << r;
    }
  }
  EXPECT_FALSE(sampler.last_row_on_device(sizes[2]));

  // An empty launch in flight next to a real one.
  DeviceVec<float> d3(logits[0]);
  launch(0, d3.get());
  sampler.launch(nullptr, {}, stream);
  std::vector<SampleOutput> again(sizes[0]);
  sampler.finish(again);
  sampler.finish({});
  expect_same(again, want[0], "after an empty launch");
  ASSERT_CUDA(cudaStreamDestroy(stream));
}

// ---------------------------------------------------------------------------------------------
// The backend: overlapped greedy decoding against the serial one.

// Sequence i is in the steps [start, end): at `start` it feeds its whole prompt, after that the
// token it sampled the step before. Every sequence in a step has one logits row, in sequence
// order.
struct SeqPlan {
  int32_t prompt_len = 0;
  int32_t start = 0;
  int32_t end = kSteps;
};

struct Scenario {
  const char* name;
  std::vector<SeqPlan> seqs;
};

std::vector<Scenario> scenarios() {
  std::vector<Scenario> out;
  out.push_back({"one sequence", {{9, 0, kSteps}}});
  out.push_back(
      {"3 sequences (graph batch 4)", {{5, 0, kSteps}, {17, 0, kSteps}, {30, 0, kSteps}}});
  Scenario eleven{"11 sequences (graph batch 16)", {}};
  for (int32_t i = 0; i < 11; ++i) eleven.seqs.push_back({3 + 4 * i, 0, kSteps});
  out.push_back(eleven);
  // Joins with a prefill chunk next to pending tokens (steps 3, 5, 10: eager), leaves (steps 8,
  // 14), so the batch size moves through 1..5 and previous rows shift.
  out.push_back({"joins and leaves",
                 {{12, 0, kSteps}, {7, 0, 8}, {21, 3, kSteps}, {2, 5, 14}, {40, 10, kSteps}}});
  return out;
}

struct Seqs {
  std::vector<ManualSeq> seqs;
  std::vector<std::vector<TokenId>> sampled;  // [seq] token sampled at each step it was in
};

Seqs start_seqs(const Scenario& sc, BlockId first_block, int32_t vocab) {
  Seqs s;
  for (size_t i = 0; i < sc.seqs.size(); ++i) {
    ManualSeq m;
    m.tokens = random_tokens(sc.seqs[i].prompt_len, 100 + static_cast<uint32_t>(i), vocab);
    for (int32_t k = 0; k < kBlocksPerSeq; ++k)
      m.blocks.push_back(first_block + static_cast<BlockId>(i) * kBlocksPerSeq + k);
    s.seqs.push_back(std::move(m));
  }
  s.sampled.resize(sc.seqs.size());
  return s;
}

std::vector<int32_t> active_at(const Scenario& sc, int32_t step) {
  std::vector<int32_t> a;
  for (size_t i = 0; i < sc.seqs.size(); ++i)
    if (sc.seqs[i].start <= step && step < sc.seqs[i].end) a.push_back(static_cast<int32_t>(i));
  return a;
}

std::vector<SampleInput> greedy_rows(size_t n, int32_t vocab) {
  static const SamplingParams greedy = [] {
    SamplingParams p;
    p.temperature = 0.0f;
    return p;
  }();
  SampleInput in;
  in.vocab_size = vocab;
  in.params = &greedy;
  return std::vector<SampleInput>(n, in);
}

// A step's batch: each active sequence feeds its prompt (first step) or one token.
ForwardBatch step_batch(const Scenario& sc, Seqs& s, const std::vector<int32_t>& active,
                        int32_t step) {
  std::vector<ManualSeq*> ptrs;
  std::vector<int32_t> counts;
  for (int32_t i : active) {
    ptrs.push_back(&s.seqs[i]);
    counts.push_back(sc.seqs[i].start == step ? sc.seqs[i].prompt_len : 1);
  }
  return make_batch(ptrs, counts, kBlockSize);
}

Seqs run_serial(Backend& b, const Scenario& sc, BlockId first_block) {
  const int32_t V = b.vocab_size();
  Seqs s = start_seqs(sc, first_block, V);
  for (int32_t step = 0; step < kSteps; ++step) {
    const std::vector<int32_t> active = active_at(sc, step);
    if (active.empty()) continue;
    const ForwardBatch batch = step_batch(sc, s, active, step);
    const std::vector<SampleInput> rows = greedy_rows(active.size(), V);
    std::vector<SampleOutput> out(active.size());
    EXPECT_TRUE(b.forward_sample(batch, rows, out));
    for (size_t r = 0; r < active.size(); ++r) {
      s.seqs[active[r]].tokens.push_back(out[r].token);
      s.sampled[active[r]].push_back(out[r].token);
    }
  }
  return s;
}

Seqs run_overlapped(Backend& b, const Scenario& sc, BlockId first_block) {
  const int32_t V = b.vocab_size();
  Seqs s = start_seqs(sc, first_block, V);
  struct InFlight {
    std::vector<int32_t> active;  // row r is sequence active[r]
    std::vector<size_t> at;       // where row r's token goes in its sequence's tokens
  };
  std::deque<InFlight> in_flight;
  auto finish_oldest = [&] {
    InFlight f = std::move(in_flight.front());
    in_flight.pop_front();
    std::vector<SampleOutput> out(f.active.size());
    b.finish_sample(out);
    for (size_t r = 0; r < f.active.size(); ++r) {
      std::vector<TokenId>& tokens = s.seqs[f.active[r]].tokens;
      if (f.at[r] < tokens.size()) {
        EXPECT_EQ(tokens[f.at[r]], kPendingToken);  // fed to the next step on the device
        tokens[f.at[r]] = out[r].token;
      } else {
        tokens.push_back(out[r].token);
      }
      s.sampled[f.active[r]].push_back(out[r].token);
    }
  };
  std::vector<int32_t> prev_active;
  for (int32_t step = 0; step < kSteps; ++step) {
    const std::vector<int32_t> active = active_at(sc, step);
    if (active.empty()) continue;
    // Decode rows feed the token of the step before, not yet on the host.
    for (int32_t i : active)
      if (sc.seqs[i].start != step) s.seqs[i].tokens.push_back(kPendingToken);
    ForwardBatch batch = step_batch(sc, s, active, step);
    for (size_t r = 0; r < active.size(); ++r) {
      const int32_t i = active[r];
      if (sc.seqs[i].start == step) continue;
      const auto prev = std::find(prev_active.begin(), prev_active.end(), i);
      if (prev == prev_active.end()) {
        ADD_FAILURE() << "sequence " << i << " decodes at step " << step << " without step "
                      << step - 1;
        return s;
      }
      batch.pending_tokens.push_back(
          {batch.query_start[r], static_cast<int32_t>(prev - prev_active.begin())});
    }
    const std::vector<SampleInput> rows = greedy_rows(active.size(), V);
    EXPECT_TRUE(b.launch_sample(batch, rows));
    InFlight f;
    f.active = active;
    for (int32_t i : active) f.at.push_back(static_cast<size_t>(s.seqs[i].num_computed));
    in_flight.push_back(std::move(f));
    if (in_flight.size() == 2) finish_oldest();  // step - 1, after step was launched
    prev_active = active;
  }
  while (!in_flight.empty()) finish_oldest();
  return s;
}

void expect_overlap_matches_serial(bool graphs) {
  auto b = dummy_backend(graphs);
  ASSERT_TRUE(b);
  EXPECT_TRUE(b->supports_overlap());
  for (const Scenario& sc : scenarios()) {
    SCOPED_TRACE(sc.name);
    const Seqs serial = run_serial(*b, sc, 0);
    const Seqs overlapped = run_overlapped(*b, sc, 200);
    for (size_t i = 0; i < sc.seqs.size(); ++i) {
      EXPECT_EQ(static_cast<int32_t>(serial.sampled[i].size()), sc.seqs[i].end - sc.seqs[i].start)
          << "sequence " << i;
      EXPECT_EQ(overlapped.sampled[i], serial.sampled[i]) << "sequence " << i;
      EXPECT_EQ(overlapped.seqs[i].tokens, serial.seqs[i].tokens) << "sequence " << i;
    }
    // The check can tell sequences apart: their continuations differ.
    if (sc.seqs.size() > 1) {
      bool differ = false;
      for (size_t i = 1; i < sc.seqs.size(); ++i)
        differ = differ || serial.sampled[i] != serial.sampled[0];
      EXPECT_TRUE(differ);
    }
  }
  // The plain paths still work after overlapped steps.
  const int32_t V = b->vocab_size();
  ManualSeq m;
  m.tokens = random_tokens(10, 7, V);
  for (int32_t k = 0; k < 2; ++k) m.blocks.push_back(400 + k);
  std::vector<float> logits(V);
  b->forward(make_batch({&m}, {10}, kBlockSize), logits.data());
  EXPECT_TRUE(std::all_of(logits.begin(), logits.end(), [](float x) { return std::isfinite(x); }));
}

TEST(CudaOverlap, OverlappedGreedyMatchesSerialGraphed) {
  LOOM_REQUIRE_GPU();
  expect_overlap_matches_serial(true);
}

TEST(CudaOverlap, OverlappedGreedyMatchesSerialEager) {
  LOOM_REQUIRE_GPU();
  expect_overlap_matches_serial(false);
}

}  // namespace
}  // namespace loom::testing
