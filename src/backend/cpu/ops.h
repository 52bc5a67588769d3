// Element-wise and row-wise float ops of the decoder, on the CPU. Every op works row by row with
// a fixed order of accumulation, so a row's result never depends on the other rows (batch
// invariance).
#pragma once

#include <cstdint>
#include <vector>

#include "model/model_config.h"

namespace loom::cpu {

// y[r] = x[r] / rms(x[r]) * weight, for rows of `dim` floats. x and y may alias.
void rms_norm(const float* x, const float* weight, int64_t num_rows, int32_t dim, float eps,
              float* y);

// x[i] += y[i]
void add_inplace(float* x, const float* y, int64_t n);

// out[r][i] = silu(gate[r][i]) * up[r][i]; gate_up is [rows][2][ffn] when fused, here separate.
void silu_mul(const float* gate, const float* up, int64_t n, float* out);

// Rotary embedding tables for one forward: cos/sin for every token's position and pair.
class RopeTables {
 public:
  explicit RopeTables(const ModelConfig& config);
  // Fills [num_tokens][head_dim / 2] cos and sin tables for these positions.
  void prepare(const int32_t* positions, int64_t num_tokens);
  // Rotates `num_heads` heads of head_dim floats of token t in place.
  void apply(float* heads, int64_t token, int32_t num_heads) const;

 private:
  int32_t head_dim_;
  RopeStyle style_;
  std::vector<float> inv_freq_;   // [head_dim / 2]
  std::vector<float> cos_, sin_;  // [num_tokens][head_dim / 2]
};

}  // namespace loom::cpu
