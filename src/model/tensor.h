// A read-only view of one weight tensor inside a mapped model file (or owned conversion buffer).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace loom {

struct TensorView {
  std::string name;  // GGUF naming: "token_embd.weight", "blk.3.attn_q.weight", ...
  DType type = DType::kF32;
  std::vector<int64_t> ne;  // dims, innermost (contiguous) first, as GGUF stores them:
                            // a weight matrix [out][in] row-major has ne = {in, out}
  const void* data = nullptr;
  size_t nbytes = 0;

  int64_t num_elements() const {
    int64_t n = 1;
    for (int64_t d : ne) n *= d;
    return n;
  }
  int64_t rows() const { return ne.size() < 2 ? 1 : num_elements() / ne[0]; }
  int64_t cols() const { return ne.empty() ? 0 : ne[0]; }
  size_t row_stride_bytes() const { return row_bytes(type, cols()); }
  const uint8_t* row(int64_t r) const {
    return static_cast<const uint8_t*>(data) + static_cast<size_t>(r) * row_stride_bytes();
  }
};

}  // namespace loom
