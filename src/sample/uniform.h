// The sampler's uniform number for the draw of token `step` of a sequence seeded `seed`, as one
// function that compiles for the host and the device alike: sample_uniform (sampler.h) and the
// GPU sampler (backend/cuda/sampling.cu) both call it, so a seeded request picks the same token
// wherever it is sampled. Free of CUDA headers.
//
// splitmix64's finalizer in two rounds (the seed, then the step folded into the key), 53 random
// bits scaled to [0, 1): every operation is an exact integer one, and the final scaling is by a
// power of two, so host and device agree exactly.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define LOOM_SAMPLE_HD __host__ __device__
#else
#define LOOM_SAMPLE_HD
#endif

namespace loom {

// splitmix64's finalizer: a bijective 64-bit mix with good avalanche.
LOOM_SAMPLE_HD inline uint64_t sample_mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xBF58476D1CE4E5B9ULL;
  x ^= x >> 27;
  x *= 0x94D049BB133111EBULL;
  x ^= x >> 31;
  return x;
}

// u in [0, 1) with 53 random bits (tests check the device against the host).
LOOM_SAMPLE_HD inline double sample_uniform_hd(uint64_t seed, int32_t step) {
  const uint64_t key = sample_mix64(seed + 0x9E3779B97F4A7C15ULL);
  const uint64_t bits = sample_mix64(
      key ^ (static_cast<uint64_t>(static_cast<uint32_t>(step)) * 0xD1B54A32D192ED03ULL +
             0x8CB92BA72F3D8DD7ULL));
  return static_cast<double>(bits >> 11) * 0x1.0p-53;
}

}  // namespace loom
