#include <algorithm>
#include <cmath>

#include "backend/cuda/decode_persistent.cuh"
#include "backend/cuda/decode_persistent_attention.cuh"
#include "backend/cuda/decode_persistent_consumer.cuh"
#include "backend/cuda/decode_persistent_device.cuh"
#include "backend/cuda/mma_sm80.cuh"

namespace loom::cuda {
namespace {
using namespace persistent_detail;

// Shared-memory layout of a CTA (byte offsets), fixed per plan.
struct Layout {
  int32_t stages = 0;
  int32_t scratch = 0;  // x as bf16 for the products; the attention's queries and warp partials
  // f32 [warps][acc_rows]: each consumer warp's row sums of a gate/up or output-layer phase,
  // inside the scratch past x (hidden bf16), which is all those phases keep there: the down
  // phase's input (ffn bf16) would otherwise set the scratch's size and the row sums' apart,
  // and the room they leave takes a sixth ring stage at 8B (benchmarks-cuda.md, fourteenth round).
  int32_t acc_wide = 0;
  int32_t acc = 0;     // f32 [warps][narrow_rows]: the row sums of a QKV, O or down phase
  int32_t own = 0;     // f32 [narrow_rows]: this CTA's rows of the residual stream x
  int32_t ctx = 0;     // the attention's AttentionContext
  int32_t layers = 0;  // PersistentLayer [min(layers, kSmemLayers)]: their weight pointers
  int32_t red = 0;     // f32 [kConsumerWarps]: the norm's partial sums; at byte 64 the u64
                       // largest argmax key of the CTA's logits
  int32_t bars = 0;    // uint64 [2][stages]: full, empty
  int32_t total = 0;
};

int32_t align_up(int64_t v, int64_t a) {
  return static_cast<int32_t>((v + a - 1) / a * a);
}

Layout make_layout(int32_t num_layers, int32_t hidden, int32_t ffn, int32_t num_heads,
                   int32_t num_kv_heads, int32_t head_dim, int32_t acc_rows, int32_t narrow_rows,
                   int32_t stages) {
  Layout l;
  l.stages = stages;
  const int64_t x_bytes = int64_t{std::max({hidden, ffn, num_heads * head_dim})} * 2;
  const int64_t group = num_heads / num_kv_heads;
  // q [group][D] + warp partial outputs [warps][group][D] + their (max, sum) [warps][group][2]
  // (f32), then q as bf16 A fragments [D / 32][32] x 16 bytes, then the new token's K and V
  // rows (bf16).
  const int64_t attn_bytes = 4 * (group * head_dim + int64_t{kConsumerWarps} * group * head_dim +
                                  int64_t{kConsumerWarps} * group * 2) +
                             int64_t{head_dim} * 16 + int64_t{head_dim} * 4;  // + new K, V
  const int64_t wide_at = align_up(int64_t{hidden} * 2, 128);
  const int64_t wide_end = wide_at + int64_t{kConsumerWarps} * acc_rows * 4;
  l.scratch = stages * kStageBytes;
  l.acc_wide = l.scratch + static_cast<int32_t>(wide_at);
  l.acc = l.scratch + align_up(std::max({x_bytes, attn_bytes, wide_end}), 128);
  l.own = l.acc + align_up(int64_t{kConsumerWarps} * narrow_rows * 4, 128);
  l.ctx = l.own + align_up(int64_t{narrow_rows} * 4, 128);
  l.layers = l.ctx + align_up(sizeof(AttentionContext), 128);
  // Sized by the model (an 8B's 32 layers: 1.8 KB, not 7 KB), so the ring may take its room.
  l.red = l.layers +
          align_up(int64_t{std::min(num_layers, kSmemLayers)} * sizeof(PersistentLayer), 128);
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

enum Phase { kQkv = 0, kO = 1, kGateUp = 2, kDown = 3, kLogits = 4 };

// Rows of the output layer a chunk of the logits phase: at most acc_rows (the row sums' room),
// rounded down to whole stages where that leaves at least one.
__device__ __forceinline__ int32_t logits_chunk_rows(const PersistentDecodeArgs& a,
                                                     int32_t acc_rows) {
  const int32_t per_stage = max(1, kStageBytes / (a.hidden * 2));
  return acc_rows >= per_stage ? acc_rows / per_stage * per_stage : acc_rows;
}

// Chunk `c` of this CTA's rows of the output layer: false past the last one. rows: [*r0, *r1).
__device__ __forceinline__ bool logits_chunk(const PersistentDecodeArgs& a, int32_t acc_rows,
                                             int32_t c, Segment* seg, int32_t* r0, int32_t* r1) {
  const int32_t begin = share_begin(a.vocab, blockIdx.x),
                end = share_begin(a.vocab, blockIdx.x + 1);
  const int32_t rows = logits_chunk_rows(a, acc_rows);
  *r0 = begin + c * rows;
  if (*r0 >= end) return false;
  *r1 = min(end, *r0 + rows);
  const int32_t in = a.hidden;
  *seg = Segment{reinterpret_cast<const char*>(a.lm_head + int64_t{*r0} * in), (*r1 - *r0) * in * 2,
                 in * 2, 0};
  return true;
}

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

// Layer l's weights: from the kernel's table in shared memory (filled at its start), past
// kSmemLayers from global memory. Both the producer and the consumers look them up at every
// phase's start, where a round trip to L2 would delay the phase's first copy or its input.
__device__ __forceinline__ const PersistentLayer& layer_weights(const PersistentDecodeArgs& a,
                                                                const PersistentLayer* table,
                                                                int32_t l) {
  return l < kSmemLayers ? table[l] : a.layers[l];
}

// One ring stage for the producer to fill: kStageBytes at most of weights (kv0 < 0), or the K
// and V rows of keys [kv0, kv1) of `layer`'s attention (ring_end).
struct StageJob {
  const char* src;
  uint32_t bytes;
  int32_t kv0, kv1, layer;
};

// Walks a CTA's weight stream stage by stage: layers, their weight phases, the phases'
// segments, kStageBytes at a time, and after a layer's QKV weights the K/V stages of its
// attention (the order the consumers take them in).
struct StreamCursor {
  const PersistentLayer* layers;  // the table in shared memory (layer_weights)
  int32_t acc_rows;               // KernelShape::acc_rows (the logits phase's chunks)
  int32_t kv_k0 = 0, kv_end = 0;  // ring_end: this CTA's keys in the ring, every layer
  int32_t layer = 0;              // num_layers: the output layer (a.logits set), its chunk `phase`
  int phase = kQkv;
  int i = 0, nseg = -1;  // segment; -1: the phase's segments not computed yet
  int32_t off = 0;
  int32_t kv_next = -1;  // the next K/V stage's first key; -1: none now
  Segment seg[2];

  __device__ __forceinline__ bool next(const PersistentDecodeArgs& a, StageJob* job) {
    while (layer < a.num_layers + (a.logits != nullptr)) {
      if (kv_next >= 0) {  // the layer's K/V stages, between its QKV and O weights
        if (kv_next < kv_end) {
          const int32_t keys = persistent_kv_stage_keys(a.head_dim);
          *job =
              StageJob{nullptr, static_cast<uint32_t>(min(keys, kv_end - kv_next) * 4 * a.head_dim),
                       kv_next, min(kv_end, kv_next + keys), layer};
          kv_next += keys;
          return true;
        }
        kv_next = -1;
      }
      if (nseg < 0) {
        int32_t r0, r1;
        if (layer < a.num_layers) {
          nseg = phase_segments(a, layer_weights(a, layers, layer), phase, seg, &r0, &r1);
        } else if (!logits_chunk(a, acc_rows, phase, seg, &r0, &r1)) {
          return false;
        } else {
          nseg = 1;
        }
        i = 0;
        off = 0;
      }
      if (i < nseg && off < seg[i].bytes) {
        *job = StageJob{seg[i].src + off,
                        static_cast<uint32_t>(min(kStageBytes, seg[i].bytes - off)), -1, 0, 0};
        off += kStageBytes;
        return true;
      }
      if (i < nseg) {
        ++i;
        off = 0;
        continue;
      }
      nseg = -1;
      if (phase == kQkv && layer < a.num_layers && kv_end > kv_k0) kv_next = kv_k0;
      if (++phase > kDown && layer < a.num_layers) {
        phase = kQkv;
        ++layer;
      }
    }
    return false;
  }
};

#endif  // the kernel's device functions

struct KernelShape {
  Layout layout;
  PersistentExchange exchange;
  int32_t splits;
  int32_t acc_rows;     // the stride of each warp's row sums in Layout::acc_wide
  int32_t narrow_rows;  // ... in Layout::acc
  int32_t in_flight;    // PersistentDecodePlan::in_flight
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
  // The largest argmax key of this CTA's logits (a.argmax): past the norm's partial sums.
  unsigned long long* cta_best = reinterpret_cast<unsigned long long*>(smem + lay.red + 64);
  if (threadIdx.x == 0) {
    *cta_best = 0;
    for (int i = 0; i < lay.stages; ++i) {
      mbar_init(full + i, 1);
      mbar_init(empty + i, kConsumerWarps);
    }
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  }
  // The attention's context (its keys' block-table entries): the producer copies their K/V rows.
  AttentionContext& ctx = *reinterpret_cast<AttentionContext*>(smem + lay.ctx);
  if (threadIdx.x < kConsumers) load_attention_context(a, shape.splits, ctx);
  // The layers' weight pointers (the first kSmemLayers), read by the producer and the consumers.
  PersistentLayer* layers = reinterpret_cast<PersistentLayer*>(smem + lay.layers);
  {
    constexpr int kWords = sizeof(PersistentLayer) / 8;
    const int32_t words = min(a.num_layers, kSmemLayers) * kWords;
    for (int32_t i = threadIdx.x; i < words; i += kThreads)
      reinterpret_cast<uint64_t*>(layers)[i] = reinterpret_cast<const uint64_t*>(a.layers)[i];
  }
  __syncthreads();
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  Segment seg[2];
  int32_t r0, r1;

  if (warp == kConsumerWarps) {  // the producer: every weight byte of this CTA, in order
    if (lane != 0) return;
    StreamCursor cursor;
    cursor.layers = layers;
    cursor.acc_rows = shape.acc_rows;
    int32_t used = 0, kv_head = 0, split = 0, k1 = 0;
    if (attention_share(a, shape.splits, ctx.pos, &used, &kv_head, &split, &cursor.kv_k0, &k1))
      cursor.kv_end = ring_end(cursor.kv_k0, k1, ctx.pos);
    const KvCacheShape& cs = a.cache;
    const int32_t row_bytes = a.head_dim * 2;
    StageJob job;
    uint32_t slot = 0, parity = 0;
    unsigned long long waited = 0;
    const uint32_t in_flight = static_cast<uint32_t>(shape.in_flight);
    const uint64_t policy = l2_evict_first_policy();
    for (uint32_t issued = 0; cursor.next(a, &job); ++issued) {
      const long long t0 = a.trace ? clock64() : 0;
      mbar_wait(empty + slot, parity ^ 1);
      // At most in_flight weight copies outstanding: copy issued - in_flight has landed (its slot
      // is not reused before copy issued - in_flight + stages, so its parity is unambiguous).
      // A K/V stage does not wait: the attention waits for it, with the products of its CTA's
      // QKV rows done (H200, 1B / 8B at 8,192 keys: 0.796 / 4.094 ms held to 2 in flight, 0.785 /
      // 4.067 not; 16,384 keys (1B): 0.953 / 0.941; unchanged at 256 and 1,024).
      if (in_flight < lay.stages && issued >= in_flight && job.kv0 < 0) {
        const uint32_t k = issued - in_flight;
        mbar_wait(full + k % lay.stages, (k / lay.stages) & 1);
      }
      if (a.trace) waited += clock64() - t0;
      if (a.diag & kPersistentDiagNoCopy) {
        mbar_arrive(full + slot);
      } else if (job.kv0 < 0) {
        mbar_arrive_expect_tx(full + slot, job.bytes);
        bulk_load(smem + slot * kStageBytes, job.src, job.bytes, full + slot, policy);
      } else {  // K rows to the stage's first half, V rows to its second, a copy per KV block
        mbar_arrive_expect_tx(full + slot, job.bytes);
        char* dst = smem + slot * kStageBytes;
        const char* pool = static_cast<const char*>(a.kv_cache);
        const int64_t k_off = cs.row_in_block(job.layer, 0, kv_head, 0) * row_bytes,
                      v_off = cs.row_in_block(job.layer, 1, kv_head, 0) * row_bytes;
        for (int32_t k = job.kv0; k < job.kv1;) {
          const int32_t e = min(job.kv1, (k / cs.block_size + 1) * cs.block_size);
          const char* rows = pool + kv_block(a, ctx, k) * cs.block_bytes() +
                             int64_t{k % cs.block_size} * row_bytes;
          const int32_t at = (k - job.kv0) * row_bytes, n = (e - k) * row_bytes;
          bulk_load_kept(dst + at, rows + k_off, n, full + slot);
          bulk_load_kept(dst + kStageBytes / 2 + at, rows + v_off, n, full + slot);
          k = e;
        }
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
  float* red = reinterpret_cast<float*>(smem + lay.red);
  const int32_t H = a.hidden, F = a.ffn, QD = a.num_heads * D;
  // The phase's row sums (Layout::acc_wide or Layout::acc), set at each phase's start.
  float* acc = nullptr;
  int32_t stride = 0;
  float* acc_warp = nullptr;
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
  // Layer -1 (the embedding, a.embed): the odd layers' copy.
  auto x_ll = [&](int32_t l, int after_down) {
    return reinterpret_cast<uint64_t*>(ws + ex.x) + (int64_t{(l + 2) % 2} * 2 + after_down) * H;
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
  // A launch's tags: [tag(-1, 4), tag(L - 1, 4)], 5 L + 1 of them, none 0 (the workspace's
  // initial tag) and none another launch's (until the count wraps, 2^32 tags on).
  const uint32_t tag_base = 2u + __ldcg(a.sync + 1) * static_cast<uint32_t>(a.num_layers * 5 + 1);
  auto tag = [&](int32_t l, int phase) {  // phases: 0 qkv, 1 attention, 2 O, 3 gate_up, 4 down
    return tag_base + static_cast<uint32_t>(l * 5 + phase);  // l = -1: the embedding, tag_base - 1
  };
  const bool check = !(a.diag & kPersistentDiagNoSync);
  // This CTA's rows of x (the O and down phases' output rows, the same share of H both times)
  // stay in shared memory, so their residual adds read nothing from global memory.
  float* own = reinterpret_cast<float*>(smem + lay.own);
  const int32_t own0 = share_begin(H, blockIdx.x), own1 = share_begin(H, blockIdx.x + 1);
  // The first layer's input: a.x, or the token's embedding row (a.embed), whose rows each CTA
  // hands the others as layer -1's output, so that the first norm reads it as every other.
  const bf16* embed_row = a.embed ? a.embed + int64_t{*a.token} * H : nullptr;
  for (int32_t i = threadIdx.x; i < own1 - own0; i += kConsumers) {
    own[i] = embed_row ? __bfloat162float(embed_row[own0 + i]) : __ldcg(a.x + own0 + i);
    if (embed_row) ll_store(x_ll(-1, 1) + own0 + i, __float_as_uint(own[i]), tag(-1, 4));
  }
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
  // One weight phase an iteration: the layers' QKV, O, gate/up and down, then (a.logits set) the
  // output layer's chunks. Each has a prologue (its input into shared memory: the RMSNorm of x,
  // or a vector of bf16 pairs), the products of its stages into the warps' row sums, and an
  // epilogue (the phase's outputs; after QKV, the attention). One loop with one products site:
  // the products' loop is the kernel's largest code, and a copy of it per phase took registers
  // and instruction cache from the others (H200, layers alone, context 256: four copies 0.761 /
  // 3.95 ms (1B / 8B), five with the output layer's 0.80 / 3.97, one 0.747 / 3.815).
  const int32_t L = a.num_layers;
  for (int32_t step = 0;; ++step) {
    const int32_t layer = min(step / 4, L);  // L: the output layer
    const int phase = layer < L ? step % 4 : kLogits;
    const int32_t chunk = step - 4 * L;  // the output layer's chunk
    const PersistentLayer* w = layer < L ? &layer_weights(a, layers, layer) : nullptr;
    int nseg = 1;
    if (layer < L) {
      nseg = phase_segments(a, *w, phase, seg, &r0, &r1);
      if (phase == kQkv) mark(layer, kTraceQkvStart);
      if (phase == kGateUp) mark(layer, kTraceGateUpStart);
      if (phase == kDown) mark(layer, kTraceDownStart);
    } else if (!a.logits || !logits_chunk(a, shape.acc_rows, chunk, seg, &r0, &r1)) {
      break;
    }
    const bool wide = phase == kGateUp || phase == kLogits;
    acc = reinterpret_cast<float*>(smem + (wide ? lay.acc_wide : lay.acc));
    stride = wide ? shape.acc_rows : shape.narrow_rows;
    acc_warp = acc + (threadIdx.x / 32) * stride;
    consumer_sync();  // every warp is done with the last epilogue's row sums and the scratch
    zero_acc();
    // The input: the RMSNorm of x (QKV and gate/up: x from the previous phase's exchange words,
    // or a.x for the first layer; the output layer's first chunk), or bf16 pairs (O and down).
    if (phase == kQkv || phase == kGateUp || (phase == kLogits && chunk == 0)) {
      const float* norm_w = phase == kQkv      ? w->attn_norm
                            : phase == kGateUp ? w->ffn_norm
                                               : a.output_norm;
      const uint64_t* x_in = phase == kQkv ? (layer > 0 || embed_row ? x_ll(layer - 1, 1) : nullptr)
                             : phase == kGateUp ? x_ll(layer, 0)
                                                : x_ll(L - 1, 1);
      const uint32_t x_tag = phase == kQkv      ? tag(layer - 1, 4)
                             : phase == kGateUp ? tag(layer, 2)
                                                : tag(L - 1, 4);
      // (Fewer registers for the norm where the attention takes 8 query heads a KV head.)
      const bool check_x = check && !(phase == kQkv && (a.diag & kPersistentDiagNoXWait));
      norm_for<GM == 8 ? 8 : 16>(x_in ? nullptr : a.x, x_in, x_tag, check_x, norm_w, H, x_s, red);
    } else if (phase == kO || phase == kDown) {
      const bool check_in =
          check && !(a.diag & (phase == kO ? kPersistentDiagNoAttnWait : kPersistentDiagNoActWait));
      pairs_to_shared(phase == kO ? attn_ll(layer) : act_ll(layer), phase == kO ? QD / 2 : F / 2,
                      phase == kO ? tag(layer, 1) : tag(layer, 3), check_in, x_s);
    }
    consumer_sync();
    if (layer < L)
      mark(layer, phase == kQkv      ? kTraceQkvInput
                  : phase == kO      ? kTraceOInput
                  : phase == kGateUp ? kTraceGateUpInput
                                     : kTraceDownInput);
    consume_phase(ring, seg, nseg, x_s, acc_warp);
    if (layer < L)
      mark(layer, phase == kQkv      ? kTraceQkvDone
                  : phase == kO      ? kTraceODone
                  : phase == kGateUp ? kTraceGateUpDone
                                     : kTraceDownDone);
    consumer_sync();
    // The scale of the phase's RMSNorm (its products took x * w): QKV, gate/up and the output
    // layer's chunks (the output norm's sums stay in `red` through them).
    const float inv = phase == kO || phase == kDown ? 1.0f : norm_scale(red, H, a.eps);
    switch (phase) {
      case kQkv:
        for (int32_t i = threadIdx.x; i < r1 - r0; i += kConsumers)
          ll_store(qkv_ll(layer) + r0 + i,
                   __float_as_uint(row_sum(i) * inv + (w->qkv_bias ? w->qkv_bias[r0 + i] : 0.0f)),
                   tag(layer, 0));
        // (A CTA without attention work marks its attention's events all at once.)
        mark(layer, kTraceAttnStart);
        mark(layer, kTraceAttnQkvIn);
        mark(layer, kTraceAttnKeysDone);
        if (check) {
          const AttentionIo io{qkv_ll(layer),
                               reinterpret_cast<uint64_t*>(ws + ex.partial) +
                                   int64_t{layer % 2} * a.num_heads * shape.splits * (D + 2),
                               attn_ll(layer), tag(layer, 0), tag(layer, 1)};
          attention<D, GM>(a, ctx, layer, shape.splits, smem + lay.scratch, io, ring,
                           [&](int event) { mark(layer, event); });
        } else {  // no attention (kPersistentDiagNoSync): its K/V stages taken and freed
          int32_t used, h, s, k0, k1;
          if (attention_share(a, shape.splits, ctx.pos, &used, &h, &s, &k0, &k1))
            for (int32_t t = kv_stages<D>(k0, ring_end(k0, k1, ctx.pos)); t > 0; --t) {
              ring_acquire(ring);
              ring_release(ring);
            }
        }
        mark(layer, kTraceAttnDone);
        break;
      case kO:
        add_to_residual(x_ll(layer, 0), tag(layer, 2), false);
        break;
      case kGateUp:
        // Outputs in pairs (a CTA's share of ffn is even): act[r0 + 2i], act[r0 + 2i + 1].
        for (int32_t i = threadIdx.x; i < (r1 - r0) / 2; i += kConsumers) {
          float y[2];
#pragma unroll
          for (int k = 0; k < 2; ++k) {
            const float g = row_sum(2 * i + k) * inv, u = row_sum(r1 - r0 + 2 * i + k) * inv;
            y[k] = g / (1.0f + __expf(-g)) * u;
          }
          ll_store(act_ll(layer) + r0 / 2 + i, pack_bf16(y[0], y[1]), tag(layer, 3));
        }
        break;
      case kDown:
        add_to_residual(x_ll(layer, 1), tag(layer, 4), layer + 1 == L);
        break;
      default: {  // the output layer, and the largest argmax key of the chunk into cta_best
        unsigned long long best = 0;
        for (int32_t i = threadIdx.x; i < r1 - r0; i += kConsumers) {
          const float v = row_sum(i) * inv;
          a.logits[r0 + i] = v;
          best = max(best, static_cast<unsigned long long>(persistent_argmax_key(v, r0 + i)));
        }
        if (a.argmax) {
          for (int o = 16; o > 0; o >>= 1) best = max(best, __shfl_xor_sync(0xFFFFFFFFu, best, o));
          if (lane == 0) atomicMax(cta_best, best);
        }
        break;
      }
    }
  }
  // This CTA's largest key into the launch's maximum (sync words 2-3), before its exit count.
  unsigned long long* argmax_max = reinterpret_cast<unsigned long long*>(a.sync + 2);
  if (a.argmax) {
    consumer_sync();
    if (threadIdx.x == 0) atomicMax(argmax_max, *cta_best);
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
      if (a.argmax) {  // every CTA's maximum is in (each fenced it before counting its exit)
        __threadfence();
        *a.argmax = persistent_argmax_token(atomicExch(argmax_max, 0ull));
      }
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

// PersistentDecodePlan::narrow_rows: the QKV, O and down phases' rows.
int32_t narrow_rows_for(int32_t hidden, int32_t num_heads, int32_t num_kv_heads, int32_t head_dim,
                        int32_t grid) {
  const int64_t nqkv = int64_t{num_heads + 2 * num_kv_heads} * head_dim;
  return static_cast<int32_t>(std::max(ceil_div(nqkv, grid), ceil_div(hidden, grid)));
}
// PersistentDecodePlan::acc_rows: the gate/up phase's rows (and at least every other phase's,
// so the output layer's chunks are no smaller than they were with one room for all).
int32_t acc_rows_for(int32_t narrow_rows, int32_t ffn, int32_t grid) {
  return std::max(narrow_rows, static_cast<int32_t>(4 * ceil_div(ffn / 2, grid)));
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

PersistentDecodePlan plan_persistent_decode(int32_t num_layers, int32_t hidden, int32_t ffn,
                                            int32_t num_heads, int32_t num_kv_heads,
                                            int32_t head_dim, int32_t max_stages) {
  PersistentDecodePlan p;
  if (device_attribute(cudaDevAttrComputeCapabilityMajor) < 9) return p;
  const int32_t sms = device_attribute(cudaDevAttrMultiProcessorCount);
  const int32_t smem_max = device_attribute(cudaDevAttrMaxSharedMemoryPerBlockOptin);
  const int32_t narrow_rows = narrow_rows_for(hidden, num_heads, num_kv_heads, head_dim, sms),
                acc_rows = acc_rows_for(narrow_rows, ffn, sms);
  const Layout none = make_layout(num_layers, hidden, ffn, num_heads, num_kv_heads, head_dim,
                                  acc_rows, narrow_rows, 0);
  const int32_t fit = std::min(kMaxStages, (smem_max - none.total) / (kStageBytes + 16));
  const int32_t stages = std::min(fit, max_stages > 0 ? max_stages : kRingStages);
  if (stages < 3) return p;  // too little shared memory to stream ahead
  p.grid = sms;
  p.stages = stages;
  p.in_flight = std::min(stages, kRingInFlight);
  p.acc_rows = acc_rows;
  p.narrow_rows = narrow_rows;
  p.smem_bytes = static_cast<size_t>(make_layout(num_layers, hidden, ffn, num_heads, num_kv_heads,
                                                 head_dim, acc_rows, narrow_rows, stages)
                                         .total);
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
  LOOM_CHECK(!a.logits || (a.lm_head && a.output_norm && a.vocab > 0),
             "persistent decode: logits without the output layer");
  LOOM_CHECK(!a.argmax || a.logits, "persistent decode: an argmax without logits");
  LOOM_CHECK(!a.embed == !a.token, "persistent decode: the embedding needs its table and token");
  KernelShape shape;
  shape.layout = make_layout(a.num_layers, a.hidden, a.ffn, a.num_heads, a.num_kv_heads, a.head_dim,
                             p.acc_rows, p.narrow_rows, p.stages);
  shape.splits = p.attn_splits;
  shape.exchange =
      persistent_exchange(a.hidden, a.ffn, a.num_heads, a.num_kv_heads, a.head_dim, p.attn_splits);
  shape.acc_rows = p.acc_rows;
  shape.narrow_rows = p.narrow_rows;
  shape.in_flight = p.in_flight > 0 ? std::min(p.in_flight, p.stages) : p.stages;
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
