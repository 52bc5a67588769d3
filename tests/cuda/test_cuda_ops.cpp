// Each CUDA kernel against the CPU reference ops (backend/cpu/ops.h) or a float64 reference, on
// fresh random inputs, with outputs poisoned (NaN) before each run so unwritten elements fail.
// Tolerances: bf16 outputs carry 2^-9 relative rounding, so relative errors sit near 3e-3; the
// bound is 1e-2. f32 outputs computed from the same inputs are held to 1e-5.
#include <algorithm>
#include <numeric>

#include "backend/cpu/ops.h"
#include "backend/cuda/attention.cuh"
#include "backend/cuda/gemm.cuh"
#include "backend/cuda/rmsnorm.cuh"
#include "backend/cuda/rope_kv.cuh"
#include "backend/cuda/sampling.cuh"
#include "backend/cuda/swiglu.cuh"
#include "cuda/cuda_test_util.h"

namespace loom::testing {
namespace {

using cuda::bf16;

TEST(CudaOps, AddRmsNormMatchesCpu) {
  LOOM_REQUIRE_GPU();
  const int32_t rows = 7, dim = 576;
  auto x = random_floats(rows * dim, 1, -2, 2), delta = random_floats(rows * dim, 2);
  auto w = random_floats(dim, 3, 0.5f, 1.5f);
  DeviceVec<float> dx(x), dd(delta), dw(w);
  DeviceVec<uint16_t> out(rows * dim);
  out.poison();
  cuda::launch_add_rmsnorm(dx.get(), dd.get(), nullptr, dw.get(), rows, dim, 1e-5f, out.as<bf16>(),
                           0);
  std::vector<float> sum(rows * dim), ref(rows * dim);
  for (size_t i = 0; i < sum.size(); ++i) sum[i] = x[i] + delta[i];
  cpu::rms_norm(sum.data(), w.data(), rows, dim, 1e-5f, ref.data());
  EXPECT_LT(rel_error(dx.download(), sum), 1e-6);
  EXPECT_LT(rel_error(from_bf16(out.download()), ref), 1e-2);

  // Gathered rows (the logits rows), no write-back of x.
  std::vector<int32_t> pick = {5, 1};
  DeviceVec<int32_t> dpick(pick);
  DeviceVec<uint16_t> out2(2 * dim);
  out2.poison();
  dx.upload(x);
  cuda::launch_add_rmsnorm(dx.get(), dd.get(), dpick.get(), dw.get(), 2, dim, 1e-5f,
                           out2.as<bf16>(), 0);
  std::vector<float> ref2(ref.begin() + 5 * dim, ref.begin() + 6 * dim);
  ref2.insert(ref2.end(), ref.begin() + dim, ref.begin() + 2 * dim);
  EXPECT_LT(rel_error(from_bf16(out2.download()), ref2), 1e-2);
}

TEST(CudaOps, EmbedGathersRows) {
  LOOM_REQUIRE_GPU();
  const int32_t vocab = 50, dim = 64;
  auto table = to_bf16(random_floats(vocab * dim, 4));
  std::vector<int32_t> tokens = {3, 49, 0, 3};
  DeviceVec<uint16_t> dt(table);
  DeviceVec<int32_t> dtok(tokens);
  DeviceVec<float> x(tokens.size() * dim);
  x.poison();
  cuda::launch_embed(dt.as<bf16>(), dtok.get(), 4, dim, x.get(), 0);
  auto got = x.download();
  for (int t = 0; t < 4; ++t)
    for (int i = 0; i < dim; ++i)
      ASSERT_EQ(got[t * dim + i], from_bf16(table[tokens[t] * dim + i])) << t << " " << i;
}

TEST(CudaOps, SwiGluMatchesCpu) {
  LOOM_REQUIRE_GPU();
  const int32_t T = 5, F = 1536;
  auto gu = bf16_round(random_floats(T * 2 * F, 5, -4, 4));
  DeviceVec<uint16_t> dgu(to_bf16(gu));
  DeviceVec<uint16_t> out(T * F);
  out.poison();
  cuda::launch_swiglu(dgu.as<bf16>(), T, F, out.as<bf16>(), 0);
  std::vector<float> g(T * F), u(T * F), ref(T * F);
  for (int t = 0; t < T; ++t)
    for (int i = 0; i < F; ++i)
      g[t * F + i] = gu[t * 2 * F + i], u[t * F + i] = gu[t * 2 * F + F + i];
  cpu::silu_mul(g.data(), u.data(), T * F, ref.data());
  EXPECT_LT(rel_error(from_bf16(out.download()), ref), 1e-2);
}

void check_rope_kv(RopeStyle style, int32_t head_dim) {
  const int32_t T = 6, NH = 4, KVH = 2, D = head_dim, L = 2, layer = 1, bs = 16, blocks = 4;
  ModelConfig mc;
  mc.head_dim = D;
  mc.rope_theta = 10000.0f;
  mc.rope_style = style;
  const int32_t width = (NH + 2 * KVH) * D;
  auto qkv = random_floats(T * width, 6 + D);
  auto bias = random_floats(width, 7, -0.1f, 0.1f);
  std::vector<int32_t> pos = {0, 1, 17, 300, 4095, 31};
  std::vector<int64_t> slots = {0, 5, 16, 63, 33, 18};
  std::vector<float> inv_freq(D / 2);
  for (int i = 0; i < D / 2; ++i) inv_freq[i] = static_cast<float>(std::pow(10000.0, -2.0 * i / D));
  cuda::KvCacheShape shape{L, KVH, D, bs};
  DeviceVec<float> dqkv(qkv), dbias(bias), dfreq(inv_freq), q(T * NH * D);
  DeviceVec<int32_t> dpos(pos);
  DeviceVec<int64_t> dslots(slots);
  DeviceVec<uint16_t> cache(blocks * shape.block_elems());
  q.poison();
  cache.poison();
  cuda::RopeKvArgs a;
  a.qkv = dqkv.get();
  a.bias = dbias.get();
  a.positions = dpos.get();
  a.slot_mapping = dslots.get();
  a.inv_freq = dfreq.get();
  a.num_tokens = T;
  a.num_heads = NH;
  a.neox = style == RopeStyle::kNeox;
  a.layer = layer;
  a.cache = shape;
  a.q_out = q.get();
  a.kv_cache = cache.as<bf16>();
  cuda::launch_rope_kv_write(a, 0);

  // Reference: bias, then the CPU RopeTables rotation.
  std::vector<float> with_bias(qkv);
  for (int t = 0; t < T; ++t)
    for (int i = 0; i < width; ++i) with_bias[t * width + i] += bias[i];
  cpu::RopeTables rope(mc);
  rope.prepare(pos.data(), T);
  std::vector<float> ref_q, ref_k, got_k, ref_v, got_v;
  auto got_q = q.download();
  auto got_cache = cache.download();
  for (int t = 0; t < T; ++t) {
    float* row = with_bias.data() + t * width;
    rope.apply(row, t, NH + KVH);  // Q heads then K heads are contiguous
    ref_q.insert(ref_q.end(), row, row + NH * D);
    const int64_t blk = slots[t] / bs, off = slots[t] % bs;
    for (int h = 0; h < KVH; ++h)
      for (int d = 0; d < D; ++d) {
        ref_k.push_back(row[(NH + h) * D + d]);
        got_k.push_back(from_bf16(got_cache[shape.offset(blk, layer, 0, h, off) + d]));
        ref_v.push_back(row[(NH + KVH + h) * D + d]);
        got_v.push_back(from_bf16(got_cache[shape.offset(blk, layer, 1, h, off) + d]));
      }
  }
  EXPECT_LT(rel_error(got_q, ref_q), 1e-5);
  EXPECT_LT(rel_error(got_k, ref_k), 1e-2);
  EXPECT_LT(rel_error(got_v, ref_v), 1e-2);
  // Nothing else in the cache was touched: the other layer stays poisoned.
  const int64_t other = shape.offset(0, 0, 0, 0, 0);
  EXPECT_TRUE(std::isnan(from_bf16(got_cache[other])));
}

TEST(CudaOps, RopeKvWriteNeoxMatchesCpu) {
  LOOM_REQUIRE_GPU();
  check_rope_kv(RopeStyle::kNeox, 64);
  check_rope_kv(RopeStyle::kNeox, 128);
}

TEST(CudaOps, RopeKvWriteInterleavedMatchesCpu) {
  LOOM_REQUIRE_GPU();
  check_rope_kv(RopeStyle::kInterleaved, 64);
}

// A ragged batch of a fresh prefill, a chunk over a cached prefix and a long decode, against a
// float64 causal softmax over the same bf16 K/V values.
void check_attention(int32_t D, int32_t NH, int32_t KVH, bool force_one_split) {
  const int32_t L = 2, layer = 1, bs = 16;
  struct Seq {
    int32_t first_pos, num_new;
  };
  const std::vector<Seq> seqs = {{0, 37}, {60, 5}, {700, 1}, {129, 1}};
  const int32_t max_blocks = 50, S = static_cast<int32_t>(seqs.size());
  const int32_t num_blocks = S * max_blocks;
  cuda::KvCacheShape shape{L, KVH, D, bs};
  // Random K/V everywhere, a random permutation of blocks for the tables.
  auto cache_f = bf16_round(random_floats(num_blocks * shape.block_elems(), 11, -2, 2));
  std::vector<int32_t> perm(num_blocks);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), std::mt19937(12));
  std::vector<int32_t> tables(perm.begin(), perm.end());  // [S][max_blocks]
  std::vector<int32_t> positions, seq_of_token;
  for (int32_t s = 0; s < S; ++s)
    for (int32_t i = 0; i < seqs[s].num_new; ++i) {
      positions.push_back(seqs[s].first_pos + i);
      seq_of_token.push_back(s);
    }
  const int32_t T = static_cast<int32_t>(positions.size());
  auto q = random_floats(T * NH * D, 13, -2, 2);
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));

  int32_t splits = 1, per = 32;
  const int32_t max_keys = *std::max_element(positions.begin(), positions.end()) + 1;
  if (force_one_split) {
    per = (max_keys + 31) / 32 * 32;
  } else {
    // Pieces of 128 keys: the decode at position 700 runs in 6 parallel splits, merged after.
    per = 128;
    splits = (max_keys + per - 1) / per;
  }
  DeviceVec<uint16_t> dcache(to_bf16(cache_f));
  DeviceVec<float> dq(q);
  DeviceVec<int32_t> dtables(tables), dpos(positions), dseq(seq_of_token);
  DeviceVec<float> ws(std::max<int64_t>(1, cuda::attention_workspace_floats(splits, T, NH, D)));
  DeviceVec<uint16_t> out(T * NH * D);
  out.poison();
  ws.poison();
  cuda::AttentionArgs a;
  a.q = dq.get();
  a.kv_cache = dcache.as<bf16>();
  a.seq_of_token = dseq.get();
  a.positions = dpos.get();
  a.block_tables = dtables.get();
  a.max_blocks_per_seq = max_blocks;
  a.num_tokens = T;
  a.num_heads = NH;
  a.layer = layer;
  a.cache = shape;
  a.scale = scale;
  a.num_splits = splits;
  a.keys_per_split = per;
  a.partial_out = ws.get();
  a.partial_max_sum = ws.get() + int64_t{splits} * T * NH * D;
  a.out = out.as<bf16>();
  cuda::launch_paged_attention(a, 0);
  ASSERT_CUDA(cudaGetLastError());

  std::vector<double> ref(T * NH * D);
  const int32_t G = NH / KVH;
  for (int32_t t = 0; t < T; ++t) {
    const int32_t s = seq_of_token[t], n = positions[t] + 1;
    for (int32_t h = 0; h < NH; ++h) {
      const int32_t kvh = h / G;
      std::vector<double> score(n);
      double mx = -1e300;
      for (int32_t k = 0; k < n; ++k) {
        const int64_t blk = tables[s * max_blocks + k / bs];
        const float* krow = cache_f.data() + shape.offset(blk, layer, 0, kvh, k % bs);
        double dot = 0;
        for (int d = 0; d < D; ++d) dot += double(q[(t * NH + h) * D + d]) * krow[d];
        score[k] = dot * scale;
        mx = std::max(mx, score[k]);
      }
      double sum = 0;
      for (double& v : score) sum += (v = std::exp(v - mx));
      for (int32_t k = 0; k < n; ++k) {
        const int64_t blk = tables[s * max_blocks + k / bs];
        const float* vrow = cache_f.data() + shape.offset(blk, layer, 1, kvh, k % bs);
        for (int d = 0; d < D; ++d) ref[(t * NH + h) * D + d] += score[k] / sum * vrow[d];
      }
    }
  }
  const double err = rel_error(from_bf16(out.download()), ref);
  EXPECT_LT(err, 1e-2) << "D=" << D << " NH=" << NH << " KVH=" << KVH << " splits=" << splits;
}

