// Helpers for the kernel tests: random weight tensors of any type and float references.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "backend/cpu/kernels/blocks.h"
#include "backend/cpu/kernels/fp16.h"
#include "backend/cpu/kernels/quant.h"
#include "model/tensor.h"

namespace loom::cpu::testing {

// Weight matrix [n_out][k] of `type` made of random bytes with realistic fp16 scale fields (the
// same recipe as tools/make_quant_golden.py). Owns its bytes.
struct RandomWeights {
  std::vector<uint8_t> bytes;
  TensorView view;

  RandomWeights(DType type, int64_t k, int64_t n_out, uint32_t seed) {
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int> byte(0, 255);
    std::uniform_real_distribution<float> unit(-1.0f, 1.0f);
    const size_t row = row_bytes(type, k);
    bytes.resize(row * static_cast<size_t>(n_out) + 64);
    for (auto& b : bytes) b = static_cast<uint8_t>(byte(rng));
    const int64_t nb = k / dtype_info(type).block_elems;
    const auto set_f16 = [&](uint8_t* p, float v) {
      const uint16_t h = fp32_to_fp16(v);
      std::memcpy(p, &h, 2);
    };
    for (int64_t r = 0; r < n_out; ++r) {
      uint8_t* base = bytes.data() + r * row;
      if (type == DType::kF32) {
        for (int64_t i = 0; i < k; ++i) {
          const float v = unit(rng);
          std::memcpy(base + 4 * i, &v, 4);
        }
      } else if (type == DType::kF16) {
        for (int64_t i = 0; i < k; ++i) set_f16(base + 2 * i, unit(rng));
      } else if (type == DType::kBF16) {
        for (int64_t i = 0; i < k; ++i) {
          const uint16_t h = fp32_to_bf16(unit(rng));
          std::memcpy(base + 2 * i, &h, 2);
        }
      }
      const int32_t bsz = dtype_info(type).block_bytes;
      for (int64_t b = 0; b < nb && dtype_info(type).block_elems > 1; ++b) {
        uint8_t* blk = base + b * bsz;
        const float d = 0.01f + 0.05f * std::fabs(unit(rng));
        switch (type) {
          case DType::kQ4_0:
          case DType::kQ5_0:
          case DType::kQ8_0:
            set_f16(blk, unit(rng) < 0 ? -d : d);
            break;
          case DType::kQ4_1:
          case DType::kQ5_1:
            set_f16(blk, d);
            set_f16(blk + 2, -0.4f * std::fabs(unit(rng)));
            break;
          case DType::kQ4_K:
          case DType::kQ5_K:
            set_f16(blk, 0.002f * (1.0f + unit(rng)));
            set_f16(blk + 2, 0.002f * (1.0f + unit(rng)));
            break;
          case DType::kQ6_K:
            set_f16(blk + 208, 0.001f * unit(rng));
            break;
          default:
            break;
        }
      }
    }
    view.name = "random";
    view.type = type;
    view.ne = {k, n_out};
    view.data = bytes.data();
    view.nbytes = row * static_cast<size_t>(n_out);
  }

  std::vector<float> dequantized() const {
    std::vector<float> out(static_cast<size_t>(view.num_elements()));
    for (int64_t r = 0; r < view.rows(); ++r) {
      dequantize_row(view.type, view.row(r), out.data() + r * view.cols(), view.cols());
    }
    return out;
  }
};

inline std::vector<float> random_floats(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

}  // namespace loom::cpu::testing
