// SwiGLU activation between the fused gate/up product and the down product.
#pragma once

#include "backend/cuda/cuda_common.cuh"

namespace loom::cuda {

// gate_up: [T][2 * ffn] bf16 (gate then up, as the fused weight's rows are ordered);
// out: [T][ffn] bf16 = silu(gate) * up, computed in f32.
void launch_swiglu(const bf16* gate_up, int32_t num_tokens, int32_t ffn, bf16* out,
                   cudaStream_t stream);

}  // namespace loom::cuda
