// Whether the persistent decode kernel could run in thread-block clusters, and what a hand-over
// between two CTAs costs through distributed shared memory against one through L2.
//
// The persistent kernel (src/backend/cuda/decode_persistent.cu) runs one CTA an SM, each holding
// nearly all of the SM's shared memory, and its CTAs wait for each other's outputs, so every CTA
// must be resident at once (a cooperative launch). Putting an attention head's splits in one
// cluster would let them merge through distributed shared memory instead of exchange words in L2;
// this program answers the two questions that idea rests on:
//   1. residency: for clusters of 1, 2, 4, 8 and 16 CTAs of the kernel's size (288 threads, the
//      given dynamic shared memory), how many clusters the device keeps active at once
//      (cudaOccupancyMaxActiveClusters), and whether a cooperative launch of that many clusters
//      is accepted and finds every CTA resident (each CTA counts itself in, then waits, bounded,
//      for the rest);
//   2. latency: a round trip between two CTAs of one cluster (ping-pong: one writes a word into
//      the other's shared memory and arrives on its mbarrier, the other waits on it and answers)
//      against the same round trip through a flag word in global memory (st.release / ld.acquire
//      polling), the way the kernel's exchange words travel. Each is timed over `iters` round
//      trips by clock64 (cycles) and the SM clock's rate (ns).
// Usage: probe_clusters [smem_bytes (0 or none: the device's opt-in maximum less 1 KB)] [iters]
// Prints a table and one JSON line.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <utility>

#define CHECK(x)                                                                               \
  do {                                                                                         \
    cudaError_t e_ = (x);                                                                      \
    if (e_ != cudaSuccess) {                                                                   \
      std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
      std::exit(1);                                                                            \
    }                                                                                          \
  } while (0)

constexpr int kThreads = 288;

// Every CTA counts itself in, then waits (at most ~50 ms) for gridDim.x arrivals: *fewest
// gets the arrivals seen by the CTA that saw the fewest.
__global__ void __launch_bounds__(kThreads, 1) residency_kernel(unsigned* count, unsigned* fewest) {
  extern __shared__ char smem[];
  if (threadIdx.x == 0) {
    smem[0] = 1;
    atomicAdd(count, 1u);
    const long long t0 = clock64();
    unsigned seen = 0;
    do {
      seen = *reinterpret_cast<volatile unsigned*>(count);
    } while (seen < gridDim.x && clock64() - t0 < 100000000LL);
    atomicMin(fewest, seen);
  }
}

__device__ __forceinline__ unsigned smem_addr(const void* p) {
  return static_cast<unsigned>(__cvta_generic_to_shared(p));
}

// Ping-pong through distributed shared memory between ranks 0 and 1 of each cluster of 2:
// round i, rank 0 writes i into rank 1's word and arrives on rank 1's mbarrier (release,
// cluster scope); rank 1 waits for that phase and answers the same way. cycles[cluster] gets
// rank 0's total.
__global__ void __launch_bounds__(kThreads, 1) dsmem_pingpong(int iters, long long* cycles) {
  __shared__ alignas(8) unsigned long long bar;
  __shared__ unsigned word;
  unsigned rank;
  asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(rank));
  if (threadIdx.x == 0) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(smem_addr(&bar)) : "memory");
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  }
  asm volatile("barrier.cluster.arrive.release.aligned; barrier.cluster.wait.acquire.aligned;" ::
                   : "memory");
  if (threadIdx.x != 0) return;
  const unsigned peer = rank ^ 1u;
  unsigned peer_bar, peer_word;
  asm volatile("mapa.shared::cluster.u32 %0, %1, %2;"
               : "=r"(peer_bar)
               : "r"(smem_addr(&bar)), "r"(peer));
  asm volatile("mapa.shared::cluster.u32 %0, %1, %2;"
               : "=r"(peer_word)
               : "r"(smem_addr(&word)), "r"(peer));
  auto send = [&](unsigned v) {
    asm volatile("st.relaxed.cluster.shared::cluster.u32 [%0], %1;" ::"r"(peer_word), "r"(v)
                 : "memory");
    asm volatile("mbarrier.arrive.release.cluster.shared::cluster.b64 _, [%0];" ::"r"(peer_bar)
                 : "memory");
  };
  auto receive = [&](unsigned parity) {
    unsigned done = 0;
    do {
      asm volatile(
          "{\n .reg .pred p;\n mbarrier.try_wait.parity.acquire.cluster.shared::cta.b64 p, [%1], "
          "%2;\n"
          " selp.u32 %0, 1, 0, p;\n}"
          : "=r"(done)
          : "r"(smem_addr(&bar)), "r"(parity)
          : "memory");
    } while (!done);
  };
  const long long t0 = clock64();
  for (int i = 0; i < iters; ++i) {
    if (rank == 0) {
      send(i);
      receive(i & 1);
    } else {
      receive(i & 1);
      send(i);
    }
  }
  const long long t = clock64() - t0;
  // Neither CTA may exit while the other can still write into its shared memory.
  asm volatile("barrier.cluster.arrive.release.aligned; barrier.cluster.wait.acquire.aligned;" ::
                   : "memory");
  if (rank == 0) cycles[blockIdx.x / 2] = t;
}

