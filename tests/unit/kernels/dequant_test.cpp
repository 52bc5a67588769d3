// dequantize_row and quantize_row_q8_0 against golden values from the gguf Python package
// (tools/make_quant_golden.py).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "backend/cpu/kernels/cpu_features.h"
#include "backend/cpu/kernels/fp16.h"
#include "backend/cpu/kernels/quant.h"

namespace loom::cpu {
namespace {

std::vector<uint8_t> read_golden(const std::string& name) {
  const std::string path = std::string(LOOM_SOURCE_DIR) + "/tests/golden/kernels/" + name;
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "missing golden file " << path;
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

std::vector<float> as_floats(const std::vector<uint8_t>& bytes) {
  std::vector<float> v(bytes.size() / 4);
  std::memcpy(v.data(), bytes.data(), v.size() * 4);
  return v;
}

struct GoldenCase {
  const char* name;
  DType type;
};

class DequantGolden : public ::testing::TestWithParam<GoldenCase> {};

TEST_P(DequantGolden, MatchesReferenceImplementation) {
  const GoldenCase c = GetParam();
  const std::vector<uint8_t> raw = read_golden(std::string(c.name) + ".bin");
  const std::vector<float> expected = as_floats(read_golden(std::string(c.name) + ".f32"));
  ASSERT_FALSE(expected.empty());
  const DTypeInfo info = dtype_info(c.type);
  ASSERT_EQ(raw.size() / info.block_bytes * info.block_elems, expected.size());
  // Every ISA (the row converters of F16/BF16 take SIMD paths).
  for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512}) {
    if (!isa_supported(isa)) continue;
    const Isa saved = active_isa();
    set_active_isa(isa);
    std::vector<float> got(expected.size(), -12345.0f);
    dequantize_row(c.type, raw.data(), got.data(), static_cast<int64_t>(got.size()));
    set_active_isa(saved);
    for (size_t i = 0; i < expected.size(); ++i) {
      if (std::isnan(expected[i])) {
        EXPECT_TRUE(std::isnan(got[i])) << c.name << " index " << i;
        continue;
      }
      if (std::isinf(expected[i])) {
        EXPECT_EQ(got[i], expected[i]) << c.name << " index " << i;
        continue;
      }
      // The reference computes in float32 the same products (d * sc) * q - dmin * m, so the
      // results agree to the last bit or, for fused operations, within one rounding.
      const float tol = std::fabs(expected[i]) * 2e-7f + 1e-30f;
      EXPECT_NEAR(got[i], expected[i], tol) << c.name << " index " << i << " " << isa_name(isa);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    AllTypes, DequantGolden,
    ::testing::Values(GoldenCase{"F16", DType::kF16}, GoldenCase{"BF16", DType::kBF16},
                      GoldenCase{"Q4_0", DType::kQ4_0}, GoldenCase{"Q4_1", DType::kQ4_1},
                      GoldenCase{"Q5_0", DType::kQ5_0}, GoldenCase{"Q5_1", DType::kQ5_1},
                      GoldenCase{"Q8_0", DType::kQ8_0}, GoldenCase{"Q4_K", DType::kQ4_K},
                      GoldenCase{"Q5_K", DType::kQ5_K}, GoldenCase{"Q6_K", DType::kQ6_K}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(DequantTest, F32IsACopy) {
  const float src[4] = {1.5f, -0.0f, 3e-40f, -7.25f};
  float dst[4];
  dequantize_row(DType::kF32, src, dst, 4);
  EXPECT_EQ(std::memcmp(src, dst, sizeof src), 0);
}

TEST(QuantizeTest, Q8_0MatchesReference) {
  const std::vector<float> x = as_floats(read_golden("q8_0_quant_in.f32"));
  const std::vector<uint8_t> expected = read_golden("q8_0_quant_out.bin");
  ASSERT_EQ(x.size() / 32 * 34, expected.size());
  std::vector<uint8_t> got(expected.size());
  quantize_row_q8_0(x.data(), got.data(), static_cast<int64_t>(x.size()));
  EXPECT_EQ(got, expected);
}

TEST(QuantizeTest, Q8_KRoundTripsWithinHalfAStep) {
  std::vector<float> x(512);
  for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.37f * static_cast<float>(i)) * 3.0f;
  x[300] = -9.0f;  // the largest magnitude, negative
  std::vector<uint8_t> q(row_bytes(DType::kQ8_K, 512));
  quantize_row_q8_K(x.data(), q.data(), 512);
  for (int blk = 0; blk < 2; ++blk) {
    const uint8_t* b = q.data() + blk * 292;
    float d;
    std::memcpy(&d, b, 4);
    const auto* qs = reinterpret_cast<const int8_t*>(b + 4);
    int16_t bsums[16];
    std::memcpy(bsums, b + 4 + 256, sizeof bsums);
    for (int j = 0; j < 256; ++j) {
      EXPECT_NEAR(qs[j] * d, x[blk * 256 + j], std::fabs(d) * 0.5f + 1e-6f);
    }
    for (int g = 0; g < 16; ++g) {
      int sum = 0;
      for (int j = 0; j < 16; ++j) sum += qs[16 * g + j];
      EXPECT_EQ(bsums[g], sum);
    }
  }
  // The largest magnitude maps to -127 exactly (d carries its sign).
  EXPECT_EQ(reinterpret_cast<const int8_t*>(q.data() + 292 + 4)[300 - 256], -127);
}

TEST(QuantizeTest, Q8_1SumIsScaleTimesSumOfQuants) {
  std::vector<float> x(64);
  for (size_t i = 0; i < x.size(); ++i) x[i] = 0.1f * static_cast<float>(i) - 2.0f;
  std::vector<uint8_t> q(row_bytes(DType::kQ8_1, 64));
  quantize_row_q8_1(x.data(), q.data(), 64);
  for (int blk = 0; blk < 2; ++blk) {
    const uint8_t* b = q.data() + blk * 36;
    uint16_t d16, s16;
    std::memcpy(&d16, b, 2);
    std::memcpy(&s16, b + 2, 2);
    int sum = 0;
    for (int j = 0; j < 32; ++j) sum += static_cast<int8_t>(b[4 + j]);
    const float d = fp16_to_fp32(d16);
    EXPECT_NEAR(fp16_to_fp32(s16), d * sum, std::fabs(d * sum) * 1e-3f + 1e-4f);
  }
}

}  // namespace
}  // namespace loom::cpu
