#include <algorithm>
#include <cmath>

#include "backend/cuda/decode_persistent.cuh"
#include "backend/cuda/decode_persistent_attention.cuh"
#include "backend/cuda/decode_persistent_device.cuh"
#include "backend/cuda/mma_sm80.cuh"

namespace loom::cuda {
namespace {
using namespace persistent_detail;

// Shared-memory layout of a CTA (byte offsets), fixed per plan.
struct Layout {
  int32_t stages = 0;
  int32_t scratch = 0;  // x as bf16 for the products; the attention's queries and warp partials
  int32_t acc = 0;      // f32 [warps][acc_rows]: each consumer warp's row sums of the phase
  int32_t own = 0;      // f32 [acc_rows]: this CTA's rows of the residual stream x
  int32_t ctx = 0;      // the attention's AttentionContext
  int32_t red = 0;      // f32 [kConsumerWarps]: the norm's partial sums
  int32_t bars = 0;     // uint64 [2][stages]: full, empty
  int32_t total = 0;
};

int32_t align_up(int64_t v, int64_t a) {
  return static_cast<int32_t>((v + a - 1) / a * a);
}

Layout make_layout(int32_t hidden, int32_t ffn, int32_t num_heads, int32_t num_kv_heads,
                   int32_t head_dim, int32_t acc_rows, int32_t stages) {
  Layout l;
  l.stages = stages;
  const int64_t x_bytes = int64_t{std::max({hidden, ffn, num_heads * head_dim})} * 2;
  const int64_t group = num_heads / num_kv_heads;
  // q [group][D] + warp partial outputs [warps][group][D] + their (max, sum) [warps][group][2].
  const int64_t attn_bytes = 4 * (group * head_dim + int64_t{kConsumerWarps} * group * head_dim +
                                  int64_t{kConsumerWarps} * group * 2);
  l.scratch = stages * kStageBytes;
  l.acc = l.scratch + align_up(std::max(x_bytes, attn_bytes), 128);
  l.own = l.acc + align_up(int64_t{kConsumerWarps} * acc_rows * 4, 128);
  l.ctx = l.own + align_up(int64_t{acc_rows} * 4, 128);
  l.red = l.ctx + align_up(sizeof(AttentionContext), 128);
  l.bars = l.red + 128;
  l.total = l.bars + 2 * stages * 8;
  return l;
}

// ---- The kernel (Hopper only: the device helpers are left out of the pre-Hopper pass). ----
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 900

// A CTA's share [begin, end) of n items.
__device__ __forceinline__ int32_t share_begin(int32_t n, int32_t cta) {
  return static_cast<int32_t>(int64_t{n} * cta / gridDim.x);
}

// One contiguous weight range of a phase: `bytes` from `src`, rows of `row_bytes`, whose sums go
// to acc[acc_base + row].
struct Segment {
  const char* src;
  int32_t bytes;
  int32_t row_bytes;
  int32_t acc_base;
};

enum Phase { kQkv = 0, kO = 1, kGateUp = 2, kDown = 3 };

// The segments of a weight phase for this CTA (both the producer and the consumers walk them);
// returns how many (1 or 2). rows: the CTA's output rows [*r0, *r1).
__device__ __forceinline__ int phase_segments(const PersistentDecodeArgs& a,
                                              const PersistentLayer& w, int phase, Segment* seg,
                                              int32_t* r0, int32_t* r1) {
  const int32_t H = a.hidden, F = a.ffn, QD = a.num_heads * a.head_dim;
  const int32_t NQKV = QD + 2 * a.num_kv_heads * a.head_dim;
  const int cta = blockIdx.x;
  const bf16* base = nullptr;
  int32_t rows = 0, in = 0;
  switch (phase) {
    case kQkv:
      base = w.w_qkv, rows = NQKV, in = H;
      break;
    case kO:
      base = w.w_o, rows = H, in = QD;
      break;
    case kGateUp:
      base = w.w_gate_up, rows = F, in = H;
      break;
    default:
      base = w.w_down, rows = H, in = F;
      break;
  }
  // gate_up: an even share (its outputs travel in bf16 pairs).
  const int32_t unit = phase == kGateUp ? 2 : 1;
  *r0 = share_begin(rows / unit, cta) * unit;
  *r1 = share_begin(rows / unit, cta + 1) * unit;
  const int32_t n = *r1 - *r0;
  seg[0] = Segment{reinterpret_cast<const char*>(base + int64_t{*r0} * in), n * in * 2, in * 2, 0};
  if (phase != kGateUp) return 1;
  seg[1] =
      Segment{reinterpret_cast<const char*>(base + (int64_t{F} + *r0) * in), n * in * 2, in * 2, n};
  return 2;
}

// Walks a CTA's weight stream stage by stage: layers, their weight phases, the phases'
// segments, kStageBytes at a time (the order the consumers take them in).
struct StreamCursor {
  int32_t layer = 0;
  int phase = kQkv;
  int i = 0, nseg = -1;  // segment; -1: the phase's segments not computed yet
  int32_t off = 0;
  Segment seg[2];

