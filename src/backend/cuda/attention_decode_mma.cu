#include <cfloat>
#include <cmath>
#include <type_traits>

#include "backend/cuda/attention_block_mma.cuh"
#include "backend/cuda/attention_decode_mma.cuh"
#include "backend/cuda/mma_sm80.cuh"
#include "backend/cuda/pdl_launch.cuh"

namespace loom::cuda {
namespace {

// ---- Shapes and layouts. ----
//
// CTA: 4 warps; warp w takes the 16-key blocks k_begin + 16 (w + 4 i) of its split's keys
// [k_begin, k_end) (k_begin is a multiple of 32, so every block starts at a multiple of 16).
// Lane L: g = L / 4, c = L % 4 (mma_sm80.cuh's fragment notation).
//
// S = Q K^T, per block two n-tiles of 8 keys (n = 0: keys +0..7, n = 1: keys +8..15), D / 16
// k-steps. The head dimension is contracted in a permuted order: lane (g, c) loads, for key
// 8n + g, the 16-byte chunks at dims [8c + 32h, 8c + 32h + 8), h < D / 32; the chunk's words
// w0..w3 (dims +0,1 / +2,3 / +4,5 / +6,7) are k-step 2h's b0, b1 and k-step 2h + 1's b0, b1. So
// k-step 2h + j's contracted index 2c + e is dim 8c + 32h + 4j + e, index 2c + 8 + e is dim
// 8c + 32h + 4j + 2 + e (a bijection onto [0, D) per h), and Q's A fragments use the same map:
// a0 / a2 = Q[head g][those dims], a1 / a3 = head g + 8 (zeros unless G > 8; rows past G are
// zeros too). The product is unchanged by the permutation.
//
// S's accumulators give lane (g, c) S[head g (+8)][keys 2c, 2c+1] of each n-tile: exactly the
// B fragment of P^T (16 keys x 8 heads) for O^T = V^T P^T, so P never moves between lanes.
//
// O^T = V^T P^T, per 16 keys: M = head dims in m-tiles of 16 (D / 16 of them), N = 8 heads (one
// head tile; two for G > 8, the second taking S's rows g + 8), K = the 16 keys. Lane (g, c) loads
// V rows of keys 2c, 2c+1, 2c+8, 2c+9 at dims [8g + 64hh, 8g + 64hh + 8), hh < D / 64. m-tile
// mt = 4 hh + j has rows g <-> dim 8g + 64hh + 2j and g + 8 <-> dim 8g + 64hh + 2j + 1 (the low
// and high bf16 of the chunks' word j), so
//   a0 = {V[2c][8g+64hh+2j], V[2c+1][same]}   (low halves of word j of keys 2c, 2c+1)
//   a1 = the same keys, dim + 1                (high halves)
//   a2, a3 = keys 2c+8, 2c+9
// and the accumulator o[ht][mt] holds O[head 8ht + 2c + e][dim 8g + 64hh + 2j (+1 for c2, c3)].
//
// Registers at D = 128, G <= 8: O 32, Q 16, one block's K and V fragments 64 (all loads of a block
// are issued before any is used: 8 KiB in flight per warp), S 8.
constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kBlockKeys = 16;  // keys per warp per step
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// A 16-byte shared-memory load the compiler keeps where it is written (volatile): hoisted out of
// the key loop it would hold its registers across the loop.
__device__ __forceinline__ uint4 lds128(const uint4* p) {
  uint4 v;
  asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "r"(static_cast<uint32_t>(__cvta_generic_to_shared(p))));
  return v;
}

__device__ __forceinline__ uint4 load16(const uint8_t* p) {
  return __ldg(reinterpret_cast<const uint4*>(p));
}

// kMinBlocks: CTAs per SM the register budget is set for (65536 / (128 x kMinBlocks) registers
// a thread at most).
template <int D, int kHeadTiles>
constexpr int min_blocks() {
  return kHeadTiles == 1 ? (D == 64 ? 5 : 4) : (D == 64 ? 4 : 2);
}

// grid (num_splits, num_tokens, num_kv_heads), kThreads threads; kHeadTiles = ceil(G / 8).
template <int D, int kHeadTiles>
__global__ void __launch_bounds__(kThreads, min_blocks<D, kHeadTiles>())
    decode_attention_mma_kernel(AttentionArgs a) {
  pdl_wait();  // q, the tables and the cache rows come from earlier kernels
  constexpr int kRowBytes = D * 2;
  constexpr int kHeads = 8 * kHeadTiles;  // S rows served (>= G)
  const int32_t split = blockIdx.x, t = blockIdx.y, kv_head = blockIdx.z;
  if (a.skip_token && a.skip_token[t]) return;  // the whole CTA: before any barrier
  const int32_t G = a.num_heads / a.cache.num_kv_heads;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, c = lane % 4;

  __shared__ __align__(16) float o_s[kWarps][kHeads][D];
  __shared__ float m_s[kWarps][kHeads], l_s[kWarps][kHeads];
  __shared__ uint4 q_s[kHeadTiles][D / 32][32];

  const int32_t seq = a.seq_of_token[t];
  const int32_t num_keys = a.positions[t] + 1;
  const int32_t k_begin = split * a.keys_per_split;
  const int32_t k_end = min(num_keys, k_begin + a.keys_per_split);

  // Q as A fragments (see the layout above), times scale x log2 e (the softmax runs in base 2),
  // staged once per CTA in shared memory in the lanes' order: q_s[ht][h][lane] = {a0, a2 of
  // k-step 2h, a0, a2 of k-step 2h + 1} of S row g + 8 ht (a1, a3 when ht = 1), one 16-byte
  // conflict-free load per lane. Reloading them per key block keeps D / 8 registers per head tile
  // free for the loads in flight.
  {
    const float qscale = a.scale * kLog2e;
    for (int i = threadIdx.x; i < kHeadTiles * (D / 32) * 32; i += kThreads) {
      const int il = i % 32, h = (i / 32) % (D / 32), ht = i / (32 * (D / 32));
      const int r = il / 4 + 8 * ht, col = 8 * (il % 4) + 32 * h;
      float4 lo = make_float4(0.f, 0.f, 0.f, 0.f), hi = lo;
      if (r < G) {  // rows past the group are zeros
        const float* qrow = a.q + (static_cast<int64_t>(t) * a.num_heads + kv_head * G + r) * D;
        lo = *reinterpret_cast<const float4*>(qrow + col);
        hi = *reinterpret_cast<const float4*>(qrow + col + 4);
      }
      q_s[ht][h][il] = make_uint4(
          pack_bf16(lo.x * qscale, lo.y * qscale), pack_bf16(lo.z * qscale, lo.w * qscale),
          pack_bf16(hi.x * qscale, hi.y * qscale), pack_bf16(hi.z * qscale, hi.w * qscale));
    }
    __syncthreads();
  }

  // Where the keys' rows are: key k's K row is block table[k / bs], row row_in_block(layer, 0,
  // kv_head, k % bs); its V row is kv_stride bytes further.
  const uint8_t* const cache = static_cast<const uint8_t*>(a.kv_cache);
  const int32_t* const table = a.block_tables + static_cast<int64_t>(seq) * a.max_blocks_per_seq;
  const int32_t bs = a.cache.block_size;
  const int64_t block_bytes = a.cache.block_bytes();
  const int64_t k_row0 = a.cache.row_in_block(a.layer, 0, kv_head, 0) * kRowBytes;
  const int64_t kv_stride = (a.cache.row_in_block(a.layer, 1, kv_head, 0) -
                             a.cache.row_in_block(a.layer, 0, kv_head, 0)) *
                            kRowBytes;

  float o[kHeadTiles][D / 16][4];
#pragma unroll
  for (int ht = 0; ht < kHeadTiles; ++ht)
#pragma unroll
    for (int mt = 0; mt < D / 16; ++mt)
#pragma unroll
      for (int e = 0; e < 4; ++e) o[ht][mt][e] = 0.0f;
  float m[kHeadTiles], l[kHeadTiles];  // per S row g + 8 ht: running max (base 2), lane's sum
#pragma unroll
  for (int ht = 0; ht < kHeadTiles; ++ht) m[ht] = -INFINITY, l[ht] = 0.0f;

  // The key loop; kOneLookup (block sizes that are multiples of 16): each 16-key block lies in one
  // KV block, found with one table lookup. A separate loop, not a branch, keeps registers down.
  auto key_loop = [&](auto one_lookup) {
    constexpr bool kOneLookup = decltype(one_lookup)::value;
    for (int32_t kb = k_begin + kBlockKeys * warp; kb < k_end; kb += kBlockKeys * kWarps) {
      // The K row of key kb + x, or null past k_end (loaded as zeros: never read past the keys'
      // block-table entries; P is 0 there, but 0 x garbage could be NaN).
      const uint8_t* base = nullptr;
      if constexpr (kOneLookup)
        base = cache + static_cast<int64_t>(table[kb / bs]) * block_bytes + k_row0 +
               static_cast<int64_t>(kb % bs) * kRowBytes;
      auto k_row = [&](int x) -> const uint8_t* {
        const int32_t key = kb + x;
        if (key >= k_end) return nullptr;
        if constexpr (kOneLookup) return base + x * kRowBytes;
        return cache + static_cast<int64_t>(table[key / bs]) * block_bytes + k_row0 +
               static_cast<int64_t>(key % bs) * kRowBytes;
      };

      // Every load of the block before any use.
      uint4 kr[2][D / 32];  // keys 8n + g: dims [8c + 32h, +8)
      uint4 vr[4][D / 64];  // keys 2c + {0, 1, 8, 9}: dims [8g + 64hh, +8)
#pragma unroll
      for (int n = 0; n < 2; ++n) {
        const uint8_t* p = k_row(8 * n + g);
#pragma unroll
        for (int h = 0; h < D / 32; ++h)
          kr[n][h] = p ? load16(p + (8 * c + 32 * h) * 2) : make_uint4(0, 0, 0, 0);
      }
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const uint8_t* p = k_row(2 * c + (i & 1) + 8 * (i >> 1));
#pragma unroll
        for (int hh = 0; hh < D / 64; ++hh)
          vr[i][hh] = p ? load16(p + kv_stride + (8 * g + 64 * hh) * 2) : make_uint4(0, 0, 0, 0);
      }

      attention_mma::attend_key_block<D, kHeadTiles>(
          kr, vr, [&](int h, int ht) { return lds128(&q_s[ht][h][lane]); }, kb, k_end, o, m, l);
    }
  };
  if (bs % kBlockKeys == 0)
    key_loop(std::true_type{});
  else
    key_loop(std::false_type{});
  pdl_launch_dependents();

