// The persistent decode kernel (decode_persistent.cuh) alone, on random weights of a model shape:
// time per launch (every layer of one token, and with --vocab N the output layer of N rows as
// its last phase, the embedding row read and the greedy argmax made in the kernel, as the
// backend's steps) against those weight bytes over the device copy rate; with --trace, where the
// time goes: each phase of a layer (mean over layers and CTAs, and the span from the first CTA's
// start to the last CTA's end), and how long consumers waited for weights to land and the
// producer for free stages (or for its copies in flight to land), with every trace point in the
// JSON (trace.events_ns, for tools/persistent_trace_handovers.py); and the same launches one at a
// time, each waited for by the host. The ring is the plan's default (5 stages, 2 copies in
// flight; the backend measures its own at start) unless --stages / --in-flight say otherwise.
//
//   build*/bench/bench_persistent_decode [llama-3.2-1b|llama-3.1-8b|config.json] [out.json]
//       [--context N (keys attended, default 256)] [--vocab N (default 0: no output layer)]
//       [--stages N (cap the ring)] [--in-flight N (copies in flight a CTA, at most)]
//       [--splits N (the attention's context splits a KV head, at most)] [--trace]
//       [--trace-diag D (the traced launch with diag bits D: where the time goes without parts)]
//       [--diag D,D,...] (experiments, after the main figure: the launch time with each set of
//       diag bits D, see PersistentDecodeArgs)
#include <cstdio>
#include <string>

#ifndef LOOM_HAVE_CUDA
int main() {
  std::printf("bench_persistent_decode: built without CUDA (LOOM_CUDA=OFF)\n");
  return 0;
}
#else
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <vector>

#include "backend/cuda/decode_persistent.cuh"
#include "backend/cuda/dummy_config.h"
#include "backend/cuda/random_fill.cuh"
#include "cuda_bench_util.h"

