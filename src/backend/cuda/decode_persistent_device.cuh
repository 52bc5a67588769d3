// Device helpers of the persistent decode kernel (decode_persistent.cuh): its constants, the
// mbarrier and bulk-copy PTX of the weight ring, the consumer warps' barrier and the exchange
// words' stores and waits. Included by decode_persistent.cu and decode_persistent_attention.cuh
// only.
#pragma once

#include "backend/cuda/decode_persistent.cuh"
#include "backend/cuda/gemv_common.cuh"

namespace loom::cuda::persistent_detail {

constexpr int kConsumerWarps = 8;
constexpr int kConsumers = kConsumerWarps * 32;
constexpr int kThreads = kConsumers + 32;  // + the producer warp
constexpr int kStageBytes = kPersistentStageBytes;
constexpr int kSliceBytes = 512;                          // 32 lanes x 16 bytes
constexpr int kWarpBytes = kStageBytes / kConsumerWarps;  // a consumer warp's share of a stage
constexpr int kMaxStages = 16;
// The ring's depth when the plan is not told otherwise. A deeper ring hides longer waits for
// other CTAs, but more copies in flight slow those waits' round trips to L2 (H200, the layers
// and a 49,152-row output layer, context 256, 3 / 4 / 5 / 6 stages: 1B 0.756 / 0.765 / 0.761 /
// 0.775 ms, 8B 3.829 / 3.828 / 3.811 / 3.818 ms); 5 is best or within 1% on both. The backend
// measures one stage more where it fits (CudaBackend::choose_persistent_ring): since the gate/up
// row sums share the scratch, an 8B holds 6 and runs ~1.9% faster with them on both GPUs.
constexpr int kRingStages = 5;
// Copies a producer keeps in flight, at most (the rest of the ring holds landed stages). Fewer
// copies outstanding let the hand-overs' round trips to L2 through faster, and the memory system
// stays busy with 2 x 32 KB a CTA (H200, context 256, 5 stages, 1 / 2 / 3 / 5 in flight: 1B
// 0.744 / 0.729 / 0.751 / 0.764 ms, 8B 3.973 / 3.724 / 3.811 / 3.828 ms). A deeper ring still
// helps with 2 in flight (3 / 4 / 5 stages: 1B 0.760 / 0.748 / 0.729, 8B 3.840 / 3.784 / 3.724):
// it holds what lands while the consumers wait for other CTAs. The plan's default: the backend
// measures 1 and 2 (CudaBackendOptions::persistent_in_flight); on an H100, 1B runs best with 1.
constexpr int kRingInFlight = 2;
static_assert(16 * kConsumerWarps == 128,
              "persistent_attention_splits: one split takes a 16-key block per consumer warp");
constexpr int kMaxGroup = 8;        // query heads per KV head
constexpr int kMaxSplits = 64;      // attention splits per KV head
constexpr int kTableEntries = 512;  // block-table entries of its keys a CTA keeps in shared memory
constexpr int kRowAlign = 256;      // hidden, ffn, q_dim: multiples of this (512-byte rows)
constexpr int kSmemLayers = 128;    // layers whose weight pointers a CTA keeps in shared memory
static_assert(sizeof(PersistentLayer) % 8 == 0, "the layer table is copied in 8-byte words");

// Left out of the pre-Hopper device pass (the kernel traps there; the host never launches it).
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 900

__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void mbar_init(uint64_t* bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(smem_u32(bar)), "r"(count)
               : "memory");
}
__device__ __forceinline__ void mbar_arrive_expect_tx(uint64_t* bar, uint32_t bytes) {
  asm volatile(
      "{\n .reg .b64 st;\n mbarrier.arrive.expect_tx.shared::cta.b64 st, [%0], %1;\n}" ::"r"(
          smem_u32(bar)),
      "r"(bytes)
      : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint64_t* bar) {
  asm volatile(
      "{\n .reg .b64 st;\n mbarrier.arrive.shared::cta.b64 st, [%0];\n}" ::"r"(smem_u32(bar))
      : "memory");
}
__device__ __forceinline__ void mbar_wait(uint64_t* bar, uint32_t parity) {
  uint32_t done = 0;
  do {
    asm volatile(
        "{\n .reg .pred p;\n mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n selp.u32 "
        "%0, 1, 0, p;\n}"
        : "=r"(done)
        : "r"(smem_u32(bar)), "r"(parity)
        : "memory");
  } while (!done);
}
// An L2 policy for data read once: its lines are the first evicted.
__device__ __forceinline__ uint64_t l2_evict_first_policy() {
  uint64_t policy;
  asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(policy));
  return policy;
}
// bytes from global src into shared dst, completing `bytes` transactions on bar. The weights go
// through L2 as evict-first (each byte is read once a step): without it L2 keeps them at the cost
// of the lines the hand-overs and the attention come back to (H200, context 256: 1B 0.729 ->
// 0.696 ms, 8B 3.778 -> 3.661 ms; context 4,096: 0.939 -> 0.917, 4.285 -> 4.221).
__device__ __forceinline__ void bulk_load(void* dst, const void* src, uint32_t bytes, uint64_t* bar,
                                          uint64_t policy) {
  asm volatile(
      "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes.L2::cache_hint [%0], "
      "[%1], %2, [%3], %4;" ::"r"(smem_u32(dst)),
      "l"(src), "r"(bytes), "r"(smem_u32(bar)), "l"(policy)
      : "memory");
}

