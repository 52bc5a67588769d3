// The persistent decode kernel: every layer of a one-token step (single-stream decode) in one
// launch, its weights streamed without a gap between matrices.
//
// Why: at one token a step is a pass over the weights, so its floor is weight bytes over memory
// bandwidth. One kernel per matrix cannot get near it: each launch pays a ramp (a DRAM round trip
// before its first bytes arrive) and a tail (its last CTAs alone on the GPU), and the small
// matrices (1B's QKV and O: 8-13 MB, 2-3 us of bandwidth) are mostly ramp and tail; measured on
// an H200, a Llama-3.2-1B step was 2x its floor (benchmarks-cuda.md, "The small-batch products").
// Weights do not depend on the activations, so nothing stops them from being loaded ahead: here
// one warp of each CTA (the producer) streams the CTA's share of every matrix of every layer, in
// order, into a ring of 32 KB shared-memory stages with bulk asynchronous copies (cp.async.bulk;
// per stage a "full" mbarrier completed by the copy and an "empty" one the consumers arrive on),
// running ahead of the computation by the ring's depth (5 stages by default, 160 KB a CTA, ~5 us
// of the CTA's share of bandwidth) with at most 2 weight copies in flight by default (more
// outstanding copies slow the hand-overs' round trips to L2 more than they add bandwidth; the
// backend measures 5 or 6 stages by 1 or 2 copies at start and keeps the fastest, since the best
// depends on the GPU and the model). The eight consumer warps wait for the activations, then take
// the stages as they land. So the memory system keeps streaming through the waits, the attention
// and the norms.
//
// Grid: one CTA per SM, all resident (cooperative launch); 8 consumer warps + 1 producer warp.
// The CTAs hand each other a phase's outputs through tagged exchange words (PersistentExchange):
// a CTA that needs a vector reads it and waits only for the words that do not carry the layer's
// and phase's tag yet, with no grid barrier (a barrier costs a release, an arrival and a poll,
// ~3 round trips to L2 that queue behind the weight stream, on the critical path five times a
// layer). Per layer:
//   qkv    every CTA: RMSNorm(x) into shared memory as bf16(x * w), its scale rsqrt(mean x^2 +
//          eps) applied to the row sums after the products (so they need not wait for the
//          block's sum of squares);
//          its rows of W_qkv -> qkv (f32, bias added)
//   attn   CTA (kv head h, split s) of num_kv_heads x splits (whole 16-key blocks; one split
//          up to 128 keys, else splits of >= 32 keys): RoPE of the group's queries and, in the
//          split holding the new token, of its key, whose K/V it writes into the paged cache;
//          online softmax over its keys on the tensor cores (warps over 16-key blocks, as
//          attention_decode_mma.cu); (max, sum, output) to a workspace (exchange words); split 0
//          of each head merges the splits as they arrive into attn (bf16 pairs). The K and V
//          rows of its keys (all but the new token's) do not depend on the step either: the
//          producer copies them into ring stages right after the layer's QKV weights (a copy per
//          KV block, L2's default policy: they are read again the next step), so they are in
//          shared memory when the queries arrive, with no round trip on the critical path.
//   o      attn into shared memory; its rows of W_o, added into x (the residual stream)
//   gate   RMSNorm(x); its outputs n of W_gate_up (gate row n and up row ffn + n) ->
//          act[n] = silu(gate) * up (bf16 pairs: a CTA's share of n is even)
//   down   act into shared memory; its rows of W_down, added into x
// and after the last layer, when the step wants logits:
//   logits RMSNorm(x) with the output norm; its rows of the output layer -> logits (f32), in
//          chunks of at most acc_rows rows (the row sums' room); so the output layer streams
//          right behind the last layer's weights (the ring fills during the last hand-over)
//          instead of in a kernel of its own with its ramp, its tail and a norm kernel before.
// A CTA's rows of a matrix are one contiguous byte range (row-major weights), split into stages;
// consumer warp w takes the w-th 4 KB of each stage as eight 512-byte slices (16 bytes a lane,
// always inside one row since rows are multiples of 512 bytes) and dots them with x on the tensor
// cores (each slice an mma A operand, the wanted sums on the diagonals; rows that are not a
// multiple of 4 KB take the CUDA cores), and reduces a row across the warp only when it moves to
// another row, into its own row sums in shared memory (summed over the warps in a fixed order at
// the phase's end: bitwise deterministic). Each CTA keeps its rows of x (the O and down phases'
// outputs), the token's position and slot and its keys' block-table entries in shared memory, so
// that the critical path between phases has as few round trips to L2 as it can. Why the next
// write of an exchange vector cannot overtake its last reader: each phase reads the whole output
// of the one before (all CTAs'), so a CTA two phases on has seen every CTA finish the reads of
// the phase in between; the two copies by layer parity leave a whole layer between reuses.
//
// Scope: one token (batch 1), bf16 weights and KV cache, head_dim 64 or 128, up to 8 query heads
// per KV head, hidden / ffn / q_dim multiples of 256 (persistent_decode_supports); anything else
// takes the layer-by-layer kernels. Hopper (sm_90: bulk copies with mbarrier transactions).
#pragma once

