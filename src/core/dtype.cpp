#include "core/dtype.h"

#include "util/check.h"

namespace loom {

std::optional<DTypeInfo> dtype_info(uint32_t raw_type) {
  switch (static_cast<DType>(raw_type)) {
    case DType::kF32:
      return DTypeInfo{"F32", 1, 4};
    case DType::kF16:
      return DTypeInfo{"F16", 1, 2};
    case DType::kBF16:
      return DTypeInfo{"BF16", 1, 2};
    case DType::kQ4_0:
      return DTypeInfo{"Q4_0", 32, 18};  // f16 d + 16 bytes of nibbles
    case DType::kQ4_1:
      return DTypeInfo{"Q4_1", 32, 20};  // f16 d, f16 m + 16 bytes
    case DType::kQ5_0:
      return DTypeInfo{"Q5_0", 32, 22};  // f16 d + 4 bytes high bits + 16 bytes
    case DType::kQ5_1:
      return DTypeInfo{"Q5_1", 32, 24};  // f16 d, f16 m + 4 + 16
    case DType::kQ8_0:
      return DTypeInfo{"Q8_0", 32, 34};  // f16 d + 32 int8
    case DType::kQ8_1:
      return DTypeInfo{"Q8_1", 32, 36};  // f16 d, f16 s + 32 int8
    case DType::kQ4_K:
      return DTypeInfo{"Q4_K", 256, 144};
    case DType::kQ5_K:
      return DTypeInfo{"Q5_K", 256, 176};
    case DType::kQ6_K:
      return DTypeInfo{"Q6_K", 256, 210};
    case DType::kQ8_K:
      return DTypeInfo{"Q8_K", 256, 292};  // f32 d + 256 int8 + 16 int16 block sums
  }
  return std::nullopt;
}

DTypeInfo dtype_info(DType type) {
  auto info = dtype_info(static_cast<uint32_t>(type));
  LOOM_CHECK(info.has_value(), "unsupported dtype %u", static_cast<unsigned>(type));
  return *info;
}

const char* dtype_name(DType type) {
  return dtype_info(type).name;
}

}  // namespace loom
