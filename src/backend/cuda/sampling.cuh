// Sampling on the GPU so only token ids cross PCIe: greedy (argmax) for now.
#pragma once

#include "backend/cuda/cuda_common.cuh"

namespace loom::cuda {

// ids[r] = argmax over logits[r][0..vocab) (lowest index on ties); logits f32 [rows][vocab].
void launch_argmax(const float* logits, int32_t num_rows, int32_t vocab, int32_t* ids,
                   cudaStream_t stream);

}  // namespace loom::cuda
