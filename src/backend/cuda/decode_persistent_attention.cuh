// The attention phase of the persistent decode kernel (decode_persistent.cuh): one CTA per
// (KV head, context split), the RoPE of the token's queries and key, its K/V write into the
// paged cache, an online softmax over the split's keys and the merge of the splits by the last
// CTA of each head to finish. Included by decode_persistent.cu only.
#pragma once

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
  *used = max(1, min(splits, (L + kMinKeysPerSplit - 1) / kMinKeysPerSplit));
  if (static_cast<int32_t>(blockIdx.x) >= a.num_kv_heads * *used) return false;
  *h = blockIdx.x / *used;
  *s = blockIdx.x % *used;
  const int32_t per = (L + *used - 1) / *used;
  *k0 = min(L, *s * per);
  *k1 = min(L, *k0 + per);
  return true;
}

__device__ __forceinline__ int64_t kv_block(const PersistentDecodeArgs& a,
                                            const AttentionContext& ctx, int32_t key) {
  const int32_t b = key / a.cache.block_size - ctx.block0;
  return b < ctx.blocks ? ctx.table[b] : __ldcg(a.block_table + key / a.cache.block_size);
}

// Fills ctx (by the consumers; the caller synchronises them before its first use).
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
// is cut into as many splits as give each at least kMinKeysPerSplit keys (at most `splits`);
// with one split the CTA writes the output itself. GM: the most query heads per KV head the
// instance takes (its registers).
template <int D, int GM>
__device__ void attention(const PersistentDecodeArgs& a, const AttentionContext& ctx, int32_t layer,
                          int32_t splits, char* scratch, const AttentionIo& io) {
  constexpr int DPL = D / 32;  // dims a lane holds
  const int32_t KH = a.num_kv_heads, G = a.num_heads / KH;
  const int32_t pos = ctx.pos;
  int32_t used, h, s, k0, k1;
  if (!attention_share(a, splits, pos, &used, &h, &s, &k0, &k1)) return;  // CTA-uniform
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int32_t half = D / 2, QD = a.num_heads * D, KVD = KH * D;
  float* q_s = reinterpret_cast<float*>(scratch);  // [G][D], scaled for exp2
  float* part = q_s + G * D;                       // [warps][G][D]
  float* ml = part + kConsumerWarps * G * D;       // [warps][G][2]
  const float qscale = a.scale * 1.4426950408889634f;
  uint8_t* cache = static_cast<uint8_t*>(a.kv_cache);
  const KvCacheShape& c = a.cache;

  // RoPE: rotation pair p of a head is dims (i0, i1) (rope_kv.cuh's pairing).
  auto pair_dims = [&](int32_t p, int32_t& i0, int32_t& i1) {
    i0 = a.neox ? p : 2 * p;
    i1 = a.neox ? p + half : 2 * p + 1;
  };
  auto rotate = [&](int32_t p, float x0, float x1, float& y0, float& y1) {
    float sn, cs;
    sincosf(static_cast<float>(pos) * __ldg(a.inv_freq + p), &sn, &cs);
    y0 = x0 * cs - x1 * sn;
    y1 = x0 * sn + x1 * cs;
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
    rotate(p, ll_f32(w[2 * j]), ll_f32(w[2 * j + 1]), y0, y1);
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
    rotate(tid, ll_f32(kv[0]), ll_f32(kv[1]), y0, y1);
    k_row[i0] = __float2bfloat16(y0);
    k_row[i1] = __float2bfloat16(y1);
    reinterpret_cast<uint32_t*>(v_row)[tid] = pack_bf16(ll_f32(kv[2]), ll_f32(kv[3]));
  }
  consumer_sync();

  float m[GM], l[GM], acc[GM][DPL];
#pragma unroll
  for (int g = 0; g < GM; ++g) {
    m[g] = -INFINITY;
    l[g] = 0.0f;
#pragma unroll
    for (int d = 0; d < DPL; ++d) acc[g][d] = 0.0f;
  }
  // Dim 2w (low half) and 2w + 1 (high half) of a bf16 pair.
  auto lo = [](uint32_t w) { return __uint_as_float(w << 16); };
  auto hi = [](uint32_t w) { return __uint_as_float(w & 0xffff0000u); };
  // Online softmax over this warp's keys, one of two ways (same results up to rounding):
  //   chunks  lanes over dims: kKeys consecutive keys at a time, their loads and their score
  //           reductions together, then one update of the running max per chunk;
  //   rounds  lanes over keys (head_dim 64, splits of at least kRoundsMinKeys keys): 32 keys a
  //           round, each lane dotting its key's K row with the queries in shared memory (no
  //           warp reduction a score), one warp maximum per query head and round, then the
  //           values with lanes over dims, each key's weight broadcast from its lane; every V word
  //           of a round is loaded before the scores. A round is a longer chain of round trips
  //           to L2 than a chunk, so it only wins where a warp would take 8 chunks or more
  //           (H200, 1B, kernel with rounds everywhere: context 4,096 0.896 -> 0.833 ms, 16,384
  //           1.485 -> 1.211; at 1,024 and below, and with head_dim 128 at 4,096, chunks are
  //           faster).
  auto attend_chunks = [&] {
    float q[GM][DPL];
#pragma unroll
    for (int g = 0; g < GM; ++g)
#pragma unroll
      for (int d = 0; d < DPL; ++d) q[g][d] = g < G ? q_s[g * D + lane * DPL + d] : 0.0f;
    // The next chunk's K and V are loaded while this one is computed (two chunks' loads in
    // flight: at long contexts a warp takes many chunks, each an L2 round trip), and kept as bf16
    // pairs until used (half the registers of floats). Not with 8 query heads a KV head: their
    // queries and accumulators leave no registers for a second chunk (it spilled).
    constexpr bool kPipelined = GM <= 4;
    constexpr int kKeys = 4;
    constexpr int kWords = DPL / 2;  // 32-bit words (bf16 pairs) of a lane's dims of a row
    constexpr int32_t kChunkStride = kConsumerWarps * kKeys;
    uint32_t kn[kKeys][kWords], vn[kKeys][kWords];
    auto load_chunk = [&](int32_t jb) {
      if (jb >= k1) return;
#pragma unroll
      for (int u = 0; u < kKeys; ++u) {
        const int32_t j = min(jb + u, k1 - 1);  // past the end: a repeat, masked below
        const int64_t block = kv_block(a, ctx, j);
        const int32_t in_block = j % c.block_size;
        const uint8_t* kr =
            cache + c.value_byte_offset(block, layer, 0, h, in_block) + lane * DPL * 2;
        const uint8_t* vr =
            cache + c.value_byte_offset(block, layer, 1, h, in_block) + lane * DPL * 2;
        if constexpr (kWords == 1) {
          kn[u][0] = __ldcg(reinterpret_cast<const unsigned*>(kr));
          vn[u][0] = __ldcg(reinterpret_cast<const unsigned*>(vr));
        } else {
          const uint2 kb = __ldcg(reinterpret_cast<const uint2*>(kr));
          const uint2 vb = __ldcg(reinterpret_cast<const uint2*>(vr));
          kn[u][0] = kb.x, kn[u][1] = kb.y, vn[u][0] = vb.x, vn[u][1] = vb.y;
        }
      }
    };
    if constexpr (kPipelined) load_chunk(k0 + warp * kKeys);
    for (int32_t jb = k0 + warp * kKeys; jb < k1; jb += kChunkStride) {
      if constexpr (!kPipelined) load_chunk(jb);
      uint32_t kc[kKeys][kWords], vc[kKeys][kWords];  // this chunk's (converted where used)
#pragma unroll
      for (int u = 0; u < kKeys; ++u)
#pragma unroll
        for (int w = 0; w < kWords; ++w) kc[u][w] = kn[u][w], vc[u][w] = vn[u][w];
      if constexpr (kPipelined) load_chunk(jb + kChunkStride);
#pragma unroll
      for (int g = 0; g < GM; ++g) {
        if (g >= G) break;
        float sc[kKeys];
#pragma unroll
        for (int u = 0; u < kKeys; ++u) {
          sc[u] = 0.0f;
#pragma unroll
          for (int w = 0; w < kWords; ++w) {
            sc[u] = fmaf(q[g][2 * w], lo(kc[u][w]), sc[u]);
            sc[u] = fmaf(q[g][2 * w + 1], hi(kc[u][w]), sc[u]);
          }
        }
#pragma unroll
        for (int o = 16; o > 0; o >>= 1)
#pragma unroll
          for (int u = 0; u < kKeys; ++u) sc[u] += __shfl_xor_sync(0xffffffffu, sc[u], o);
        float m_new = m[g];
#pragma unroll
        for (int u = 0; u < kKeys; ++u)
          if (jb + u < k1) m_new = fmaxf(m_new, sc[u]);
        const float corr = exp2f(m[g] - m_new);
        l[g] *= corr;
#pragma unroll
        for (int d = 0; d < DPL; ++d) acc[g][d] *= corr;
#pragma unroll
        for (int u = 0; u < kKeys; ++u) {
          const float p = jb + u < k1 ? exp2f(sc[u] - m_new) : 0.0f;
          l[g] += p;
#pragma unroll
          for (int w = 0; w < kWords; ++w) {
            acc[g][2 * w] = fmaf(p, lo(vc[u][w]), acc[g][2 * w]);
            acc[g][2 * w + 1] = fmaf(p, hi(vc[u][w]), acc[g][2 * w + 1]);
          }
        }
        m[g] = m_new;
      }
    }
  };
  auto attend_rounds = [&] {
    constexpr int kWords = DPL / 2;  // 32-bit words (bf16 pairs) of a lane's dims of a V row
    constexpr int32_t kRowBytes = D * 2;
    const int32_t bs = c.block_size;
    const int64_t block_bytes = c.block_bytes();
    const int64_t kbase = c.row_in_block(layer, 0, h, 0) * kRowBytes,
                  vbase = c.row_in_block(layer, 1, h, 0) * kRowBytes;
    for (int32_t jb = k0 + warp * 32; jb < k1; jb += kConsumerWarps * 32) {
      const int32_t j = jb + lane;
      const bool valid = j < k1;
      const int32_t jc = valid ? j : k1 - 1;
      const int32_t blk = static_cast<int32_t>(kv_block(a, ctx, jc));
      const int32_t n = min(32, k1 - jb);  // keys of this round (warp-uniform)
      uint32_t vw[32][kWords];             // key u's V words of this lane's dims
#pragma unroll
      for (int u = 0; u < 32; ++u) {
        const int32_t jj = min(u, n - 1);  // past the round's keys: a repeat, weight 0
        const int64_t b = __shfl_sync(0xffffffffu, blk, jj);
        const uint8_t* vr =
            cache + b * block_bytes + vbase + ((jb + jj) % bs) * kRowBytes + lane * DPL * 2;
        if constexpr (kWords == 1) {
          vw[u][0] = __ldcg(reinterpret_cast<const unsigned*>(vr));
        } else {
          const uint2 vb = __ldcg(reinterpret_cast<const uint2*>(vr));
          vw[u][0] = vb.x, vw[u][1] = vb.y;
        }
      }
      const uint4* krow =
          reinterpret_cast<const uint4*>(cache + blk * block_bytes + kbase + (jc % bs) * kRowBytes);
      float sc[GM];
#pragma unroll
      for (int g = 0; g < GM; ++g) sc[g] = 0.0f;
#pragma unroll
      for (int c0 = 0; c0 < D / 8; c0 += 4) {
        uint4 kv[4];
#pragma unroll
        for (int u = 0; u < 4; ++u) kv[u] = __ldcg(krow + c0 + u);
#pragma unroll
        for (int u = 0; u < 4; ++u)
#pragma unroll
          for (int g = 0; g < GM; ++g) {
            if (g >= G) break;
            const float4* q4 = reinterpret_cast<const float4*>(q_s + g * D + (c0 + u) * 8);
            const float4 qa = q4[0], qb = q4[1];
            float t = sc[g];
            t = fmaf(qa.x, lo(kv[u].x), t);
            t = fmaf(qa.y, hi(kv[u].x), t);
            t = fmaf(qa.z, lo(kv[u].y), t);
            t = fmaf(qa.w, hi(kv[u].y), t);
            t = fmaf(qb.x, lo(kv[u].z), t);
            t = fmaf(qb.y, hi(kv[u].z), t);
            t = fmaf(qb.z, lo(kv[u].w), t);
            sc[g] = fmaf(qb.w, hi(kv[u].w), t);
          }
      }
      // sc becomes this lane's key's weight under the new running maximum; l is this lane's
      // share of the sum.
#pragma unroll
      for (int g = 0; g < GM; ++g) {
        if (g >= G) break;
        const float sg = valid ? sc[g] : -INFINITY;
        float mr = sg;
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) mr = fmaxf(mr, __shfl_xor_sync(0xffffffffu, mr, o));
        const float m_new = fmaxf(m[g], mr);  // finite: lane 0's key is in range
        const float corr = exp2f(m[g] - m_new);
        sc[g] = exp2f(sg - m_new);
        l[g] = l[g] * corr + sc[g];
#pragma unroll
        for (int d = 0; d < DPL; ++d) acc[g][d] *= corr;
        m[g] = m_new;
      }
#pragma unroll
      for (int u = 0; u < 32; ++u)
#pragma unroll
        for (int g = 0; g < GM; ++g) {
          if (g >= G) break;
          const float pj = __shfl_sync(0xffffffffu, sc[g], u);  // 0 past the round's keys
#pragma unroll
          for (int w = 0; w < kWords; ++w) {
            acc[g][2 * w] = fmaf(pj, lo(vw[u][w]), acc[g][2 * w]);
            acc[g][2 * w + 1] = fmaf(pj, hi(vw[u][w]), acc[g][2 * w + 1]);
          }
        }
    }
#pragma unroll
    for (int g = 0; g < GM; ++g) l[g] = warp_sum(l[g]);
  };
  if constexpr (D == 64) {
    if (k1 - k0 >= kRoundsMinKeys)  // CTA-uniform
      attend_rounds();
    else
      attend_chunks();
  } else {
    attend_chunks();
  }
  // The warps' partials meet in shared memory.
#pragma unroll
  for (int g = 0; g < GM; ++g) {
    if (g >= G) break;
#pragma unroll
    for (int d = 0; d < DPL; ++d) part[(warp * G + g) * D + lane * DPL + d] = acc[g][d];
    if (lane == 0) {
      ml[(warp * G + g) * 2] = m[g];
      ml[(warp * G + g) * 2 + 1] = l[g];
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
    store_attention<D>(out_s, h, G, io);
    return;
  }
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
