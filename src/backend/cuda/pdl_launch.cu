#include <atomic>

#include "backend/cuda/pdl_launch.cuh"

namespace loom::cuda {
namespace {
std::atomic<bool> g_pdl{false};
}

void set_pdl_enabled(bool on) {
  g_pdl.store(on, std::memory_order_relaxed);
}

bool pdl_enabled() {
  return g_pdl.load(std::memory_order_relaxed);
}

}  // namespace loom::cuda
