// The consumer warps of the persistent decode kernel (decode_persistent.cuh): the products of
// the landed ring stages with the phase's input (on the tensor cores, per-warp row sums), and the
// phase's input into shared memory (the RMSNorm of x, or a vector of bf16 pairs), both read from
// the exchange words. Included by decode_persistent.cu only.
#pragma once

#include "backend/cuda/decode_persistent_device.cuh"
#include "backend/cuda/mma_sm80.cuh"

namespace loom::cuda::persistent_detail {

// One contiguous weight range of a phase: `bytes` from `src`, rows of `row_bytes`, whose sums go
// to acc[acc_base + row].
struct Segment {
  const char* src;
  int32_t bytes;
  int32_t row_bytes;
  int32_t acc_base;
};

#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 900

// The consumer side of the ring: the next stage is in `slot`, in the barriers' phase `parity`
// (flipping each time the slot wraps).
struct Ring {
  char* stages;
  uint64_t* full;   // [stages] completed by the producer's copy
  uint64_t* empty;  // [stages] one arrival per consumer warp
  uint32_t count;
  uint32_t slot, parity;
  bool trace;                 // count waiting cycles (thread 0)
  bool no_math;               // kPersistentDiagNoMath
  bool cuda_cores;            // kPersistentDiagCudaCoreDot
  unsigned long long waited;  // cycles thread 0 waited for stages to land
};

// This warp is done reading the ring's current stage (every lane's reads before the arrival).
__device__ __forceinline__ void release_stage(const Ring& ring) {
  __syncwarp();
  if (threadIdx.x % 32 == 0) mbar_arrive(ring.empty + ring.slot);
}

// A warp's running dot product: the row it is summing and each lane's partial sums. Rows are
// reduced across the warp only when the warp moves on to another row (or the phase ends), into
// the warp's own row sums acc_warp[row] (no atomics: the sums, and so the step's results, do not
// depend on the warps' timing).
struct RowSum {
  int32_t row = -1;  // segment row, -1: none yet
  int32_t acc_base = 0;
  float partial = 0.0f;  // CUDA-core products
  // Tensor-core sums, two chains each (even and odd slices), so that a stage's products are two
  // dependent chains of four mma deep instead of eight (H200, 1B: 0.651 -> 0.647 ms at 192 keys;
  // elsewhere within noise).
  float d1[2][4] = {}, d2[2][4] = {};
};

__device__ __forceinline__ void flush(RowSum& rs, float* acc_warp) {
  if (rs.row < 0) return;
  // The tensor-core sums (mma_tiles): lane 4g + g/2 holds the g-th and (8+g)-th pieces.
  const int lane = threadIdx.x % 32, g = lane / 4, c = lane % 4;
  float v = rs.partial;
  if (c == g / 2)
#pragma unroll
    for (int h = 0; h < 2; ++h)
      v += (g % 2 ? rs.d1[h][1] : rs.d1[h][0]) + (g % 2 ? rs.d2[h][3] : rs.d2[h][2]);
  v = warp_sum(v);
  if (lane == 0) acc_warp[rs.acc_base + rs.row] += v;
  rs.row = -1;
  rs.partial = 0.0f;
#pragma unroll
  for (int h = 0; h < 2; ++h)
#pragma unroll
    for (int i = 0; i < 4; ++i) rs.d1[h][i] = rs.d2[h][i] = 0.0f;
}

// The dot product of a warp's 4 KB of one row (w, lane's address: + 16 * lane) with x (the
// matching 2048 values, lane's address + 8 * lane), on the tensor cores: each 512-byte slice is
// an m16n8k16 A operand whose row i (16 of them) holds elements {i * 8 + j, 128 + i * 8 + j},
// j < 8; the matching x values, loaded the same way, make two B operands whose column n holds
// row n's (and row 8 + n's) values, so the wanted sums are the diagonals of D1 (rows 0-7) and D2
// (rows 8-15), picked out in flush(). One ldmatrix a slice for each, instead of a conversion and
// a multiply-add per element on the CUDA cores. In two parts: the fragments' loads (after which
// the stage can be released), then the products.
constexpr int kTileSlices = kWarpBytes / kSliceBytes;
struct TileFragments {
  uint32_t a[kTileSlices][4], b[kTileSlices][4];
};
__device__ __forceinline__ void load_tiles(const char* w, const bf16* xk, TileFragments& f) {
#pragma unroll
  for (int u = 0; u < kTileSlices; ++u) {
    ldmatrix_x4(f.a[u], w + u * kSliceBytes);
    ldmatrix_x4(f.b[u], xk + u * (kSliceBytes / 2));
  }
}
// x's fragments come as (B1 low, B1 high, B2 low, B2 high): the lanes' addresses of ldmatrix's
// matrices 1 and 2 swapped (x_lane_offset), so that each B operand is a register pair as loaded.
__device__ __forceinline__ void mma_tiles(const TileFragments& f, RowSum& rs) {
#pragma unroll
  for (int u = 0; u < kTileSlices; ++u) {
    mma_bf16(rs.d1[u % 2], f.a[u], f.b[u][0], f.b[u][1]);
    mma_bf16(rs.d2[u % 2], f.a[u], f.b[u][2], f.b[u][3]);
  }
}
// A lane's element offset of x for load_tiles: 8 elements (16 bytes) a lane, ldmatrix's matrix
// m (lanes 8m to 8m + 7) at elements [64m, 64m + 64), matrices 1 and 2 swapped.
__device__ __forceinline__ int32_t x_lane_offset(int lane) {
  const int m = lane / 8, swapped = m == 1 ? 2 : m == 2 ? 1 : m;
  return (swapped * 8 + lane % 8) * 8;
}

// The CUDA-core form of load_tiles and mma_tiles (kPersistentDiagCudaCoreDot): eight independent
// loads and sums.
__device__ __forceinline__ void dot_cuda_cores(const char* w, const bf16* xk, RowSum& rs) {
  constexpr int kSlices = kWarpBytes / kSliceBytes;
  uint4 wv[kSlices], xv[kSlices];
#pragma unroll
  for (int u = 0; u < kSlices; ++u) {
    wv[u] = *reinterpret_cast<const uint4*>(w + u * kSliceBytes);
    xv[u] = *reinterpret_cast<const uint4*>(xk + u * (kSliceBytes / 2));
  }
  float part[kSlices];
#pragma unroll
  for (int u = 0; u < kSlices; ++u) {
    part[u] = 0.0f;
    fma8(wv[u], xv[u], part[u]);
  }
#pragma unroll
  for (int u = 1; u < kSlices; ++u) part[0] += part[u];
  rs.partial += part[0];
}

// Rows that are not a multiple of a warp's bytes: the warp's slices of one landed stage (bytes
// [seg_off, seg_off + bytes) of the segment) one by one; a slice never straddles rows (they are
// multiples of 512 bytes).
__device__ __forceinline__ void dot_slices(const char* stage, int32_t seg_off, int32_t bytes,
                                           const Segment& seg, const bf16* x, float* acc_warp,
                                           RowSum& rs) {
  constexpr int kSlices = kWarpBytes / kSliceBytes;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int32_t begin = warp * kWarpBytes;
  if (begin >= bytes) return;
  const char* w = stage + begin + lane * 16;
  const int32_t off = seg_off + begin;
  const int32_t slices = min(kSlices, (bytes - begin) / kSliceBytes);
  for (int32_t u = 0; u < slices; ++u) {
    const int32_t o = off + u * kSliceBytes;
    const int32_t r = o / seg.row_bytes;
    if (r != rs.row || seg.acc_base != rs.acc_base) {
      flush(rs, acc_warp);
      rs.row = r;
      rs.acc_base = seg.acc_base;
    }
    const uint4 wv = *reinterpret_cast<const uint4*>(w + u * kSliceBytes);
    const uint4 xv = *reinterpret_cast<const uint4*>(x + (o - r * seg.row_bytes) / 2 + lane * 8);
    fma8(wv, xv, rs.partial);
  }
}

// Consumes a phase's stages in order (the producer issued them in the same order): warp w takes
// the w-th kWarpBytes of each stage. The bookkeeping a stage is a few additions (its row and
// column move by a fixed step), no divisions: at 32 KB a stage and ~1 us of a CTA's bandwidth,
// what the warps spend between two stages is on the critical path of catching up after a
// wait.
__device__ __forceinline__ void consume_phase(Ring& ring, const Segment* segs, int nseg,
                                              const bf16* x, float* acc_warp) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  RowSum rs;
  for (int i = 0; i < nseg; ++i) {
    const Segment seg = segs[i];
    // Fast path: rows are whole warp chunks, so a warp's 4 KB lie in one row: row r, bytes
    // [col, col + 4 KB) of it, stepping by (rows_step, col_step) a stage.
    const bool whole = seg.row_bytes % kWarpBytes == 0;
    const int32_t rows_step = kStageBytes / seg.row_bytes, col_step = kStageBytes % seg.row_bytes;
    int32_t r = (warp * kWarpBytes) / seg.row_bytes, col = (warp * kWarpBytes) % seg.row_bytes;
    for (int32_t off = 0; off < seg.bytes; off += kStageBytes) {
      const long long t0 = ring.trace ? clock64() : 0;
      mbar_wait(ring.full + ring.slot, ring.parity);
      if (ring.trace && threadIdx.x == 0) ring.waited += clock64() - t0;
      const char* stage = ring.stages + ring.slot * kStageBytes;
      bool released = false;
      if (ring.no_math) {
      } else if (!whole) {
        dot_slices(stage, off, min(kStageBytes, seg.bytes - off), seg, x, acc_warp, rs);
      } else if (off + warp * kWarpBytes < seg.bytes) {
        if (r != rs.row || seg.acc_base != rs.acc_base) {
          flush(rs, acc_warp);
          rs.row = r;
          rs.acc_base = seg.acc_base;
        }
        const char* w = stage + warp * kWarpBytes + lane * 16;
        const bf16* xk = x + col / 2 + (ring.cuda_cores ? lane * 8 : x_lane_offset(lane));
        if (ring.cuda_cores) {
          dot_cuda_cores(w, xk, rs);
        } else {
          // The stage is released as soon as its fragments are in registers, before the
          // products, so that the producer refills it sooner (H200, 1B: 0.675 -> 0.671 ms).
          TileFragments f;
          load_tiles(w, xk, f);
          release_stage(ring);
          released = true;
          mma_tiles(f, rs);
        }
      }
      if (!released) release_stage(ring);
      if (++ring.slot == ring.count) ring.slot = 0, ring.parity ^= 1;
      r += rows_step, col += col_step;
      if (col >= seg.row_bytes) col -= seg.row_bytes, ++r;
    }
  }
  flush(rs, acc_warp);
}