#include <cmath>
#include <cstring>
#include <string>

#include "backend/cuda/cuda_common.cuh"
#include "backend/cuda/kv_cache_format.h"
#include "model/model_config.h"

namespace loom::cuda {

struct PersistentLayer {
  const bf16* w_qkv = nullptr;      // [q_dim + 2 kv_dim][hidden]
  const bf16* w_o = nullptr;        // [hidden][q_dim]
  const bf16* w_gate_up = nullptr;  // [2 ffn][hidden]: gate rows, then up rows
  const bf16* w_down = nullptr;     // [hidden][ffn]
  const float* attn_norm = nullptr;
  const float* ffn_norm = nullptr;
  const float* qkv_bias = nullptr;  // [q_dim + 2 kv_dim] or null
};

// The attention's context splits for a token of `keys` keys (its position + 1), at most `splits`
// of them (PersistentDecodePlan::attn_splits): how many are used, each of `per` keys (whole
// 16-key blocks, the key loop's unit; the last takes the rest). How many:
//  - one while the context is at most a 16-key block per consumer warp (128 keys): one round
//    trip for the keys and no merge;
//  - else splits of at least 32 keys, at most 8 of them (split 0 merges up to 8 in one round
//    trip) while that leaves each at most 128 keys;
//  - longer contexts: splits of 128 keys or more, as many as `splits`.
// (H200, kernel with a 49,152-row output layer, 1B / 8B: context 64: 0.696 -> 0.679 ms with one
// split; 1,024: 0.713 / 3.735 with 16 splits of 64 keys, 0.703 / 3.700 with 8 of 128; 256: 8
// splits of 32 keys best.) Fewer than asked for where rounding up to blocks empties the last.
struct PersistentSplits {
  int32_t used, per;
};
__host__ __device__ inline PersistentSplits persistent_attention_splits(int32_t keys,
                                                                        int32_t splits) {
  constexpr int32_t kOneSplitKeys = 128, kMinKeys = 32, kMergeSplits = 8;
  int32_t want = 1;
  if (keys > kOneSplitKeys) {
    const int32_t small = (keys + kMinKeys - 1) / kMinKeys,
                  large = (keys + kOneSplitKeys - 1) / kOneSplitKeys;
    want = small < kMergeSplits ? small : kMergeSplits;
    if (large > want) want = large;
    if (splits < want) want = splits;
  }
  const int32_t per = ((keys + want - 1) / want + 15) / 16 * 16;
  return {(keys + per - 1) / per, per};
}

// The launch's shape, fixed for a model on a GPU (plan_persistent_decode).
// Bytes of one ring stage (one bulk copy).
constexpr int32_t kPersistentStageBytes = 32768;

// Keys a ring stage of the attention's K/V rows holds: K rows in its first half, V rows in its
// second (head_dim bf16 each).
__host__ __device__ constexpr int32_t persistent_kv_stage_keys(int32_t head_dim) {
  return kPersistentStageBytes / (4 * head_dim);
}

struct PersistentDecodePlan {
  int32_t grid = 0;             // CTAs: one per SM
  int32_t stages = 0;           // ring stages of kPersistentStageBytes per CTA
  int32_t in_flight = 0;        // copies a CTA's producer keeps in flight at most (<= stages)
  int32_t attn_splits = 0;      // context splits per KV head
  int32_t acc_rows = 0;         // most row sums a CTA keeps in a gate/up or output-layer phase
  int32_t narrow_rows = 0;      // ... in a QKV, O or down phase (and its rows of x)
  size_t smem_bytes = 0;        // dynamic shared memory per CTA
  int64_t workspace_bytes = 0;  // PersistentDecodeArgs::workspace (PersistentExchange)
};

// The workspace through which the CTAs hand each other a phase's outputs, two copies (even and
// odd layers). The vectors travel as 8-byte words, a 32-bit payload (an f32, or two bf16) and a
// 32-bit tag naming the layer and phase that wrote it, stored in one store: a reader that sees
// the tag it waits for has the payload with it, so a phase's output needs no fence and no grid
// barrier, only the writer's store and the reader's load (the protocol of NCCL's LL transfers).
// Byte offsets:
struct PersistentExchange {
  int64_t x = 0;        // u64 [2 layers][2: after O, after down][hidden]: the residual stream
  int64_t qkv = 0;      // u64 [2][q_dim + 2 kv_dim]: f32, bias added
  int64_t attn = 0;     // u64 [2][q_dim / 2]: bf16 pairs
  int64_t act = 0;      // u64 [2][ffn / 2]: bf16 pairs, silu(gate) * up
  int64_t partial = 0;  // u64 [2][num_heads][splits][head_dim + 2]: the splits' (o, max, sum)
  int64_t bytes = 0;
};
PersistentExchange persistent_exchange(int32_t hidden, int32_t ffn, int32_t num_heads,
                                       int32_t num_kv_heads, int32_t head_dim, int32_t splits);

// Words of the synchronisation buffer: the exit counter, the launch count (the tags' base), and
// (words 2-3, one u64) the running maximum of the greedy argmax's keys (persistent_argmax_key).
// Zero when allocated; a launch leaves the exit counter and the maximum zero.
constexpr int32_t kPersistentMaxKvHeads = 128;
constexpr int32_t kPersistentSyncWords = 4;

// The greedy argmax of the logits as one 64-bit maximum (the CTAs' atomicMax): the value's bits
// mapped so that unsigned order is float order (high word) and the index inverted (low word), so
// the largest value wins and ties go to the lowest index, as launch_argmax. -0.0 is taken as +0.0
// (they compare equal as floats); NaN gets key 0, below every other, so it never wins.
__host__ __device__ inline uint64_t persistent_argmax_key(float v, int32_t index) {
  if (!(v == v)) return 0;
  v += 0.0f;  // -0.0 -> +0.0
  uint32_t bits;
  memcpy(&bits, &v, 4);
  bits = (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
  return (static_cast<uint64_t>(bits) << 32) | (0xFFFFFFFFu - static_cast<uint32_t>(index));
}
// The token of the largest key: 0 when no value won or the largest is -inf (every logit -inf or
// NaN), as launch_argmax and sample_token.
__host__ __device__ inline int32_t persistent_argmax_token(uint64_t key) {
  const uint32_t neg_inf = ~0xFF800000u;  // the key's high word for -inf
  if (key == 0 || static_cast<uint32_t>(key >> 32) <= neg_inf) return 0;
  return static_cast<int32_t>(0xFFFFFFFFu - static_cast<uint32_t>(key));
}

struct PersistentDecodeArgs {
  int32_t num_layers = 0, hidden = 0, ffn = 0, num_heads = 0, num_kv_heads = 0, head_dim = 0;
  float eps = 0.0f;                         // RMSNorm
  float scale = 0.0f;                       // attention: 1 / sqrt(head_dim)
  bool neox = true;                         // RoPE pairing (rope_kv.cuh)
  const PersistentLayer* layers = nullptr;  // device array [num_layers]
  float* x = nullptr;                       // [hidden] f32: the residual out (and in, without
                                            // embed)
  // The embedding in the kernel: x = embed[*token] (bf16 rows of `hidden`); null: x is the
  // input, written before the launch.
  const bf16* embed = nullptr;
  const int32_t* token = nullptr;        // [1]
  const int32_t* position = nullptr;     // [1] the token's position
  const int64_t* slot = nullptr;         // [1] its KV cache slot
  const int32_t* block_table = nullptr;  // its sequence's block table (position / block_size
                                         // + 1 entries used)
  const float* inv_freq = nullptr;       // [head_dim / 2]
  // The output layer, as the kernel's last phase; logits null: none (a chunk without logits).
  const bf16* lm_head = nullptr;       // [vocab][hidden]
  const float* output_norm = nullptr;  // [hidden]
  int32_t vocab = 0;
  float* logits = nullptr;  // [vocab] f32
  // The greedy argmax of the logits (with logits only; null: none), written by the last CTA out.
  int32_t* argmax = nullptr;  // [1]
  void* kv_cache = nullptr;   // bf16 pool (kv_cache_format.h)
  KvCacheShape cache;
  void* workspace = nullptr;  // plan.workspace_bytes (PersistentExchange), zeroed once
  unsigned* sync = nullptr;   // kPersistentSyncWords, zeroed once
  // Diagnostics (benchmarks only; null in the backend): when set, thread 0 of each CTA records
  // the global timer (ns) at kPersistentTraceEvents points of every layer,
  // trace[(cta * num_layers + layer) * kPersistentTraceEvents + event], and after those
  // (grid * num_layers * kPersistentTraceEvents words on) two words per CTA: the clock cycles its
  // consumers (warp 0) waited for stages to land and its producer waited for free stages (or
  // for its copies in flight to land, PersistentDecodePlan::in_flight).
  unsigned long long* trace = nullptr;
  // Experiments (benchmarks only; zero in the backend): diag bits take parts out to see what
  // each costs, so the results are wrong: kPersistentDiagNoMath (consumers only wait for the
  // stages and free them), kPersistentDiagNoSync (no waiting for other CTAs, no attention),
  // kPersistentDiagNoCopy (the producer completes each stage without copying), and one
  // hand-over's wait alone: kPersistentDiagNoActWait, kPersistentDiagNoAttnWait,
  // kPersistentDiagNoXWait; kPersistentDiagCudaCoreDot takes the products on the CUDA cores
  // instead of the tensor cores (same results within rounding).
  uint32_t diag = 0;
};
// The arguments' model fields (shape, norm epsilon, attention scale, RoPE pairing) from its
// config; the caller sets the weights, buffers and the step's inputs.
inline PersistentDecodeArgs persistent_model_args(const ModelConfig& c) {
  PersistentDecodeArgs a;
  a.num_layers = c.num_layers;
  a.hidden = c.hidden_size;
  a.ffn = c.intermediate_size;
  a.num_heads = c.num_heads;
  a.num_kv_heads = c.num_kv_heads;
  a.head_dim = c.head_dim;
  a.eps = c.rms_norm_eps;
  a.scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  a.neox = c.rope_style == RopeStyle::kNeox;
  return a;
}

constexpr uint32_t kPersistentDiagNoMath = 1, kPersistentDiagNoSync = 2, kPersistentDiagNoCopy = 4,
                   kPersistentDiagCudaCoreDot = 8;
// One hand-over's wait taken out (the phase reads its input words as they are): the down phase's
// for act, the O phase's for the attention, the QKV phase's for x (what each hand-over costs).
constexpr uint32_t kPersistentDiagNoActWait = 16, kPersistentDiagNoAttnWait = 32,
                   kPersistentDiagNoXWait = 64;

// Trace points of a layer (PersistentDecodeArgs::trace), in order: each weight phase's start (its
// loop iteration: the previous phase's outputs stored), its input in shared memory (the waits
// for other CTAs done) and its last stage consumed (by warp 0); between QKV and O the attention's
// start, its QKV words arrived (and RoPE done), its keys done (partials stored; before split 0's
// merge) and its end (a CTA without attention work marks all four at once).
enum PersistentTraceEvent : int32_t {
  kTraceQkvStart = 0,
  kTraceQkvInput,
  kTraceQkvDone,
  kTraceAttnStart,
  kTraceAttnQkvIn,
  kTraceAttnKeysDone,
  kTraceAttnDone,  // = the O phase's start
  kTraceOInput,
  kTraceODone,
  kTraceGateUpStart,
  kTraceGateUpInput,
  kTraceGateUpDone,
  kTraceDownStart,
  kTraceDownInput,
  kTraceDownDone,
  kPersistentTraceEvents
};

// Whether the kernel takes this model (empty `why`) or not (`why` says what is missing).
bool persistent_decode_supports(int32_t hidden, int32_t ffn, int32_t num_heads,
                                int32_t num_kv_heads, int32_t head_dim, KvCacheDtype dtype,
                                std::string* why);

// The launch shape on the current device; grid == 0 when the device cannot run it (before
// Hopper, or too little shared memory). max_stages > 0: a ring of that many stages (as many as
// fit, at most) instead of the default (benchmarks).
PersistentDecodePlan plan_persistent_decode(int32_t num_layers, int32_t hidden, int32_t ffn,
                                            int32_t num_heads, int32_t num_kv_heads,
                                            int32_t head_dim, int32_t max_stages = 0);

void launch_persistent_decode(const PersistentDecodeArgs& args, const PersistentDecodePlan& plan,
                              cudaStream_t stream);

}  // namespace loom::cuda
