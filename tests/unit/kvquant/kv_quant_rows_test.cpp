// Row quantization of the KV cache (backend/cpu/kv_quant.h): round trips stay within the format's
// error bound (half a scale step per value), scales are tight (rounded up by at most one f16 ulp),
// the int4 nibble order is the documented one, and degenerate rows do not misbehave.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "backend/cpu/kernels/fp16.h"
#include "backend/cpu/kv_quant.h"

namespace loom::cpu {
namespace {

// Rows with the shapes real K / V rows have: gaussian, a few outlier channels, tiny, huge.
std::vector<std::vector<float>> sample_rows(int32_t n) {
  std::mt19937 rng(1234);
  std::normal_distribution<float> gauss(0.0f, 1.0f);
  std::vector<std::vector<float>> rows;
  // Magnitudes stay inside the f16 range, as for the f16 cache (outliers reach ~35000).
  for (float magnitude : {1.0f, 1e-3f, 1e-7f, 30.0f, 300.0f}) {
    for (int32_t r = 0; r < 40; ++r) {
      std::vector<float> x(n);
      for (float& v : x) v = gauss(rng) * magnitude;
      if (r % 4 == 1) x[r % n] *= 25.0f;  // one outlier channel
      if (r % 4 == 2)
        for (float& v : x) v = std::fabs(v) + 2.0f * magnitude;  // all positive
      if (r % 4 == 3)
        for (float& v : x) v = -std::fabs(v) - magnitude;  // all negative
      rows.push_back(std::move(x));
    }
  }
  rows.push_back(std::vector<float>(n, 0.0f));   // all zero
  rows.push_back(std::vector<float>(n, 0.75f));  // constant
  rows.push_back(std::vector<float>(n, -5.5f));
  return rows;
}

constexpr float kF16Ulp = 1.0f / 1024.0f;          // relative spacing of normal f16 values
constexpr float kF16MinSubnormal = 5.9604645e-8f;  // 2^-24

TEST(KvQuantInt8, RoundTripWithinHalfAStep) {
  for (int32_t n : {16, 64, 128, 256}) {
    for (const auto& x : sample_rows(n)) {
      std::vector<int8_t> q(n);
      uint16_t scale = 0;
      quantize_row_int8(x.data(), n, q.data(), &scale);
      std::vector<float> y(n);
      dequantize_row_int8(q.data(), scale, n, y.data());
      const float s = fp16_to_fp32(scale);
      float amax = 0.0f;
      for (float v : x) amax = std::max(amax, std::fabs(v));
      // Tight scale: amax / 127 rounded up to f16.
      EXPECT_GE(s * 127.0f, amax * (1.0f - 1e-6f));
      EXPECT_LE(s, amax / 127.0f * (1.0f + kF16Ulp) + kF16MinSubnormal);
      for (int32_t i = 0; i < n; ++i) {
        EXPECT_GE(q[i], -127);
        // Half a step, plus the float rounding of q * s.
        ASSERT_LE(std::fabs(x[i] - y[i]), 0.5f * s * (1.0f + 1e-5f) + 1e-30f)
            << "n " << n << " i " << i << " x " << x[i] << " scale " << s;
      }
    }
  }
}

TEST(KvQuantInt8, ZeroRowIsExact) {
  std::vector<float> x(64, 0.0f), y(64, 1.0f);
  std::vector<int8_t> q(64, 5);
  uint16_t scale = 1;
  quantize_row_int8(x.data(), 64, q.data(), &scale);
  dequantize_row_int8(q.data(), scale, 64, y.data());
  for (float v : y) EXPECT_EQ(v, 0.0f);
}

TEST(KvQuantInt4, RoundTripWithinHalfAStep) {
  for (int32_t n : {32, 64, 128, 256}) {
    for (const auto& x : sample_rows(n)) {
      std::vector<uint8_t> q(n / 2);
      std::vector<uint16_t> params(n / kKvInt4Group * 2);
      quantize_row_int4(x.data(), n, q.data(), params.data());
      std::vector<float> y(n);
      dequantize_row_int4(q.data(), params.data(), n, y.data());
      for (int32_t g = 0; g < n / kKvInt4Group; ++g) {
        const float s = fp16_to_fp32(params[2 * g]);
        const float m = fp16_to_fp32(params[2 * g + 1]);
        const auto first = x.begin() + g * kKvInt4Group;
        const float mn = *std::min_element(first, first + kKvInt4Group);
        const float mx = *std::max_element(first, first + kKvInt4Group);
        // The grid [m, m + 15 s] covers [mn, mx], and is tight.
        EXPECT_LE(m, mn);
        EXPECT_GE(m, mn - std::fabs(mn) * kF16Ulp - kF16MinSubnormal);
        EXPECT_GE(m + 15.0f * s, mx - 1e-6f * std::fabs(mx));
        EXPECT_LE(s, ((mx - mn) + std::fabs(mn) * kF16Ulp) / 15.0f * (1.0f + kF16Ulp) +
                         2 * kF16MinSubnormal);
        const float amax = std::max(std::fabs(mn), std::fabs(mx));
        for (int32_t i = g * kKvInt4Group; i < (g + 1) * kKvInt4Group; ++i) {
          // Half a step, plus the float rounding of m + q * s.
          ASSERT_LE(std::fabs(x[i] - y[i]), 0.5f * s + 4e-7f * amax + 1e-30f)
              << "n " << n << " i " << i << " x " << x[i] << " y " << y[i] << " scale " << s;
        }
      }
    }
  }
}

TEST(KvQuantInt4, NibbleOrderAndExactGrid) {
  // Values on the integer grid 0..15 quantize exactly (min 0, scale 1): value i sits in the low
  // nibble of byte i of its 32-value chunk, value i + 16 in the high nibble.
  std::vector<float> x(64);
  for (int32_t c = 0; c < 2; ++c) {
    for (int32_t i = 0; i < 16; ++i) {
      x[c * 32 + i] = static_cast<float>(i);
      x[c * 32 + 16 + i] = static_cast<float>(15 - i);
    }
  }
  std::vector<uint8_t> q(32);
  std::vector<uint16_t> params(64 / kKvInt4Group * 2);
  quantize_row_int4(x.data(), 64, q.data(), params.data());
  for (int32_t c = 0; c < 2; ++c)
    for (int32_t i = 0; i < 16; ++i) EXPECT_EQ(q[c * 16 + i], i | ((15 - i) << 4)) << c << " " << i;
  for (int32_t g = 0; g < 64 / kKvInt4Group; ++g) {
    EXPECT_EQ(fp16_to_fp32(params[2 * g]), 1.0f);
    EXPECT_EQ(fp16_to_fp32(params[2 * g + 1]), 0.0f);
  }
  std::vector<float> y(64);
  dequantize_row_int4(q.data(), params.data(), 64, y.data());
  EXPECT_EQ(x, y);
}

TEST(KvQuant, NonFiniteInputDoesNotEscapeTheRange) {
  std::vector<float> x(64, 1.0f);
  x[3] = std::nanf("");
  std::vector<int8_t> q8(64);
  uint16_t scale = 0;
  quantize_row_int8(x.data(), 64, q8.data(), &scale);
  for (int8_t v : q8) EXPECT_GE(v, -127);
  std::vector<uint8_t> q4(32);
  std::vector<uint16_t> params(64 / kKvInt4Group * 2);
  quantize_row_int4(x.data(), 64, q4.data(), params.data());  // must not crash
}

TEST(KvQuant, RowBytesAndNames) {
  EXPECT_EQ(kv_row_data_bytes(KvDtype::kF16, 64), 128u);
  EXPECT_EQ(kv_row_param_bytes(KvDtype::kF16, 64), 0u);
  EXPECT_EQ(kv_row_data_bytes(KvDtype::kInt8, 64), 64u);
  EXPECT_EQ(kv_row_param_bytes(KvDtype::kInt8, 64), 2u);
  EXPECT_EQ(kv_row_data_bytes(KvDtype::kInt4, 64), 32u);
  EXPECT_EQ(kv_row_param_bytes(KvDtype::kInt4, 64), 64u / kKvInt4Group * 4u);
  EXPECT_FALSE(kv_dtype_supports(KvDtype::kInt4, 48));
  EXPECT_TRUE(kv_dtype_supports(KvDtype::kInt8, 48));
  for (KvDtype d : {KvDtype::kF16, KvDtype::kInt8, KvDtype::kInt4}) {
    auto parsed = parse_kv_dtype(kv_dtype_name(d));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(parsed.value(), d);
  }
  EXPECT_FALSE(parse_kv_dtype("fp8").ok());
  EXPECT_FALSE(parse_kv_dtype("").ok());
}

}  // namespace
}  // namespace loom::cpu
