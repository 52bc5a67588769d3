#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <algorithm>
#include <cmath>

#include "backend/cuda/attention_prefill.cuh"
#include "backend/cuda/mma_sm80.cuh"

namespace loom::cuda {
namespace {

// ---- Shapes. ----
//
// CTA: 8 warps, 16 query rows each (one m16 fragment), so 128 rows. The rows of a tile are
// token-major, row r = (token r / G, head r % G of the KV head's group), and CTA x of a tile takes
// rows [128 x, 128 x + 128): a full tile of 128 tokens is G CTAs of 128 / G tokens, each sharing
// every K/V row it loads among its G heads and 128 / G tokens. 16 rows a warp keep the per-thread
// state at O (D / 2 floats), S (32 floats) and the Q fragments (D / 4 registers): head_dim 128
// fits in registers without spills.
constexpr int kWarps = 8;
constexpr int kThreads = kWarps * 32;
constexpr int kRows = kWarps * 16;
constexpr int kBlockN = 64;  // keys per block staged in shared memory
constexpr float kLog2e = 1.4426950408889634f;

// Shared memory: 2 stages x (K block, V block), each kBlockN rows of D bf16 padded to D + 8, so
// consecutive rows start 4 banks apart and the 8 row addresses of each ldmatrix phase fall on 8
// disjoint groups of 4 banks (no conflicts). D = 64: 36 KiB; D = 128: 68 KiB.
template <int D>
struct Smem {
  static constexpr int kStride = D + 8;             // bf16 elements per row
  static constexpr int kTile = kBlockN * kStride;   // elements of one K or V block
  static constexpr int kBytes = 2 * 2 * kTile * 2;  // stages x (K, V) x bytes
};

// ---- PTX wrappers. ----

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(smem_addr(smem)), "l"(gmem)
               : "memory");
}
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}
// Waits until at most N of this thread's committed groups are still in flight.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// ---- Staging K/V blocks. ----

// Where one (sequence, layer, KV head)'s rows are: key k is in block table[k / block_size] at
// slot k % block_size, and a row's index within its block is linear in the slot
// (KvCacheShape::row_in_block), so K / V row = row0[0 / 1] + slot.
struct KvSource {
  const uint8_t* cache;   // the pool
  const int32_t* table;   // the sequence's block table
  int64_t block_bytes;    // KvCacheShape::block_bytes()
  int64_t scales_offset;  // KvCacheShape::scales_offset()
  int32_t row0[2];        // row_in_block(layer, K / V, kv_head, slot 0)
  int32_t block_size;
  int32_t num_keys;  // keys [0, num_keys) exist; later ones are staged as zeros
  // The start of the block holding `key`, and key's slot in it.
  __device__ __forceinline__ const uint8_t* block_of(int32_t key, int32_t* slot) const {
    *slot = key % block_size;
    return cache + static_cast<int64_t>(table[key / block_size]) * block_bytes;
  }
};

// issue(): starts staging keys [kb, kb + kBlockN) of K and V into ks / vs ([kBlockN][kStride]
// bf16); finish(): completes it (after the compute on the other stage). The stores are visible
// to the CTA after cp_async_wait + __syncthreads. Keys past num_keys become zero rows: their
// softmax weight is 0, but 0 x (uninitialised shared memory) could be NaN.
template <int D, KvCacheDtype kDtype>
struct KvStager;

// bf16: 16-byte cp.async copies, D / 8 per row, the threads of a row adjacent (coalesced).
template <int D>
struct KvStager<D, KvCacheDtype::kBf16> {
  static constexpr int kChunksPerRow = D / 8;
  static constexpr int kPerThread = kBlockN * kChunksPerRow / kThreads;  // 2 or 4
  static_assert(kBlockN * kChunksPerRow % kThreads == 0);