// The RMSNorm of x for the products, by the consumers, in two parts: x_s[k] = bf16(x[k] * w[k])
// now, and each warp's sum of x^2 into red[warp], whose scale (norm_scale) the phase's epilogue
// applies to the row sums. So the products start as soon as x is in, without waiting for the
// block's sum first (rmsnorm.cu rounds x * rsqrt(mean x^2 + eps) * w to bf16 instead: the
// same within bf16 rounding, which is relative).
// x: from x_ll (the exchange words of tag `tag`), or, for the first layer, the f32 vector x_f32.
// x and w are read once, together (one round trip to L2 on the critical path: w's loads are
// issued before the wait for x, since the waits' loads are volatile and nothing moves past them):
// kVals of each per thread stay in registers (n <= 256 kVals), the rest, if any, is read again.
// kExact: n == kVals * kConsumers (no element past n to leave out; see norm_for).
template <int kVals, bool kExact>
__device__ __forceinline__ void norm_to_shared(const float* x_f32, const uint64_t* x_ll,
                                               uint32_t tag, bool check, const float* w, int32_t n,
                                               bf16* x_s, float* red) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  // Element j of this thread: threadIdx.x + j * kConsumers; none past n (norm_for).
  auto in_range = [&](int32_t j) {
    return kExact || static_cast<int32_t>(threadIdx.x) + j * kConsumers < n;
  };
  auto index = [&](int32_t j) { return static_cast<int32_t>(threadIdx.x) + j * kConsumers; };
  float xv[kVals], wv[kVals];
  // The weights first: their loads in flight while x is waited for.