  __device__ __forceinline__ bool next(const PersistentDecodeArgs& a, const char** src,
                                       uint32_t* bytes) {
    while (layer < a.num_layers) {
      if (nseg < 0) {
        int32_t r0, r1;
        nseg = phase_segments(a, a.layers[layer], phase, seg, &r0, &r1);
        i = 0;
        off = 0;
      }
      if (i < nseg && off < seg[i].bytes) {
        *src = seg[i].src + off;
        *bytes = static_cast<uint32_t>(min(kStageBytes, seg[i].bytes - off));
        off += kStageBytes;
        return true;
      }
      if (i < nseg) {
        ++i;
        off = 0;
        continue;
      }
      nseg = -1;
      if (++phase > kDown) {
        phase = kQkv;
        ++layer;
      }
    }
    return false;
  }
};

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

// A warp's running dot product: the row it is summing and each lane's partial sums. Rows are
// reduced across the warp only when the warp moves on to another row (or the phase ends), into
// the warp's own row sums acc_warp[row] (no atomics: the sums, and so the step's results, do not
// depend on the warps' timing).
struct RowSum {
  int32_t row = -1;  // segment row, -1: none yet
  int32_t acc_base = 0;
  float partial = 0.0f;                                                      // CUDA-core products
  float d1[4] = {0.0f, 0.0f, 0.0f, 0.0f}, d2[4] = {0.0f, 0.0f, 0.0f, 0.0f};  // tensor-core
};

__device__ __forceinline__ void flush(RowSum& rs, float* acc_warp) {
  if (rs.row < 0) return;
  // The tensor-core sums (dot_tiles): lane 4g + g/2 holds the g-th and (8+g)-th pieces.
  const int lane = threadIdx.x % 32, g = lane / 4, c = lane % 4;
  float v = rs.partial;
  if (c == g / 2) v += (g % 2 ? rs.d1[1] : rs.d1[0]) + (g % 2 ? rs.d2[3] : rs.d2[2]);
  v = warp_sum(v);
  if (lane == 0) acc_warp[rs.acc_base + rs.row] += v;
  rs.row = -1;
  rs.partial = 0.0f;
#pragma unroll
  for (int i = 0; i < 4; ++i) rs.d1[i] = rs.d2[i] = 0.0f;
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(p)));
}

// The dot product of a warp's 4 KB of one row (w, lane's address: + 16 * lane) with x (the
// matching 2048 values, lane's address + 8 * lane), on the tensor cores: each 512-byte slice is
// an m16n8k16 A operand whose row i (16 of them) holds elements {i * 8 + j, 128 + i * 8 + j},
// j < 8; the matching x values, loaded the same way, make two B operands whose column n holds
// row n's (and row 8 + n's) values, so the wanted sums are the diagonals of D1 (rows 0-7) and D2
// (rows 8-15), picked out in flush(). One ldmatrix a slice for each, instead of a conversion and
// a multiply-add per element on the CUDA cores.
__device__ __forceinline__ void dot_tiles(const char* w, const bf16* xk, RowSum& rs) {
  constexpr int kSlices = kWarpBytes / kSliceBytes;
  uint32_t a[kSlices][4], b[kSlices][4];
#pragma unroll
  for (int u = 0; u < kSlices; ++u) {
    ldmatrix_x4(a[u], w + u * kSliceBytes);
    ldmatrix_x4(b[u], xk + u * (kSliceBytes / 2));
  }
#pragma unroll
  for (int u = 0; u < kSlices; ++u) {
    mma_bf16(rs.d1, a[u], b[u][0], b[u][2]);
    mma_bf16(rs.d2, a[u], b[u][1], b[u][3]);
  }
}

