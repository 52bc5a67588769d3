// The decode step's matrix products one at a time, on random weights of a model shape: the
// weight bandwidth each reaches against the device copy rate: gemv.cuh's CUDA-core and
// tensor-core kernels (rows 1-8), with the fused input and output the decode layer gives
// each matrix, and cuBLAS (plain product). Also one whole layer's products back to back (qkv, o,
// gate_up, down, repeated for every layer) at each row count up to 8, with and without
// programmatic dependent launch: what the boundaries between kernels cost. Each figure is the
// median of 5 timed runs of 20 passes. The weights come from DRAM: every matrix cycles through
// enough copies to exceed the L2 cache 4x (before 2026-11-21's third round the 20 passes reused
// one copy, and the matrices smaller than L2 read partly from it: those figures were inflated).
//
//   build*/bench/bench_cuda_gemv [llama-3.2-1b|llama-3.1-8b|config.json] [out.json]
#include <cstdio>
#include <string>

#ifndef LOOM_HAVE_CUDA
int main() {
  std::printf("bench_cuda_gemv: built without CUDA (LOOM_CUDA=OFF)\n");
  return 0;
}
#else
#include <algorithm>
#include <cmath>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <vector>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/dummy_config.h"
#include "backend/cuda/gemm.cuh"
#include "backend/cuda/gemv.cuh"
#include "backend/cuda/pdl_launch.cuh"
#include "backend/cuda/random_fill.cuh"
#include "cuda_bench_util.h"

namespace {

using loom::cuda::bf16;
using loom::cuda::GemvArgs;
using loom::cuda::GemvIn;
using loom::cuda::GemvOut;

struct Matrix {
  std::string name;
  int32_t in = 0, out = 0;  // out: outputs per row (gate_up: F, the weight has 2F rows)
  int32_t weight_rows = 0;
  GemvIn input = GemvIn::kBf16;
  GemvOut output = GemvOut::kStoreF32;
  // Copies of the weights, used in turn, so that together they exceed the L2 cache several
  // times over: a product reads its weights from DRAM, as in a decode step (where each layer's
  // matrices are read once), not from L2 left warm by the previous pass.
  std::vector<bf16*> copies;
  mutable size_t next = 0;
  double bytes() const { return 2.0 * weight_rows * in; }
  const bf16* take() const { return copies[next++ % copies.size()]; }
};

// Median milliseconds of `passes` calls of `body`, over 5 timed runs after a warm-up.
double time_ms(const std::function<void()>& body, int passes, cudaStream_t stream) {
  cudaEvent_t e0, e1;
  LOOM_CUDA_CHECK(cudaEventCreate(&e0));
  LOOM_CUDA_CHECK(cudaEventCreate(&e1));
  for (int i = 0; i < 3; ++i) body();
  std::vector<float> ms;
  for (int r = 0; r < 5; ++r) {
    LOOM_CUDA_CHECK(cudaEventRecord(e0, stream));
    for (int i = 0; i < passes; ++i) body();
    LOOM_CUDA_CHECK(cudaEventRecord(e1, stream));
    LOOM_CUDA_CHECK(cudaEventSynchronize(e1));
    float t = 0;
    LOOM_CUDA_CHECK(cudaEventElapsedTime(&t, e0, e1));
    ms.push_back(t / passes);
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
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
  const loom::ModelConfig c = config.value();
  if (!loom::cuda_device_available()) {
    std::printf("bench_cuda_gemv: no CUDA GPU\n");
    return 0;
  }
  cudaDeviceProp prop{};
  LOOM_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  const double copy_bw = loom::bench::measure_copy_bandwidth();
  cudaStream_t stream;
  LOOM_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));

  const int32_t H = c.hidden_size, F = c.intermediate_size, QKV = c.q_dim() + 2 * c.kv_dim();
  std::vector<Matrix> m = {
      {"qkv", H, QKV, QKV, GemvIn::kRmsNorm, GemvOut::kStoreF32, {}},
      {"o", c.q_dim(), H, H, GemvIn::kBf16, GemvOut::kAddF32, {}},
      {"gate_up", H, F, 2 * F, GemvIn::kRmsNorm, GemvOut::kSwiGlu, {}},
      {"down", F, H, H, GemvIn::kBf16, GemvOut::kAddF32, {}},
  };
  uint64_t seed = 7;
  const double cold_bytes = 4.0 * prop.l2CacheSize;
  for (Matrix& x : m) {
    const int n = std::max(1, static_cast<int>(std::ceil(cold_bytes / x.bytes())));
    for (int k = 0; k < n; ++k) {
      bf16* w = nullptr;
      LOOM_CUDA_CHECK(cudaMalloc(&w, size_t(x.weight_rows) * x.in * 2));
      loom::cuda::launch_fill_uniform_bf16(w, int64_t(x.weight_rows) * x.in, ++seed, 0.03f, 0.f,
                                           stream);
      x.copies.push_back(w);
    }
  }
  std::printf(
      "weights read from DRAM: each matrix cycles through copies totalling >= %.0f MB "
      "(4x the %d MB L2)\n",
      cold_bytes / 1e6, prop.l2CacheSize >> 20);
  const int32_t kMaxRows = 64;
  const int32_t widest = std::max({H, F, c.q_dim(), QKV});
  bf16 *x_bf = nullptr, *y_bf = nullptr;
  float *x_f32 = nullptr, *y_f32 = nullptr, *norm = nullptr;
  LOOM_CUDA_CHECK(cudaMalloc(&x_bf, size_t(kMaxRows) * widest * 2));
  LOOM_CUDA_CHECK(cudaMalloc(&y_bf, size_t(kMaxRows) * 2 * widest * 2));
  LOOM_CUDA_CHECK(cudaMalloc(&x_f32, size_t(kMaxRows) * widest * 4));
  LOOM_CUDA_CHECK(cudaMalloc(&y_f32, size_t(kMaxRows) * 2 * widest * 4));
  LOOM_CUDA_CHECK(cudaMalloc(&norm, size_t(widest) * 4));
  loom::cuda::launch_fill_uniform_bf16(x_bf, int64_t(kMaxRows) * widest, 1, 1.f, 0.f, stream);
  loom::cuda::launch_fill_uniform_f32(x_f32, int64_t(kMaxRows) * widest, 2, 1.f, 0.f, stream);
  loom::cuda::launch_fill_uniform_f32(norm, widest, 3, 0.1f, 1.f, stream);
  LOOM_CUDA_CHECK(cudaStreamSynchronize(stream));
  loom::cuda::Gemm gemm;

