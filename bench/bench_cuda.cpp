// CUDA backend benchmarks on random (dummy) weights of a published shape, driven directly
// (no scheduler): the device-to-device copy ceiling, single-stream decode step time against the
// weight-bandwidth floor, batched decode at 1/16/64/256 sequences (128-token prompts, 128 new
// tokens, greedy on the GPU), and prefill throughput. Prints a table; writes JSON to argv[2].
//
//   build*/bench/bench_cuda [llama-3.2-1b|llama-3.1-8b|config.json] [out.json] [options]
// Options: --eager (no CUDA graphs for decode steps), --no-prefill-kernel (the per-token attention
// kernel for prefill too), --no-fuse (steps of <= 8 tokens run the unfused layer), --no-pdl (no
// programmatic dependent launch), --fuse-norm on|off|auto (RMSNorm inside those products),
// --mlp fused|cublas|gemvdown|auto (that MLP's products), --gemv cuda|tensor|auto (the small-batch
// product kernel), --no-preload (its first weights
// loaded after the wait for the previous kernel, not before), --no-persistent (one-token steps
// layer by layer, not in the persistent decode kernel), --no-persistent-logits (its output layer
// in a kernel of its own after it),
// --kv-cache-dtype bf16|fp8|int8,
// --vocab N (another vocabulary size, e.g. 49152 to match a peer's model file), --only-batch N
// (the decode sweep at batch N only, for a profiler; its JSON has that sweep and the floor).
#include <cstdio>
#include <cstdlib>
#include <string>

#ifndef LOOM_HAVE_CUDA
int main() {
  std::printf("bench_cuda: built without CUDA (LOOM_CUDA=OFF)\n");
  return 0;
}
#else
#include <algorithm>
#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <vector>

#include "backend/cuda/cuda_backend.cuh"
#include "backend/cuda/dummy_config.h"
#include "backend/cuda/gemm.cuh"
#include "backend/cuda/gemv.cuh"
#include "cuda_bench_util.h"

namespace {

using loom::ForwardBatch;
using Clock = std::chrono::steady_clock;

struct Seq {
  int32_t num_computed = 0;
  std::vector<int32_t> blocks;
};

constexpr int32_t kBlockSize = 16;

// One step: each sequence feeds counts[i] tokens; logits for each sequence's last row.
ForwardBatch make_step(std::vector<Seq>& seqs, const std::vector<int32_t>& counts, int32_t vocab) {
  ForwardBatch b;
  b.query_start.push_back(0);
  int32_t max_blocks = 1;
  for (auto& s : seqs) max_blocks = std::max<int32_t>(max_blocks, s.blocks.size());
  b.max_blocks_per_seq = max_blocks;
  for (size_t i = 0; i < seqs.size(); ++i) {
    Seq& s = seqs[i];
    for (int32_t j = 0; j < counts[i]; ++j) {
      const int32_t pos = s.num_computed + j;
      b.tokens.push_back(static_cast<int32_t>((pos * 7919 + i * 104729) % vocab));
      b.positions.push_back(pos);
      b.slot_mapping.push_back(int64_t{s.blocks[pos / kBlockSize]} * kBlockSize + pos % kBlockSize);
    }
    s.num_computed += counts[i];
    b.query_start.push_back(static_cast<int32_t>(b.tokens.size()));
    b.context_lens.push_back(s.num_computed);
    b.logits_rows.push_back(static_cast<int32_t>(b.tokens.size()) - 1);
    for (int32_t k = 0; k < max_blocks; ++k)
      b.block_tables.push_back(k < static_cast<int32_t>(s.blocks.size()) ? s.blocks[k] : -1);
  }
  return b;
}

std::vector<Seq> make_seqs(int32_t n, int32_t max_len, int32_t* next_block) {
  std::vector<Seq> seqs(n);
  const int32_t per = (max_len + kBlockSize - 1) / kBlockSize;
  for (auto& s : seqs)
    for (int32_t i = 0; i < per; ++i) s.blocks.push_back((*next_block)++);
  return seqs;
}

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  const std::string source = argc > 1 ? argv[1] : "llama-3.2-1b";
  const std::string out_path = argc > 2 ? argv[2] : "";
  auto config = loom::load_dummy_config(source);
  if (!config.ok()) {
    std::fprintf(stderr, "%s\n", config.error().c_str());
    return 1;
  }
  loom::ModelConfig c = config.value();
  if (!loom::cuda_device_available()) {
    std::printf("bench_cuda: no CUDA GPU\n");
    return 0;
  }
  cudaDeviceProp prop{};
  LOOM_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  const double copy_bw = loom::bench::measure_copy_bandwidth();