// bytes from global src into shared dst as bulk_load, with L2's default policy (the KV cache's
// rows: read again the next step, they may stay in L2 while the weights stream past).
__device__ __forceinline__ void bulk_load_kept(void* dst, const void* src, uint32_t bytes,
                                               uint64_t* bar) {
  asm volatile(
      "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, "
      "[%3];" ::"r"(smem_u32(dst)),
      "l"(src), "r"(bytes), "r"(smem_u32(bar))
      : "memory");
}

// 16 bytes from shared memory (p: a generic address of it).
__device__ __forceinline__ uint4 lds128(const void* p) {
  uint4 v;
  asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "r"(smem_u32(p))
               : "memory");
  return v;
}

// The consumer warps only (the producer never joins): named barrier 1.
__device__ __forceinline__ void consumer_sync() {
  asm volatile("bar.sync 1, %0;" ::"n"(kConsumers) : "memory");
}

using gemv_detail::fma8;  // acc += the dot product of 8 bf16 pairs
using gemv_detail::warp_sum;

// Exchange words (PersistentExchange): payload and tag in one 8-byte store, so that a reader who
// sees the tag has the payload that came with it.
__device__ __forceinline__ void ll_store(uint64_t* p, uint32_t payload, uint32_t tag) {
  const uint64_t v = (static_cast<uint64_t>(tag) << 32) | payload;
  asm volatile("st.relaxed.gpu.global.u64 [%0], %1;" ::"l"(p), "l"(v) : "memory");
}
__device__ __forceinline__ uint64_t ll_load(const uint64_t* p) {
  uint64_t v;
  asm volatile("ld.relaxed.gpu.global.u64 %0, [%1];" : "=l"(v) : "l"(p) : "memory");
  return v;
}
__device__ __forceinline__ uint32_t ll_tag(uint64_t v) {
  return static_cast<uint32_t>(v >> 32);
}
__device__ __forceinline__ float ll_f32(uint64_t v) {
  return __uint_as_float(static_cast<uint32_t>(v));
}
// Waits for N words of tag `tag`, word i at addr(i) (nullptr: no word i; v[i] then holds the tag
// and a zero payload): all N loads in flight together, then, while some lack the tag, a short
// sleep (the waiting threads of every CTA would otherwise flood L2 with loads that the weight
// stream needs) and the stale ones reloaded together. The addresses are recomputed on a reload
// rather than held (registers). check false: takes the words as they are
// (kPersistentDiagNoSync).
template <int N, class Addr>
__device__ __forceinline__ void ll_wait_at(Addr addr, uint32_t tag, bool check, uint64_t (&v)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) {
    const uint64_t* p = addr(i);
    v[i] = p ? ll_load(p) : (static_cast<uint64_t>(tag) << 32);
  }
  if (!check) return;
  for (;;) {
    bool stale = false;
#pragma unroll
    for (int i = 0; i < N; ++i) stale |= ll_tag(v[i]) != tag;
    if (!stale) return;
    __nanosleep(200);
#pragma unroll
    for (int i = 0; i < N; ++i)
      if (ll_tag(v[i]) != tag) v[i] = ll_load(addr(i));
  }
}
template <int N>
__device__ __forceinline__ void ll_wait(const uint64_t* const (&p)[N], uint32_t tag, bool check,
                                        uint64_t (&v)[N]) {
  ll_wait_at<N>([&](int i) { return p[i]; }, tag, check, v);
}
__device__ __forceinline__ float ll_wait_f32(const uint64_t* p, uint32_t tag, bool check) {
  const uint64_t* const ps[1] = {p};
  uint64_t v[1];
  ll_wait<1>(ps, tag, check, v);
  return ll_f32(v[0]);
}

#endif

}  // namespace loom::cuda::persistent_detail
