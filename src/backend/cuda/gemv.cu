#include <algorithm>
#include <atomic>

#include "backend/cuda/gemv.cuh"
#include "backend/cuda/gemv_common.cuh"
#include "backend/cuda/pdl_launch.cuh"

namespace loom::cuda {
using namespace gemv_detail;
namespace {

template <int M, GemvIn kIn, GemvOut kOut>
__global__ void __launch_bounds__(kThreads) gemv_kernel(GemvArgs a, bool preload) {
  extern __shared__ uint4 x_smem[];  // kRmsNorm: [M][in / 8] chunks of 8 bf16
  // Paired outputs: a warp streams both rows of output n together (pair_rows).
  constexpr int kRowsPerWarp = kPaired<kOut> ? 2 : 1;
  // 16-byte weight loads in flight per lane and weight row (more when few accumulators).
  constexpr int kUnroll = (M <= 2 ? 8 : 4) / kRowsPerWarp;
  const int lane = threadIdx.x % 32;
  const int32_t chunks = a.in / 8;  // 16-byte chunks per row
  const int32_t n_first = blockIdx.x * kWarps + threadIdx.x / 32;
  const int32_t n_stride = gridDim.x * kWarps;

  // The weights are constant through a step: ask L2 for this warp's first row(s) while the
  // previous kernel may still be running.
  auto weight_row = [&](int32_t n, int r) -> int64_t {
    if constexpr (kPaired<kOut>) {
      int64_t lo, hi;
      pair_rows<kOut>(a, n, lo, hi);
      return r == 0 ? lo : hi;
    } else {
      return n;
    }
  };
  if (n_first < a.out) {
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      const char* row = reinterpret_cast<const char*>(a.w + weight_row(n_first, r) * a.in);
      for (int32_t b = lane * 128; b < a.in * 2; b += 32 * 128) prefetch_l2(row + b);
    }
  }
  // And load the first unrolled block of that row into registers now (warp-uniform condition:
  // the block exists for every lane), so the first loads are in flight through the wait and the
  // norm's prologue rather than issued after them.
  uint4 pre[kRowsPerWarp][kUnroll];
  bool use_pre = preload && n_first < a.out && 32 * kUnroll <= chunks;
  if (use_pre) {
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      const uint4* row = reinterpret_cast<const uint4*>(a.w + weight_row(n_first, r) * a.in);
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) pre[r][u] = load_streaming(row + lane + 32 * u);
    }
  }
  pdl_wait();
  const uint4* x4 = reinterpret_cast<const uint4*>(a.x);
  if constexpr (kIn == GemvIn::kRmsNorm) {
    rmsnorm_to_shared<M>(a, x_smem);
    x4 = x_smem;
  }
  pdl_launch_dependents();
  auto load_x = [&](int m, int32_t c) -> uint4 {
    if constexpr (kIn == GemvIn::kRmsNorm) {
      return x4[m * chunks + c];
    } else {
      return __ldg(x4 + m * chunks + c);
    }
  };

  for (int32_t n = n_first; n < a.out; n += n_stride) {
    const uint4* wrow[kRowsPerWarp];
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r)
      wrow[r] = reinterpret_cast<const uint4*>(a.w + weight_row(n, r) * a.in);
    float acc[kRowsPerWarp][M];
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r)
#pragma unroll
      for (int m = 0; m < M; ++m) acc[r][m] = 0.0f;
    int32_t c = lane;
    for (; c + 32 * (kUnroll - 1) < chunks; c += 32 * kUnroll) {
      uint4 wv[kRowsPerWarp][kUnroll];
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r)
#pragma unroll
        for (int u = 0; u < kUnroll; ++u)
          wv[r][u] = use_pre ? pre[r][u] : load_streaming(wrow[r] + c + 32 * u);
      use_pre = false;
#pragma unroll
      for (int u = 0; u < kUnroll; ++u)
