// Time of one backend forward (no engine, no scheduler) on the default model: a decode step at
// batch sizes 1..64 with a 128-token context each, and a 512-token prefill. Isolates the
// kernels from scheduling and threads. Prints milliseconds per step and tokens/s.
//   bench_forward_step [--model PATH] [--iters 20]
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/kernels/cpu_features.h"
#include "backend/cpu/kernels/matmul.h"
#include "e2e/model_fixture.h"
#include "util/clock.h"
#include "util/openmp_env.h"

using namespace loom;
using namespace loom::testing;

int main(int argc, char** argv) {
  ensure_openmp_wait_policy(argv);
  std::string path = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
  int iters = 20;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::string(argv[i]) == "--model") path = argv[i + 1];
    if (std::string(argv[i]) == "--iters") iters = std::stoi(argv[i + 1]);
  }
  auto m = ModelFile::open(path);
  if (!m.ok()) {
    std::fprintf(stderr, "%s\n", m.error().c_str());
    return 1;
  }
  std::shared_ptr<const ModelFile> model(std::move(m).value());
  cpu::CpuBackendOptions o;
  o.kv_cache_bytes = size_t{512} << 20;
  o.swap_space_bytes = 0;
  auto backend = std::move(cpu::CpuBackend::create(model, o)).value();
  const int vocab = backend->vocab_size();
  std::printf("forward step timings (%s, %d threads, %s activations)\n",
              cpu::isa_name(cpu::active_isa()), cpu::num_threads(),
              cpu::activation_precision_name(cpu::activation_precision()));
  // Prefill 512.
  {
    std::vector<double> ms;
    for (int it = 0; it < 4; ++it) {
      ManualSeq s;
      for (int i = 0; i < 512; ++i) s.tokens.push_back(100 + (i * 37 + it) % 40000);
      for (int b = 0; b < 32; ++b) s.blocks.push_back(b);
      ForwardBatch batch = make_batch({&s}, {512}, 16);
      std::vector<float> logits(vocab);
      const int64_t t0 = now_us();
      backend->forward(batch, logits.data());
      ms.push_back((now_us() - t0) / 1000.0);
    }
    std::sort(ms.begin(), ms.end());
    std::printf("  prefill 512 tokens: %8.2f ms  (%7.1f tok/s)\n", ms[ms.size() / 2],
                512 / ms[ms.size() / 2] * 1000);
  }
  for (int n : {1, 4, 16, 64}) {
    std::vector<ManualSeq> seqs(n);
    std::vector<ManualSeq*> ptrs;
    for (int i = 0; i < n; ++i) {
      for (int t = 0; t < 128; ++t) seqs[i].tokens.push_back(100 + (t * 31 + i * 7) % 40000);
      for (int b = 0; b < 10; ++b) seqs[i].blocks.push_back(i * 10 + b);
      ptrs.push_back(&seqs[i]);
    }
    std::vector<float> logits(static_cast<size_t>(n) * vocab);
    ForwardBatch fill = make_batch(ptrs, std::vector<int32_t>(n, 128), 16);
    backend->forward(fill, logits.data());
    std::vector<double> ms;
    for (int it = 0; it < iters; ++it) {
      for (auto& s : seqs) s.tokens.push_back(7);
      ForwardBatch b = make_batch(ptrs, std::vector<int32_t>(n, 1), 16);
      const int64_t t0 = now_us();
      backend->forward(b, logits.data());
      ms.push_back((now_us() - t0) / 1000.0);
    }
    std::sort(ms.begin(), ms.end());
    const double med = ms[ms.size() / 2];
    std::printf("  decode batch %3d:   %8.2f ms  (%7.1f tok/s)\n", n, med, n / med * 1000);
  }
  return 0;
}
