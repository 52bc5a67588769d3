// matmul throughput for the default model's shapes (SmolLM2-135M: hidden 576, 3 KV heads of 64,
// ffn 1536, vocab 49152) with Q4_1 and Q8_0 weights, per ISA, at decode (m = 1, 16, 64) and
// prefill (m = 512) batch sizes. Reports GFLOP/s (2 m k n per call) and weight GB/s. Names ending
// in /int16 run with 16-bit activations (set_activation_precision) for Q4_1 and Q8_0 on the SIMD
// ISAs; compare with the same name without the suffix.
//   build-x/bench_kernels [--benchmark_filter=Q4_1/576x1536]   (OMP_NUM_THREADS sets threads)
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "backend/cpu/kernels/cpu_features.h"
#include "backend/cpu/kernels/matmul.h"
#include "unit/kernels/kernel_test_util.h"

namespace {

using loom::DType;
using loom::cpu::Isa;

struct Shape {
  const char* name;
  int64_t k, n_out;
};

const Shape kShapes[] = {
    {"attn_q_o", 576, 576},  {"attn_kv", 576, 192},  {"ffn_up_gate", 576, 1536},
    {"ffn_down", 1536, 576}, {"output", 576, 49152},
};

void bench_matmul(benchmark::State& state, DType type, Shape shape, int64_t m, Isa isa,
                  loom::cpu::ActivationPrecision precision) {
  loom::cpu::testing::RandomWeights w(type, shape.k, shape.n_out, 7);
  const std::vector<float> x =
      loom::cpu::testing::random_floats(static_cast<size_t>(m * shape.k), 11);
  std::vector<float> y(static_cast<size_t>(m * shape.n_out));
  const Isa saved = loom::cpu::active_isa();
  const loom::cpu::ActivationPrecision saved_precision = loom::cpu::activation_precision();
  loom::cpu::set_active_isa(isa);
  loom::cpu::set_activation_precision(precision);
  for (auto _ : state) {
    loom::cpu::matmul(w.view, x.data(), m, y.data());
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  loom::cpu::set_activation_precision(saved_precision);
  loom::cpu::set_active_isa(saved);
  const double flops = 2.0 * static_cast<double>(m * shape.k * shape.n_out);
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["wGB/s"] = benchmark::Counter(static_cast<double>(w.view.nbytes) * 1e-9,
                                               benchmark::Counter::kIsIterationInvariantRate);
  state.counters["threads"] = loom::cpu::num_threads();
}

}  // namespace

int main(int argc, char** argv) {
  for (Isa isa : {Isa::kAvx512, Isa::kAvx2, Isa::kScalar}) {
    if (!loom::cpu::isa_supported(isa)) continue;
    for (DType type : {DType::kQ4_1, DType::kQ8_0}) {
      for (const Shape& shape : kShapes) {
        for (int64_t m : {1, 16, 64, 512}) {
          if (isa == Isa::kScalar && m > 16) continue;  // reference only: too slow to matter
          for (auto precision :
               {loom::cpu::ActivationPrecision::kInt8, loom::cpu::ActivationPrecision::kInt16}) {
            const bool int16 = precision == loom::cpu::ActivationPrecision::kInt16;
            if (int16 && isa == Isa::kScalar) continue;
            const std::string name = std::string(loom::cpu::isa_name(isa)) + "/" +
                                     loom::dtype_name(type) + "/" + shape.name + "_" +
                                     std::to_string(shape.k) + "x" + std::to_string(shape.n_out) +
                                     "/m=" + std::to_string(m) + (int16 ? "/int16" : "");
            benchmark::RegisterBenchmark(name.c_str(), bench_matmul, type, shape, m, isa, precision)
                ->Unit(benchmark::kMicrosecond)
                ->UseRealTime();
          }
        }
      }
    }
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
