// KV cache quantization on the CPU (a program, not a test): what int8 and int4 rows buy at a fixed
// KV memory budget, on the default model, through the engine in-process.
//   1. capacity: bytes per block, blocks and tokens in the budget, and the peak number of
//      sequences running at once with conservative admission (each reserves prompt + output);
//   2. a memory-bound workload (many sequences, optimistic admission): wall time, generated
//      tokens/s and preemptions; the f16 cache must preempt where the int4 one need not;
//   3. paged attention alone: one layer's decode over a long context, per dtype (dequant cost).
//
//   bench_kv_quant [--model PATH] [--capacity-mib 64] [--workload-mib 28] [--requests 24]
//                  [--prompt 64] [--gen 96] [--dtypes f16,int8,int4]
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "backend/cpu/attention.h"
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
  std::string model = "models/SmolLM2-135M-Instruct.Q4_1.gguf";  // run from the repo root
  double capacity_mib = 64;                                      // budget of part 1
  int capacity_prompt = 224, capacity_gen = 32;  // 256 tokens = 16 blocks per sequence
  int capacity_requests = 64;
  double workload_mib = 28;  // budget of part 2
  int requests = 24, prompt = 64, gen = 96;
  std::vector<cpu::KvDtype> dtypes = {cpu::KvDtype::kF16, cpu::KvDtype::kInt8, cpu::KvDtype::kInt4};
};

std::vector<TokenId> random_prompt(std::mt19937& rng, int n, int vocab) {
  std::uniform_int_distribution<int> d(100, vocab - 100);
  std::vector<TokenId> p(n);
  for (auto& t : p) t = d(rng);
  return p;
}

std::unique_ptr<Engine> make_engine(std::shared_ptr<const ModelFile> model,
                                    std::shared_ptr<const Tokenizer> tok, cpu::KvDtype dtype,
                                    size_t kv_bytes, AdmissionPolicy admission) {
  cpu::CpuBackendOptions bo;
  bo.kv_cache_bytes = kv_bytes;
  bo.swap_space_bytes = size_t{256} << 20;
  bo.kv_dtype = dtype;
  auto backend = cpu::CpuBackend::create(model, bo);
  if (!backend.ok()) {
    std::fprintf(stderr, "%s\n", backend.error().c_str());
    std::exit(1);
  }
  EngineConfig ec;
  ec.scheduler.max_num_batched_tokens = 512;
  ec.scheduler.max_num_seqs = 256;
  ec.scheduler.prefix_caching = false;  // random prompts; never let a repeat hit a cache
  ec.scheduler.admission = admission;
  auto e = std::make_unique<Engine>(std::move(backend).value(), tok, model->config(), ec);
  e->start();
  return e;
}

struct RunResult {
  double wall_s = 0;
  int64_t generated = 0;
  int32_t peak_running = 0;
  int64_t swaps = 0, recomputes = 0;
};