  // Merge the warps through shared memory: M = max m_w, L = sum l_w 2^(m_w - M),
  // O = sum O_w 2^(m_w - M). A warp without keys has l = 0 and weighs nothing.
#pragma unroll
  for (int ht = 0; ht < kHeadTiles; ++ht) {
    l[ht] += __shfl_xor_sync(0xffffffffu, l[ht], 1);
    l[ht] += __shfl_xor_sync(0xffffffffu, l[ht], 2);
    if (c == 0) m_s[warp][g + 8 * ht] = m[ht], l_s[warp][g + 8 * ht] = l[ht];
#pragma unroll
    for (int mt = 0; mt < D / 16; ++mt) {
      const int d = 8 * g + 64 * (mt / 4) + 2 * (mt % 4);
      *reinterpret_cast<float2*>(&o_s[warp][8 * ht + 2 * c][d]) =
          make_float2(o[ht][mt][0], o[ht][mt][2]);
      *reinterpret_cast<float2*>(&o_s[warp][8 * ht + 2 * c + 1][d]) =
          make_float2(o[ht][mt][1], o[ht][mt][3]);
    }
  }
  __syncthreads();
  for (int i = threadIdx.x; i < G * D; i += kThreads) {
    const int r = i / D, d = i % D;
    float M = -INFINITY;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) M = fmaxf(M, m_s[w][r]);
    float L = 0.0f, O = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      const float f = l_s[w][r] > 0.0f ? exp2f(m_s[w][r] - M) : 0.0f;
      L += l_s[w][r] * f;
      O += o_s[w][r][d] * f;
    }
    const int64_t row = static_cast<int64_t>(t) * a.num_heads + kv_head * G + r;
    const float out = L > 0.0f ? O / L : 0.0f;
    if (a.num_splits == 1) {
      a.out[row * D + d] = __float2bfloat16(out);
    } else {
      const int64_t prow = static_cast<int64_t>(split) * a.num_tokens * a.num_heads + row;
      a.partial_out[prow * D + d] = out;
      if (d == 0) {
        // The merge kernel weighs splits by L e^(M - max M): M back in natural-log units.
        a.partial_max_sum[prow * 2] = L > 0.0f ? M * kLn2 : -FLT_MAX;
        a.partial_max_sum[prow * 2 + 1] = L;
      }
    }
  }
}