  __device__ __forceinline__ void issue(const KvSource& src, int32_t kb, bf16* ks, bf16* vs) {
#pragma unroll
    for (int i = 0; i < kPerThread; ++i) {
      const int chunk = threadIdx.x + i * kThreads;
      const int j = chunk / kChunksPerRow, part = chunk % kChunksPerRow;
      const int32_t key = kb + j;
      const int off = j * Smem<D>::kStride + part * 8;
      if (key < src.num_keys) {
        int32_t slot;
        const uint8_t* blk = src.block_of(key, &slot);
        cp_async16(ks + off, blk + int64_t{src.row0[0] + slot} * (D * 2) + part * 16);
        cp_async16(vs + off, blk + int64_t{src.row0[1] + slot} * (D * 2) + part * 16);
      } else {
        *reinterpret_cast<uint4*>(ks + off) = make_uint4(0, 0, 0, 0);
        *reinterpret_cast<uint4*>(vs + off) = make_uint4(0, 0, 0, 0);
      }
    }
  }
  __device__ __forceinline__ void finish(bf16*, bf16*) {}
};

// fp8 / int8: 16 one-byte values per 16-byte load, held in registers across the compute of the
// previous block, then widened to value x row scale in bf16 and stored (two 16-byte stores).
template <int D, KvCacheDtype kDtype>
struct KvStager {
  static_assert(kDtype == KvCacheDtype::kFp8 || kDtype == KvCacheDtype::kInt8);
  static constexpr int kChunksPerRow = D / 16;
  static constexpr int kPerThread = kBlockN * kChunksPerRow / kThreads;  // 1 or 2
  static_assert(kBlockN * kChunksPerRow % kThreads == 0);

  uint4 raw[2][kPerThread];    // [K, V][chunk]
  float scale[2][kPerThread];  // the row's scale; 0 past the keys

  __device__ __forceinline__ void issue(const KvSource& src, int32_t kb, bf16*, bf16*) {
#pragma unroll
    for (int i = 0; i < kPerThread; ++i) {
      const int chunk = threadIdx.x + i * kThreads;
      const int j = chunk / kChunksPerRow, part = chunk % kChunksPerRow;
      const int32_t key = kb + j;
      if (key < src.num_keys) {
        int32_t slot;
        const uint8_t* blk = src.block_of(key, &slot);
#pragma unroll
        for (int kv = 0; kv < 2; ++kv) {
          const int64_t row = src.row0[kv] + slot;
          raw[kv][i] = *reinterpret_cast<const uint4*>(blk + row * D + part * 16);
          scale[kv][i] =
              __half2float(*reinterpret_cast<const __half*>(blk + src.scales_offset + row * 2));
        }
      } else {
#pragma unroll
        for (int kv = 0; kv < 2; ++kv) {
          raw[kv][i] = make_uint4(0, 0, 0, 0);
          scale[kv][i] = 0.0f;
        }
      }
    }
  }

  // Four values of one 32-bit word (the lower-addressed byte in the low bits), times s, as two
  // bf16x2 words.
  __device__ __forceinline__ static void widen(uint32_t w, float s, uint32_t& lo, uint32_t& hi) {
    float f[4];
    if constexpr (kDtype == KvCacheDtype::kFp8) {
#pragma unroll
      for (int p = 0; p < 2; ++p) {
        const __half2_raw h = __nv_cvt_fp8x2_to_halfraw2(
            static_cast<__nv_fp8x2_storage_t>((w >> (16 * p)) & 0xffffu), __NV_E4M3);
        const float2 v = __half22float2(__half2(h));
        f[2 * p] = v.x;
        f[2 * p + 1] = v.y;
      }
    } else {
#pragma unroll
      for (int b = 0; b < 4; ++b) f[b] = static_cast<float>(static_cast<int8_t>(w >> (8 * b)));
    }
    lo = pack_bf16(f[0] * s, f[1] * s);
    hi = pack_bf16(f[2] * s, f[3] * s);
  }