  // One product of matrix x at `rows` rows by `kernel`: "cuda" / "tensor" (gemv.cuh's kernels,
  // with the matrix's fused input and output) or "cublas" (plain input, f32 / bf16 output).
  auto run = [&](const Matrix& x, int32_t rows, const std::string& kernel) {
    if (kernel != "cublas") {
      loom::cuda::set_gemv_kernel(kernel == "cuda" ? loom::cuda::GemvKernel::kCudaCores
                                                   : loom::cuda::GemvKernel::kTensorCores);
      GemvArgs a;
      a.rows = rows;
      a.in = x.in;
      a.out = x.out;
      a.w = x.take();
      a.input = x.input;
      a.x = x_bf;
      a.x_f32 = x_f32;
      a.norm_w = norm;
      a.eps = 1e-5f;
      a.output = x.output;
      a.y = x.output == GemvOut::kSwiGlu ? static_cast<void*>(y_bf) : static_cast<void*>(y_f32);
      // The residual adds accumulate into y_f32 run after run: harmless for timing.
      loom::cuda::launch_gemv(a, stream);
    } else {
      gemm.run_cublas(x_bf, rows, x.in, x.take(), x.weight_rows, y_f32,
                      x.output != GemvOut::kSwiGlu, stream);
    }
  };

  nlohmann::json report = {
      {"gpu", prop.name}, {"model", source}, {"copy_bandwidth_GBps", copy_bw / 1e9}};
  std::printf("GPU %s; model %s; device copy %.0f GB/s (read+write)\n", prop.name, source.c_str(),
              copy_bw / 1e9);
  std::printf(
      "one product at a time, 20 back to back, programmatic dependent launch on (GB/s of "
      "weights, and %% of the copy rate)\n");
  const std::vector<int32_t> row_counts = {1, 2, 4, 8, 16, 32, 64};
  std::printf("%-8s %7s %7s", "matrix", "MB", "kernel");
  for (int32_t r : row_counts) std::printf(" %11d", r);
  std::printf("\n");
  loom::cuda::set_pdl_enabled(true);
  for (const Matrix& x : m) {
    for (const std::string kernel : {"cuda", "tensor", "cublas"}) {
      std::printf("%-8s %7.1f %7s", x.name.c_str(), x.bytes() / 1e6, kernel.c_str());
      for (int32_t r : row_counts) {
        if ((kernel == "cuda" && r > loom::cuda::kGemvMaxRows) ||
            (kernel == "tensor" && r > loom::cuda::kGemvMaxRows)) {
          std::printf(" %11s", "-");
          continue;
        }
        const double ms = time_ms([&] { run(x, r, kernel); }, 20, stream);
        const double gbps = x.bytes() / (ms * 1e-3) / 1e9;
        std::printf(" %5.0f (%2.0f%%)", gbps, 100.0 * gbps * 1e9 / copy_bw);
        report["products"].push_back({{"matrix", x.name},
                                      {"rows", r},
                                      {"kernel", kernel},
                                      {"us", ms * 1e3},
                                      {"weight_GBps", gbps}});
      }
      std::printf("\n");
    }
  }

  std::printf("\nwhole layers: qkv, o, gate_up, down x %d layers (ms; GB/s of weights)\n",
              c.num_layers);
  double layer_bytes = 0;
  for (const Matrix& x : m) layer_bytes += x.bytes();
  for (int32_t r : {1, 2, 4, 8}) {
    for (const std::string kernel : {"cuda", "tensor"}) {
      for (bool pdl : {false, true}) {
        loom::cuda::set_pdl_enabled(pdl);
        const double ms = time_ms(
            [&] {
              for (int32_t l = 0; l < c.num_layers; ++l)
                for (const Matrix& x : m) run(x, r, kernel);
            },
            3, stream);
        const double gbps = layer_bytes * c.num_layers / (ms * 1e-3) / 1e9;
        std::printf("rows %d %-6s %-5s %8.3f ms %7.0f GB/s (%2.0f%% of copy)\n", r, kernel.c_str(),
                    pdl ? "pdl" : "plain", ms, gbps, 100.0 * gbps * 1e9 / copy_bw);
        report["layers"].push_back(
            {{"rows", r}, {"kernel", kernel}, {"pdl", pdl}, {"ms", ms}, {"weight_GBps", gbps}});
      }
    }
  }
  if (!out_path.empty()) std::ofstream(out_path) << report.dump(2) << "\n";
  return 0;
}
#endif