TEST(CudaOps, PagedAttentionMatchesFloat64) {
  LOOM_REQUIRE_GPU();
  for (bool one : {true, false}) {
    check_attention(64, 9, 3, one);   // SmolLM2 heads
    check_attention(64, 32, 8, one);  // Llama-3.2-1B heads
    check_attention(128, 8, 1, one);  // group of 8
  }
}

TEST(CudaOps, AttentionSplitChoiceFillsTheGpu) {
  int32_t splits = 0, per = 0;
  cuda::choose_attention_splits(1, 8, 4096, 132, &splits, &per);  // one long decode
  EXPECT_GT(splits, 1);
  EXPECT_GE(splits * per, 4096);
  EXPECT_EQ(per % 32, 0);
  cuda::choose_attention_splits(512, 8, 512, 132, &splits, &per);  // a big prefill
  EXPECT_EQ(splits, 1);
  EXPECT_GE(per, 512);
}

TEST(CudaOps, GemmMatchesFloat64) {
  LOOM_REQUIRE_GPU();
  const int32_t T = 33, K = 256, N = 200;
  auto x = bf16_round(random_floats(T * K, 21)), w = bf16_round(random_floats(N * K, 22));
  DeviceVec<uint16_t> dx(to_bf16(x)), dw(to_bf16(w)), ybf(T * N);
  DeviceVec<float> yf(T * N);
  yf.poison();
  ybf.poison();
  cuda::Gemm gemm;
  gemm.run(dx.as<bf16>(), T, K, dw.as<bf16>(), N, yf.get(), true, 0);
  gemm.run(dx.as<bf16>(), T, K, dw.as<bf16>(), N, ybf.get(), false, 0);
  std::vector<double> ref(T * N);
  for (int t = 0; t < T; ++t)
    for (int n = 0; n < N; ++n) {
      double acc = 0;
      for (int k = 0; k < K; ++k) acc += double(x[t * K + k]) * w[n * K + k];
      ref[t * N + n] = acc;
    }
  EXPECT_LT(rel_error(yf.download(), ref), 1e-5);
  EXPECT_LT(rel_error(from_bf16(ybf.download()), ref), 1e-2);
}