  __device__ __forceinline__ void finish(bf16* ks, bf16* vs) {
#pragma unroll
    for (int i = 0; i < kPerThread; ++i) {
      const int chunk = threadIdx.x + i * kThreads;
      const int j = chunk / kChunksPerRow, part = chunk % kChunksPerRow;
      const int off = j * Smem<D>::kStride + part * 16;
#pragma unroll
      for (int kv = 0; kv < 2; ++kv) {
        const uint4 r = raw[kv][i];
        const float s = scale[kv][i];
        uint4 first, second;  // values 0..7 and 8..15 of the chunk
        widen(r.x, s, first.x, first.y);
        widen(r.y, s, first.z, first.w);
        widen(r.z, s, second.x, second.y);
        widen(r.w, s, second.z, second.w);
        bf16* dst = (kv == 0 ? ks : vs) + off;
        reinterpret_cast<uint4*>(dst)[0] = first;
        reinterpret_cast<uint4*>(dst)[1] = second;
      }
    }
  }
};

// ---- The kernel. ----
//
// grid (ceil(kPrefillTileTokens G / 128), num_tiles, num_kv_heads); 256 threads.
// Per block of 64 keys, each warp (16 rows; lane L holds rows g = L/4 and g + 8, see mma_bf16):
//   S[16 x 64]  = Q K^T: 8 C fragments s[n] (keys 8n..8n+7), k-steps over head_dim by 16; the
//                 B fragment of K^T is K's rows read by ldmatrix (non-transposed) from [key][d].
//   causal mask: key > position of the row -> -inf (only in blocks that reach past a row).
//   online softmax in base 2 (Q carries scale x log2 e): m = running row max, l = running row
//                 sum (each lane sums its own columns; the 4 lanes of a row add up at the end),
//                 O *= 2^(m_old - m_new) before adding this block's P V.
//   O[16 x D]  += P V: P's A fragments are the S fragments repacked to bf16 (s[2k], s[2k+1] are
//                 k-step k's columns 0-7 and 8-15); V's B fragments by ldmatrix.trans.
// Warps whose rows all end before a block skip its compute (they still stage and synchronise).
template <int D, KvCacheDtype kDtype>
__global__ void __launch_bounds__(kThreads, D == 64 ? 2 : 1)
    prefill_attention_kernel(AttentionArgs a, const PrefillTile* __restrict__ tiles) {
  using Sm = Smem<D>;
  extern __shared__ __align__(128) uint8_t smem_raw[];
  bf16* const smem = reinterpret_cast<bf16*>(smem_raw);
  auto k_stage = [&](int s) { return smem + (2 * s) * Sm::kTile; };
  auto v_stage = [&](int s) { return smem + (2 * s + 1) * Sm::kTile; };

  const PrefillTile tile = tiles[blockIdx.y];
  const int32_t kv_head = blockIdx.z;
  const int32_t G = a.num_heads / a.cache.num_kv_heads;
  const int32_t tile_rows = (tile.q_end - tile.q_begin) * G;
  const int32_t row0 = blockIdx.x * kRows;  // this CTA's first row of the tile
  if (row0 >= tile_rows) return;            // the whole CTA: the tile is short
  const int32_t cta_rows = min(kRows, tile_rows - row0);
  // Positions increase along the tile: the last row's token has the longest context.
  const int32_t num_keys = a.positions[tile.q_begin + (row0 + cta_rows - 1) / G] + 1;

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int grp = lane / 4, tig = lane % 4;

  // This thread's rows: warp row grp (h = 0) and grp + 8 (h = 1). Rows past the CTA's last are
  // computed as copies of its last row (valid addresses, finite values) and never written.
  int32_t row_idx[2];  // t x num_heads + head: the row of q and out ([T][num_heads][D])
  int32_t row_pos[2];
  bool row_ok[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int32_t local = warp * 16 + grp + 8 * h;
    row_ok[h] = local < cta_rows;
    const int32_t r = row0 + min(local, cta_rows - 1);
    const int32_t t = tile.q_begin + r / G;
    row_pos[h] = a.positions[t];
    row_idx[h] = t * a.num_heads + kv_head * G + r % G;
  }
  // Keys this warp needs, and the smallest position among its rows (blocks past it need masks).
  const bool warp_active = warp * 16 < cta_rows;
  const int32_t warp_keys =
      warp_active ? __reduce_max_sync(0xffffffffu, max(row_pos[0], row_pos[1]) + 1) : 0;
  const int32_t warp_min_pos = __reduce_min_sync(0xffffffffu, min(row_pos[0], row_pos[1]));

  KvSource src;
  src.cache = static_cast<const uint8_t*>(a.kv_cache);
  src.table = a.block_tables + static_cast<int64_t>(tile.seq) * a.max_blocks_per_seq;
  src.block_bytes = a.cache.block_bytes();
  src.scales_offset = a.cache.scales_offset();
  src.row0[0] = static_cast<int32_t>(a.cache.row_in_block(a.layer, 0, kv_head, 0));
  src.row0[1] = static_cast<int32_t>(a.cache.row_in_block(a.layer, 1, kv_head, 0));
  src.block_size = a.cache.block_size;
  src.num_keys = num_keys;
  KvStager<D, kDtype> stager;
  stager.issue(src, 0, k_stage(0), v_stage(0));
  stager.finish(k_stage(0), v_stage(0));
  cp_async_commit();

  // Q as A fragments, one per 16 columns of head_dim: straight from global memory (each group of
  // 4 lanes reads one row's 32 contiguous bytes), scaled by scale x log2 e, rounded to bf16.
  const float qscale = a.scale * kLog2e;
  uint32_t qf[D / 16][4];
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
#pragma unroll
    for (int j = 0; j < 4; ++j) {  // a[j]: row grp + 8 (j & 1), columns + 8 (j >> 1)
      const int col = kk * 16 + (j >> 1) * 8 + 2 * tig;
      const float2 v = *reinterpret_cast<const float2*>(a.q + int64_t{row_idx[j & 1]} * D + col);
      qf[kk][j] = pack_bf16(v.x * qscale, v.y * qscale);
    }
  }

  float o[D / 8][4];