// The CUDA-core form of dot_tiles (kPersistentDiagCudaCoreDot): eight independent loads and
// sums.
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
        const bf16* xk = x + col / 2 + lane * 8;
        if (ring.cuda_cores)
          dot_cuda_cores(w, xk, rs);
        else
          dot_tiles(w, xk, rs);
      }
      __syncwarp();
      if (lane == 0) mbar_arrive(ring.empty + ring.slot);
      if (++ring.slot == ring.count) ring.slot = 0, ring.parity ^= 1;
      r += rows_step, col += col_step;
      if (col >= seg.row_bytes) col -= seg.row_bytes, ++r;
    }
  }
  flush(rs, acc_warp);
}

// x_s[k] = bf16(x[k] * rsqrt(mean x^2 + eps) * w[k]) (rmsnorm.cu's arithmetic), by the consumers.
// x: from x_ll (the exchange words of tag `tag`), or, for the first layer, the f32 vector x_f32.
// x and w are read once, together (one round trip to L2 on the critical path): kVals of each per
// thread stay in registers (n <= 256 kVals), the rest, if any, is read again.
template <int kVals>
__device__ __forceinline__ void norm_to_shared(const float* x_f32, const uint64_t* x_ll,
                                               uint32_t tag, bool check, const float* w, int32_t n,
                                               float eps, bf16* x_s, float* red) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  // Element j of this thread: threadIdx.x + j * kConsumers (past n: a repeat of the last one).
  auto index = [&](int32_t j) {
    return min(static_cast<int32_t>(threadIdx.x) + j * kConsumers, n - 1);
  };
  float xv[kVals], wv[kVals];
  if (x_f32) {
#pragma unroll
    for (int j = 0; j < kVals; ++j) xv[j] = __ldcg(x_f32 + index(j));
  } else {
    const uint64_t* ps[kVals];
#pragma unroll
    for (int j = 0; j < kVals; ++j) ps[j] = x_ll + index(j);
    uint64_t v[kVals];
    ll_wait<kVals>(ps, tag, check, v);
#pragma unroll
    for (int j = 0; j < kVals; ++j) xv[j] = ll_f32(v[j]);
  }
#pragma unroll
  for (int j = 0; j < kVals; ++j) wv[j] = __ldg(w + index(j));
  // The rest (n > kVals * kConsumers), one at a time.
  auto load = [&](int32_t i) {
    return x_f32 ? __ldcg(x_f32 + i) : ll_wait_f32(x_ll + i, tag, check);
  };
  float ss = 0.0f;
#pragma unroll
  for (int j = 0; j < kVals; ++j)
    if (threadIdx.x + j * kConsumers < n) ss += xv[j] * xv[j];
  for (int32_t i = threadIdx.x + kVals * kConsumers; i < n; i += kConsumers) {
    const float v = load(i);
    ss += v * v;
  }
  ss = warp_sum(ss);
  if (lane == 0) red[warp] = ss;
  consumer_sync();
  float total = 0.0f;
#pragma unroll
  for (int i = 0; i < kConsumerWarps; ++i) total += red[i];
  const float inv = rsqrtf(total / static_cast<float>(n) + eps);
#pragma unroll
  for (int j = 0; j < kVals; ++j) {
    const int32_t i = threadIdx.x + j * kConsumers;
    if (i < n) x_s[i] = __float2bfloat16(xv[j] * inv * wv[j]);
  }
  for (int32_t i = threadIdx.x + kVals * kConsumers; i < n; i += kConsumers)
    x_s[i] = __float2bfloat16(load(i) * inv * __ldg(w + i));
}

// The bf16 pairs of a phase's input (exchange words of tag `tag`) into shared memory.
__device__ __forceinline__ void pairs_to_shared(const uint64_t* src, int32_t pairs, uint32_t tag,
                                                bool check, bf16* x_s) {
  constexpr int kBatch = 8;  // loads in flight a thread
  uint32_t* d = reinterpret_cast<uint32_t*>(x_s);
  for (int32_t i0 = threadIdx.x; i0 < pairs; i0 += kBatch * kConsumers) {
    const uint64_t* ps[kBatch];
#pragma unroll
    for (int j = 0; j < kBatch; ++j) ps[j] = src + min(i0 + j * kConsumers, pairs - 1);
    uint64_t v[kBatch];
    ll_wait<kBatch>(ps, tag, check, v);
#pragma unroll
    for (int j = 0; j < kBatch; ++j)
      if (i0 + j * kConsumers < pairs) d[i0 + j * kConsumers] = static_cast<uint32_t>(v[j]);
  }
}

