// Overlapped steps (Backend::supports_overlap()): step N+1 is launched before the host has step
// N's sampled tokens, so its decode inputs are written on the device, from the ids the sampler of
// step N left in its device buffer (DeviceSampler::device_ids()), into the uploaded token array
// before the layers (or the decode graph) read it.
#pragma once

#include "backend/cuda/cuda_common.cuh"

namespace loom::cuda {

// tokens[pairs[2 i]] = ids[pairs[2 i + 1]] for i < num_pending. tokens: [T] int32, the step's
// uploaded token ids; pairs: [num_pending][2] int32 (index into tokens, row of the previous
// step), uploaded with the step's inputs; ids: [rows of the previous step] int32, the sampler's
// output. A plain launch (no PDL), so it starts after the upload and the previous step's sampler
// have finished; the first layer kernel waits for it (pdl_wait before reading tokens). Nothing
// is launched when num_pending == 0.
void launch_fill_pending_tokens(int32_t* tokens, const int32_t* pairs, int32_t num_pending,
                                const int32_t* ids, cudaStream_t stream);

}  // namespace loom::cuda
