// Shared helpers of the CUDA backend: error checks and the bf16 type. Every CUDA call's status is
// checked; a failing call on the device is a broken invariant (out of memory after sizing, a bad
// launch), so it aborts loudly with the call and the driver's message.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "util/check.h"

namespace loom::cuda {

using bf16 = __nv_bfloat16;

#define LOOM_CUDA_CHECK(expr)                                  \
  do {                                                         \
    const cudaError_t loom_cuda_err_ = (expr);                 \
    LOOM_CHECK(loom_cuda_err_ == cudaSuccess, "%s: %s", #expr, \
               cudaGetErrorString(loom_cuda_err_));            \
  } while (0)

// After every kernel launch: catches bad launch configurations at the launch site.
#define LOOM_CUDA_CHECK_LAUNCH() LOOM_CUDA_CHECK(cudaGetLastError())

inline int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

}  // namespace loom::cuda