#endif  // the kernel's device functions

struct KernelShape {
  Layout layout;
  PersistentExchange exchange;
  int32_t splits;
  int32_t acc_rows;  // the stride of each warp's row sums
};

// D: head_dim; GM: the most query heads per KV head (4 or 8: the attention's registers).
template <int D, int GM>
__global__ void __launch_bounds__(kThreads, 1)
    persistent_decode_kernel(PersistentDecodeArgs a, KernelShape shape) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  extern __shared__ __align__(1024) char smem[];
  const Layout& lay = shape.layout;
  uint64_t* full = reinterpret_cast<uint64_t*>(smem + lay.bars);
  uint64_t* empty = full + lay.stages;
  if (threadIdx.x == 0) {
    for (int i = 0; i < lay.stages; ++i) {
      mbar_init(full + i, 1);
      mbar_init(empty + i, kConsumerWarps);
    }
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  }
  __syncthreads();
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  Segment seg[2];
  int32_t r0, r1;

  if (warp == kConsumerWarps) {  // the producer: every weight byte of this CTA, in order
    if (lane != 0) return;
    StreamCursor cursor;
    const char* src;
    uint32_t bytes;
    uint32_t slot = 0, parity = 0;
    unsigned long long waited = 0;
    while (cursor.next(a, &src, &bytes)) {
      const long long t0 = a.trace ? clock64() : 0;
      mbar_wait(empty + slot, parity ^ 1);
      if (a.trace) waited += clock64() - t0;
      if (a.diag & kPersistentDiagNoCopy) {
        mbar_arrive(full + slot);
      } else {
        mbar_arrive_expect_tx(full + slot, bytes);
        bulk_load(smem + slot * kStageBytes, src, bytes, full + slot);
      }
      if (++slot == static_cast<uint32_t>(lay.stages)) slot = 0, parity ^= 1;
    }
    if (a.trace)
      a.trace[int64_t{gridDim.x} * a.num_layers * kPersistentTraceEvents + 2 * blockIdx.x + 1] =
          waited;
    return;
  }

  // The consumers.
  Ring ring{smem,
            full,
            empty,
            static_cast<uint32_t>(lay.stages),
            0,
            0,
            a.trace != nullptr,
            (a.diag & kPersistentDiagNoMath) != 0,
            (a.diag & kPersistentDiagCudaCoreDot) != 0,
            0};
  bf16* x_s = reinterpret_cast<bf16*>(smem + lay.scratch);
  float* acc = reinterpret_cast<float*>(smem + lay.acc);
  float* red = reinterpret_cast<float*>(smem + lay.red);
  const int32_t H = a.hidden, F = a.ffn, QD = a.num_heads * D;
  const int32_t stride = shape.acc_rows;
  float* acc_warp = acc + (threadIdx.x / 32) * stride;
  auto zero_acc = [&] {
    for (int32_t i = threadIdx.x; i < kConsumerWarps * stride; i += kConsumers) acc[i] = 0.0f;
  };
  // Row i's sum over the warps, in warp order.
  auto row_sum = [&](int32_t i) {
    float v = 0.0f;
#pragma unroll
    for (int w = 0; w < kConsumerWarps; ++w) v += acc[w * stride + i];
    return v;
  };
  auto mark = [&](int32_t layer, int event) {
    if (a.trace == nullptr || threadIdx.x != 0) return;
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    a.trace[(int64_t{blockIdx.x} * a.num_layers + layer) * kPersistentTraceEvents + event] = t;
  };
  // The exchange (PersistentExchange) of layer l: copy l % 2. Tags: (launch, layer, phase).
  const PersistentExchange& ex = shape.exchange;
  char* ws = static_cast<char*>(a.workspace);
  const int32_t NQKV = QD + 2 * a.num_kv_heads * D;
  auto x_ll = [&](int32_t l, int after_down) {
    return reinterpret_cast<uint64_t*>(ws + ex.x) + (int64_t{l % 2} * 2 + after_down) * H;
  };
  auto qkv_ll = [&](int32_t l) {
    return reinterpret_cast<uint64_t*>(ws + ex.qkv) + (l % 2) * NQKV;
  };
  auto attn_ll = [&](int32_t l) {
    return reinterpret_cast<uint64_t*>(ws + ex.attn) + (l % 2) * (QD / 2);
  };
  auto act_ll = [&](int32_t l) {
    return reinterpret_cast<uint64_t*>(ws + ex.act) + (l % 2) * (F / 2);
  };
  const uint32_t tag_base = 1u + __ldcg(a.sync + 1) * static_cast<uint32_t>(a.num_layers * 5);
  auto tag = [&](int32_t l, int phase) {  // phases: 0 qkv, 1 attention, 2 O, 3 gate_up, 4 down
    return tag_base + static_cast<uint32_t>(l * 5 + phase);
  };
  const bool check = !(a.diag & kPersistentDiagNoSync);
  // A weight phase up to its epilogue: its input into shared memory (RMSNorm of x with norm_w, or
  // the bf16 pairs `in`), the products of its stages into the warps' row sums; returns with this
  // CTA's output rows in [r0, r1).
  auto products = [&](const PersistentLayer& w, int phase, const float* norm_w, const float* x_f32,
                      const uint64_t* in, int32_t in_size, uint32_t in_tag) {
    const int nseg = phase_segments(a, w, phase, seg, &r0, &r1);
    consumer_sync();  // every warp is done with the last epilogue's row sums and the scratch
    zero_acc();
    if (norm_w)
      // (Fewer registers for the norm where the attention takes 8 query heads a KV head.)
      norm_to_shared<GM == 8 ? 8 : 16>(x_f32, in, in_tag, check, norm_w, H, a.eps, x_s, red);
    else
      pairs_to_shared(in, in_size / 2, in_tag, check, x_s);
    consumer_sync();
    consume_phase(ring, seg, nseg, x_s, acc_warp);
  };
  // This CTA's rows of x (the O and down phases' output rows, the same share of H both times)
  // stay in shared memory, so their residual adds read nothing from global memory.
  float* own = reinterpret_cast<float*>(smem + lay.own);
  const int32_t own0 = share_begin(H, blockIdx.x), own1 = share_begin(H, blockIdx.x + 1);
  for (int32_t i = threadIdx.x; i < own1 - own0; i += kConsumers) own[i] = __ldcg(a.x + own0 + i);
  AttentionContext& ctx = *reinterpret_cast<AttentionContext*>(smem + lay.ctx);
  load_attention_context(a, shape.splits, ctx);
  consumer_sync();
  // x[r0 + i] += the row sums: into shared memory, the exchange (and a.x after the last layer).
  auto add_to_residual = [&](uint64_t* out, uint32_t out_tag, bool last) {
    for (int32_t i = threadIdx.x; i < r1 - r0; i += kConsumers) {
      const float v = own[i] + row_sum(i);
      own[i] = v;
      ll_store(out + r0 + i, __float_as_uint(v), out_tag);
      if (last) a.x[r0 + i] = v;
    }
  };
  for (int32_t layer = 0; layer < a.num_layers; ++layer) {
    const PersistentLayer& w = a.layers[layer];
    const bool last = layer + 1 == a.num_layers;
    mark(layer, 0);
    prefetch_kv(a, ctx, layer, shape.splits);
    if (layer == 0)
      products(w, kQkv, w.attn_norm, a.x, nullptr, 0, 0);
    else
      products(w, kQkv, w.attn_norm, nullptr, x_ll(layer - 1, 1), 0, tag(layer - 1, 4));
    mark(layer, 1);
    consumer_sync();
    for (int32_t i = threadIdx.x; i < r1 - r0; i += kConsumers)
      ll_store(qkv_ll(layer) + r0 + i,
               __float_as_uint(row_sum(i) + (w.qkv_bias ? w.qkv_bias[r0 + i] : 0.0f)),
               tag(layer, 0));
    mark(layer, 2);
    if (check) {
      const AttentionIo io{qkv_ll(layer),
                           reinterpret_cast<uint64_t*>(ws + ex.partial) +
                               int64_t{layer % 2} * a.num_heads * shape.splits * (D + 2),
                           attn_ll(layer),
                           tag(layer, 0),
                           tag(layer, 1),
                           check};
      attention<D, GM>(a, ctx, layer, shape.splits, smem + lay.scratch, io);
    }
    mark(layer, 3);
    products(w, kO, nullptr, nullptr, attn_ll(layer), QD, tag(layer, 1));
    mark(layer, 4);
    consumer_sync();
    add_to_residual(x_ll(layer, 0), tag(layer, 2), false);
    mark(layer, 5);
    products(w, kGateUp, w.ffn_norm, nullptr, x_ll(layer, 0), 0, tag(layer, 2));
    mark(layer, 6);
    consumer_sync();
    // Outputs in pairs (a CTA's share of ffn is even): act[r0 + 2i], act[r0 + 2i + 1].
    for (int32_t i = threadIdx.x; i < (r1 - r0) / 2; i += kConsumers) {
      float y[2];
#pragma unroll
      for (int k = 0; k < 2; ++k) {
        const float g = row_sum(2 * i + k), u = row_sum(r1 - r0 + 2 * i + k);
        y[k] = g / (1.0f + __expf(-g)) * u;
      }
      ll_store(act_ll(layer) + r0 / 2 + i, pack_bf16(y[0], y[1]), tag(layer, 3));
    }
    mark(layer, 7);
    products(w, kDown, nullptr, nullptr, act_ll(layer), F, tag(layer, 3));
    mark(layer, 8);
    consumer_sync();
    add_to_residual(x_ll(layer, 1), tag(layer, 4), last);
  }
  if (a.trace && threadIdx.x == 0)
    a.trace[int64_t{gridDim.x} * a.num_layers * kPersistentTraceEvents + 2 * blockIdx.x] =
        ring.waited;
  // The last CTA out zeroes the exit counter and counts the launch (the next launch's tags
  // differ from every word this one wrote).
  consumer_sync();
  if (threadIdx.x == 0) {
    __threadfence();
    if (atomicAdd(a.sync, 1u) == gridDim.x - 1) {
      atomicAdd(a.sync + 1, 1u);
      atomicExch(a.sync, 0u);
    }
  }
