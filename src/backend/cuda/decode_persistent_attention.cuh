// The attention phase of the persistent decode kernel (decode_persistent.cuh): one CTA per
// (KV head, context split), the RoPE of the token's queries and key, its K/V write into the
// paged cache, an online softmax over the split's keys (their K/V rows from the weight ring) and
// the merge of the splits by split 0 of each head. Included by decode_persistent.cu only.
#pragma once

#include "backend/cuda/attention_block_mma.cuh"
#include "backend/cuda/decode_persistent_consumer.cuh"
#include "backend/cuda/decode_persistent_device.cuh"
#include "backend/cuda/mma_sm80.cuh"

namespace loom::cuda::persistent_detail {

// What a CTA's attention reads in every layer, loaded once at the kernel's start into shared
// memory (so it costs no registers): the token's position and KV slot, and the block-table
// entries of its keys (kTableEntries at most; past that, the table is read from global memory).
struct AttentionContext {
  int64_t slot;
  int32_t pos;
  int32_t block0, blocks;  // table[i]: the entry of block block0 + i, i < blocks
  int32_t table[kTableEntries];
};

#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 900

// This CTA's attention work for a token at `pos`: KV head h, split s of `used`, keys [k0, k1).
// False when the CTA has none. The same for every layer of a launch.
__device__ __forceinline__ bool attention_share(const PersistentDecodeArgs& a, int32_t splits,
                                                int32_t pos, int32_t* used, int32_t* h, int32_t* s,
                                                int32_t* k0, int32_t* k1) {
  const int32_t L = pos + 1;
  const PersistentSplits sp = persistent_attention_splits(L, splits);
  const int32_t per = sp.per;
  *used = sp.used;
  if (static_cast<int32_t>(blockIdx.x) >= a.num_kv_heads * *used) return false;
  *h = blockIdx.x / *used;
  *s = blockIdx.x % *used;
  *k0 = min(L, *s * per);
  *k1 = min(L, *k0 + per);
  return true;
}

__device__ __forceinline__ int64_t kv_block(const PersistentDecodeArgs& a,
                                            const AttentionContext& ctx, int32_t key) {
  const int32_t b = key / a.cache.block_size - ctx.block0;
  return b < ctx.blocks ? ctx.table[b] : __ldcg(a.block_table + key / a.cache.block_size);
}

// Fills ctx (by the consumer threads, before the kernel's first barrier: the producer reads it
// too).
__device__ __forceinline__ void load_attention_context(const PersistentDecodeArgs& a,
                                                       int32_t splits, AttentionContext& ctx) {
  const int32_t pos = __ldcg(a.position);
  int32_t used, h, s, k0 = 0, k1 = 0;
  const bool any = attention_share(a, splits, pos, &used, &h, &s, &k0, &k1) && k1 > k0;
  const int32_t bs = a.cache.block_size;
  const int32_t block0 = any ? k0 / bs : 0;
  const int32_t blocks = any ? min(kTableEntries, (k1 - 1) / bs - block0 + 1) : 0;
  if (threadIdx.x == 0) {
    ctx.slot = __ldcg(a.slot);
    ctx.pos = pos;
    ctx.block0 = block0;
    ctx.blocks = blocks;
  }
  for (int32_t i = threadIdx.x; i < blocks; i += kConsumers)
    ctx.table[i] = __ldcg(a.block_table + block0 + i);
}

// The keys of a CTA's split [k0, k1) (attention_share) that reach it through the weight ring,
// their K and V rows copied by the producer as ring stages right after the layer's QKV weights:
// [k0, ring_end), every key but the new token (pos), whose rows this launch writes. Keys a
// stage: persistent_kv_stage_keys (their K rows, then their V rows, in key order).
__device__ __forceinline__ int32_t ring_end(int32_t k0, int32_t k1, int32_t pos) {
  return max(k0, min(k1, pos));
}
// Ring stages of the keys [k0, end).
template <int D>
__device__ __forceinline__ int32_t kv_stages(int32_t k0, int32_t end) {
  return (end - k0 + persistent_kv_stage_keys(D) - 1) / persistent_kv_stage_keys(D);
}

// A ring stage landed: every consumer thread waits for it.
__device__ __forceinline__ const char* ring_acquire(Ring& ring) {
  mbar_wait(ring.full + ring.slot, ring.parity);
  return ring.stages + ring.slot * kStageBytes;
}
// This warp is done with the stage (after its last read of it).
__device__ __forceinline__ void ring_release(Ring& ring) {
  release_stage(ring);
  if (++ring.slot == ring.count) ring.slot = 0, ring.parity ^= 1;
}

// Where a layer's attention reads and writes: the QKV phase's output (tag qkv_tag), the splits'
// partials and the output pairs (written with tag attn_tag).
struct AttentionIo {
  const uint64_t* qkv;
  uint64_t* partial;  // [num_heads][splits][D + 2] f32 words: o, then max and sum
  uint64_t* out;      // [q_dim / 2]
  uint32_t qkv_tag, attn_tag;
};

// Rows [0, G * D) of out_s (f32, this CTA's heads' outputs) as bf16 pairs into io.out.
template <int D>
__device__ __forceinline__ void store_attention(const float* out_s, int32_t h, int32_t G,
                                                const AttentionIo& io) {
  for (int32_t i = threadIdx.x; i < G * D / 2; i += kConsumers)
    ll_store(io.out + h * G * D / 2 + i, pack_bf16(out_s[2 * i], out_s[2 * i + 1]), io.attn_tag);
}

// The attention phase of CTA (kv head h, split s); see the file comment of the .cuh. The context
// is cut into splits by attention_share; with one split the CTA writes the output itself. GM: the
// most query heads per KV head the instance takes (its registers).
// mark(event): records a trace point (PersistentTraceEvent) where tracing is on.
template <int D, int GM, class Mark>
__device__ void attention(const PersistentDecodeArgs& a, const AttentionContext& ctx, int32_t layer,
                          int32_t splits, char* scratch, const AttentionIo& io, Ring& ring,
                          const Mark& mark) {
  const int32_t KH = a.num_kv_heads, G = a.num_heads / KH;
  const int32_t pos = ctx.pos;
  int32_t used, h, s, k0, k1;
  if (!attention_share(a, splits, pos, &used, &h, &s, &k0, &k1)) return;  // CTA-uniform
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int32_t half = D / 2, QD = a.num_heads * D, KVD = KH * D;
  float* q_s = reinterpret_cast<float*>(scratch);                      // [G][D], scaled for exp2
  float* part = q_s + G * D;                                           // [warps][G][D]
  float* ml = part + kConsumerWarps * G * D;                           // [warps][G][2]
  uint4* q_f = reinterpret_cast<uint4*>(ml + kConsumerWarps * G * 2);  // [D / 32][32], below
  bf16* new_kv = reinterpret_cast<bf16*>(q_f + D);  // [2][D]: the new token's K and V rows
  const float qscale = a.scale * 1.4426950408889634f;
  uint8_t* cache = static_cast<uint8_t*>(a.kv_cache);
  const KvCacheShape& c = a.cache;

  // RoPE: rotation pair p of a head is dims (i0, i1) (rope_kv.cuh's pairing).
  auto pair_dims = [&](int32_t p, int32_t& i0, int32_t& i1) {
    i0 = a.neox ? p : 2 * p;
    i1 = a.neox ? p + half : 2 * p + 1;
  };
  // Every pair a thread rotates (its query pairs and the new key's) is pair tid % half, since
  // kConsumers is a multiple of half: its angle is taken before the wait for the QKV words, so
  // that the inv_freq load (a round trip to L2) and sincosf are off the critical path.
  static_assert(kConsumers % (D / 2) == 0, "a thread's pairs share one rotation");
  float rot_sin, rot_cos;
  sincosf(static_cast<float>(pos) * __ldg(a.inv_freq + threadIdx.x % half), &rot_sin, &rot_cos);
  auto rotate = [&](float x0, float x1, float& y0, float& y1) {
    y0 = x0 * rot_cos - x1 * rot_sin;
    y1 = x0 * rot_sin + x1 * rot_cos;
  };
  // A thread's words of the QKV output, all waited for together (one round trip to L2 on the
  // attention's critical path instead of one each for the queries, the key and the value): its
  // query pairs i = threadIdx.x + j * kConsumers (j < kQueryPairs; pair i % half of head
  // i / half of the group), and in the split that holds the new token the key's pair p =
  // threadIdx.x and the value's dims 2p, 2p + 1 (p < half).
  constexpr int kQueryPairs = (GM * D / 2 + kConsumers - 1) / kConsumers;
  constexpr int kWordsIn = 2 * kQueryPairs + 4;
  const bool new_token = k0 <= pos && pos < k1;
  const int32_t tid = threadIdx.x;
  const bool kv_pair = new_token && tid < half;
  auto word = [&](int i) -> const uint64_t* {
    int32_t i0, i1;
    if (i < 2 * kQueryPairs) {
      const int32_t q = tid + (i / 2) * kConsumers;
      if (q >= G * half) return nullptr;
      pair_dims(q % half, i0, i1);
      return io.qkv + (h * G + q / half) * D + (i % 2 ? i1 : i0);
    }
    if (!kv_pair) return nullptr;
    const int k = i - 2 * kQueryPairs;  // 0, 1: the key's pair; 2, 3: the value's dims
    if (k >= 2) return io.qkv + QD + KVD + h * D + 2 * tid + (k - 2);
    pair_dims(tid, i0, i1);
    return io.qkv + QD + h * D + (k ? i1 : i0);
  };
  uint64_t w[kWordsIn];
  ll_wait_at<kWordsIn>(word, io.qkv_tag, true, w);
#pragma unroll
  for (int j = 0; j < kQueryPairs; ++j) {
    const int32_t q = tid + j * kConsumers;
    if (q >= G * half) break;
    const int32_t g = q / half, p = q % half;
    float y0, y1;
    int32_t i0, i1;
    pair_dims(p, i0, i1);
    rotate(ll_f32(w[2 * j]), ll_f32(w[2 * j + 1]), y0, y1);
    q_s[g * D + i0] = y0 * qscale;
    q_s[g * D + i1] = y1 * qscale;
  }
  if (kv_pair) {  // this split holds the new token: write its K and V
    const int64_t slot = ctx.slot;
    const int64_t block = slot / c.block_size;
    const int32_t in_block = static_cast<int32_t>(slot % c.block_size);
    bf16* k_row =
        reinterpret_cast<bf16*>(cache + c.value_byte_offset(block, layer, 0, h, in_block));
    bf16* v_row =
        reinterpret_cast<bf16*>(cache + c.value_byte_offset(block, layer, 1, h, in_block));
    const uint64_t* kv = w + 2 * kQueryPairs;
    float y0, y1;
    int32_t i0, i1;
    pair_dims(tid, i0, i1);
    rotate(ll_f32(kv[0]), ll_f32(kv[1]), y0, y1);
    k_row[i0] = __float2bfloat16(y0);
    k_row[i1] = __float2bfloat16(y1);
    const uint32_t v2 = pack_bf16(ll_f32(kv[2]), ll_f32(kv[3]));
    reinterpret_cast<uint32_t*>(v_row)[tid] = v2;
    // And into shared memory, where the key loop reads it (the ring has the other keys' rows).
    new_kv[i0] = __float2bfloat16(y0);
    new_kv[i1] = __float2bfloat16(y1);
    reinterpret_cast<uint32_t*>(new_kv + D)[tid] = v2;
  }
  consumer_sync();
  mark(kTraceAttnQkvIn);

  // The queries as the A fragments of S = Q K^T (bf16; attention_decode_mma.cu's layout, whose
  // head dims are contracted in a permuted order): q_f[hq][lane] = {a0, a2 of k-step 2 hq, a0,
  // a2 of k-step 2 hq + 1} of S row lane / 4, i.e. query head lane / 4 of the group at dims
  // [8 (lane % 4) + 32 hq, + 8); rows past G are zeros. Reloaded from shared memory every block
  // (their registers stay free for the loads in flight).
  for (int32_t i = threadIdx.x; i < D; i += kConsumers) {
    const int32_t il = i % 32, r = il / 4, col = 8 * (il % 4) + 32 * (i / 32);
    uint4 v = make_uint4(0, 0, 0, 0);
    if (r < G) {
      const float* qr = q_s + r * D + col;
      v = make_uint4(pack_bf16(qr[0], qr[1]), pack_bf16(qr[2], qr[3]), pack_bf16(qr[4], qr[5]),
                     pack_bf16(qr[6], qr[7]));
    }
    q_f[i] = v;
  }
  consumer_sync();

  // Online softmax over the split's keys on the tensor cores (attention_block_mma.cuh, one head
  // tile), their K and V rows read from the ring's stages (and the new token's from new_kv).
  // o[0][mt][e]: O[head 2cl + (e & 1)][dim 8g + 64 (mt / 4) + 2 (mt % 4) + (e >> 1)]; m[0], l[0]:
  // S row g's running maximum (base 2) and this lane's share of its sum.
  const int g = lane / 4, cl = lane % 4;
  constexpr int32_t kRowBytes = D * 2;
  float o[1][D / 16][4];
#pragma unroll
  for (int mt = 0; mt < D / 16; ++mt)
#pragma unroll
    for (int e = 0; e < 4; ++e) o[0][mt][e] = 0.0f;
  float m[1] = {-INFINITY}, l[1] = {0.0f};
  // The block of keys [kb, kb + 16) from `stage` (keys [ks0, ...) of the ring) and the new
  // token's rows (new_kv); keys at or past k1 are zeros, weight 0.
  auto attend_block = [&](int32_t kb, const char* stage, int32_t ks0) {
    auto k_row = [&](int x) -> const char* {
      const int32_t key = kb + x;
      if (key >= k1) return nullptr;
      if (key == pos) return reinterpret_cast<const char*>(new_kv);
      return stage + (key - ks0) * kRowBytes;
    };
    auto v_offset = [&](int x) {  // bytes from a key's K row to its V row
      return kb + x == pos ? kRowBytes : kStageBytes / 2;
    };
    uint4 kr[2][D / 32], vr[4][D / 64];
#pragma unroll
    for (int n = 0; n < 2; ++n) {
      const char* p = k_row(8 * n + g);
#pragma unroll
      for (int hq = 0; hq < D / 32; ++hq)
        kr[n][hq] = p ? lds128(p + (8 * cl + 32 * hq) * 2) : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int x = 2 * cl + (i & 1) + 8 * (i >> 1);
      const char* p = k_row(x);
#pragma unroll
      for (int hh = 0; hh < D / 64; ++hh)
        vr[i][hh] = p ? lds128(p + v_offset(x) + (8 * g + 64 * hh) * 2) : make_uint4(0, 0, 0, 0);
    }
    attention_mma::attend_key_block<D, 1>(
        kr, vr, [&](int hq, int) { return q_f[hq * 32 + lane]; }, kb, k1, o, m, l);
  };
  // The ring's stages of this split's keys, in order; warp w takes the stage's 16-key blocks w,
  // w + 8, ... Then the new token's block if no stage held it (it starts a block).
  constexpr int32_t kStageKeys = persistent_kv_stage_keys(D);
  const int32_t stages = kv_stages<D>(k0, ring_end(k0, k1, pos));
  for (int32_t t = 0; t < stages; ++t) {
    const int32_t ks0 = k0 + t * kStageKeys;
    const char* stage = ring_acquire(ring);
    const int32_t ks1 = min(k1, ks0 + kStageKeys);  // with the new token where it is in range
    for (int32_t kb = ks0 + 16 * warp; kb < ks1; kb += 16 * kConsumerWarps)
      attend_block(kb, stage, ks0);
    ring_release(ring);
  }
  if (k0 <= pos && pos < k1 && pos >= k0 + stages * kStageKeys && warp == 0)
    attend_block(pos, nullptr, pos);
  const float m_r = m[0];
  float l_r = l[0] + __shfl_xor_sync(0xffffffffu, l[0], 1);
  l_r += __shfl_xor_sync(0xffffffffu, l_r, 2);

  // The warps' partials meet in shared memory (a warp without keys: m -inf, l 0, o 0).
  if (cl == 0 && g < G) {
    ml[(warp * G + g) * 2] = m_r;
    ml[(warp * G + g) * 2 + 1] = l_r;
  }
#pragma unroll
  for (int mt = 0; mt < D / 16; ++mt) {
    const int32_t d = 8 * g + 64 * (mt / 4) + 2 * (mt % 4);
    if (2 * cl < G) {
      part[(warp * G + 2 * cl) * D + d] = o[0][mt][0];
      part[(warp * G + 2 * cl) * D + d + 1] = o[0][mt][2];
    }
    if (2 * cl + 1 < G) {
      part[(warp * G + 2 * cl + 1) * D + d] = o[0][mt][1];
      part[(warp * G + 2 * cl + 1) * D + d + 1] = o[0][mt][3];
    }
  }
  consumer_sync();
  uint64_t* ws = io.partial;
  float* out_s = q_s;  // the queries are no longer read by now: [G][D] f32, the outputs
  for (int32_t i = threadIdx.x; i < G * D; i += kConsumers) {
    const int32_t g = i / D, d = i % D;
    float mx = -INFINITY;
    for (int w = 0; w < kConsumerWarps; ++w) mx = fmaxf(mx, ml[(w * G + g) * 2]);
    float o = 0.0f, sum = 0.0f;
    if (mx != -INFINITY)
      for (int w = 0; w < kConsumerWarps; ++w) {
        const float mw = ml[(w * G + g) * 2];
        if (mw == -INFINITY) continue;
        const float f = exp2f(mw - mx);
        o += part[(w * G + g) * D + d] * f;
        sum += ml[(w * G + g) * 2 + 1] * f;
      }
    if (used == 1) {  // the whole context: the output itself
      out_s[i] = o / sum;
      continue;
    }
    uint64_t* dst = ws + (int64_t{h * G + g} * splits + s) * (D + 2);
    ll_store(dst + d, __float_as_uint(o), io.attn_tag);
    if (d == 0) {
      ll_store(dst + D, __float_as_uint(mx), io.attn_tag);
      ll_store(dst + D + 1, __float_as_uint(sum), io.attn_tag);
    }
  }
  if (used == 1) {
    consumer_sync();
    mark(kTraceAttnKeysDone);
    store_attention<D>(out_s, h, G, io);
    return;
  }
  mark(kTraceAttnKeysDone);
  if (s != 0) return;
  // Split 0 merges the head's splits as their partials arrive (exchange words: no fence, no
  // counter): each output over the splits, a running (max, sum, output) updated kBatch splits at
  // a time, the (output, max, sum) words of those splits waited for together (one round trip for
  // up to kBatch splits; the max and sum words are read by every thread of a head, from L2).
  // Four splits a round trip with 8 query heads a KV head, whose registers leave no room for 8.
  constexpr int kBatch = GM <= 4 ? 8 : 4;
  for (int32_t i = threadIdx.x; i < G * D; i += kConsumers) {
    const int32_t g = i / D, d = i % D;
    const uint64_t* head = ws + int64_t{h * G + g} * splits * (D + 2);
    float mx = -INFINITY, o = 0.0f, sum = 0.0f;
    for (int32_t t0 = 0; t0 < used; t0 += kBatch) {
      auto word = [&](int k) {  // split t0 + k / 3 (a repeat of the last past `used`)
        const uint64_t* src = head + int64_t{min(t0 + k / 3, used - 1)} * (D + 2);
        return src + (k % 3 == 0 ? d : D + k % 3 - 1);
      };
      uint64_t v[3 * kBatch];
      ll_wait_at<3 * kBatch>(word, io.attn_tag, true, v);
#pragma unroll
      for (int j = 0; j < kBatch; ++j) {
        const float mt = ll_f32(v[3 * j + 1]);
        if (t0 + j >= used || mt == -INFINITY) continue;
        const float m_new = fmaxf(mx, mt);
        const float f_old = exp2f(mx - m_new), f = exp2f(mt - m_new);
        o = o * f_old + ll_f32(v[3 * j]) * f;
        sum = sum * f_old + ll_f32(v[3 * j + 2]) * f;
        mx = m_new;
      }
    }
    out_s[i] = o / sum;
  }
  consumer_sync();
  store_attention<D>(out_s, h, G, io);
}

#endif

}  // namespace loom::cuda::persistent_detail
