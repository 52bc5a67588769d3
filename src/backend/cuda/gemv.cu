#include "backend/cuda/gemv.cuh"

namespace loom::cuda {
namespace {

constexpr int kWarps = 8;   // per block
constexpr int kUnroll = 4;  // 16-byte weight loads in flight per lane

__device__ __forceinline__ uint4 load_streaming(const uint4* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

__device__ __forceinline__ void fma8(const uint4& w, const uint4& x, float& acc) {
  const __nv_bfloat162* w2 = reinterpret_cast<const __nv_bfloat162*>(&w);
  const __nv_bfloat162* x2 = reinterpret_cast<const __nv_bfloat162*>(&x);
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const float2 a = __bfloat1622float2(w2[j]), b = __bfloat1622float2(x2[j]);
    acc = fmaf(a.x, b.x, acc);
    acc = fmaf(a.y, b.y, acc);
  }
}

template <int M, bool kF32>
__global__ void __launch_bounds__(kWarps * 32)
    gemv_kernel(const bf16* __restrict__ x, int32_t in, const bf16* __restrict__ w, int32_t out,
                void* __restrict__ y) {
  const int lane = threadIdx.x % 32;
  const int32_t chunks = in / 8;  // 16-byte chunks per row
  const uint4* x4 = reinterpret_cast<const uint4*>(x);
  for (int32_t n = blockIdx.x * kWarps + threadIdx.x / 32; n < out; n += gridDim.x * kWarps) {
    const uint4* wrow = reinterpret_cast<const uint4*>(w + static_cast<int64_t>(n) * in);
    float acc[M];
#pragma unroll
    for (int m = 0; m < M; ++m) acc[m] = 0.0f;
    int32_t c = lane;
    for (; c + 32 * (kUnroll - 1) < chunks; c += 32 * kUnroll) {
      uint4 wv[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) wv[u] = load_streaming(wrow + c + 32 * u);
#pragma unroll
      for (int u = 0; u < kUnroll; ++u)
#pragma unroll
        for (int m = 0; m < M; ++m) fma8(wv[u], __ldg(x4 + m * chunks + c + 32 * u), acc[m]);
    }
    for (; c < chunks; c += 32) {
      const uint4 wv = load_streaming(wrow + c);
#pragma unroll
      for (int m = 0; m < M; ++m) fma8(wv, __ldg(x4 + m * chunks + c), acc[m]);
    }
#pragma unroll
    for (int m = 0; m < M; ++m) {
      float v = acc[m];
      for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
      if (lane == 0) {
        if constexpr (kF32) {
          static_cast<float*>(y)[static_cast<int64_t>(m) * out + n] = v;
        } else {
          static_cast<bf16*>(y)[static_cast<int64_t>(m) * out + n] = __float2bfloat16(v);
        }
      }
    }
  }
}

template <int M>
void launch_rows(const bf16* x, int32_t in, const bf16* w, int32_t out, void* y, bool y_f32,
                 cudaStream_t stream) {
  // Enough warps to keep every SM's memory pipeline full, never more than one per output row.
  static int num_sms = [] {
    int dev = 0, n = 0;
    LOOM_CUDA_CHECK(cudaGetDevice(&dev));
    LOOM_CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev));
    return n;
  }();
  const int64_t blocks = std::min<int64_t>(ceil_div(out, kWarps), int64_t{num_sms} * 8);
  if (y_f32) {
    gemv_kernel<M, true><<<blocks, kWarps * 32, 0, stream>>>(x, in, w, out, y);
  } else {
    gemv_kernel<M, false><<<blocks, kWarps * 32, 0, stream>>>(x, in, w, out, y);
  }
  LOOM_CUDA_CHECK_LAUNCH();
}

}  // namespace

void launch_gemv(const bf16* x, int32_t rows, int32_t in, const bf16* w, int32_t out, void* y,
                 bool y_f32, cudaStream_t stream) {
  LOOM_CHECK(rows >= 1 && rows <= kGemvMaxRows, "gemv: %d rows", rows);
  LOOM_CHECK(in % 8 == 0 && in > 0 && out > 0, "gemv: in %d, out %d", in, out);
  LOOM_CHECK(reinterpret_cast<uintptr_t>(x) % 16 == 0 && reinterpret_cast<uintptr_t>(w) % 16 == 0);
  switch (rows) {
    case 1:
      return launch_rows<1>(x, in, w, out, y, y_f32, stream);
    case 2:
      return launch_rows<2>(x, in, w, out, y, y_f32, stream);
    case 3:
      return launch_rows<3>(x, in, w, out, y, y_f32, stream);
    case 4:
      return launch_rows<4>(x, in, w, out, y, y_f32, stream);
    case 5:
      return launch_rows<5>(x, in, w, out, y, y_f32, stream);
    case 6:
      return launch_rows<6>(x, in, w, out, y, y_f32, stream);
    case 7:
      return launch_rows<7>(x, in, w, out, y, y_f32, stream);
    default:
      return launch_rows<8>(x, in, w, out, y, y_f32, stream);
  }
}

}  // namespace loom::cuda
