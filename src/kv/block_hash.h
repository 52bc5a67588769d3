// Content hash of one full KV block in a prefix chain: hash(parent block's hash, block's tokens).
// Two blocks with the same hash hold the same K/V only if their whole prefixes match, which is
// why the parent's hash is mixed in. 64 bits make collisions rare; the prefix cache still
// compares tokens and parent hash on every hit, so a collision costs a miss, never wrong K/V.
#pragma once

#include <cstdint>
#include <span>

#include "core/ids.h"

namespace loom {

inline constexpr uint64_t kRootBlockHash = 0x9e3779b97f4a7c15ull;  // parent of the first block

uint64_t hash_block(uint64_t parent_hash, std::span<const TokenId> tokens);

}  // namespace loom
