// The fused small-batch products (gemv.cuh) against float64 references on random inputs, outputs
// poisoned first: RMSNorm applied to the input, the residual add into the output, and the SwiGLU
// pair, the RoPE + KV write; both kernels (CUDA cores, tensor cores). Rows 1-8 (every instance),
// input widths that are not a multiple of the kernels' chunks, odd output counts, and launches
// both plain and with programmatic dependent launch.
//
// Tolerances: an f32 output from bf16 operands is held to 1e-5 relative (sums in f32, products
// exact); with RMSNorm fused, the normalised input is rounded to bf16 on the GPU from an f32
// scale whose last bits differ from the reference's, so a few inputs land one bf16 step away
// (2^-8 relative): 2e-3 overall. bf16 outputs (SwiGLU) carry 2^-9 rounding: 1e-2.
#include <cmath>
#include <string>
#include <tuple>

#include "backend/cuda/gemv.cuh"
#include "backend/cuda/pdl_launch.cuh"
#include "cuda/cuda_test_util.h"

namespace loom::testing {
namespace {

using cuda::bf16;
using cuda::GemvArgs;
using cuda::GemvIn;
using cuda::GemvOut;

// bf16(x * rsqrt(mean(x^2) + eps) * w), the kernel's normalised input, per row.
std::vector<float> normed_input(const std::vector<float>& x, const std::vector<float>& w, int rows,
                                int in, float eps) {
  std::vector<float> h(x.size());
  for (int m = 0; m < rows; ++m) {
    double ss = 0;
    for (int k = 0; k < in; ++k) ss += double(x[m * in + k]) * x[m * in + k];
    const float inv = static_cast<float>(1.0 / std::sqrt(ss / in + eps));
    for (int k = 0; k < in; ++k) h[m * in + k] = x[m * in + k] * inv * w[k];
  }
  return bf16_round(h);
}

// ref[m][n] = sum_k a[m][k] w[n][k] in float64; w has `out` rows starting at row `first`.
std::vector<double> product(const std::vector<float>& a, const std::vector<float>& w, int rows,
                            int in, int out, int first) {
  std::vector<double> ref(size_t(rows) * out);
  for (int m = 0; m < rows; ++m)
    for (int n = 0; n < out; ++n) {
      double acc = 0;
      for (int k = 0; k < in; ++k) acc += double(a[m * in + k]) * w[size_t(first + n) * in + k];
      ref[size_t(m) * out + n] = acc;
    }
  return ref;
}

// Params: PDL on, and the kernel (CUDA cores or tensor cores).
class GemvFused : public ::testing::TestWithParam<std::tuple<bool, cuda::GemvKernel>> {
 protected:
  void SetUp() override {
    if (!cuda_device_available()) GTEST_SKIP() << "no CUDA GPU";
    // A blocking stream: it waits for the uploads and poisoning done on the legacy stream.
    ASSERT_CUDA(cudaStreamCreate(&stream_));
    cuda::set_pdl_enabled(std::get<0>(GetParam()));
    cuda::set_gemv_kernel(std::get<1>(GetParam()));
  }
  void TearDown() override {
    cuda::set_pdl_enabled(false);
    cuda::set_gemv_kernel(cuda::GemvKernel::kAuto);
    if (stream_) cudaStreamDestroy(stream_);
  }
  cudaStream_t stream_ = nullptr;
};

TEST_P(GemvFused, RmsNormInputMatchesFloat64) {
  for (int in : {576, 2056}) {
    for (int rows = 1; rows <= cuda::kGemvMaxRows; ++rows) {
      const int out = 133;
      const float eps = 1e-5f;
      auto x = random_floats(rows * in, 10 + rows, -2, 2);
      auto nw = random_floats(in, 11, 0.5f, 1.5f);
      auto w = bf16_round(random_floats(size_t(out) * in, 12));
      DeviceVec<float> dx(x), dnw(nw), y(rows * out);
      DeviceVec<uint16_t> dw(to_bf16(w));
      y.poison();
      GemvArgs a;
      a.rows = rows;
      a.in = in;
      a.out = out;
      a.w = dw.as<bf16>();
      a.input = GemvIn::kRmsNorm;
      a.x_f32 = dx.get();
      a.norm_w = dnw.get();
      a.eps = eps;
      a.output = GemvOut::kStoreF32;
      a.y = y.get();
      ASSERT_TRUE(cuda::gemv_supports(rows, in, GemvIn::kRmsNorm));
      cuda::launch_gemv(a, stream_);
      const auto ref = product(normed_input(x, nw, rows, in, eps), w, rows, in, out, 0);
      EXPECT_LT(rel_error(y.download(), ref), 2e-3) << "rows " << rows << " in " << in;
      EXPECT_EQ(dx.download(), x) << "the residual stream is only read";
    }
  }
}

TEST_P(GemvFused, AddIntoResidualMatchesFloat64) {
  for (int in : {64, 2056, 4096}) {
    for (int rows = 1; rows <= cuda::kGemvMaxRows; ++rows) {
      const int out = 77;
      auto act = bf16_round(random_floats(rows * in, 20 + rows));
      auto w = bf16_round(random_floats(size_t(out) * in, 21));
      auto resid = random_floats(rows * out, 22, -3, 3);
      DeviceVec<uint16_t> dact(to_bf16(act)), dw(to_bf16(w));
      DeviceVec<float> y(resid);
      GemvArgs a;
      a.rows = rows;
      a.in = in;
      a.out = out;
      a.w = dw.as<bf16>();
      a.x = dact.as<bf16>();
      a.output = GemvOut::kAddF32;
      a.y = y.get();
      cuda::launch_gemv(a, stream_);
      auto ref = product(act, w, rows, in, out, 0);
      for (size_t i = 0; i < ref.size(); ++i) ref[i] += resid[i];
      EXPECT_LT(rel_error(y.download(), ref), 1e-5) << "rows " << rows << " in " << in;
    }
  }
}

TEST_P(GemvFused, SwiGluPairMatchesFloat64) {
  for (int in : {576, 2056, 2048}) {
    for (int rows = 1; rows <= cuda::kGemvMaxRows; ++rows) {
      const int ffn = 91;  // W: gate rows [0, ffn), up rows [ffn, 2 ffn)
      const float eps = 1e-6f;
      auto x = random_floats(rows * in, 30 + rows, -2, 2);
      auto nw = random_floats(in, 31, 0.5f, 1.5f);
      auto w = bf16_round(random_floats(size_t(2 * ffn) * in, 32));
      DeviceVec<float> dx(x), dnw(nw);
      DeviceVec<uint16_t> dw(to_bf16(w)), y(rows * ffn);
      y.poison();
      GemvArgs a;
      a.rows = rows;
      a.in = in;
      a.out = ffn;
      a.w = dw.as<bf16>();
      a.input = GemvIn::kRmsNorm;
      a.x_f32 = dx.get();
      a.norm_w = dnw.get();
      a.eps = eps;
      a.output = GemvOut::kSwiGlu;
      a.y = y.get();
      cuda::launch_gemv(a, stream_);
      const auto h = normed_input(x, nw, rows, in, eps);
      const auto gate = product(h, w, rows, in, ffn, 0), up = product(h, w, rows, in, ffn, ffn);
      std::vector<double> ref(gate.size());
      for (size_t i = 0; i < ref.size(); ++i) ref[i] = gate[i] / (1 + std::exp(-gate[i])) * up[i];
      EXPECT_LT(rel_error(from_bf16(y.download()), ref), 1e-2) << "rows " << rows << " in " << in;
    }
  }
}

// The fused RoPE + KV write: Q rotated in f32, K rotated and V as is into their bf16 cache slots,
// against the product in float64 followed by rope_kv.cu's rotation written out on the host.
TEST_P(GemvFused, RopeKvWriteMatchesFloat64) {
  const int D = 64, QH = 4, KH = 2, in = 584, layer = 1;
  const int width = (QH + 2 * KH) * D;
  const cuda::KvCacheShape shape{2, KH, D, 16, cuda::KvCacheDtype::kBf16};
  const int num_blocks = 3;
  std::vector<float> inv_freq(D / 2);
  for (int i = 0; i < D / 2; ++i) inv_freq[i] = float(std::pow(10000.0, -2.0 * i / D));
  for (bool neox : {true, false}) {
    for (int rows : {1, 3, 8}) {
      auto x = bf16_round(random_floats(rows * in, 50 + rows));
      auto w = bf16_round(random_floats(size_t(width) * in, 51));
      auto bias = random_floats(width, 52, -0.5f, 0.5f);
      std::vector<int32_t> pos(rows);
      std::vector<int64_t> slots(rows);
      for (int m = 0; m < rows; ++m) {
        pos[m] = 7 + 301 * m;                  // any positions
        slots[m] = (m % num_blocks) * 16 + m;  // distinct slots
      }
      DeviceVec<uint16_t> dx(to_bf16(x)), dw(to_bf16(w));
      DeviceVec<float> dbias(bias), dfreq(inv_freq), q(rows * QH * D);
      DeviceVec<int32_t> dpos(pos);
      DeviceVec<int64_t> dslots(slots);
      DeviceVec<uint8_t> cache(size_t(num_blocks) * shape.block_bytes());
      q.poison();
      cache.poison();
      GemvArgs a;
      a.rows = rows;
      a.in = in;
      a.out = width / 2;
      a.w = dw.as<bf16>();
      a.x = dx.as<bf16>();
      a.output = GemvOut::kRopeKv;
      a.rope.bias = dbias.get();
      a.rope.positions = dpos.get();
      a.rope.slot_mapping = dslots.get();
      a.rope.inv_freq = dfreq.get();
      a.rope.num_heads = QH;
      a.rope.neox = neox;
      a.rope.layer = layer;
      a.rope.cache = shape;
      a.rope.q_out = q.get();
      a.rope.kv_cache = cache.get();
      cuda::launch_gemv(a, stream_);

      const auto qkv = product(x, w, rows, in, width, 0);
      std::vector<double> q_ref(rows * QH * D), kv_ref;
      std::vector<float> q_out = q.download(), kv_out;
      const std::vector<uint8_t> c = cache.download();
      for (int m = 0; m < rows; ++m) {
        const int64_t block = slots[m] / 16;
        const int in_block = int(slots[m] % 16);
        for (int h = 0; h < QH + 2 * KH; ++h)
          for (int i = 0; i < D / 2; ++i) {
            const int i0 = neox ? i : 2 * i, i1 = neox ? i + D / 2 : 2 * i + 1;
            double x0 = qkv[size_t(m) * width + h * D + i0] + bias[h * D + i0];
            double x1 = qkv[size_t(m) * width + h * D + i1] + bias[h * D + i1];
            if (h < QH + KH) {
              const double ang = double(float(pos[m]) * inv_freq[i]);
              const double y0 = x0 * std::cos(ang) - x1 * std::sin(ang);
              const double y1 = x0 * std::sin(ang) + x1 * std::cos(ang);
              x0 = y0, x1 = y1;
            }
            if (h < QH) {
              q_ref[(size_t(m) * QH + h) * D + i0] = x0;
              q_ref[(size_t(m) * QH + h) * D + i1] = x1;
              continue;
            }
            const int kv = h < QH + KH ? 0 : 1, head = h - QH - kv * KH;
            const uint16_t* row = reinterpret_cast<const uint16_t*>(
                c.data() + shape.value_byte_offset(block, layer, kv, head, in_block));
            kv_ref.push_back(x0);
            kv_out.push_back(from_bf16(row[i0]));
            kv_ref.push_back(x1);
            kv_out.push_back(from_bf16(row[i1]));
          }
      }
      // The angle's f32 product is shared; sin / cos and the rotation differ in the last bits.
      EXPECT_LT(rel_error(q_out, q_ref), 1e-5) << "rows " << rows << " neox " << neox;
      EXPECT_LT(rel_error(kv_out, kv_ref), 1e-2) << "rows " << rows << " neox " << neox;
    }
  }
}

TEST(GemvFusedShapes, SupportsOnlyWhatFits) {
  EXPECT_TRUE(cuda::gemv_supports(8, 4096, GemvIn::kRmsNorm));
  EXPECT_FALSE(cuda::gemv_supports(9, 64, GemvIn::kRmsNorm));
  EXPECT_FALSE(cuda::gemv_supports(8, 8192, GemvIn::kRmsNorm));  // 128 KiB of shared memory
  EXPECT_TRUE(cuda::gemv_supports(8, 8192, GemvIn::kBf16));
  EXPECT_FALSE(cuda::gemv_supports(9, 64, GemvIn::kBf16));
  EXPECT_FALSE(cuda::gemv_supports(0, 64, GemvIn::kBf16));
  EXPECT_FALSE(cuda::gemv_supports(1, 60, GemvIn::kBf16));
}

INSTANTIATE_TEST_SUITE_P(Kernels, GemvFused,
                         ::testing::Combine(::testing::Values(false, true),
                                            ::testing::Values(cuda::GemvKernel::kCudaCores,
                                                              cuda::GemvKernel::kTensorCores)),
                         [](const auto& info) {
                           return std::string(std::get<0>(info.param) ? "pdl_" : "plain_") +
                                  (std::get<1>(info.param) == cuda::GemvKernel::kCudaCores
                                       ? "cuda_cores"
                                       : "tensor_cores");
                         });

}  // namespace
}  // namespace loom::testing
