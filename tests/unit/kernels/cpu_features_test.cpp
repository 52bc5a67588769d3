#include "backend/cpu/kernels/cpu_features.h"

#include <gtest/gtest.h>

#include <string>

namespace loom::cpu {
namespace {

TEST(CpuFeaturesTest, ActiveIsaIsSupportedAndNamed) {
  EXPECT_TRUE(isa_supported(Isa::kScalar));
  EXPECT_TRUE(isa_supported(active_isa()));
  EXPECT_EQ(std::string(isa_name(Isa::kScalar)), "scalar");
  EXPECT_EQ(std::string(isa_name(Isa::kAvx2)), "avx2");
  EXPECT_EQ(std::string(isa_name(Isa::kAvx512)), "avx512");
}

TEST(CpuFeaturesTest, IsaSupportFollowsFeatureBits) {
  const CpuFeatures& f = cpu_features();
  EXPECT_EQ(isa_supported(Isa::kAvx2), f.avx2 && f.fma && f.f16c);
  EXPECT_EQ(isa_supported(Isa::kAvx512), isa_supported(Isa::kAvx2) && f.avx512f && f.avx512bw &&
                                             f.avx512vl && f.avx512dq && f.avx512vnni);
  // AVX-512 implies the base AVX-512F bit.
  if (f.avx512vnni) EXPECT_TRUE(f.avx512f);
}

TEST(CpuFeaturesTest, SetActiveIsaSwitches) {
  const Isa saved = active_isa();
  set_active_isa(Isa::kScalar);
  EXPECT_EQ(active_isa(), Isa::kScalar);
  set_active_isa(saved);
  EXPECT_EQ(active_isa(), saved);
}

}  // namespace
}  // namespace loom::cpu