#pragma unroll
  for (int j = 0; j < kVals; ++j) wv[j] = in_range(j) ? __ldg(w + index(j)) : 0.0f;
  if (x_f32) {
#pragma unroll
    for (int j = 0; j < kVals; ++j) xv[j] = in_range(j) ? __ldcg(x_f32 + index(j)) : 0.0f;
  } else {
    const uint64_t* ps[kVals];
#pragma unroll
    for (int j = 0; j < kVals; ++j) ps[j] = in_range(j) ? x_ll + index(j) : nullptr;
    uint64_t v[kVals];
    ll_wait<kVals>(ps, tag, check, v);
#pragma unroll
    for (int j = 0; j < kVals; ++j) xv[j] = ll_f32(v[j]);
  }
  // The rest (n > kVals * kConsumers), one at a time.
  auto load = [&](int32_t i) {
    return x_f32 ? __ldcg(x_f32 + i) : ll_wait_f32(x_ll + i, tag, check);
  };
  float ss = 0.0f;
#pragma unroll
  for (int j = 0; j < kVals; ++j)
    if (threadIdx.x + j * kConsumers < n) ss += xv[j] * xv[j];
#pragma unroll
  for (int j = 0; j < kVals; ++j) {
    const int32_t i = threadIdx.x + j * kConsumers;
    if (i < n) x_s[i] = __float2bfloat16(xv[j] * wv[j]);
  }
  for (int32_t i = threadIdx.x + kVals * kConsumers; i < n; i += kConsumers) {
    const float v = load(i);
    ss += v * v;
    x_s[i] = __float2bfloat16(v * __ldg(w + i));
  }
  ss = warp_sum(ss);
  if (lane == 0) red[warp] = ss;
}