#pragma unroll
  for (int n = 0; n < D / 8; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) o[n][e] = 0.0f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};

  const int32_t num_blocks = (num_keys + kBlockN - 1) / kBlockN;
  for (int32_t b = 0; b < num_blocks; ++b) {
    const int st = b & 1;
    const bool more = b + 1 < num_blocks;
    // Stage b + 1 into the other buffer, last read in iteration b - 1 (before its final barrier).
    if (more) stager.issue(src, (b + 1) * kBlockN, k_stage(st ^ 1), v_stage(st ^ 1));
    cp_async_commit();  // possibly empty: keeps "all but the newest group" = block b
    cp_async_wait<1>();
    __syncthreads();

    const int32_t kb = b * kBlockN;
    if (kb < warp_keys) {  // warp-uniform
      const bf16* ks = k_stage(st);
      const bf16* vs = v_stage(st);
      float s[kBlockN / 8][4];
#pragma unroll
      for (int n = 0; n < kBlockN / 8; ++n) {
#pragma unroll
        for (int e = 0; e < 4; ++e) s[n][e] = 0.0f;
      }
      // S = Q K^T. One ldmatrix.x4 per (16 keys, 16 dims): matrices (keys +0, d +0),
      // (keys +0, d +8), (keys +8, d +0), (keys +8, d +8) -> b[0], b[1] of key tile 2np and
      // b[2], b[3] of key tile 2np + 1 (B[k = d][n = key] = K[key][d]).
#pragma unroll
      for (int np = 0; np < kBlockN / 16; ++np) {
        const bf16* krow =
            ks + (np * 16 + (lane & 7) + (lane >> 4) * 8) * Sm::kStride + ((lane >> 3) & 1) * 8;
#pragma unroll
        for (int kk = 0; kk < D / 16; ++kk) {
          uint32_t kf[4];
          ldmatrix_x4(kf, krow + kk * 16);
          mma_bf16(s[2 * np], qf[kk], kf[0], kf[1]);
          mma_bf16(s[2 * np + 1], qf[kk], kf[2], kf[3]);
        }
      }
      // Causal mask (also hides the zero rows past num_keys: num_keys - 1 >= every row's position).
      if (kb + kBlockN - 1 > warp_min_pos) {
#pragma unroll
        for (int n = 0; n < kBlockN / 8; ++n)
#pragma unroll
          for (int e = 0; e < 4; ++e)
            if (kb + n * 8 + 2 * tig + (e & 1) > row_pos[e >> 1]) s[n][e] = -INFINITY;
      }
      // Online softmax. A row with every key so far masked keeps m = -inf; it then uses 0 as its
      // reference so that no -inf - -inf (NaN) appears (its weights are all 0 anyway).
      float ref[2], sum[2] = {0.0f, 0.0f};
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        float mx = m[h];
#pragma unroll
        for (int n = 0; n < kBlockN / 8; ++n) mx = fmaxf(mx, fmaxf(s[n][2 * h], s[n][2 * h + 1]));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        ref[h] = mx == -INFINITY ? 0.0f : mx;
        const float alpha = exp2f(m[h] - ref[h]);  // 0 while m was -inf
        m[h] = mx;
        l[h] *= alpha;
#pragma unroll
        for (int n = 0; n < D / 8; ++n) {
          o[n][2 * h] *= alpha;
          o[n][2 * h + 1] *= alpha;
        }
      }
#pragma unroll
      for (int n = 0; n < kBlockN / 8; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          s[n][e] = exp2f(s[n][e] - ref[e >> 1]);
          sum[e >> 1] += s[n][e];
        }
      l[0] += sum[0];
      l[1] += sum[1];
      // O += P V, per 16 keys: P's A fragment from s[2kk] (keys +0..7) and s[2kk + 1] (+8..15).
      // One ldmatrix.x4.trans per (16 keys, 16 dims): matrices (keys +0, d +0), (keys +8, d +0),
      // (keys +0, d +8), (keys +8, d +8) -> b[0], b[1] of dim tile 2dp and b[2], b[3] of 2dp + 1
      // (B[k = key][n = d] = V[key][d]).
#pragma unroll
      for (int kk = 0; kk < kBlockN / 16; ++kk) {
        const uint32_t pa[4] = {pack_bf16(s[2 * kk][0], s[2 * kk][1]),
                                pack_bf16(s[2 * kk][2], s[2 * kk][3]),
                                pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                                pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3])};
        const bf16* vrow = vs + (kk * 16 + (lane & 15)) * Sm::kStride + (lane >> 4) * 8;
