#include <algorithm>

#include "backend/cuda/gemv_common.cuh"
#include "backend/cuda/mma_sm80.cuh"
#include "backend/cuda/pdl_launch.cuh"

namespace loom::cuda {
using namespace gemv_detail;
namespace {

// ---- The tensor-core small-batch product. ----
//
// Why: the CUDA-core kernel (gemv.cu) widens every weight and every x value to f32 and spends
// 2 M FMAs per weight pair; from 4 rows on it is bound by instructions, not memory (measured
// on an H200: 8 rows at 20-45% of the copy rate). mma.m16n8k16 takes 16 weight rows x 16 k
// against 8 tokens in one instruction, so the instruction count per weight byte no longer
// grows with the rows.
//
// Tile: a CTA owns 16 weight rows (paired outputs: the two rows of 8 outputs, fragment rows g and
// g + 8, so one lane holds both rows of the same output) and all of k; its 8 warps split k in
// 32-wide chunks, warp w taking chunks w, w + 8, ...; the warps' partial sums meet in shared
// memory at the end. C^T [16 rows x 8 tokens] += W [16 x 16 k] x^T [16 k x 8 tokens].
//
// Operands straight from memory, 16 bytes a lane: k is contracted in a permuted order (the
// product does not change). Lane (g = L / 4, c = L % 4) loads, for 32-k chunk j, the 8 values
// k = 32 j + 8 c + [0, 8) of weight rows g (lo) and g + 8 (hi), and the same 8 values of token
// g's x. Words 0-1 of those 16 bytes are the first mma's k-step (a0 = lo.x, a1 = hi.x,
// a2 = lo.y, a3 = hi.y; b0 = x.x, b1 = x.y), words 2-3 the second's. So every weight byte is
// loaded once, 16 bytes at a time, coalesced in 64-byte row segments.
//
// The first batch of weight loads is issued before pdl_wait(): with programmatic dependent
// launch it overlaps the previous kernel's end.
constexpr int kChunk = 32;  // k values per chunk (4 lanes x 8)

constexpr int kU = 8;  // chunks in flight per warp: 2 x 16 bytes a lane each

template <GemvIn kIn, GemvOut kOut>
__global__ void __launch_bounds__(kThreads) gemv_mma_kernel(GemvArgs a) {
  constexpr bool kPair = kPaired<kOut>;
  extern __shared__ uint4 x_smem[];       // kRmsNorm: [rows][in / 8] bf16 chunks
  __shared__ float4 partial[kWarps][32];  // each warp's accumulators
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, c = lane % 4;

  // Weight rows of fragment rows g (lo) and g + 8 (hi).
  int64_t lo, hi;
  bool lo_ok, hi_ok;
  if constexpr (kPair) {
    const int32_t n = blockIdx.x * 8 + g;  // the output
    lo_ok = hi_ok = n < a.out;
    lo = hi = 0;
    if (lo_ok) pair_rows<kOut>(a, n, lo, hi);
  } else {
    lo = int64_t{blockIdx.x} * 16 + g;
    hi = lo + 8;
    lo_ok = lo < a.out;
    hi_ok = hi < a.out;
  }
  const uint4* w_lo = reinterpret_cast<const uint4*>(a.w + lo * a.in);
  const uint4* w_hi = reinterpret_cast<const uint4*>(a.w + hi * a.in);
  const int32_t num_chunks = (a.in + kChunk - 1) / kChunk;
  const uint4 zero = make_uint4(0, 0, 0, 0);
  // Chunk j's 16 bytes of this lane, zeros past the row or the matrix.
  auto load_w = [&](int32_t j, uint4& l, uint4& h) {
    const int32_t k = j * kChunk + 8 * c;
    const bool in_row = j < num_chunks && k < a.in;
    l = in_row && lo_ok ? load_streaming(w_lo + k / 8) : zero;
    h = in_row && hi_ok ? load_streaming(w_hi + k / 8) : zero;
  };

  uint4 wl[kU], wh[kU];
#pragma unroll
  for (int u = 0; u < kU; ++u) load_w(warp + kWarps * u, wl[u], wh[u]);
  pdl_wait();
  const uint4* x4 = reinterpret_cast<const uint4*>(a.x);
  if constexpr (kIn == GemvIn::kRmsNorm) {
    if (a.rows == 1)
      rmsnorm_to_shared<1>(a, x_smem);
    else if (a.rows == 2)
      rmsnorm_to_shared<2>(a, x_smem);
    else if (a.rows <= 4)
      rmsnorm_to_shared<4>(a, x_smem);  // rows past a.rows: never read
    else
      rmsnorm_to_shared<8>(a, x_smem);
    x4 = x_smem;
  }
  pdl_launch_dependents();
  const int32_t chunks_per_row = a.in / 8;

  float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  for (int32_t j0 = warp; j0 < num_chunks; j0 += kWarps * kU) {
#pragma unroll
    for (int u = 0; u < kU; ++u) {
      const int32_t j = j0 + kWarps * u;
      const int32_t k = j * kChunk + 8 * c;
      if (j >= num_chunks) break;  // warp-uniform
      uint4 xv = zero;             // token g's 8 values (the B fragment's column g)
      if (g < a.rows && k < a.in) {
        if constexpr (kIn == GemvIn::kRmsNorm) {
          xv = x4[g * chunks_per_row + k / 8];
        } else {
          xv = __ldg(x4 + int64_t{g} * chunks_per_row + k / 8);
        }
      }
      const uint32_t a0[4] = {wl[u].x, wh[u].x, wl[u].y, wh[u].y};
      const uint32_t a1[4] = {wl[u].z, wh[u].z, wl[u].w, wh[u].w};
      mma_bf16(acc, a0, xv.x, xv.y);
      mma_bf16(acc, a1, xv.z, xv.w);
    }
#pragma unroll
    for (int u = 0; u < kU; ++u) load_w(j0 + kWarps * (kU + u), wl[u], wh[u]);
  }

  // The 8 warps' sums: acc of lane (g, c) = C[row g / g + 8][tokens 2c, 2c + 1].
  partial[warp][lane] = make_float4(acc[0], acc[1], acc[2], acc[3]);
  __syncthreads();
  constexpr int kPerLane = kPair ? 2 : 4;  // outputs per lane's fragment
  for (int i = threadIdx.x; i < 32 * kPerLane; i += kThreads) {
    // i -> (lane l, element e); paired: e in {0, 1} (token parity), first row e, second e + 2.
    const int l = i / kPerLane, e = i % kPerLane;
    float v = 0.0f, up = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      const float* p = reinterpret_cast<const float*>(&partial[w][l]);
      v += p[e];
      if constexpr (kPair) up += p[e + 2];
    }
    const int32_t token = 2 * (l % 4) + (e & 1);
    if (token >= a.rows) continue;
    const int32_t lg = l / 4;
    if constexpr (kPair) {
      const int32_t n = blockIdx.x * 8 + lg;
      if (n >= a.out) continue;
      if constexpr (kOut == GemvOut::kSwiGlu) {
        static_cast<bf16*>(a.y)[int64_t{token} * a.out + n] =
            __float2bfloat16(v / (1.0f + __expf(-v)) * up);
      } else {
        rope_store(a, n, token, v, up);
      }
    } else {
      const int64_t n = int64_t{blockIdx.x} * 16 + lg + (e >= 2 ? 8 : 0);
      if (n >= a.out) continue;
      const int64_t at = int64_t{token} * a.out + n;
      if constexpr (kOut == GemvOut::kStoreF32) {
        static_cast<float*>(a.y)[at] = v;
      } else if constexpr (kOut == GemvOut::kStoreBf16) {
        static_cast<bf16*>(a.y)[at] = __float2bfloat16(v);
      } else {
        static_cast<float*>(a.y)[at] += v;
      }
    }
  }
}

template <GemvIn kIn, GemvOut kOut>
void launch_kernel(const GemvArgs& a, cudaStream_t stream) {
  auto* kernel = gemv_mma_kernel<kIn, kOut>;
  if constexpr (kIn == GemvIn::kRmsNorm) {
    static const bool once = [kernel] {
      LOOM_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           static_cast<int>(kMaxNormSmemBytes)));
      return true;
    }();
    (void)once;
  }
  const size_t smem =
      kIn == GemvIn::kRmsNorm ? static_cast<size_t>(a.rows) * static_cast<size_t>(a.in) * 2 : 0;
  const int64_t tiles = ceil_div(a.out, kPaired<kOut> ? 8 : 16);
  launch_pdl(kernel, dim3(static_cast<unsigned>(tiles)), dim3(kThreads), smem, stream, a);
}

template <GemvIn kIn>
void launch_out(const GemvArgs& a, cudaStream_t stream) {
  switch (a.output) {
    case GemvOut::kStoreF32:
      return launch_kernel<kIn, GemvOut::kStoreF32>(a, stream);
    case GemvOut::kStoreBf16:
      return launch_kernel<kIn, GemvOut::kStoreBf16>(a, stream);
    case GemvOut::kAddF32:
      return launch_kernel<kIn, GemvOut::kAddF32>(a, stream);
    case GemvOut::kSwiGlu:
      return launch_kernel<kIn, GemvOut::kSwiGlu>(a, stream);
    case GemvOut::kRopeKv:
      return launch_kernel<kIn, GemvOut::kRopeKv>(a, stream);
  }
}

}  // namespace

namespace gemv_detail {

void launch_gemv_mma(const GemvArgs& a, cudaStream_t stream) {
  LOOM_CHECK(a.rows >= 1 && a.rows <= 8, "gemv: %d rows", a.rows);
  if (a.input == GemvIn::kRmsNorm) return launch_out<GemvIn::kRmsNorm>(a, stream);
  return launch_out<GemvIn::kBf16>(a, stream);
}

}  // namespace gemv_detail
}  // namespace loom::cuda