  loom::CudaBackendOptions o;
  int32_t only_batch = 0;  // > 0: the decode sweep at this batch only, nothing else (profiling)
  for (int i = 3; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--eager") {
      o.cuda_graphs = false;
    } else if (a == "--only-batch" && i + 1 < argc) {
      only_batch = std::atoi(argv[++i]);
    } else if (a == "--no-prefill-kernel") {
      o.prefill_attention = false;
    } else if (a == "--no-fuse") {
      o.fused_small_batch = false;
    } else if (a == "--fuse-norm" && i + 1 < argc) {  // on | off | auto
      const std::string v = argv[++i];
      o.fuse_norm = v == "on"    ? loom::CudaBackendOptions::FuseNorm::kOn
                    : v == "off" ? loom::CudaBackendOptions::FuseNorm::kOff
                                 : loom::CudaBackendOptions::FuseNorm::kAuto;
    } else if (a == "--mlp" && i + 1 < argc) {  // fused | cublas | gemvdown | auto
      const std::string v = argv[++i];
      using Mlp = loom::CudaBackendOptions::SmallBatchMlp;
      o.small_batch_mlp = v == "fused"      ? Mlp::kFused
                          : v == "cublas"   ? Mlp::kCublas
                          : v == "gemvdown" ? Mlp::kGemvDown
                                            : Mlp::kAuto;
    } else if (a == "--no-preload") {
      loom::cuda::set_gemv_preload(false);
    } else if (a == "--no-pdl") {
      o.pdl = false;
    } else if (a == "--no-persistent") {
      o.persistent_decode = false;
    } else if (a == "--no-persistent-logits") {
      o.persistent_logits = false;
    } else if (a == "--gemv" && i + 1 < argc) {  // cuda | tensor | auto
      const std::string k = argv[++i];
      loom::cuda::set_gemv_kernel(k == "cuda"     ? loom::cuda::GemvKernel::kCudaCores
                                  : k == "tensor" ? loom::cuda::GemvKernel::kTensorCores
                                                  : loom::cuda::GemvKernel::kAuto);

    } else if (a == "--vocab" && i + 1 < argc) {
      c.vocab_size = std::atoi(argv[++i]);
    } else if (a == "--kv-cache-dtype" && i + 1 < argc) {
      auto d = loom::cuda::parse_kv_cache_dtype(argv[++i]);
      if (!d.ok()) {
        std::fprintf(stderr, "%s\n", d.error().c_str());
        return 1;
      }
      o.kv_cache_dtype = d.value();
    } else {
      std::fprintf(stderr, "unknown option %s\n", a.c_str());
      return 1;
    }
  }
  o.block_size = kBlockSize;
  o.max_num_batched_tokens = 4096;
  o.max_num_seqs = 256;
  auto created = loom::cuda::CudaBackend::create(c, nullptr, o);
  if (!created.ok()) {
    std::fprintf(stderr, "%s\n", created.error().c_str());
    return 1;
  }
  auto& be = *created.value();
  const int32_t V = c.vocab_size;

  // Weight bytes one decode step must read: every matrix once (the embedding only as the output
  // matrix when tied; its gathered rows are negligible) plus norms.
  const double H = c.hidden_size, F = c.intermediate_size;
  const double per_layer = H * (c.q_dim() + 2.0 * c.kv_dim()) + c.q_dim() * H + 3.0 * H * F;
  const double params_matmul = c.num_layers * per_layer + double(V) * H;
  const double weight_bytes = 2.0 * params_matmul;
  const double floor_ms = weight_bytes / copy_bw * 1e3;
  nlohmann::json report = {{"gpu", prop.name},
                           {"model", source},
                           {"copy_bandwidth_GBps", copy_bw / 1e9},
                           {"weight_bytes", weight_bytes},
                           {"decode_floor_ms", floor_ms},
                           {"cuda_graphs", o.cuda_graphs},
                           {"prefill_attention_kernel", o.prefill_attention},
                           {"fused_small_batch", o.fused_small_batch},
                           {"pdl", o.pdl},
                           {"persistent_decode", o.persistent_decode},
                           {"persistent_logits", o.persistent_logits},
                           {"fuse_norm", static_cast<int>(o.fuse_norm)},
                           {"small_batch_mlp", static_cast<int>(o.small_batch_mlp)},
                           {"gemv_kernel", static_cast<int>(loom::cuda::gemv_kernel_choice())},
                           {"vocab_size", c.vocab_size},
                           {"kv_cache_dtype", loom::cuda::kv_cache_dtype_name(o.kv_cache_dtype)}};
  std::printf("GPU %s, %d SMs; model %s: %.3f G matmul params, %.2f GB bf16 weights\n", prop.name,
              prop.multiProcessorCount, source.c_str(), params_matmul / 1e9, weight_bytes / 1e9);
  std::printf("device copy %.0f GB/s (read+write) -> decode floor %.3f ms/step\n", copy_bw / 1e9,
              floor_ms);

  // Batched decode sweep: prefill 128-token prompts (chunks of <= 4096 tokens), then 128 steps.
  std::vector<int32_t> ids(256);
  nlohmann::json sweep = nlohmann::json::array();
  std::printf("%8s %12s %14s %14s\n", "batch", "step ms", "decode tok/s", "prefill tok/s");
  std::vector<int32_t> batches = {1, 16, 64, 256};
  if (only_batch > 0) batches = {only_batch};
  for (int32_t batch : batches) {
    int32_t next_block = 0;
    auto seqs = make_seqs(batch, 128 + 128 + 1, &next_block);
    LOOM_CUDA_CHECK(cudaDeviceSynchronize());
    auto t0 = Clock::now();
    for (int32_t first = 0; first < batch; first += 32) {
      std::vector<Seq> group(seqs.begin() + first, seqs.begin() + std::min(batch, first + 32));
      auto b = make_step(group, std::vector<int32_t>(group.size(), 128), V);
      be.forward_greedy(b, ids.data());
      std::copy(group.begin(), group.end(), seqs.begin() + first);
    }
    const double prefill_s = seconds_since(t0);
    // Two warm-up steps, then timed steps; each step includes the host-side batch build and the
    // copy of the sampled ids (the real per-step cost).
    for (int w = 0; w < 2; ++w)
      be.forward_greedy(make_step(seqs, std::vector<int32_t>(batch, 1), V), ids.data());
    const int32_t steps = 126;
    t0 = Clock::now();
    for (int s = 0; s < steps; ++s)
      be.forward_greedy(make_step(seqs, std::vector<int32_t>(batch, 1), V), ids.data());
    const double decode_s = seconds_since(t0);
    const double step_ms = decode_s / steps * 1e3;
    const double tok_s = batch * steps / decode_s;
    std::printf("%8d %12.3f %14.0f %14.0f\n", batch, step_ms, tok_s, batch * 128 / prefill_s);
    sweep.push_back({{"batch", batch},
                     {"decode_step_ms", step_ms},
                     {"decode_tok_s", tok_s},
                     {"prefill_tok_s", batch * 128 / prefill_s},
                     {"mfu_decode", 2.0 * params_matmul * tok_s / 989e12}});
  }
  report["decode_sweep"] = sweep;
  auto write_report = [&] {
    if (!out_path.empty()) std::ofstream(out_path) << report.dump(2) << "\n";
  };
  if (only_batch > 0) {  // the sweep at one batch only: its figures and the floor
    write_report();
    return 0;
  }

  // Prefill throughput: 16 prompts of 1024 tokens, 2 per forward (2048 tokens a step).
  {
    int32_t next_block = 0;
    auto seqs = make_seqs(16, 1024, &next_block);
    auto warm = make_seqs(2, 1024, &next_block);
    be.forward_greedy(make_step(warm, {1024, 1024}, V), ids.data());
    auto t0 = Clock::now();
    for (int i = 0; i < 16; i += 2) {
      std::vector<Seq> pair(seqs.begin() + i, seqs.begin() + i + 2);
      be.forward_greedy(make_step(pair, {1024, 1024}, V), ids.data());
    }
    const double s = seconds_since(t0);
    const double tok_s = 16 * 1024 / s;
    std::printf(
        "prefill 16 x 1024 tokens (2048 per step): %.0f tok/s, MFU %.1f%% of 989 TFLOP/s "
        "(matmul FLOPs only)\n",
        tok_s, 100.0 * 2.0 * params_matmul * tok_s / 989e12);
    report["prefill_1024_tok_s"] = tok_s;
  }
  write_report();
  return 0;
}
#endif