#pragma unroll
        for (int m = 0; m < M; ++m) {
          const uint4 xv = load_x(m, c + 32 * u);
#pragma unroll
          for (int r = 0; r < kRowsPerWarp; ++r) fma8(wv[r][u], xv, acc[r][m]);
        }
    }
    for (; c < chunks; c += 32) {
      uint4 wv[kRowsPerWarp];
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r) wv[r] = load_streaming(wrow[r] + c);
#pragma unroll
      for (int m = 0; m < M; ++m) {
        const uint4 xv = load_x(m, c);
#pragma unroll
        for (int r = 0; r < kRowsPerWarp; ++r) fma8(wv[r], xv, acc[r][m]);
      }
    }
#pragma unroll
    for (int m = 0; m < M; ++m) {
      float v[kRowsPerWarp];
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r) v[r] = warp_sum(acc[r][m]);
      if (lane != m) continue;  // lane m writes row m
      const int64_t at = static_cast<int64_t>(m) * a.out + n;
      if constexpr (kOut == GemvOut::kStoreF32) {
        static_cast<float*>(a.y)[at] = v[0];
      } else if constexpr (kOut == GemvOut::kStoreBf16) {
        static_cast<bf16*>(a.y)[at] = __float2bfloat16(v[0]);
      } else if constexpr (kOut == GemvOut::kAddF32) {
        static_cast<float*>(a.y)[at] += v[0];
      } else if constexpr (kOut == GemvOut::kRopeKv) {
        rope_store(a, n, m, v[0], v[kRowsPerWarp - 1]);
      } else {
        const float g = v[0], u = v[kRowsPerWarp - 1];
        static_cast<bf16*>(a.y)[at] = __float2bfloat16(g / (1.0f + __expf(-g)) * u);
      }
    }
  }
}

int device_smem_per_sm() {
  static const int n = [] {
    int dev = 0, bytes = 0;
    LOOM_CUDA_CHECK(cudaGetDevice(&dev));
    LOOM_CUDA_CHECK(
        cudaDeviceGetAttribute(&bytes, cudaDevAttrMaxSharedMemoryPerMultiprocessor, dev));
    return bytes;
  }();
  return n;
}

template <int M, GemvIn kIn, GemvOut kOut>
void launch_kernel(const GemvArgs& a, cudaStream_t stream) {
  auto* kernel = gemv_kernel<M, kIn, kOut>;
  // Resident CTAs per SM without dynamic shared memory (registers, threads, the static arrays);
  // asked once per instance. kRmsNorm instances may use up to kMaxNormSmemBytes.
  static const int base_blocks = [kernel] {
    if constexpr (kIn == GemvIn::kRmsNorm)
      LOOM_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           static_cast<int>(kMaxNormSmemBytes)));
    int n = 0;
    LOOM_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kernel, kThreads, 0));
    return std::max(n, 1);
  }();
  const size_t smem =
      kIn == GemvIn::kRmsNorm ? static_cast<size_t>(M) * static_cast<size_t>(a.in) * 2 : 0;
  int per_sm = base_blocks;
  if (smem > 0)  // 1 KiB a CTA is reserved by the hardware, plus the static partial sums
    per_sm = std::clamp(device_smem_per_sm() / static_cast<int>(smem + 2048), 1, per_sm);
  // Every warp gets the same number of rows (rounds), and the grid fits on the GPU at once.
  const int64_t capacity = int64_t{device_sms()} * per_sm * kWarps;
  const int64_t rounds = ceil_div(a.out, capacity);
  const int64_t warps = ceil_div(a.out, rounds);
  const dim3 grid(static_cast<unsigned>(ceil_div(warps, kWarps)));
  launch_pdl(kernel, grid, dim3(kThreads), smem, stream, a, gemv_preload());
}

template <int M, GemvIn kIn>
void launch_out(const GemvArgs& a, cudaStream_t stream) {
  switch (a.output) {
    case GemvOut::kStoreF32:
      return launch_kernel<M, kIn, GemvOut::kStoreF32>(a, stream);
    case GemvOut::kStoreBf16:
      return launch_kernel<M, kIn, GemvOut::kStoreBf16>(a, stream);
    case GemvOut::kAddF32:
      return launch_kernel<M, kIn, GemvOut::kAddF32>(a, stream);
    case GemvOut::kSwiGlu:
      return launch_kernel<M, kIn, GemvOut::kSwiGlu>(a, stream);
    case GemvOut::kRopeKv:
      return launch_kernel<M, kIn, GemvOut::kRopeKv>(a, stream);
  }
}