namespace {

using loom::cuda::bf16;

template <class T>
T* device_alloc(int64_t n) {
  void* p = nullptr;
  LOOM_CUDA_CHECK(cudaMalloc(&p, static_cast<size_t>(std::max<int64_t>(n, 1)) * sizeof(T)));
  return static_cast<T*>(p);
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  std::string source = "llama-3.2-1b", out_path;
  int32_t context = 256, vocab = 0;
  bool trace = false;
  int32_t max_stages = 0;
  int32_t in_flight = 0;    // --in-flight: copies a producer keeps in flight at most (0: stages)
  int32_t max_splits = 0;   // --splits: the attention's context splits a KV head, at most
  std::string diags;        // --diag
  uint32_t trace_diag = 0;  // --trace-diag
  int positional = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--context" && i + 1 < argc) {
      context = std::max(1, std::atoi(argv[++i]));
    } else if (a == "--vocab" && i + 1 < argc) {
      vocab = std::max(0, std::atoi(argv[++i]));
    } else if (a == "--stages" && i + 1 < argc) {
      max_stages = std::atoi(argv[++i]);
    } else if (a == "--in-flight" && i + 1 < argc) {
      in_flight = std::atoi(argv[++i]);
    } else if (a == "--splits" && i + 1 < argc) {
      max_splits = std::atoi(argv[++i]);
    } else if (a == "--diag" && i + 1 < argc) {
      diags = argv[++i];
    } else if (a == "--trace-diag" && i + 1 < argc) {
      trace = true;
      trace_diag = static_cast<uint32_t>(std::strtoul(argv[++i], nullptr, 0));
    } else if (a == "--trace") {
      trace = true;
    } else if (positional == 0) {
      source = a, ++positional;
    } else {
      out_path = a;
    }
  }
  auto cfg = loom::load_dummy_config(source);
  if (!cfg.ok()) {
    std::fprintf(stderr, "%s\n", cfg.error().c_str());
    return 1;
  }
  const loom::ModelConfig& c = cfg.value();
  std::string why;
  if (!loom::cuda::persistent_decode_supports(c.hidden_size, c.intermediate_size, c.num_heads,
                                              c.num_kv_heads, c.head_dim,
                                              loom::cuda::KvCacheDtype::kBf16, &why)) {
    std::fprintf(stderr, "the persistent kernel does not take %s: %s\n", source.c_str(),
                 why.c_str());
    return 1;
  }
  loom::cuda::PersistentDecodePlan plan =
      loom::cuda::plan_persistent_decode(c.num_layers, c.hidden_size, c.intermediate_size,
                                         c.num_heads, c.num_kv_heads, c.head_dim, max_stages);
  if (in_flight > 0) plan.in_flight = std::min(in_flight, plan.stages);
  if (max_splits > 0) plan.attn_splits = std::min(max_splits, plan.attn_splits);
  if (plan.grid == 0) {
    std::fprintf(stderr, "no persistent kernel on this GPU (needs Hopper)\n");
    return 1;
  }
  const int64_t H = c.hidden_size, F = c.intermediate_size, QD = c.q_dim(), KVD = c.kv_dim();
  const int64_t L = c.num_layers;
  cudaStream_t stream = nullptr;
  LOOM_CUDA_CHECK(cudaStreamCreate(&stream));

  // Weights: every layer's matrices, random (their values do not change the time).
  std::vector<loom::cuda::PersistentLayer> layers(L);
  uint64_t seed = 1;
  auto matrix = [&](int64_t rows, int64_t cols) {
    bf16* w = device_alloc<bf16>(rows * cols);
    loom::cuda::launch_fill_uniform_bf16(w, rows * cols, ++seed, 0.035f, 0.0f, stream);
    return w;
  };
  auto vec = [&](int64_t n) {
    float* v = device_alloc<float>(n);
    loom::cuda::launch_fill_uniform_f32(v, n, ++seed, 0.05f, 1.0f, stream);
    return v;
  };
  for (auto& w : layers) {
    w.w_qkv = matrix(QD + 2 * KVD, H);
    w.w_o = matrix(H, QD);
    w.w_gate_up = matrix(2 * F, H);
    w.w_down = matrix(H, F);
    w.attn_norm = vec(H);
    w.ffn_norm = vec(H);
  }
  const double weight_bytes =
      2.0 * L * ((QD + 2 * KVD) * H + H * QD + 3 * F * H) + 2.0 * static_cast<double>(vocab) * H;

  loom::cuda::PersistentDecodeArgs a = loom::cuda::persistent_model_args(c);
  a.layers = device_alloc<loom::cuda::PersistentLayer>(L);
  LOOM_CUDA_CHECK(cudaMemcpy(const_cast<loom::cuda::PersistentLayer*>(a.layers), layers.data(),
                             L * sizeof(layers[0]), cudaMemcpyHostToDevice));
  a.x = vec(H);
  a.cache = loom::cuda::KvCacheShape{c.num_layers, c.num_kv_heads, c.head_dim, 16,
                                     loom::cuda::KvCacheDtype::kBf16};
  const int32_t blocks = (context + 15) / 16;
  a.kv_cache = device_alloc<uint8_t>(blocks * a.cache.block_bytes());
  LOOM_CUDA_CHECK(cudaMemset(a.kv_cache, 0, blocks * a.cache.block_bytes()));
  std::vector<int32_t> table(blocks);
  for (int32_t i = 0; i < blocks; ++i) table[i] = i;
  int32_t* d_table = device_alloc<int32_t>(blocks);
  LOOM_CUDA_CHECK(cudaMemcpy(d_table, table.data(), blocks * 4, cudaMemcpyHostToDevice));
  a.block_table = d_table;
  const int32_t position = context - 1;
  const int64_t slot = position;
  int32_t* d_pos = device_alloc<int32_t>(1);
  int64_t* d_slot = device_alloc<int64_t>(1);
  LOOM_CUDA_CHECK(cudaMemcpy(d_pos, &position, 4, cudaMemcpyHostToDevice));
  LOOM_CUDA_CHECK(cudaMemcpy(d_slot, &slot, 8, cudaMemcpyHostToDevice));
  a.position = d_pos;
  a.slot = d_slot;
  std::vector<float> inv_freq(c.head_dim / 2);
  for (int32_t i = 0; i < c.head_dim / 2; ++i)
    inv_freq[i] = static_cast<float>(std::pow(c.rope_theta, -2.0 * i / c.head_dim));
  float* d_freq = device_alloc<float>(c.head_dim / 2);
  LOOM_CUDA_CHECK(cudaMemcpy(d_freq, inv_freq.data(), inv_freq.size() * 4, cudaMemcpyHostToDevice));
  a.inv_freq = d_freq;
  if (vocab > 0) {
    a.lm_head = matrix(vocab, H);
    a.output_norm = vec(H);
    a.vocab = vocab;
    a.logits = device_alloc<float>(vocab);
    // As the backend's steps: the embedding row read by the kernel (tied to the output layer
    // here) and the greedy argmax made with the logits.
    a.embed = a.lm_head;
    const int32_t token = vocab / 3;
    int32_t* d_token = device_alloc<int32_t>(1);
    LOOM_CUDA_CHECK(cudaMemcpy(d_token, &token, 4, cudaMemcpyHostToDevice));
    a.token = d_token;
    a.argmax = device_alloc<int32_t>(1);
  }
  a.workspace = device_alloc<uint8_t>(plan.workspace_bytes);
  LOOM_CUDA_CHECK(cudaMemset(a.workspace, 0, plan.workspace_bytes));
  a.sync = device_alloc<unsigned>(loom::cuda::kPersistentSyncWords);
  LOOM_CUDA_CHECK(cudaMemset(a.sync, 0, loom::cuda::kPersistentSyncWords * sizeof(unsigned)));
  LOOM_CUDA_CHECK(cudaStreamSynchronize(stream));

  const double copy_bw = loom::bench::measure_copy_bandwidth();
  cudaEvent_t e0, e1;
  LOOM_CUDA_CHECK(cudaEventCreate(&e0));
  LOOM_CUDA_CHECK(cudaEventCreate(&e1));
  constexpr int kLaunches = 20;
  // Median over 5 rounds of kLaunches launches, after 3 warm-ups (ms a launch).
  auto time_launches = [&] {
    for (int i = 0; i < 3; ++i) loom::cuda::launch_persistent_decode(a, plan, stream);
    std::vector<double> ms;
    for (int rep = 0; rep < 5; ++rep) {
      LOOM_CUDA_CHECK(cudaEventRecord(e0, stream));
      for (int i = 0; i < kLaunches; ++i) loom::cuda::launch_persistent_decode(a, plan, stream);
      LOOM_CUDA_CHECK(cudaEventRecord(e1, stream));
      LOOM_CUDA_CHECK(cudaEventSynchronize(e1));
      float t = 0;
      LOOM_CUDA_CHECK(cudaEventElapsedTime(&t, e0, e1));
      ms.push_back(t / kLaunches);
    }
    return median(ms);
  };
  const double launch_ms = time_launches();
  const double floor_ms = weight_bytes / copy_bw * 1e3;
  // The same launches one at a time, each waited for by the host (as a one-token step is): the
  // wall time a launch, median of 100; the difference from launch_ms is the launch and wake-up
  // latency that back-to-back launches hide.
  double serial_ms = 0.0;
  {
    std::vector<double> ms;
    for (int i = 0; i < 103; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      loom::cuda::launch_persistent_decode(a, plan, stream);
      LOOM_CUDA_CHECK(cudaStreamSynchronize(stream));
      const std::chrono::duration<double, std::milli> d = std::chrono::steady_clock::now() - t0;
      if (i >= 3) ms.push_back(d.count());
    }
    serial_ms = median(ms);
  }
  std::printf("persistent decode, %s: %lld layers%s, %.2f GB of weights, context %d\n",
              source.c_str(), static_cast<long long>(L),
              vocab > 0 ? (" + an output layer of " + std::to_string(vocab) + " rows").c_str() : "",
              weight_bytes / 1e9, context);
  std::printf(
      "plan: %d CTAs, %d stages of %d KB (%d copies in flight), %d attention splits, %zu B "
      "shared memory\n",
      plan.grid, plan.stages, loom::cuda::kPersistentStageBytes / 1024, plan.in_flight,
      plan.attn_splits, plan.smem_bytes);
  std::printf(
      "launch %.3f ms (median of 5 x %d); floor %.3f ms at the copy rate %.0f GB/s: "
      "%.0f%%\n",
      launch_ms, kLaunches, floor_ms, copy_bw / 1e9, 100.0 * floor_ms / launch_ms);
  std::printf("one launch at a time, waited for by the host: %.3f ms (median of 100)\n", serial_ms);
  nlohmann::json j = {{"model", source},
                      {"vocab", vocab},
                      {"context", context},
                      {"layers", L},
                      {"weight_bytes", weight_bytes},
                      {"launch_ms", launch_ms},
                      {"serial_launch_ms", serial_ms},
                      {"floor_ms", floor_ms},
                      {"copy_bw_gbs", copy_bw / 1e9},
                      {"stages", plan.stages},
                      {"in_flight", plan.in_flight}};

  if (!diags.empty()) {
    nlohmann::json vs = nlohmann::json::array();
    std::printf("\n%6s %10s %8s\n", "diag", "ms", "floor%");
    for (size_t pos = 0; pos < diags.size();) {
      size_t end = diags.find(',', pos);
      if (end == std::string::npos) end = diags.size();
      a.diag =
          static_cast<uint32_t>(std::strtoul(diags.substr(pos, end - pos).c_str(), nullptr, 0));
      pos = end + 1;
      const double v_ms = time_launches();
      std::printf("%6u %10.3f %7.0f%%\n", a.diag, v_ms, 100.0 * floor_ms / v_ms);
      vs.push_back({{"diag", a.diag}, {"launch_ms", v_ms}});
    }
    a.diag = 0;
    j["diag"] = vs;
  }
  if (trace) {
    const int64_t events = int64_t{plan.grid} * L * loom::cuda::kPersistentTraceEvents;
    auto* d_trace = device_alloc<unsigned long long>(events + 2 * plan.grid);
    LOOM_CUDA_CHECK(cudaMemset(d_trace, 0, (events + 2 * plan.grid) * 8));
    a.trace = d_trace;
    a.diag = trace_diag;
    loom::cuda::launch_persistent_decode(a, plan, stream);
    LOOM_CUDA_CHECK(cudaStreamSynchronize(stream));
    std::vector<unsigned long long> t(events + 2 * plan.grid);
    LOOM_CUDA_CHECK(cudaMemcpy(t.data(), d_trace, t.size() * 8, cudaMemcpyDeviceToHost));
    constexpr int E = loom::cuda::kPersistentTraceEvents;
    auto at = [&](int cta, int64_t layer, int e) { return t[(cta * L + layer) * E + e]; };
    // Interval k runs from event k to event k + 1 (the last one to the next layer's start).
    const char* names[E] = {"qkv: norm (waits for x)",
                            "qkv: products",
                            "qkv end -> attention",
                            "attention: waits for qkv, RoPE",
                            "attention: keys",
                            "attention: merge (split 0)",
                            "o: waits for the attention",
                            "o: products",
                            "o end -> gate_up",
                            "gate_up: norm (waits for x)",
                            "gate_up: products",
                            "gate_up end -> down",
                            "down: waits for act",
                            "down: products",
                            "down end -> next layer"};
    std::printf("\n%-34s %10s %10s %12s\n", "per layer", "mean us", "max us", "span us");
    nlohmann::json phases = nlohmann::json::array();
    for (int k = 0; k < E; ++k) {
      double sum = 0, mx = 0, span = 0;
      int64_t n = 0;
      for (int64_t layer = 0; layer < L; ++layer) {
        if (k == E - 1 && layer + 1 == L) continue;
        unsigned long long first = ~0ull, last = 0;
        for (int cta = 0; cta < plan.grid; ++cta) {
          const unsigned long long b = at(cta, layer, k);
          const unsigned long long e = k + 1 < E ? at(cta, layer, k + 1) : at(cta, layer + 1, 0);
          const double us = (static_cast<double>(e) - static_cast<double>(b)) / 1e3;
          sum += us, ++n, mx = std::max(mx, us);
          first = std::min(first, b), last = std::max(last, e);
        }
        span += (static_cast<double>(last) - static_cast<double>(first)) / 1e3;
      }
      const int64_t layers_counted = k == E - 1 ? L - 1 : L;
      if (n == 0) continue;
      std::printf("%-34s %10.2f %10.2f %12.2f\n", names[k], sum / n, mx,
                  span / std::max<int64_t>(layers_counted, 1));
      phases.push_back({{"phase", names[k]}, {"mean_us", sum / n}, {"max_us", mx}});
    }
    int clock_khz = 0;
    LOOM_CUDA_CHECK(cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, 0));
    double consumer = 0, producer = 0;
    for (int cta = 0; cta < plan.grid; ++cta) {
      consumer += static_cast<double>(t[events + 2 * cta]);
      producer += static_cast<double>(t[events + 2 * cta + 1]);
    }
    const double to_us = 1e3 / clock_khz / plan.grid;
    const double total_us =
        (static_cast<double>(at(0, L - 1, E - 1)) - static_cast<double>(at(0, 0, 0))) / 1e3;
    std::printf(
        "per CTA, whole launch (%.1f us): consumers waited %.1f us for weights, the "
        "producer %.1f us for free stages or copies in flight\n",
        total_us, consumer * to_us, producer * to_us);
    // Every event (ns from the launch's first), [cta][layer][event], for
    // tools/persistent_trace_handovers.py.
    unsigned long long t0 = ~0ull;
    for (int64_t i = 0; i < events; ++i) t0 = std::min(t0, t[i]);
    nlohmann::json raw = nlohmann::json::array();
    for (int cta = 0; cta < plan.grid; ++cta) {
      nlohmann::json layers = nlohmann::json::array();
      for (int64_t layer = 0; layer < L; ++layer) {
        nlohmann::json ev = nlohmann::json::array();
        for (int k = 0; k < E; ++k) ev.push_back(at(cta, layer, k) - t0);
        layers.push_back(ev);
      }
      raw.push_back(layers);
    }
    // The CTAs with attention work (kv head x split) and those writing its output (split 0 of a
    // head, or every one with a single split).
    const int32_t used = loom::cuda::persistent_attention_splits(context, plan.attn_splits).used;
    nlohmann::json attn_ctas = nlohmann::json::array(), merge_ctas = nlohmann::json::array();
    for (int32_t i = 0; i < c.num_kv_heads * used && i < plan.grid; ++i) {
      attn_ctas.push_back(i);
      if (i % used == 0) merge_ctas.push_back(i);
    }
    j["trace"] = {{"phases", phases},
                  {"consumer_wait_us", consumer * to_us},
                  {"producer_wait_us", producer * to_us},
                  {"events_ns", raw},
                  {"attention_ctas", attn_ctas},
                  {"merge_ctas", merge_ctas}};

    // Is a CTA's speed its SM's (the same CTAs slow launch after launch) or chance? Each CTA's
    // gate_up products (the largest phase, mean over layers) in this launch and a second one,
    // and their correlation over the CTAs.
    auto gate_up_us = [&](const std::vector<unsigned long long>& tr) {
      std::vector<double> per(plan.grid, 0.0);
      for (int cta = 0; cta < plan.grid; ++cta) {
        for (int64_t layer = 0; layer < L; ++layer) {
          const auto* e = &tr[(cta * L + layer) * E];
          per[cta] += (static_cast<double>(e[loom::cuda::kTraceGateUpDone]) -
                       static_cast<double>(e[loom::cuda::kTraceGateUpInput])) /
                      1e3;
        }
        per[cta] /= static_cast<double>(L);
      }
      return per;
    };
    const std::vector<double> first = gate_up_us(t);
    loom::cuda::launch_persistent_decode(a, plan, stream);
    LOOM_CUDA_CHECK(cudaStreamSynchronize(stream));
    LOOM_CUDA_CHECK(cudaMemcpy(t.data(), d_trace, t.size() * 8, cudaMemcpyDeviceToHost));
    const std::vector<double> second = gate_up_us(t);
    double m1 = 0, m2 = 0;
    for (int c = 0; c < plan.grid; ++c) m1 += first[c], m2 += second[c];
    m1 /= plan.grid, m2 /= plan.grid;
    double cov = 0, v1 = 0, v2 = 0;
    for (int c = 0; c < plan.grid; ++c) {
      cov += (first[c] - m1) * (second[c] - m2);
      v1 += (first[c] - m1) * (first[c] - m1);
      v2 += (second[c] - m2) * (second[c] - m2);
    }
    const double corr = cov / std::sqrt(std::max(v1 * v2, 1e-30));
    const auto [lo, hi] = std::minmax_element(first.begin(), first.end());
    std::printf(
        "gate_up products per CTA: %.2f to %.2f us (mean %.2f); correlation between two "
        "launches %.2f\n",
        *lo, *hi, m1, corr);
    j["trace"]["gate_up_us_per_cta"] = {first, second};
    j["trace"]["gate_up_launch_correlation"] = corr;
    j["trace"]["diag"] = trace_diag;
    a.diag = 0;
  }
  if (!out_path.empty()) std::ofstream(out_path) << j.dump(2) << "\n";
  return 0;
}
#endif
