// One 16-key block of decode attention on the tensor cores, the step that the decode attention
// kernel (attention_decode_mma.cu: keys read from the paged cache) and the persistent decode
// kernel (decode_persistent_attention.cuh: keys read from its ring in shared memory) share:
// S = Q K^T for up to 8 query heads a head tile, the online softmax's update, O^T += V^T P^T.
// The fragments' layout (the head dimension contracted in a permuted order, so that S's
// accumulators are P^T's B operand as they are) is described at the top of
// attention_decode_mma.cu; the callers load the K and V chunks in that layout.
#pragma once

#include <cmath>

#include "backend/cuda/cuda_common.cuh"
#include "backend/cuda/mma_sm80.cuh"

namespace loom::cuda::attention_mma {

// __byte_perm selectors pairing bf16 halves of two words: kLowHalves takes both low halves,
// kHighHalves both high halves; the first word's half lands in the low half of the result.
constexpr uint32_t kLowHalves = 0x5410u;
constexpr uint32_t kHighHalves = 0x7632u;

// 32-bit word i of v.
__device__ __forceinline__ uint32_t word(const uint4& v, int i) {
  return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w;
}

// The keys [kb, kb + 16) of a block, with lane L = 4g + c holding (zeros for keys at or past
// k_end, whose weights become 0):
//   kr[n][h]:  key kb + 8n + g's K row at dims [8c + 32h, +8)
//   vr[i][hh]: key kb + 2c + (i & 1) + 8 (i >> 1)'s V row at dims [8g + 64hh, +8)
// q(h, ht): the lane's Q fragment words for k-steps 2h and 2h + 1 of head tile ht ({a0, a2} of
// each; rows past the group are zeros), scaled by log2 e (the softmax runs in base 2).
// Running state per head tile ht (S rows g + 8 ht): o[ht][mt][e] = O[head 8ht + 2c + (e & 1)]
// [dim 8g + 64 (mt / 4) + 2 (mt % 4) + (e >> 1)], m[ht] the row's maximum (base 2), l[ht] the
// lane's share of the row's sum. Key kb must be below k_end.
template <int D, int kHeadTiles, class QFragment>
__device__ __forceinline__ void attend_key_block(const uint4 (&kr)[2][D / 32],
                                                 const uint4 (&vr)[4][D / 64], const QFragment& q,
                                                 int32_t kb, int32_t k_end,
                                                 float (&o)[kHeadTiles][D / 16][4],
                                                 float (&m)[kHeadTiles], float (&l)[kHeadTiles]) {
  const int c = threadIdx.x % 4;
  // S = Q K^T (base-2 logits): s[n] = S[head g (+8)][keys 8n + 2c, +1].
  float s[2][4];
#pragma unroll
  for (int n = 0; n < 2; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) s[n][e] = 0.0f;
#pragma unroll
  for (int h = 0; h < D / 32; ++h) {
    const uint4 q0 = q(h, 0);
    const uint4 q1 = kHeadTiles > 1 ? q(h, kHeadTiles - 1) : make_uint4(0, 0, 0, 0);
#pragma unroll
    for (int j = 0; j < 2; ++j) {  // k-step 2h + j
      const uint32_t qa[4] = {word(q0, 2 * j), word(q1, 2 * j), word(q0, 2 * j + 1),
                              word(q1, 2 * j + 1)};
#pragma unroll
      for (int n = 0; n < 2; ++n)
        mma_bf16(s[n], qa, word(kr[n][h], 2 * j), word(kr[n][h], 2 * j + 1));
    }
  }
  if (kb + 16 > k_end) {  // warp-uniform: the last block of the keys
#pragma unroll
    for (int n = 0; n < 2; ++n)
#pragma unroll
      for (int e = 0; e < 2 * kHeadTiles; ++e)
        if (kb + 8 * n + 2 * c + (e & 1) >= k_end) s[n][e] = -INFINITY;
  }

  // Online softmax per S row (head g + 8 ht; the 4 lanes of a row hold its 16 keys). Key kb is
  // valid, so the row max is finite; the guard keeps -inf - -inf out all the same.
  float alpha[kHeadTiles];
  uint32_t pb[kHeadTiles][2];  // P^T's B fragment: keys 2c, 2c+1 / 2c+8, 2c+9 of head g + 8 ht
#pragma unroll
  for (int ht = 0; ht < kHeadTiles; ++ht) {
    float mx = fmaxf(fmaxf(s[0][2 * ht], s[0][2 * ht + 1]), fmaxf(s[1][2 * ht], s[1][2 * ht + 1]));
    mx = fmaxf(mx, m[ht]);
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
    const float ref = mx == -INFINITY ? 0.0f : mx;
    alpha[ht] = exp2f(m[ht] - ref);  // 0 while m was -inf
    m[ht] = mx;
    const float p00 = exp2f(s[0][2 * ht] - ref), p01 = exp2f(s[0][2 * ht + 1] - ref);
    const float p10 = exp2f(s[1][2 * ht] - ref), p11 = exp2f(s[1][2 * ht + 1] - ref);
    l[ht] = l[ht] * alpha[ht] + ((p00 + p01) + (p10 + p11));
    pb[ht][0] = pack_bf16(p00, p01);
    pb[ht][1] = pack_bf16(p10, p11);
  }

  // O^T's columns are heads 8 ht + 2c, + 1, whose rescale factors live in lanes 4 (2c) and
  // 4 (2c + 1) (S rows 2c, 2c + 1). Then O^T += V^T P^T.
  float a0[kHeadTiles], a1[kHeadTiles];
#pragma unroll
  for (int ht = 0; ht < kHeadTiles; ++ht) {
    a0[ht] = __shfl_sync(0xffffffffu, alpha[ht], 8 * c);
    a1[ht] = __shfl_sync(0xffffffffu, alpha[ht], 8 * c + 4);
  }
#pragma unroll
  for (int mt = 0; mt < D / 16; ++mt) {
    const int hh = mt / 4, j = mt % 4;
    const uint32_t w0 = word(vr[0][hh], j), w1 = word(vr[1][hh], j);
    const uint32_t w8 = word(vr[2][hh], j), w9 = word(vr[3][hh], j);
    const uint32_t va[4] = {__byte_perm(w0, w1, kLowHalves), __byte_perm(w0, w1, kHighHalves),
                            __byte_perm(w8, w9, kLowHalves), __byte_perm(w8, w9, kHighHalves)};
#pragma unroll
    for (int ht = 0; ht < kHeadTiles; ++ht) {
      o[ht][mt][0] *= a0[ht];
      o[ht][mt][1] *= a1[ht];
      o[ht][mt][2] *= a0[ht];
      o[ht][mt][3] *= a1[ht];
      mma_bf16(o[ht][mt], va, pb[ht][0], pb[ht][1]);
    }
  }
}

}  // namespace loom::cuda::attention_mma