template <int M>
void launch_rows(const GemvArgs& a, cudaStream_t stream) {
  if (a.input == GemvIn::kRmsNorm) return launch_out<M, GemvIn::kRmsNorm>(a, stream);
  return launch_out<M, GemvIn::kBf16>(a, stream);
}

}  // namespace

namespace {
std::atomic<GemvKernel> g_kernel{GemvKernel::kAuto};
}

void set_gemv_kernel(GemvKernel kernel) {
  g_kernel.store(kernel, std::memory_order_relaxed);
}

GemvKernel gemv_kernel_choice() {
  return g_kernel.load(std::memory_order_relaxed);
}

namespace {
std::atomic<bool> g_preload{true};
}

void set_gemv_preload(bool on) {
  g_preload.store(on, std::memory_order_relaxed);
}

bool gemv_preload() {
  return g_preload.load(std::memory_order_relaxed);
}

bool gemv_supports(int32_t rows, int32_t in, GemvIn input) {
  if (rows < 1 || rows > kGemvMaxRows || in <= 0 || in % 8 != 0) return false;
  return input != GemvIn::kRmsNorm || int64_t{rows} * in * 2 <= kMaxNormSmemBytes;
}

void launch_gemv(const GemvArgs& a, cudaStream_t stream) {
  LOOM_CHECK(gemv_supports(a.rows, a.in, a.input), "gemv: %d rows of %d", a.rows, a.in);
  LOOM_CHECK(a.out > 0 && a.w && (a.y || a.output == GemvOut::kRopeKv));
  if (a.output == GemvOut::kRopeKv) {
    LOOM_CHECK(a.rope.cache.dtype == KvCacheDtype::kBf16 && a.rope.q_out && a.rope.kv_cache &&
                   a.rope.positions && a.rope.slot_mapping && a.rope.inv_freq,
               "gemv: the fused RoPE + KV write needs a bf16 cache and every rope field");
    LOOM_CHECK(int64_t{a.out} * 2 == int64_t{a.rope.num_heads + 2 * a.rope.cache.num_kv_heads} *
                                         a.rope.cache.head_dim,
               "gemv: %d rotation pairs do not match the heads", a.out);
  }
  LOOM_CHECK(reinterpret_cast<uintptr_t>(a.w) % 16 == 0);
  if (a.input == GemvIn::kBf16) {
    LOOM_CHECK(a.x && reinterpret_cast<uintptr_t>(a.x) % 16 == 0);
  } else {
    LOOM_CHECK(a.x_f32 && a.norm_w && reinterpret_cast<uintptr_t>(a.x_f32) % 16 == 0 &&
               reinterpret_cast<uintptr_t>(a.norm_w) % 16 == 0);
  }
  const GemvKernel choice = gemv_kernel_choice();
  const bool tensor_cores = choice == GemvKernel::kTensorCores ||
                            (choice == GemvKernel::kAuto && a.rows >= kGemvTensorCoreMinRows);
  if (tensor_cores) return launch_gemv_mma(a, stream);
  switch (a.rows) {
    case 1:
      return launch_rows<1>(a, stream);
    case 2:
      return launch_rows<2>(a, stream);
    case 3:
      return launch_rows<3>(a, stream);
    case 4:
      return launch_rows<4>(a, stream);
    case 5:
      return launch_rows<5>(a, stream);
    case 6:
      return launch_rows<6>(a, stream);
    case 7:
      return launch_rows<7>(a, stream);
    default:
      return launch_rows<8>(a, stream);
  }
}

void launch_gemv(const bf16* x, int32_t rows, int32_t in, const bf16* w, int32_t out, void* y,
                 bool y_f32, cudaStream_t stream) {
  GemvArgs a;
  a.rows = rows;
  a.in = in;
  a.out = out;
  a.w = w;
  a.x = x;
  a.output = y_f32 ? GemvOut::kStoreF32 : GemvOut::kStoreBf16;
  a.y = y;
  launch_gemv(a, stream);
}

}  // namespace loom::cuda
