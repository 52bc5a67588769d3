// Kernel launches with programmatic dependent launch (PDL) when it is on.
//
// Why: a decode step at batch 1 is ~100-200 short kernels, and between two kernels on a stream the
// GPU drains the first grid before it starts the second: a few microseconds a boundary, with the
// memory system idle. With PDL the next grid is launched as soon as the running one lets it
// (pdl_launch_dependents(), or its end): its CTAs take SMs as the old ones retire, do the work
// that needs no earlier result (e.g. prefetching weights) and block in pdl_wait() until the
// previous grid has finished and its writes are visible. Stream capture keeps these edges, so
// graphed decode steps get them too.
//
// The rules for kernels launched this way are at pdl_wait() (cuda_common.cuh). PDL is off until
// set_pdl_enabled(true) (the backend turns it on for compute capability 9.0 and up, unless told
// not to); when off, launch_pdl() is a plain launch.
#pragma once

#include <utility>

#include "backend/cuda/cuda_common.cuh"

namespace loom::cuda {

void set_pdl_enabled(bool on);
bool pdl_enabled();

template <typename... KernelArgs, typename... Args>
void launch_pdl(void (*kernel)(KernelArgs...), dim3 grid, dim3 block, size_t smem_bytes,
                cudaStream_t stream, Args&&... args) {
  cudaLaunchConfig_t config = {};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = smem_bytes;
  config.stream = stream;
  cudaLaunchAttribute attribute[1];
  attribute[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute[0].val.programmaticStreamSerializationAllowed = 1;
  config.attrs = attribute;
  config.numAttrs = pdl_enabled() ? 1 : 0;
  LOOM_CUDA_CHECK(cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...));
}

}  // namespace loom::cuda