#else
  __trap();  // launched only on Hopper and later (plan_persistent_decode)
#endif
}

int device_attribute(cudaDeviceAttr attr) {
  int dev = 0, v = 0;
  LOOM_CUDA_CHECK(cudaGetDevice(&dev));
  LOOM_CUDA_CHECK(cudaDeviceGetAttribute(&v, attr, dev));
  return v;
}

int32_t acc_rows_for(int32_t hidden, int32_t ffn, int32_t num_heads, int32_t num_kv_heads,
                     int32_t head_dim, int32_t grid) {
  const int64_t nqkv = int64_t{num_heads + 2 * num_kv_heads} * head_dim;
  return static_cast<int32_t>(
      std::max({ceil_div(nqkv, grid), ceil_div(hidden, grid), 4 * ceil_div(ffn / 2, grid)}));
}

}  // namespace

PersistentExchange persistent_exchange(int32_t hidden, int32_t ffn, int32_t num_heads,
                                       int32_t num_kv_heads, int32_t head_dim, int32_t splits) {
  PersistentExchange e;
  const int64_t qd = int64_t{num_heads} * head_dim,
                nqkv = qd + 2 * int64_t{num_kv_heads} * head_dim;
  e.x = 0;
  e.qkv = e.x + 2 * 2 * int64_t{hidden} * 8;
  e.attn = e.qkv + 2 * nqkv * 8;
  e.act = e.attn + 2 * (qd / 2) * 8;
  e.partial = e.act + 2 * (int64_t{ffn} / 2) * 8;
  e.bytes = e.partial + 2 * int64_t{num_heads} * splits * (head_dim + 2) * 8;
  return e;
}

