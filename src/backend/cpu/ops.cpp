#include "backend/cpu/ops.h"

#include <cmath>

#include "util/check.h"

namespace loom::cpu {

void rms_norm(const float* x, const float* weight, int64_t num_rows, int32_t dim, float eps,
              float* y) {
  for (int64_t r = 0; r < num_rows; ++r) {
    const float* xr = x + r * dim;
    float* yr = y + r * dim;
    // 8 partial sums in a fixed order: vectorisable and the same for every row count.
    float part[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int32_t i = 0;
    for (; i + 8 <= dim; i += 8) {
      for (int k = 0; k < 8; ++k) part[k] += xr[i + k] * xr[i + k];
    }
    float sum =
        ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
    for (; i < dim; ++i) sum += xr[i] * xr[i];
    const float scale = 1.0f / std::sqrt(sum / static_cast<float>(dim) + eps);
    for (int32_t j = 0; j < dim; ++j) yr[j] = xr[j] * scale * weight[j];
  }
}

void add_inplace(float* x, const float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

void silu_mul(const float* gate, const float* up, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    out[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

RopeTables::RopeTables(const ModelConfig& config)
    : head_dim_(config.head_dim), style_(config.rope_style), inv_freq_(config.head_dim / 2) {
  LOOM_CHECK(head_dim_ % 2 == 0, "head_dim %d must be even", head_dim_);
  const int32_t half = head_dim_ / 2;
  LOOM_CHECK(config.rope_freq_factors.empty() ||
             static_cast<int32_t>(config.rope_freq_factors.size()) == half);
  for (int32_t i = 0; i < half; ++i) {
    double f = std::pow(static_cast<double>(config.rope_theta), -2.0 * i / head_dim_);
    if (!config.rope_freq_factors.empty()) f /= config.rope_freq_factors[i];
    if (config.rope_scaling.type == RopeScaling::Type::kLinear) f /= config.rope_scaling.factor;
    inv_freq_[i] = static_cast<float>(f);
  }
}

void RopeTables::prepare(const int32_t* positions, int64_t num_tokens) {
  const int32_t half = head_dim_ / 2;
  cos_.resize(num_tokens * half);
  sin_.resize(num_tokens * half);
  for (int64_t t = 0; t < num_tokens; ++t) {
    for (int32_t i = 0; i < half; ++i) {
      const float theta = static_cast<float>(positions[t]) * inv_freq_[i];
      cos_[t * half + i] = std::cos(theta);
      sin_[t * half + i] = std::sin(theta);
    }
  }
}

void RopeTables::apply(float* heads, int64_t token, int32_t num_heads) const {
  const int32_t half = head_dim_ / 2;
  const float* c = cos_.data() + token * half;
  const float* s = sin_.data() + token * half;
  for (int32_t h = 0; h < num_heads; ++h) {
    float* v = heads + static_cast<int64_t>(h) * head_dim_;
    if (style_ == RopeStyle::kInterleaved) {
      for (int32_t i = 0; i < half; ++i) {
        const float x0 = v[2 * i], x1 = v[2 * i + 1];
        v[2 * i] = x0 * c[i] - x1 * s[i];
        v[2 * i + 1] = x0 * s[i] + x1 * c[i];
      }
    } else {
      for (int32_t i = 0; i < half; ++i) {
        const float x0 = v[i], x1 = v[i + half];
        v[i] = x0 * c[i] - x1 * s[i];
        v[i + half] = x0 * s[i] + x1 * c[i];
      }
    }
  }
}

}  // namespace loom::cpu
