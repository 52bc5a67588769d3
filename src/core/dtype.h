// Tensor element types, numbered as GGUF numbers them, with their block layout.
// A quantized type stores `block_elems` values in `block_bytes` bytes; rows are whole blocks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

namespace loom {

enum class DType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ5_0 = 6,
  kQ5_1 = 7,
  kQ8_0 = 8,
  kQ8_1 = 9,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
  kQ8_K = 15,
  kBF16 = 30,
};

struct DTypeInfo {
  const char* name;
  int32_t block_elems;  // values per block (1 for float types)
  int32_t block_bytes;  // bytes per block
};

// Info for a supported type, or nullopt for an unknown / unsupported GGUF type id.
std::optional<DTypeInfo> dtype_info(uint32_t raw_type);
DTypeInfo dtype_info(DType type);  // aborts on an unsupported value: internal use only
const char* dtype_name(DType type);

// Bytes of a row of `n` values; n must be a multiple of block_elems (checked by callers).
inline size_t row_bytes(DType type, int64_t n) {
  DTypeInfo info = dtype_info(type);
  return static_cast<size_t>(n / info.block_elems) * static_cast<size_t>(info.block_bytes);
}

}  // namespace loom