#pragma unroll
        for (int dp = 0; dp < D / 16; ++dp) {
          uint32_t vf[4];
          ldmatrix_x4_trans(vf, vrow + dp * 16);
          mma_bf16(o[2 * dp], pa, vf[0], vf[1]);
          mma_bf16(o[2 * dp + 1], pa, vf[2], vf[3]);
        }
      }
    }
    if (more) stager.finish(k_stage(st ^ 1), v_stage(st ^ 1));
    __syncthreads();  // block b's buffers are free for iteration b + 1's staging
  }

  // O / l, as bf16 pairs: lane holds columns 8n + 2 tig, + 1 of its two rows.
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    l[h] += __shfl_xor_sync(0xffffffffu, l[h], 1);
    l[h] += __shfl_xor_sync(0xffffffffu, l[h], 2);
    if (!row_ok[h]) continue;
    const float inv = l[h] > 0.0f ? 1.0f / l[h] : 0.0f;
    bf16* dst = a.out + int64_t{row_idx[h]} * D + 2 * tig;
#pragma unroll
    for (int n = 0; n < D / 8; ++n)
      *reinterpret_cast<uint32_t*>(dst + n * 8) =
          pack_bf16(o[n][2 * h] * inv, o[n][2 * h + 1] * inv);
  }
}

