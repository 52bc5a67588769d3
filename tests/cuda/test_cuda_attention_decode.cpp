// The tensor-core decode attention (backend/cuda/attention_decode_mma.cuh), run as the backend
// runs it: through launch_paged_attention() on a bf16 cache.
//
//  - Which shapes take it (host only).
//  - A ragged batch of decode tokens with contexts 1, 15, 16, 17, 200, 1000 and 5000 and a
//    5-token chunk of one more sequence, some tokens flagged in skip_token, over a paged cache
//    with a shuffled block table, for head_dim 64 / 128, groups of 1, 4, 8 and 16 query heads per
//    KV head (2 KV heads), block sizes 16 and 7 (16-key blocks within one KV block, or spread over
//    two or three), in one piece and split (the backend's choice, and pieces of 32 and 96 keys:
//    idle warps, empty splits, ragged last pieces). Each token is checked against a float64
//    softmax over the cache's own values, and, for groups the CUDA-core kernel serves, against
//    that kernel. Outputs and the split workspace are poisoned (NaN) before every run, and so is
//    every cache row that is not a context key (other layers, slots past a context, table entries
//    past a sequence's blocks), so a row read where it must not be or an output left unwritten
//    shows up as NaN; flagged tokens must keep their poison.
// Tolerance: Q and the softmax weights are rounded to bf16 for the tensor-core products, and the
// output is bf16: relative errors sit near 3e-3 per token; the bound is 1e-2.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <string>

#include "backend/cuda/attention.cuh"
#include "backend/cuda/attention_decode_mma.cuh"
#include "cuda/cuda_test_util.h"
#include "cuda/kv_cache_reference.h"

