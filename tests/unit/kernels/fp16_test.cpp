// fp16 / bf16 conversions: exhaustive round trips and IEEE special values.
#include "backend/cpu/kernels/fp16.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "backend/cpu/kernels/cpu_features.h"

namespace loom::cpu {
namespace {

TEST(Fp16Test, EveryHalfRoundTrips) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = fp16_to_fp32(static_cast<uint16_t>(h));
    const uint16_t back = fp32_to_fp16(f);
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(fp16_to_fp32(back))) << h;
    } else {
      EXPECT_EQ(back, h) << "half 0x" << std::hex << h;
    }
  }
}

TEST(Fp16Test, SpecialValues) {
  EXPECT_EQ(fp16_to_fp32(0x3C00), 1.0f);
  EXPECT_EQ(fp16_to_fp32(0xC000), -2.0f);
  EXPECT_EQ(fp16_to_fp32(0x7BFF), 65504.0f);
  EXPECT_EQ(fp16_to_fp32(0x0001), std::ldexp(1.0f, -24));     // smallest subnormal
  EXPECT_EQ(fp16_to_fp32(0x03FF), std::ldexp(1023.0f, -24));  // largest subnormal
  EXPECT_EQ(fp16_to_fp32(0x0400), std::ldexp(1.0f, -14));     // smallest normal
  EXPECT_TRUE(std::signbit(fp16_to_fp32(0x8000)));
  EXPECT_EQ(fp16_to_fp32(0x7C00), std::numeric_limits<float>::infinity());
  EXPECT_EQ(fp16_to_fp32(0xFC00), -std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(fp16_to_fp32(0x7E00)));

  EXPECT_EQ(fp32_to_fp16(65519.0f), 0x7BFF);  // below the halfway point to 65536
  EXPECT_EQ(fp32_to_fp16(65520.0f), 0x7C00);  // halfway rounds to even: infinity
  EXPECT_EQ(fp32_to_fp16(1e10f), 0x7C00);
  EXPECT_EQ(fp32_to_fp16(-1e10f), 0xFC00);
  EXPECT_EQ(fp32_to_fp16(std::ldexp(1.0f, -25)), 0x0000);  // half the smallest subnormal: even
  EXPECT_EQ(fp32_to_fp16(std::ldexp(1.5f, -25)), 0x0001);
  EXPECT_EQ(fp32_to_fp16(std::ldexp(3.0f, -25)), 0x0002);         // 1.5 subnormal units: to even
  EXPECT_EQ(fp32_to_fp16(1.0f + std::ldexp(1.0f, -11)), 0x3C00);  // tie to even (down)
  EXPECT_EQ(fp32_to_fp16(1.0f + std::ldexp(3.0f, -11)), 0x3C02);  // tie to even (up)
  EXPECT_EQ(fp32_to_fp16(-0.0f), 0x8000);
  const uint16_t nan = fp32_to_fp16(std::numeric_limits<float>::quiet_NaN());
  EXPECT_EQ(nan & 0x7C00, 0x7C00);
  EXPECT_NE(nan & 0x03FF, 0);
}

TEST(Bf16Test, EveryBf16RoundTrips) {
  for (uint32_t b = 0; b < 65536; ++b) {
    const float f = bf16_to_fp32(static_cast<uint16_t>(b));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(bf16_to_fp32(fp32_to_bf16(f))));
    } else {
      EXPECT_EQ(fp32_to_bf16(f), b);
    }
  }
}

TEST(Bf16Test, RoundsToNearestEven) {
  EXPECT_EQ(fp32_to_bf16(bits_float(0x3F808000u)), 0x3F80);  // tie, even stays
  EXPECT_EQ(fp32_to_bf16(bits_float(0x3F818000u)), 0x3F82);  // tie, odd rounds up
  EXPECT_EQ(fp32_to_bf16(bits_float(0x3F808001u)), 0x3F81);
  EXPECT_EQ(fp32_to_bf16(bits_float(0x7F7FFFFFu)), 0x7F80);  // max float rounds to infinity
  EXPECT_TRUE(std::isnan(bf16_to_fp32(fp32_to_bf16(bits_float(0x7F800001u)))));  // NaN kept
}

TEST(Fp16Test, RowConvertersMatchScalarOnEveryIsa) {
  std::vector<uint16_t> halfs(65536 + 5);
  for (size_t i = 0; i < halfs.size(); ++i) halfs[i] = static_cast<uint16_t>(i * 40503u);
  std::vector<float> f(halfs.size()), g(halfs.size());
  std::vector<uint16_t> back(halfs.size());
  const Isa saved = active_isa();
  for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512}) {
    if (!isa_supported(isa)) continue;
    set_active_isa(isa);
    const auto n = static_cast<int64_t>(halfs.size());
    fp16_to_fp32_row(halfs.data(), f.data(), n);
    bf16_to_fp32_row(halfs.data(), g.data(), n);
    fp32_to_fp16_row(f.data(), back.data(), n);
    for (size_t i = 0; i < halfs.size(); ++i) {
      const float expected = fp16_to_fp32(halfs[i]);
      if (std::isnan(expected)) {
        ASSERT_TRUE(std::isnan(f[i])) << isa_name(isa) << " " << i;
      } else {
        ASSERT_EQ(float_bits(f[i]), float_bits(expected)) << isa_name(isa) << " " << i;
      }
      ASSERT_EQ(float_bits(g[i]), float_bits(bf16_to_fp32(halfs[i])));
      if (!std::isnan(f[i])) ASSERT_EQ(back[i], halfs[i]) << isa_name(isa);
    }
  }
  set_active_isa(saved);
}

}  // namespace
}  // namespace loom::cpu