// Few rows take the bandwidth-bound kernel (gemv.cuh); 9 rows and more, cuBLAS. Every row count
// around the switch, odd output counts, and in sizes that leave a remainder after the unrolled
// loop (in / 8 not a multiple of 128).
TEST(CudaOps, GemmFewRowsMatchesFloat64) {
  LOOM_REQUIRE_GPU();
  cuda::Gemm gemm;
  for (int32_t K : {64, 576, 2056}) {
    for (int32_t T : {1, 2, 3, 5, 8, 9}) {
      const int32_t N = 133;
      auto x = bf16_round(random_floats(T * K, 31 + T)), w = bf16_round(random_floats(N * K, 32));
      DeviceVec<uint16_t> dx(to_bf16(x)), dw(to_bf16(w)), ybf(T * N);
      DeviceVec<float> yf(T * N);
      yf.poison();
      ybf.poison();
      gemm.run(dx.as<bf16>(), T, K, dw.as<bf16>(), N, yf.get(), true, 0);
      gemm.run(dx.as<bf16>(), T, K, dw.as<bf16>(), N, ybf.get(), false, 0);
      std::vector<double> ref(T * N);
      for (int t = 0; t < T; ++t)
        for (int n = 0; n < N; ++n) {
          double acc = 0;
          for (int k = 0; k < K; ++k) acc += double(x[t * K + k]) * w[n * K + k];
          ref[t * N + n] = acc;
        }
      EXPECT_LT(rel_error(yf.download(), ref), 1e-5) << "T " << T << " K " << K;
      EXPECT_LT(rel_error(from_bf16(ybf.download()), ref), 1e-2) << "T " << T << " K " << K;
    }
  }
}

TEST(CudaOps, ArgmaxPicksLargestLowestIndex) {
  LOOM_REQUIRE_GPU();
  const int32_t R = 3, V = 49152;
  auto logits = random_floats(R * V, 31, -5, 5);
  logits[0 * V + 12345] = 9.0f;
  logits[1 * V + 49151] = 9.5f;
  logits[2 * V + 700] = 7.0f;
  logits[2 * V + 80] = 7.0f;  // tie: the lower index wins
  DeviceVec<float> dl(logits);
  DeviceVec<int32_t> ids(R);
  ids.poison();
  cuda::launch_argmax(dl.get(), R, V, ids.get(), 0);
  EXPECT_EQ(ids.download(), (std::vector<int32_t>{12345, 49151, 80}));
}

}  // namespace
}  // namespace loom::testing