// The same ping-pong between CTAs 2c and 2c + 1 through flag words in global memory: the sender
// stores the round's tag (st.release.gpu), the receiver polls it (ld.acquire.gpu) with the
// persistent kernel's 200 ns sleep between polls (poll_ns; 0: no sleep).
__global__ void __launch_bounds__(kThreads, 1)
    l2_pingpong(int iters, int poll_ns, unsigned* flags, long long* cycles) {
  if (threadIdx.x != 0) return;
  const unsigned pair = blockIdx.x / 2, rank = blockIdx.x % 2;
  unsigned* mine = flags + 64 * (2 * pair + rank);  // a line apart
  unsigned* theirs = flags + 64 * (2 * pair + (rank ^ 1u));
  auto send = [&](unsigned v) {
    asm volatile("st.release.gpu.global.u32 [%0], %1;" ::"l"(theirs), "r"(v) : "memory");
  };
  auto receive = [&](unsigned v) {
    for (;;) {
      unsigned got;
      asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(got) : "l"(mine) : "memory");
      if (got == v) return;
      if (poll_ns > 0) __nanosleep(poll_ns);
    }
  };
  const long long t0 = clock64();
  for (int i = 1; i <= iters; ++i) {
    if (rank == 0) {
      send(i);
      receive(i);
    } else {
      receive(i);
      send(i);
    }
  }
  if (rank == 0) cycles[pair] = clock64() - t0;
}