template <int D, int kHeadTiles>
void launch(const AttentionArgs& a, cudaStream_t stream) {
  const dim3 grid(a.num_splits, a.num_tokens, a.cache.num_kv_heads);
  launch_pdl(decode_attention_mma_kernel<D, kHeadTiles>, grid, kThreads, 0, stream, a);
}

}  // namespace

bool decode_mma_supported(const KvCacheShape& cache, int32_t num_heads) {
  return cache.dtype == KvCacheDtype::kBf16 && (cache.head_dim == 64 || cache.head_dim == 128) &&
         cache.num_kv_heads > 0 && num_heads > 0 && num_heads % cache.num_kv_heads == 0 &&
         num_heads / cache.num_kv_heads <= kMaxMmaGroupSize;
}

void launch_decode_attention_mma(const AttentionArgs& a, cudaStream_t stream) {
  LOOM_CHECK(decode_mma_supported(a.cache, a.num_heads),
             "tensor-core decode attention: %s cache, head_dim %d, %d heads over %d KV heads",
             kv_cache_dtype_name(a.cache.dtype), a.cache.head_dim, a.num_heads,
             a.cache.num_kv_heads);
  LOOM_CHECK(reinterpret_cast<uintptr_t>(a.q) % 16 == 0, "q not 16-byte aligned");
  if (a.num_tokens == 0) return;
  const bool two_tiles = a.num_heads / a.cache.num_kv_heads > 8;
  if (a.cache.head_dim == 64) {
    two_tiles ? launch<64, 2>(a, stream) : launch<64, 1>(a, stream);
  } else {
    two_tiles ? launch<128, 2>(a, stream) : launch<128, 1>(a, stream);
  }
}

}  // namespace loom::cuda
