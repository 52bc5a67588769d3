// matmul against a float reference, every ISA against the others, odd shapes, batch invariance.
#include "backend/cpu/kernels/matmul.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "backend/cpu/kernels/cpu_features.h"
#include "unit/kernels/kernel_test_util.h"

namespace loom::cpu {
namespace {

using testing::random_floats;
using testing::RandomWeights;

const DType kAllTypes[] = {DType::kF32,  DType::kF16,  DType::kBF16, DType::kQ4_0,
                           DType::kQ4_1, DType::kQ5_0, DType::kQ5_1, DType::kQ8_0,
                           DType::kQ4_K, DType::kQ5_K, DType::kQ6_K};

std::vector<Isa> supported_isas() {
  std::vector<Isa> out;
  for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512}) {
    if (isa_supported(isa)) out.push_back(isa);
  }
  return out;
}

constexpr ActivationPrecision kPrecisions[] = {ActivationPrecision::kInt8,
                                               ActivationPrecision::kInt16};

bool is_q32(DType type) {
  return type == DType::kQ4_0 || type == DType::kQ4_1 || type == DType::kQ5_0 ||
         type == DType::kQ5_1 || type == DType::kQ8_0;
}

// Runs matmul under a given ISA, thread count and activation precision, restoring all three.
std::vector<float> run(Isa isa, int threads, const TensorView& w, const std::vector<float>& x,
                       int64_t m, ActivationPrecision precision = ActivationPrecision::kInt8) {
  const Isa saved = active_isa();
  set_active_isa(isa);
  const int saved_threads = num_threads();
  set_num_threads(threads);
  const ActivationPrecision saved_precision = activation_precision();
  set_activation_precision(precision);
  std::vector<float> y(static_cast<size_t>(m * w.rows()), std::nanf(""));
  matmul(w, x.data(), m, y.data());
  set_activation_precision(saved_precision);
  set_num_threads(saved_threads);
  set_active_isa(saved);
  return y;
}

// Bound on |matmul - exact| for one output: activations are quantized per block (32 values, or
// 256 for k-quants) with step d = max|x| / 127 (kInt16: / 32767 for the 32-value types; Q8_K is
// always 127), so each is off by at most d / 2; the error is at most sum_j |w_j| * d_block(j) / 2.
// Float rounding of the accumulation adds a relative 1e-5 of sum |w x| (kInt16: 4e-6: a few
// dozen float roundings of 6e-8 each, on sums up to 4x sum |w x| where Q8_0 weights carry the
// +128 offset). Float weights take float activations: rounding only.
double error_bound(DType type, const float* w, const float* x, int64_t k,
                   ActivationPrecision precision = ActivationPrecision::kInt8) {
  const bool int16 = precision == ActivationPrecision::kInt16 && is_q32(type);
  const double levels = int16 ? 32767.0 : 127.0;
  const int64_t block = type == DType::kQ4_K || type == DType::kQ5_K || type == DType::kQ6_K ? 256
                        : dtype_info(type).block_elems == 1                                  ? 0
                                                                                             : 32;
  double bound = 0.0, magnitude = 0.0;
  for (int64_t b0 = 0; b0 < k; b0 += (block ? block : k)) {
    const int64_t len = block ? block : k;
    double amax = 0.0, wsum = 0.0;
    for (int64_t j = b0; j < b0 + len; ++j) {
      amax = std::max(amax, static_cast<double>(std::fabs(x[j])));
      wsum += std::fabs(w[j]);
      magnitude += std::fabs(static_cast<double>(w[j]) * x[j]);
    }
    if (block) bound += wsum * amax / levels * 0.5;
  }
  return bound * 1.01 + magnitude * (int16 ? 4e-6 : 1e-5) + 1e-6;
}

struct Shape {
  int64_t k, n_out, m;
};

class MatmulTest : public ::testing::TestWithParam<DType> {};

