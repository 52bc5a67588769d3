// Deterministic random fills on the device, for `--load-format dummy` weights and tests: a
// counter-based hash of (seed, index), so the values do not depend on the launch shape.
#pragma once

#include "backend/cuda/cuda_common.cuh"

namespace loom::cuda {

// p[i] = offset + scale * u, u uniform in [-1, 1).
void launch_fill_uniform_bf16(bf16* p, int64_t n, uint64_t seed, float scale, float offset,
                              cudaStream_t stream);
void launch_fill_uniform_f32(float* p, int64_t n, uint64_t seed, float scale, float offset,
                             cudaStream_t stream);

}  // namespace loom::cuda
