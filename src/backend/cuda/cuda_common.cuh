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

// The current device's SM count, looked up once (the backend runs on one device a process).
inline int device_sms() {
  static const int n = [] {
    int dev = 0, sms = 0;
    LOOM_CUDA_CHECK(cudaGetDevice(&dev));
    LOOM_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
    return sms;
  }();
  return n;
}

// Programmatic dependent launch (Hopper; no-ops on older GPUs). A kernel launched with
// launch_pdl() (pdl_launch.cuh) may start while the previous kernel on its stream is still
// running; it must call pdl_wait() before it reads anything an earlier kernel wrote or writes
// anything an earlier kernel reads, and before any early return (a grid that finished without
// waiting would let the next kernel overtake the one before it). Work that touches only constant
// data (weights) may come before the wait: that is the point. pdl_launch_dependents() lets the
// next kernel start launching early; without it, that happens when this grid ends.
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" :::);
#endif
}

}  // namespace loom::cuda
