// Fused residual add + RMSNorm: the residual stream stays in f32, the normalised rows go out as
// bf16 for the next matrix product. One pass over the row instead of three (add, reduce, scale).
#pragma once

#include "backend/cuda/cuda_common.cuh"

namespace loom::cuda {

// For r in [0, num_rows): src = rows ? rows[r] : r;
//   x[src] += delta[src]           (when delta != nullptr; x updated in place)
//   out[r]  = x[src] / sqrt(mean(x[src]^2) + eps) * weight      (bf16)
// x, delta: [*][dim] f32; weight: [dim] f32; out: [num_rows][dim] bf16.
// `rows` (device, may be null) gathers rows, e.g. the rows whose logits are wanted.
void launch_add_rmsnorm(float* x, const float* delta, const int32_t* rows, const float* weight,
                        int32_t num_rows, int32_t dim, float eps, bf16* out, cudaStream_t stream);

// x[t] = f32(table[tokens[t]]): table [vocab][dim] bf16, x [num_tokens][dim] f32.
void launch_embed(const bf16* table, const int32_t* tokens, int32_t num_tokens, int32_t dim,
                  float* x, cudaStream_t stream);

}  // namespace loom::cuda
