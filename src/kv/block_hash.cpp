#include "kv/block_hash.h"

namespace loom {
namespace {

// Murmur3's 64-bit finalizer: full avalanche, so nearby token ids give unrelated hashes.
inline uint64_t fmix64(uint64_t k) {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdull;
  k ^= k >> 33;
  k *= 0xc4ceb9fe1a85ec53ull;
  k ^= k >> 33;
  return k;
}

inline uint64_t rotl(uint64_t x, int r) {
  return (x << r) | (x >> (64 - r));
}

}  // namespace

uint64_t hash_block(uint64_t parent_hash, std::span<const TokenId> tokens) {
  // Two lanes (xxHash-like) over 32-bit tokens, then the length and a final mix.
  uint64_t a = parent_hash ^ 0x87c37b91114253d5ull;
  uint64_t b = fmix64(parent_hash + 0x4cf5ad432745937full);
  for (size_t i = 0; i < tokens.size(); ++i) {
    const uint64_t t = static_cast<uint32_t>(tokens[i]);
    a = rotl(a ^ fmix64(t + 0x52dce729u * (i + 1)), 27) * 0x9e3779b97f4a7c15ull;
    b = rotl(b + t * 0xc2b2ae3d27d4eb4full, 31) * 0x165667b19e3779f9ull;
  }
  return fmix64(a ^ rotl(b, 17) ^ (tokens.size() * 0x27d4eb2f165667c5ull));
}

}  // namespace loom