TEST_P(MatmulTest, MatchesFloatReferenceOnEveryIsa) {
  const DType type = GetParam();
  const bool kquant = dtype_info(type).block_elems == 256;
  const std::vector<Shape> shapes =
      kquant ? std::vector<Shape>{{256, 5, 1}, {512, 17, 3}, {768, 9, 17}}
             : std::vector<Shape>{{32, 1, 1}, {96, 5, 3}, {576, 17, 17}, {160, 37, 5}, {64, 8, 4}};
  for (const Shape& s : shapes) {
    RandomWeights w(type, s.k, s.n_out, 1234 + static_cast<uint32_t>(s.k));
    const std::vector<float> wf = w.dequantized();
    const std::vector<float> x = random_floats(static_cast<size_t>(s.m * s.k), 99);
    for (ActivationPrecision precision : kPrecisions) {
      std::vector<std::vector<float>> results;
      for (Isa isa : supported_isas()) {
        const std::vector<float> y = run(isa, 2, w.view, x, s.m, precision);
        for (int64_t i = 0; i < s.m; ++i) {
          for (int64_t j = 0; j < s.n_out; ++j) {
            double exact = 0.0;
            for (int64_t l = 0; l < s.k; ++l) {
              exact += static_cast<double>(wf[j * s.k + l]) * x[i * s.k + l];
            }
            const double bound = error_bound(type, &wf[j * s.k], &x[i * s.k], s.k, precision);
            ASSERT_NEAR(y[i * s.n_out + j], exact, bound)
                << dtype_name(type) << " " << isa_name(isa) << " "
                << activation_precision_name(precision) << " k=" << s.k << " n=" << s.n_out
                << " m=" << s.m << " at " << i << "," << j;
          }
        }
        results.push_back(y);
      }
      // The ISAs quantize activations identically, so they differ only by float rounding.
      for (size_t r = 1; r < results.size(); ++r) {
        for (size_t e = 0; e < results[0].size(); ++e) {
          const size_t i = e / s.n_out, j = e % s.n_out;
          double magnitude = 0.0;
          for (int64_t l = 0; l < s.k; ++l)
            magnitude += std::fabs(wf[j * s.k + l] * x[i * s.k + l]);
          ASSERT_NEAR(results[r][e], results[0][e], magnitude * 2e-6 + 1e-6)
              << dtype_name(type) << " " << isa_name(supported_isas()[r]) << " vs scalar, "
              << activation_precision_name(precision);
        }
      }
    }
  }
}

// Row `probe` of x computed alone, and inside batches of several sizes with different random
// neighbours, at 1 and 2 threads: the bits must not change.
TEST_P(MatmulTest, BatchInvariant) {
  const DType type = GetParam();
  const int64_t k = dtype_info(type).block_elems == 256 ? 512 : 576;
  const int64_t n_out = 37;  // not a multiple of any tile or chunk
  RandomWeights w(type, k, n_out, 77);
  const std::vector<float> probe = random_floats(static_cast<size_t>(k), 5);
  for (ActivationPrecision precision : kPrecisions) {
    for (Isa isa : supported_isas()) {
      const std::vector<float> alone = run(isa, 1, w.view, probe, 1, precision);
      const int64_t batch_sizes[] = {1, 3, 7, 32, 64, 512};
      for (int64_t m : batch_sizes) {
        if (dtype_info(type).block_elems == 256 && m > 64) continue;  // scalar k-quants are slow
        for (int threads : {1, 2}) {
          std::vector<float> x = random_floats(static_cast<size_t>(m * k), 1000 + m + threads);
          const int64_t pos = (m * 5 + threads) % m;  // varies the row's place in the tiles
          std::memcpy(&x[pos * k], probe.data(), k * sizeof(float));
          const std::vector<float> y = run(isa, threads, w.view, x, m, precision);
          ASSERT_EQ(std::memcmp(&y[pos * n_out], alone.data(), n_out * sizeof(float)), 0)
              << dtype_name(type) << " " << isa_name(isa) << " "
              << activation_precision_name(precision) << " m=" << m << " row " << pos
              << " threads=" << threads;
        }
      }
    }
  }
}

// kInt16 changes only the 32-value block types: k-quant and float weights give the same bits.
TEST_P(MatmulTest, PrecisionModeAffectsOnlyQ32Types) {
  const DType type = GetParam();
  const int64_t k = dtype_info(type).block_elems == 256 ? 512 : 576, n_out = 9, m = 5;
  RandomWeights w(type, k, n_out, 31);
  const std::vector<float> x = random_floats(static_cast<size_t>(m * k), 32);
  for (Isa isa : supported_isas()) {
    const std::vector<float> y8 = run(isa, 2, w.view, x, m, ActivationPrecision::kInt8);
    const std::vector<float> y16 = run(isa, 2, w.view, x, m, ActivationPrecision::kInt16);
    const bool same = std::memcmp(y8.data(), y16.data(), y8.size() * sizeof(float)) == 0;
    EXPECT_EQ(same, !is_q32(type)) << dtype_name(type) << " " << isa_name(isa);
  }
}