namespace loom::testing {
namespace {

using cuda::DecodeKernel;
using cuda::KvCacheDtype;
using cuda::KvCacheShape;

TEST(DecodeAttentionMma, TakesBf16HeadDim64And128GroupsUpTo16) {
  auto shape = [](int32_t kvh, int32_t d, KvCacheDtype dtype) {
    return KvCacheShape{2, kvh, d, 16, dtype};
  };
  EXPECT_TRUE(cuda::decode_mma_supported(shape(8, 128, KvCacheDtype::kBf16), 32));
  EXPECT_TRUE(cuda::decode_mma_supported(shape(8, 64, KvCacheDtype::kBf16), 32));
  EXPECT_TRUE(cuda::decode_mma_supported(shape(3, 64, KvCacheDtype::kBf16), 9));
  EXPECT_TRUE(cuda::decode_mma_supported(shape(2, 128, KvCacheDtype::kBf16), 32));  // 16
  EXPECT_TRUE(cuda::decode_mma_supported(shape(4, 128, KvCacheDtype::kBf16), 4));   // 1
  EXPECT_FALSE(cuda::decode_mma_supported(shape(1, 128, KvCacheDtype::kBf16), 17));
  EXPECT_FALSE(cuda::decode_mma_supported(shape(8, 96, KvCacheDtype::kBf16), 32));
  EXPECT_FALSE(cuda::decode_mma_supported(shape(8, 128, KvCacheDtype::kFp8), 32));
  EXPECT_FALSE(cuda::decode_mma_supported(shape(8, 128, KvCacheDtype::kInt8), 32));
  EXPECT_FALSE(cuda::decode_mma_supported(shape(3, 128, KvCacheDtype::kBf16), 8));
}

// ||out - ref|| / ||ref|| over token t's rows ([num_heads][D] values).
template <class R>
double token_error(const std::vector<float>& out, const std::vector<R>& ref, int32_t t,
                   int64_t row_elems) {
  const std::vector<float> o(out.begin() + t * row_elems, out.begin() + (t + 1) * row_elems);
  const std::vector<double> r(ref.begin() + t * row_elems, ref.begin() + (t + 1) * row_elems);
  return rel_error(o, r);
}

bool all_poison(const std::vector<uint16_t>& out, int32_t t, int64_t row_elems) {
  for (int64_t i = t * row_elems; i < (t + 1) * row_elems; ++i)
    if (out[i] != 0xFFFF) return false;
  return true;
}

void check_decode(int32_t D, int32_t G, int32_t bs) {
  SCOPED_TRACE("D=" + std::to_string(D) + " G=" + std::to_string(G) + " bs=" + std::to_string(bs));
  const int32_t L = 2, layer = 1, KVH = 2, NH = G * KVH;
  const KvCacheShape shape{L, KVH, D, bs, KvCacheDtype::kBf16};
  ASSERT_TRUE(cuda::decode_mma_supported(shape, NH));
  const KvLayout lay = layout_of(shape);

  // Sequences (context length; the last new_tokens of them are this step's tokens).
  struct Seq {
    int32_t context, new_tokens;
  };
  const std::vector<Seq> seqs = {{17, 1}, {45, 5},  {1, 1},  {5000, 1},
                                 {16, 1}, {200, 1}, {15, 1}, {1000, 1}};
  const int32_t S = static_cast<int32_t>(seqs.size());
  int32_t max_blocks = 0, used_blocks = 0;
  for (const Seq& s : seqs) {
    const int32_t n = (s.context + bs - 1) / bs;
    max_blocks = std::max(max_blocks, n + 2);  // entries past a sequence's blocks: poison block
    used_blocks += n;
  }
  const int32_t num_blocks = used_blocks + 1, poison_block = used_blocks / 2;
  std::vector<int32_t> ids;  // every block but the poison block, shuffled
  for (int32_t b = 0; b < num_blocks; ++b)
    if (b != poison_block) ids.push_back(b);
  std::shuffle(ids.begin(), ids.end(), std::mt19937(71 + D + G + bs));
  std::vector<int32_t> tables(static_cast<size_t>(S) * max_blocks, poison_block);
  {
    size_t next = 0;
    for (int32_t s = 0; s < S; ++s)
      for (int32_t i = 0; i < (seqs[s].context + bs - 1) / bs; ++i)
        tables[s * max_blocks + i] = ids[next++];
  }

  // The cache: NaN everywhere but the context keys' rows of `layer` (both KV heads, K and V).
  std::vector<uint16_t> cache(static_cast<size_t>(num_blocks) * lay.block_bytes() / 2, 0xFFFF);
  std::mt19937 rng(72 + D + G + bs);
  std::uniform_real_distribution<float> dist(-2.0f, 2.0f);
  for (int32_t s = 0; s < S; ++s)
    for (int32_t k = 0; k < seqs[s].context; ++k)
      for (int32_t kv = 0; kv < 2; ++kv)
        for (int32_t h = 0; h < KVH; ++h) {
          const int64_t at =
              lay.value_at(tables[s * max_blocks + k / bs], layer, kv, h, k % bs) / 2;
          for (int32_t d = 0; d < D; ++d) cache[at + d] = to_bf16(dist(rng));
        }
  std::vector<uint8_t> cache_bytes(cache.size() * 2);
  std::memcpy(cache_bytes.data(), cache.data(), cache_bytes.size());

  // The batch, and the tokens flagged to be left alone: the 200-key decode and the chunk's third.
  std::vector<int32_t> positions, seq_of_token;
  std::vector<uint8_t> skip;
  for (int32_t s = 0; s < S; ++s)
    for (int32_t i = 0; i < seqs[s].new_tokens; ++i) {
      positions.push_back(seqs[s].context - seqs[s].new_tokens + i);
      seq_of_token.push_back(s);
      skip.push_back((seqs[s].context == 200) || (seqs[s].context == 45 && i == 2));
    }
  const int32_t T = static_cast<int32_t>(positions.size());
  const int64_t row_elems = int64_t{NH} * D;
  const auto q = random_floats(T * row_elems, 73 + D + G + bs, -2, 2);
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  const int32_t max_keys = *std::max_element(positions.begin(), positions.end()) + 1;
  const std::vector<double> ref = reference_paged_attention(
      cache_bytes, lay, layer, q, NH, scale, seq_of_token, positions, tables, max_blocks);

  DeviceVec<uint16_t> dcache(cache);
  DeviceVec<float> dq(q);
  DeviceVec<int32_t> dtables(tables), dpos(positions), dseq(seq_of_token);
  DeviceVec<uint8_t> dskip(skip);
  DeviceVec<uint16_t> out(T * row_elems);
  cuda::AttentionArgs a;
  a.q = dq.get();
  a.kv_cache = dcache.get();
  a.seq_of_token = dseq.get();
  a.positions = dpos.get();
  a.block_tables = dtables.get();
  a.max_blocks_per_seq = max_blocks;
  a.num_tokens = T;
  a.num_heads = NH;
  a.layer = layer;
  a.cache = shape;
  a.scale = scale;
  a.out = out.as<cuda::bf16>();
  a.skip_token = dskip.get();

  // Runs `kernel` in `splits` pieces of `per` keys; returns the output's bits.
  auto run = [&](DecodeKernel kernel, int32_t splits, int32_t per) {
    DeviceVec<float> ws(std::max<int64_t>(1, cuda::attention_workspace_floats(splits, T, NH, D)));
    ws.poison();
    out.poison();
    cuda::AttentionArgs b = a;
    b.decode_kernel = kernel;
    b.num_splits = splits;
    b.keys_per_split = per;
    b.partial_out = ws.get();
    b.partial_max_sum = ws.get() + int64_t{splits} * T * NH * D;
    cuda::launch_paged_attention(b, 0);
    EXPECT_EQ(cudaGetLastError(), cudaSuccess);
    return out.download();
  };

  struct Split {
    const char* name;
    int32_t splits, per;
  };
  std::vector<Split> modes;
  const int32_t whole = (max_keys + 31) / 32 * 32;
  modes.push_back({"one piece", 1, whole});
  {
    int32_t splits = 1, per = 32;
    cuda::choose_attention_splits(T, KVH, max_keys, 132, &splits, &per);
    modes.push_back({"backend's split", splits, per});
  }
  modes.push_back({"pieces of 32", (max_keys + 31) / 32, 32});
  modes.push_back({"pieces of 96", (max_keys + 95) / 96, 96});

  double worst = 0;
  for (const Split& m : modes) {
    SCOPED_TRACE(std::string(m.name) + ": " + std::to_string(m.splits) + " x " +
                 std::to_string(m.per));
    const std::vector<uint16_t> bits = run(DecodeKernel::kAuto, m.splits, m.per);
    const std::vector<float> got = from_bf16(bits);
    for (int32_t t = 0; t < T; ++t) {
      if (skip[t]) {
        EXPECT_TRUE(all_poison(bits, t, row_elems)) << "wrote flagged token " << t;
        continue;
      }
      const double err = token_error(got, ref, t, row_elems);
      worst = std::max(worst, err);
      EXPECT_LT(err, 1e-2) << "token " << t << " position " << positions[t];
    }
    if (G > cuda::kMaxGroupSize) continue;
    // The CUDA-core kernel on the same arguments: the same tokens written, close values.
    const std::vector<uint16_t> core_bits = run(DecodeKernel::kCudaCores, m.splits, m.per);
    const std::vector<float> core = from_bf16(core_bits);
    for (int32_t t = 0; t < T; ++t) {
      if (skip[t]) {
        EXPECT_TRUE(all_poison(core_bits, t, row_elems)) << "CUDA cores wrote token " << t;
        continue;
      }
      EXPECT_LT(token_error(core, ref, t, row_elems), 1e-2) << "CUDA cores, token " << t;
      EXPECT_LT(token_error(got, core, t, row_elems), 1e-2) << "vs CUDA cores, token " << t;
    }
  }
  std::printf("  decode D=%d G=%d bs=%d: worst token rel. error vs float64 %.2e\n", D, G, bs,
              worst);
}

TEST(DecodeAttentionMma, MatchesFloat64AndCudaCores) {
  LOOM_REQUIRE_GPU();
  for (int32_t D : {64, 128})
    for (int32_t G : {1, 4, 8, 16})
      for (int32_t bs : {16, 7}) check_decode(D, G, bs);
}

// Groups that fill neither head tile (SmolLM2's 3; 12 over two tiles), and 32-key blocks (a
// 16-key block in either half of a KV block).
TEST(DecodeAttentionMma, PartialHeadTilesAndBlockSize32) {
  LOOM_REQUIRE_GPU();
  check_decode(64, 3, 16);
  check_decode(128, 12, 32);
}

}  // namespace
}  // namespace loom::testing