// norm_to_shared with as many values a thread as n needs where that is 8 or 16 (hidden 2,048 or
// 4,096), so that no thread loads past n: the loads past the end used to be repeats of a word in
// range, which at hidden 2,048 (16 a thread) doubled the loads and the waits' reloads, and they
// queue at L2 with every other CTA's (kernel at 192 keys, 1B: H200 0.667 -> 0.640 ms, H100 0.801
// -> 0.773; 8B within 0.3%; repeats of the thread's own first word instead of the vector's last
// gained nothing). kVals: the most a thread takes otherwise.
template <int kVals>
__device__ __forceinline__ void norm_for(const float* x_f32, const uint64_t* x_ll, uint32_t tag,
                                         bool check, const float* w, int32_t n, bf16* x_s,
                                         float* red) {
  if (n == 8 * kConsumers) {
    norm_to_shared<8, true>(x_f32, x_ll, tag, check, w, n, x_s, red);
  } else if (kVals >= 16 && n == 16 * kConsumers) {
    norm_to_shared<(kVals >= 16 ? 16 : kVals), true>(x_f32, x_ll, tag, check, w, n, x_s, red);
  } else {
    norm_to_shared<kVals, false>(x_f32, x_ll, tag, check, w, n, x_s, red);
  }
}

// rsqrt(mean x^2 + eps) of the last norm_to_shared, once the consumers have synchronised since.
__device__ __forceinline__ float norm_scale(const float* red, int32_t n, float eps) {
  float total = 0.0f;
#pragma unroll
  for (int i = 0; i < kConsumerWarps; ++i) total += red[i];
  return rsqrtf(total / static_cast<float>(n) + eps);
}

// The bf16 pairs of a phase's input (exchange words of tag `tag`) into shared memory.
__device__ __forceinline__ void pairs_to_shared(const uint64_t* src, int32_t pairs, uint32_t tag,
                                                bool check, bf16* x_s) {
  // Loads in flight a thread: 16 (a 1B's act, 4,096 pairs, in one round trip: H200, 1B 0.641 ->
  // 0.636 ms a launch; 8 before), their addresses computed again for a reload rather than held.
  constexpr int kBatch = 16;
  uint32_t* d = reinterpret_cast<uint32_t*>(x_s);
  for (int32_t i0 = threadIdx.x; i0 < pairs; i0 += kBatch * kConsumers) {
    // None past the end (norm_for).
    auto word = [&](int j) -> const uint64_t* {
      return i0 + j * kConsumers < pairs ? src + i0 + j * kConsumers : nullptr;
    };
    uint64_t v[kBatch];
    ll_wait_at<kBatch>(word, tag, check, v);
#pragma unroll
    for (int j = 0; j < kBatch; ++j)
      if (i0 + j * kConsumers < pairs) d[i0 + j * kConsumers] = static_cast<uint32_t>(v[j]);
  }
}

#endif

}  // namespace loom::cuda::persistent_detail