bool persistent_decode_supports(int32_t hidden, int32_t ffn, int32_t num_heads,
                                int32_t num_kv_heads, int32_t head_dim, KvCacheDtype dtype,
                                std::string* why) {
  why->clear();
  if (dtype != KvCacheDtype::kBf16) {
    *why = "needs a bf16 KV cache";
  } else if (head_dim != 64 && head_dim != 128) {
    *why = "needs head_dim 64 or 128";
  } else if (num_kv_heads < 1 || num_kv_heads > kPersistentMaxKvHeads ||
             num_heads % num_kv_heads != 0 || num_heads / num_kv_heads > kMaxGroup) {
    *why = "needs at most 8 query heads per KV head";
  } else if (hidden % kRowAlign != 0 || ffn % kRowAlign != 0 ||
             (num_heads * head_dim) % kRowAlign != 0) {
    *why = "needs hidden, ffn and q_dim multiples of 256";
  }
  return why->empty();
}

PersistentDecodePlan plan_persistent_decode(int32_t hidden, int32_t ffn, int32_t num_heads,
                                            int32_t num_kv_heads, int32_t head_dim,
                                            int32_t max_stages) {
  PersistentDecodePlan p;
  if (device_attribute(cudaDevAttrComputeCapabilityMajor) < 9) return p;
  const int32_t sms = device_attribute(cudaDevAttrMultiProcessorCount);
  const int32_t smem_max = device_attribute(cudaDevAttrMaxSharedMemoryPerBlockOptin);
  const int32_t acc_rows = acc_rows_for(hidden, ffn, num_heads, num_kv_heads, head_dim, sms);
  const Layout none = make_layout(hidden, ffn, num_heads, num_kv_heads, head_dim, acc_rows, 0);
  int32_t stages = std::min(kMaxStages, (smem_max - none.total) / (kStageBytes + 16));
  if (max_stages > 0) stages = std::min(stages, max_stages);
  if (stages < 3) return p;  // too little shared memory to stream ahead
  p.grid = sms;
  p.stages = stages;
  p.acc_rows = acc_rows;
  p.smem_bytes = static_cast<size_t>(
      make_layout(hidden, ffn, num_heads, num_kv_heads, head_dim, acc_rows, stages).total);
  p.attn_splits = std::clamp(sms / num_kv_heads, 1, kMaxSplits);
  p.workspace_bytes =
      persistent_exchange(hidden, ffn, num_heads, num_kv_heads, head_dim, p.attn_splits).bytes;
  return p;
}