int main(int argc, char** argv) {
  int dev = 0, sms = 0, smem_optin = 0, clock_khz = 0;
  CHECK(cudaGetDevice(&dev));
  CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  CHECK(cudaDeviceGetAttribute(&smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
  CHECK(cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, dev));
  cudaDeviceProp prop;
  CHECK(cudaGetDeviceProperties(&prop, dev));
  // 0 or none: the opt-in maximum less 1 KB. At least 1 byte (the residency kernel writes one).
  const int smem_arg = argc > 1 ? std::atoi(argv[1]) : 0;
  const int smem = smem_arg > 0 ? std::min(smem_arg, smem_optin) : smem_optin - 1024;
  const int iters = argc > 2 ? std::atoi(argv[2]) : 2000;
  if (prop.major < 9) {
    std::printf("needs compute capability 9.0 or later (clusters); this GPU is %d.%d\n", prop.major,
                prop.minor);
    return 0;
  }
  std::printf(
      "GPU %s, %d SMs, %d KB opt-in shared memory, SM clock %.0f MHz; CTAs of %d threads"
      " and %d bytes of dynamic shared memory\n",
      prop.name, sms, smem_optin / 1024, clock_khz / 1e3, kThreads, smem);
  CHECK(cudaFuncSetAttribute(residency_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  CHECK(cudaFuncSetAttribute(residency_kernel, cudaFuncAttributeNonPortableClusterSizeAllowed, 1));
  unsigned *count = nullptr, *fewest = nullptr, *flags = nullptr;
  long long* cycles = nullptr;
  CHECK(cudaMalloc(&count, 4));
  CHECK(cudaMalloc(&fewest, 4));
  CHECK(cudaMalloc(&flags, 4 * 64 * 2 * 256));
  CHECK(cudaMalloc(&cycles, 8 * 256));

  std::printf("\n%8s %16s %10s %22s\n", "cluster", "active clusters", "CTAs", "cooperative launch");
  char json[2048];
  int jn = std::snprintf(json, sizeof(json),
                         "{\"gpu\": \"%s\", \"sms\": %d, \"smem\": %d, \"clusters\": [", prop.name,
                         sms, smem);
  for (int size : {1, 2, 4, 8, 16}) {
    cudaLaunchConfig_t config = {};
    cudaLaunchAttribute attrs[2];
    attrs[0].id = cudaLaunchAttributeClusterDimension;
    attrs[0].val.clusterDim.x = size;
    attrs[0].val.clusterDim.y = attrs[0].val.clusterDim.z = 1;
    attrs[1].id = cudaLaunchAttributeCooperative;
    attrs[1].val.cooperative = 1;
    config.blockDim = dim3(kThreads);
    config.dynamicSmemBytes = smem;
    config.attrs = attrs;
    config.numAttrs = 1;
    config.gridDim = dim3(size * (sms / size));
    int active = 0;
    const cudaError_t occ = cudaOccupancyMaxActiveClusters(&active, residency_kernel, &config);
    if (occ != cudaSuccess) {
      cudaGetLastError();
      active = -1;
    }
    const char* outcome = "not tried";
    unsigned seen = 0;
    if (active > 0) {
      config.gridDim = dim3(active * size);
      config.numAttrs = 2;
      CHECK(cudaMemset(count, 0, 4));
      CHECK(cudaMemset(fewest, 0xFF, 4));
      const cudaError_t e = cudaLaunchKernelEx(&config, residency_kernel, count, fewest);
      const cudaError_t s = e == cudaSuccess ? cudaDeviceSynchronize() : e;
      if (s != cudaSuccess) {
        outcome = cudaGetErrorString(s);
        cudaGetLastError();
      } else {
        CHECK(cudaMemcpy(&seen, fewest, 4, cudaMemcpyDeviceToHost));
        outcome =
            seen == static_cast<unsigned>(active * size) ? "all resident" : "NOT all resident";
      }
    }
    std::printf("%8d %16d %10d %22s\n", size, active, active > 0 ? active * size : 0, outcome);
    jn += std::snprintf(json + jn, sizeof(json) - jn,
                        "%s{\"size\": %d, \"active\": %d, \"launch\": \"%s\"}",
                        size == 1 ? "" : ", ", size, active, outcome);
  }

  // Round trips: 2-CTA clusters over the whole device, and the same pairs through L2.
  const int pairs = sms / 2;
  auto median_ns = [&](const char* what) {
    long long host[256];
    CHECK(cudaMemcpy(host, cycles, 8 * pairs, cudaMemcpyDeviceToHost));
    // A small sort for the median.
    for (int i = 1; i < pairs; ++i)
      for (int j = i; j > 0 && host[j] < host[j - 1]; --j) std::swap(host[j], host[j - 1]);
    const double ns = host[pairs / 2] / (clock_khz / 1e6) / iters;
    std::printf("%-46s %8.0f ns a round trip (median of %d pairs)\n", what, ns, pairs);
    return ns;
  };
  std::printf("\n");
  {
    cudaLaunchConfig_t config = {};
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeClusterDimension;
    attr[0].val.clusterDim.x = 2;
    attr[0].val.clusterDim.y = attr[0].val.clusterDim.z = 1;
    config.gridDim = dim3(2 * pairs);
    config.blockDim = dim3(kThreads);
    config.attrs = attr;
    config.numAttrs = 1;
    CHECK(cudaLaunchKernelEx(&config, dsmem_pingpong, iters, cycles));
    CHECK(cudaDeviceSynchronize());
  }
  const double dsmem_ns = median_ns("distributed shared memory (mbarrier)");
  double l2_ns[2];
  const int polls[2] = {0, 200};
  for (int k = 0; k < 2; ++k) {
    CHECK(cudaMemset(flags, 0, 4 * 64 * 2 * 256));
    l2_pingpong<<<2 * pairs, kThreads>>>(iters, polls[k], flags, cycles);
    CHECK(cudaGetLastError());
    CHECK(cudaDeviceSynchronize());
    char what[64];
    std::snprintf(what, sizeof(what), "L2 flag words, %d ns sleep between polls", polls[k]);
    l2_ns[k] = median_ns(what);
  }
  std::printf(
      "%s], \"roundtrip_ns\": {\"dsmem\": %.0f, \"l2_poll0\": %.0f, \"l2_poll200\": %.0f}}\n", json,
      dsmem_ns, l2_ns[0], l2_ns[1]);
  return 0;
}