INSTANTIATE_TEST_SUITE_P(AllTypes, MatmulTest, ::testing::ValuesIn(kAllTypes),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

TEST(MatmulTest, ZeroRowsWritesNothing) {
  RandomWeights w(DType::kQ4_1, 64, 4, 1);
  float y = 42.0f;
  matmul(w.view, nullptr, 0, &y);
  EXPECT_EQ(y, 42.0f);
}

TEST(MatmulTest, ZeroActivationsGiveZero) {
  RandomWeights w(DType::kQ8_0, 128, 9, 2);
  const std::vector<float> x(3 * 128, 0.0f);
  for (Isa isa : supported_isas()) {
    for (float v : run(isa, 2, w.view, x, 3)) EXPECT_EQ(v, 0.0f) << isa_name(isa);
  }
}

TEST(ActivationPrecisionTest, SetAndGet) {
  const ActivationPrecision saved = activation_precision();
  set_activation_precision(ActivationPrecision::kInt16);
  EXPECT_EQ(activation_precision(), ActivationPrecision::kInt16);
  set_activation_precision(ActivationPrecision::kInt8);
  EXPECT_EQ(activation_precision(), ActivationPrecision::kInt8);
  EXPECT_STREQ(activation_precision_name(ActivationPrecision::kInt16), "int16");
  set_activation_precision(saved);
}

TEST(ActivationPrecisionTest, ZeroActivationsGiveZero) {
  RandomWeights w(DType::kQ4_1, 128, 9, 2);
  const std::vector<float> x(3 * 128, 0.0f);
  for (Isa isa : supported_isas()) {
    for (float v : run(isa, 2, w.view, x, 3, ActivationPrecision::kInt16)) {
      EXPECT_EQ(v, 0.0f) << isa_name(isa);
    }
  }
}

// Root-mean-square error against the exact product over a 1536 x 64 matrix and 8 rows: 16-bit
// activations must cut it by far more than 50x (the quantization step shrinks 258x; what is left
// is float rounding). Real activations have outliers, so x mixes a few large values in.
TEST(ActivationPrecisionTest, Int16IsFarMoreAccurateThanInt8) {
  const int64_t k = 1536, n_out = 64, m = 8;
  for (DType type : {DType::kQ4_0, DType::kQ4_1, DType::kQ5_0, DType::kQ5_1, DType::kQ8_0}) {
    RandomWeights w(type, k, n_out, 5);
    const std::vector<float> wf = w.dequantized();
    std::vector<float> x = random_floats(static_cast<size_t>(m * k), 6);
    for (size_t i = 0; i < x.size(); i += 97) x[i] *= 20.0f;
    for (Isa isa : supported_isas()) {
      double err2[2] = {0.0, 0.0};
      for (int p = 0; p < 2; ++p) {
        const std::vector<float> y = run(isa, 2, w.view, x, m, kPrecisions[p]);
        for (int64_t i = 0; i < m; ++i) {
          for (int64_t j = 0; j < n_out; ++j) {
            double exact = 0.0;
            for (int64_t l = 0; l < k; ++l)
              exact += static_cast<double>(wf[j * k + l]) * x[i * k + l];
            err2[p] += (y[i * n_out + j] - exact) * (y[i * n_out + j] - exact);
          }
        }
      }
      EXPECT_LT(std::sqrt(err2[1]) * 50.0, std::sqrt(err2[0]))
          << dtype_name(type) << " " << isa_name(isa) << " int8 rms^2 " << err2[0]
          << " int16 rms^2 " << err2[1];
    }
  }
}

// Largest magnitudes everywhere (activations all +-max, so every q is +-32767; weight codes at
// both ends of their range) to show the int32 block sums cannot overflow on any path.
TEST(ActivationPrecisionTest, ExtremeValuesStayExact) {
  const int64_t k = 128, m = 2;
  std::vector<float> x(static_cast<size_t>(m * k));
  for (size_t i = 0; i < x.size(); ++i) x[i] = i < static_cast<size_t>(k) ? 3.0f : -3.0f;
  for (DType type : {DType::kQ4_0, DType::kQ4_1, DType::kQ5_0, DType::kQ5_1, DType::kQ8_0}) {
    RandomWeights w(type, k, 4, 9);
    // Rows 0/1: every weight code at its minimum / maximum (all bits clear / set), rows 2/3
    // alternate; only the scale fields (2 or 4 bytes at the block start) are kept.
    const int32_t block_bytes = dtype_info(type).block_bytes;
    const int32_t header = type == DType::kQ4_1 || type == DType::kQ5_1 ? 4 : 2;
    const size_t row = row_bytes(type, k);
    for (int64_t r = 0; r < 4; ++r) {
      for (int64_t b = 0; b < k / 32; ++b) {
        uint8_t* blk = w.bytes.data() + r * row + b * block_bytes;
        uint8_t fill = r == 0 ? 0x00 : r == 1 ? 0xFF : (b % 2 ? 0x00 : 0xFF);
        if (type == DType::kQ8_0) fill = fill == 0x00 ? 0x80 : 0x7F;  // -128 / 127
        std::memset(blk + header, fill, static_cast<size_t>(block_bytes - header));
      }
    }
    const std::vector<float> wf = w.dequantized();
    for (Isa isa : supported_isas()) {
      const std::vector<float> y = run(isa, 2, w.view, x, m, ActivationPrecision::kInt16);
      for (int64_t i = 0; i < m; ++i) {
        for (int64_t j = 0; j < 4; ++j) {
          double exact = 0.0, magnitude = 0.0;
          for (int64_t l = 0; l < k; ++l) {
            exact += static_cast<double>(wf[j * k + l]) * x[i * k + l];
            magnitude += std::fabs(static_cast<double>(wf[j * k + l]) * x[i * k + l]);
          }
          EXPECT_NEAR(y[i * 4 + j], exact, magnitude * 1e-5 + 1e-6)
              << dtype_name(type) << " " << isa_name(isa) << " row " << i << " col " << j;
        }
      }
    }
  }
}

TEST(VecDotTest, GgmlPartnerFormatsMatchReference) {
  for (DType type : {DType::kQ4_0, DType::kQ4_1, DType::kQ5_0, DType::kQ5_1, DType::kQ8_0,
                     DType::kQ4_K, DType::kQ5_K, DType::kQ6_K}) {
    const int64_t k = 512;
    RandomWeights w(type, k, 1, 3);
    const std::vector<float> wf = w.dequantized();
    const std::vector<float> x = random_floats(k, 4);
    const DType partner = vec_dot_partner(type);
    std::vector<uint8_t> a(row_bytes(partner, k));
    if (partner == DType::kQ8_0) quantize_row_q8_0(x.data(), a.data(), k);
    if (partner == DType::kQ8_1) quantize_row_q8_1(x.data(), a.data(), k);
    if (partner == DType::kQ8_K) quantize_row_q8_K(x.data(), a.data(), k);
    double exact = 0.0, magnitude = 0.0;
    for (int64_t l = 0; l < k; ++l) {
      exact += static_cast<double>(wf[l]) * x[l];
      magnitude += std::fabs(wf[l] * x[l]);
    }
    // fp16 activation scales (Q8_0/Q8_1) add a relative 2^-11 of sum |w x|.
    const double bound = error_bound(type, wf.data(), x.data(), k) + magnitude * 1e-3;
    EXPECT_NEAR(vec_dot(type, w.view.data, a.data(), k), exact, bound) << dtype_name(type);
  }
}

TEST(EmbeddingTest, RowsMatchDequantizedTable) {
  RandomWeights table(DType::kQ8_0, 64, 10, 8);
  const std::vector<float> all = table.dequantized();
  const int32_t ids[] = {3, 0, 9, 3};
  std::vector<float> out(4 * 64);
  ASSERT_TRUE(embedding_rows(table.view, ids, 4, out.data()).ok());
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(std::memcmp(&out[i * 64], &all[ids[i] * 64], 64 * sizeof(float)), 0);
  }
}

TEST(EmbeddingTest, OutOfRangeIdIsAnError) {
  RandomWeights table(DType::kQ4_1, 64, 10, 8);
  std::vector<float> out(2 * 64);
  for (int32_t bad : {10, -1}) {
    const int32_t ids[] = {1, bad};
    const Status status = embedding_rows(table.view, ids, 2, out.data());
    ASSERT_FALSE(status.ok());
    EXPECT_NE(status.error().find("outside the vocabulary"), std::string::npos);
  }
}

}  // namespace
}  // namespace loom::cpu