void launch_persistent_decode(const PersistentDecodeArgs& a, const PersistentDecodePlan& p,
                              cudaStream_t stream) {
  LOOM_CHECK(p.grid > 0 && a.layers && a.x && a.position && a.slot && a.block_table && a.inv_freq &&
                 a.kv_cache && a.workspace && a.sync,
             "persistent decode: incomplete arguments or no plan");
  LOOM_CHECK(a.cache.dtype == KvCacheDtype::kBf16 && a.head_dim == a.cache.head_dim);
  KernelShape shape;
  shape.layout =
      make_layout(a.hidden, a.ffn, a.num_heads, a.num_kv_heads, a.head_dim, p.acc_rows, p.stages);
  shape.splits = p.attn_splits;
  shape.exchange =
      persistent_exchange(a.hidden, a.ffn, a.num_heads, a.num_kv_heads, a.head_dim, p.attn_splits);
  shape.acc_rows = p.acc_rows;
  LOOM_CHECK(static_cast<size_t>(shape.layout.total) == p.smem_bytes);
  const bool small_group = a.num_heads / a.num_kv_heads <= 4;
  auto* kernel =
      a.head_dim == 64
          ? (small_group ? persistent_decode_kernel<64, 4> : persistent_decode_kernel<64, 8>)
          : (small_group ? persistent_decode_kernel<128, 4> : persistent_decode_kernel<128, 8>);
  // Once per kernel: allow the device's whole opt-in shared memory (plans differ by model).
  static bool allowed[4] = {false, false, false, false};
  const int which = (a.head_dim == 64 ? 0 : 2) + (small_group ? 0 : 1);
  if (!allowed[which]) {
    LOOM_CUDA_CHECK(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             device_attribute(cudaDevAttrMaxSharedMemoryPerBlockOptin)));
    allowed[which] = true;
  }
  cudaLaunchConfig_t config = {};
  config.gridDim = dim3(static_cast<unsigned>(p.grid));
  config.blockDim = dim3(kThreads);
  config.dynamicSmemBytes = p.smem_bytes;
  config.stream = stream;
  // Cooperative: the waits for other CTAs' outputs need every CTA resident at once; the launch
  // fails loudly rather than deadlock if they cannot be.
  cudaLaunchAttribute attribute[1];
  attribute[0].id = cudaLaunchAttributeCooperative;
  attribute[0].val.cooperative = 1;
  config.attrs = attribute;
  config.numAttrs = 1;
  LOOM_CUDA_CHECK(cudaLaunchKernelEx(&config, kernel, a, shape));
}

}  // namespace loom::cuda