// Submits every request at once, waits for all; samples the running gauge every millisecond.
RunResult run(Engine& engine, const std::vector<Request>& reqs) {
  RunResult r;
  const int64_t start = now_us();
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (const Request& q : reqs) {
    SubmitResult s = engine.submit(q);
    if (!s.ok()) {
      std::fprintf(stderr, "submit: %s\n", s.error.c_str());
      std::exit(1);
    }
    streams.push_back(s.stream);
  }
  std::atomic<bool> done{false};
  std::atomic<int32_t> peak{0};
  std::thread poller([&] {
    while (!done.load()) {
      int32_t running = 0;
      for (const auto& g : engine.metrics().running) running += g.load();
      peak.store(std::max(peak.load(), running));
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  });
  for (auto& s : streams) {
    while (true) {
      auto d = s->next(std::chrono::milliseconds(600000));
      if (!d) {
        std::fprintf(stderr, "a request produced nothing for 600 s\n");
        std::exit(1);
      }
      r.generated += static_cast<int64_t>(d->new_tokens.size());
      if (d->finish) break;
    }
  }
  r.wall_s = (now_us() - start) / 1e6;
  done.store(true);
  poller.join();
  r.peak_running = peak.load();
  r.swaps = engine.metrics().preemptions_swap.load();
  r.recomputes = engine.metrics().preemptions_recompute.load();
  return r;
}

std::vector<Request> make_requests(std::mt19937& rng, int n, int prompt, int gen, int vocab) {
  std::vector<Request> reqs(n);
  for (Request& q : reqs) {
    q.prompt = random_prompt(rng, prompt, vocab);
    q.sampling.max_tokens = gen;
    q.sampling.temperature = 0.0f;
    q.sampling.ignore_eos = true;
  }
  return reqs;
}

// One layer's decode attention: 32 sequences, 1024 tokens of context each.
double attention_us(const ModelConfig& c, cpu::KvDtype dtype) {
  constexpr int kSeqs = 32, kContext = 1024, kBlock = 16;
  const int blocks_per_seq = kContext / kBlock;
  cpu::KvLayout layout{1, c.num_kv_heads, c.head_dim, kBlock, dtype};
  cpu::KvStorage kv(layout, kSeqs * blocks_per_seq, 0);
  cpu::AttentionShape shape{c.num_heads, c.num_kv_heads, c.head_dim,
                            1.0f / std::sqrt(static_cast<float>(c.head_dim))};
  std::mt19937 rng(7);
  std::normal_distribution<float> g(0.0f, 1.0f);
  // Fill the cache: every sequence's whole context as one prefill write.
  ForwardBatch fill;
  fill.query_start.push_back(0);
  fill.max_blocks_per_seq = blocks_per_seq;
  ForwardBatch decode = fill;
  for (int s = 0; s < kSeqs; ++s) {
    for (int p = 0; p < kContext; ++p) {
      fill.tokens.push_back(1);
      fill.positions.push_back(p);
      fill.slot_mapping.push_back(static_cast<int64_t>(s) * kContext + p);
    }
    fill.query_start.push_back(static_cast<int32_t>(fill.tokens.size()));
    fill.context_lens.push_back(kContext);
    decode.tokens.push_back(1);
    decode.positions.push_back(kContext - 1);
    decode.slot_mapping.push_back(static_cast<int64_t>(s) * kContext + kContext - 1);
    decode.query_start.push_back(s + 1);
    decode.context_lens.push_back(kContext);
    for (int b = 0; b < blocks_per_seq; ++b) {
      fill.block_tables.push_back(s * blocks_per_seq + b);
      decode.block_tables.push_back(s * blocks_per_seq + b);
    }
  }
  std::vector<float> k(fill.tokens.size() * c.kv_dim()), v(k.size());
  for (float& x : k) x = g(rng);
  for (float& x : v) x = g(rng);
  cpu::write_kv(fill, k.data(), v.data(), 0, shape, kv);
  std::vector<float> q(static_cast<size_t>(kSeqs) * c.q_dim()), out(q.size());
  for (float& x : q) x = g(rng);
  std::vector<double> times;
  for (int r = 0; r < 30; ++r) {
    const int64_t t0 = now_us();
    cpu::paged_attention(decode, q.data(), 0, shape, kv, out.data());
    times.push_back(static_cast<double>(now_us() - t0));
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
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
    else if (k == "--capacity-mib")
      a.capacity_mib = std::stod(next());
    else if (k == "--workload-mib")
      a.workload_mib = std::stod(next());
    else if (k == "--requests")
      a.requests = std::stoi(next());
    else if (k == "--prompt")
      a.prompt = std::stoi(next());
    else if (k == "--gen")
      a.gen = std::stoi(next());
    else if (k == "--dtypes") {
      a.dtypes.clear();
      std::stringstream ss(next());
      std::string item;
      while (std::getline(ss, item, ',')) {
        auto d = cpu::parse_kv_dtype(item);
        if (!d.ok()) {
          std::fprintf(stderr, "%s\n", d.error().c_str());
          return 2;
        }
        a.dtypes.push_back(d.value());
      }
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
  auto t = Tokenizer::create(model->tokenizer_spec());
  if (!t.ok()) {
    std::fprintf(stderr, "%s\n", t.error().c_str());
    return 1;
  }
  std::shared_ptr<const Tokenizer> tok(std::move(t).value());
  const ModelConfig& c = model->config();
  std::printf("model %s, ISA %s, %d threads\n\n", a.model.c_str(), cpu::isa_name(cpu::active_isa()),
              cpu::num_threads());

  // 1. Capacity.
  const size_t cap_bytes = static_cast<size_t>(a.capacity_mib * (1 << 20));
  const int seq_tokens = a.capacity_prompt + a.capacity_gen;
  std::printf(
      "1. capacity at %.0f MiB of KV cache; %d requests of %d + %d tokens, conservative "
      "admission\n",
      a.capacity_mib, a.capacity_requests, a.capacity_prompt, a.capacity_gen);
  std::printf("   %-5s %12s %8s %9s %10s %13s %9s\n", "dtype", "block bytes", "blocks", "tokens",
              "x f16", "seqs (calc)", "peak run");
  double f16_tokens = 0;
  for (cpu::KvDtype d : a.dtypes) {
    std::mt19937 rng(1);
    auto engine = make_engine(model, tok, d, cap_bytes, AdmissionPolicy::kConservative);
    const KvPoolInfo pool = engine->kv_pool();
    const int64_t tokens = static_cast<int64_t>(pool.num_device_blocks) * pool.block_size;
    if (d == cpu::KvDtype::kF16) f16_tokens = static_cast<double>(tokens);
    const int blocks_per_seq = (seq_tokens + pool.block_size - 1) / pool.block_size;
    RunResult r = run(*engine, make_requests(rng, a.capacity_requests, a.capacity_prompt,
                                             a.capacity_gen, c.vocab_size));
    std::printf(
        "   %-5s %12zu %8d %9lld %10s %13d %9d\n", pool.dtype.c_str(), pool.bytes_per_block,
        pool.num_device_blocks, static_cast<long long>(tokens),
        f16_tokens > 0 ? (std::to_string(tokens / f16_tokens).substr(0, 4) + "x").c_str() : "-",
        pool.num_device_blocks / blocks_per_seq, r.peak_running);
    engine->shutdown(std::chrono::milliseconds(1000));
  }

  // 2. Memory-bound workload.
  const size_t work_bytes = static_cast<size_t>(a.workload_mib * (1 << 20));
  std::printf(
      "\n2. memory-bound workload at %.0f MiB: %d requests of %d + %d tokens at once, "
      "optimistic admission, preemption auto\n",
      a.workload_mib, a.requests, a.prompt, a.gen);
  std::printf("   %-5s %8s %9s %9s %10s %8s %10s\n", "dtype", "blocks", "peak run", "wall s",
              "gen tok/s", "swaps", "recomputes");
  for (cpu::KvDtype d : a.dtypes) {
    std::mt19937 rng(2);  // the same prompts for every dtype
    auto engine = make_engine(model, tok, d, work_bytes, AdmissionPolicy::kOptimistic);
    RunResult r = run(*engine, make_requests(rng, a.requests, a.prompt, a.gen, c.vocab_size));
    std::printf("   %-5s %8d %9d %9.2f %10.1f %8lld %10lld\n", cpu::kv_dtype_name(d),
                engine->kv_pool().num_device_blocks, r.peak_running, r.wall_s,
                r.generated / r.wall_s, static_cast<long long>(r.swaps),
                static_cast<long long>(r.recomputes));
    engine->shutdown(std::chrono::milliseconds(1000));
  }

  // 3. Attention alone.
  std::printf(
      "\n3. paged attention, one layer, decode of 32 sequences x 1024 tokens of context "
      "(median of 30)\n");
  for (cpu::KvDtype d : a.dtypes)
    std::printf("   %-5s %9.0f us\n", cpu::kv_dtype_name(d), attention_us(c, d));
  return 0;
}
