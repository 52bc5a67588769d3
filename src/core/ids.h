// Plain identifiers shared by every layer. Depends on nothing.
#pragma once

#include <cstdint>

namespace loom {

using TokenId = int32_t;  // index into the model's vocabulary
using SeqId = int64_t;    // one sequence inside the engine (one sample of one request)
using BlockId = int32_t;  // one KV-cache block in the device pool (or the host swap pool)

inline constexpr BlockId kNoBlock = -1;
// A sampled token that has not come back from the device yet (overlapped steps: the next step
// is planned while this one runs). Never a vocabulary id.
inline constexpr TokenId kPendingToken = -1;

}  // namespace loom