template <int D, KvCacheDtype kDtype>
void launch_kernel(const AttentionArgs& a, const PrefillTile* tiles, int32_t num_tiles,
                   cudaStream_t stream) {
  const int32_t G = a.num_heads / a.cache.num_kv_heads;
  const dim3 grid(static_cast<uint32_t>(ceil_div(int64_t{kPrefillTileTokens} * G, kRows)),
                  num_tiles, a.cache.num_kv_heads);
  constexpr int kBytes = Smem<D>::kBytes;
  auto* kernel = prefill_attention_kernel<D, kDtype>;
  if constexpr (kBytes > 48 * 1024)
    LOOM_CUDA_CHECK(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kBytes));
  kernel<<<grid, kThreads, kBytes, stream>>>(a, tiles);
}

template <int D>
void launch_for_dtype(const AttentionArgs& a, const PrefillTile* tiles, int32_t num_tiles,
                      cudaStream_t stream) {
  switch (a.cache.dtype) {
    case KvCacheDtype::kBf16:
      launch_kernel<D, KvCacheDtype::kBf16>(a, tiles, num_tiles, stream);
      break;
    case KvCacheDtype::kFp8:
      launch_kernel<D, KvCacheDtype::kFp8>(a, tiles, num_tiles, stream);
      break;
    case KvCacheDtype::kInt8:
      launch_kernel<D, KvCacheDtype::kInt8>(a, tiles, num_tiles, stream);
      break;
  }
}

}  // namespace

void plan_prefill_tiles(const int32_t* query_start, int32_t num_seqs, int32_t min_tokens,
                        std::vector<PrefillTile>& tiles) {
  tiles.clear();
  const int32_t need = std::max(min_tokens, 1);
  for (int32_t s = 0; s < num_seqs; ++s) {
    const int32_t begin = query_start[s], end = query_start[s + 1];
    LOOM_CHECK(begin >= 0 && end >= begin, "query_start[%d..%d] = %d, %d", s, s + 1, begin, end);
    if (end - begin < need) continue;
    for (int32_t hi = end; hi > begin; hi -= kPrefillTileTokens)
      tiles.push_back(PrefillTile{s, std::max(begin, hi - kPrefillTileTokens), hi});
  }
}

void mark_prefill_tokens(const std::vector<PrefillTile>& tiles, int32_t num_tokens,
                         std::vector<uint8_t>& skip) {
  skip.assign(static_cast<size_t>(std::max(num_tokens, 0)), 0);
  for (const PrefillTile& t : tiles) {
    LOOM_CHECK(t.q_begin >= 0 && t.q_begin < t.q_end && t.q_end <= num_tokens &&
                   t.q_end - t.q_begin <= kPrefillTileTokens,
               "prefill tile [%d, %d) of %d tokens", t.q_begin, t.q_end, num_tokens);
    for (int32_t i = t.q_begin; i < t.q_end; ++i) {
      LOOM_CHECK(skip[i] == 0, "token %d in two prefill tiles", i);
      skip[i] = 1;
    }
  }
}

bool prefill_attention_supported(const KvCacheShape& cache, int32_t num_heads) {
  return (cache.head_dim == 64 || cache.head_dim == 128) && cache.num_kv_heads > 0 &&
         num_heads > 0 && num_heads % cache.num_kv_heads == 0;
}

void launch_paged_prefill_attention(const AttentionArgs& a, const PrefillTile* tiles_dev,
                                    int32_t num_tiles, cudaStream_t stream) {
  LOOM_CHECK(prefill_attention_supported(a.cache, a.num_heads),
             "prefill attention: head_dim %d, %d heads over %d KV heads", a.cache.head_dim,
             a.num_heads, a.cache.num_kv_heads);
  LOOM_CHECK(num_tiles >= 0 && num_tiles <= 65535, "%d prefill tiles", num_tiles);
  LOOM_CHECK(a.cache.num_kv_heads <= 65535);
  if (num_tiles == 0) return;
  LOOM_CHECK(tiles_dev && a.q && a.kv_cache && a.positions && a.block_tables && a.out);
  if (a.cache.head_dim == 64)
    launch_for_dtype<64>(a, tiles_dev, num_tiles, stream);
  else
    launch_for_dtype<128>(a, tiles_dev, num_tiles, stream);
  LOOM_CUDA_CHECK_LAUNCH();
}

}  // namespace loom::cuda
