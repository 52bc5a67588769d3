// The tensor-core prefill attention (backend/cuda/attention_prefill.cuh) and its division of the
// batch with the per-token kernel (attention.cuh, skip_token).
//
//  - Tile planning and the skip flags, on the host (no GPU needed).
//  - A ragged batch of a fresh 200-token prompt, a 70-token chunk after a 300-token cached
//    prefix, a decode row and a 17-token chunk after a 45-token prefix, over a paged cache with a
//    shuffled block table (bf16, fp8, int8), GQA 32/8, 8/8, 16/2 (and 9/3), head_dim 64 and 128.
//    Each token's output is checked against a float64 causal softmax over the very values the
//    cache holds (dequantized here): the prefill kernel alone writes exactly the tiles' tokens,
//    the per-token kernel with the skip flags exactly the others (split or not), and both
//    launched as the backend launches them give the whole batch. Outputs are poisoned (NaN)
//    before every run, and so is every cache row past a sequence's context, so a row read or left
//    unwritten where it must not be shows up as NaN.
// Tolerance: Q and the softmax weights are rounded to bf16 for the tensor-core products, and the
// output is bf16: relative errors sit near 3e-3 per token; the bound is 1e-2.
#include <algorithm>
#include <array>
#include <cstdio>
#include <numeric>
#include <string>

#include "backend/cuda/attention.cuh"
#include "backend/cuda/attention_prefill.cuh"
#include "backend/cuda/rope_kv.cuh"
#include "cuda/cuda_test_util.h"
#include "cuda/kv_cache_reference.h"

namespace loom::testing {
namespace {

using cuda::KvCacheDtype;
using cuda::KvCacheShape;
using cuda::PrefillTile;

std::vector<std::array<int32_t, 3>> as_triples(const std::vector<PrefillTile>& tiles) {
  std::vector<std::array<int32_t, 3>> out;
  for (const PrefillTile& t : tiles) out.push_back({t.seq, t.q_begin, t.q_end});
  return out;
}

// ---- Planning (host only). ----

TEST(PrefillTilePlan, CutsLongChunksFromTheEndAndLeavesShortOnes) {
  ASSERT_EQ(cuda::kPrefillTileTokens, 128);  // the expected tiles below assume it
  // A 200-token prompt, a 70-token chunk, a decode, a 17-token chunk, a 300-token chunk.
  const std::vector<int32_t> qs = {0, 200, 270, 271, 288, 588};
  std::vector<PrefillTile> tiles = {{9, 9, 9}};  // replaced, not appended to
  cuda::plan_prefill_tiles(qs.data(), 5, 16, tiles);
  using T3 = std::array<int32_t, 3>;
  const std::vector<T3> want = {{0, 72, 200},  {0, 0, 72},    {1, 200, 270}, {3, 271, 288},
                                {4, 460, 588}, {4, 332, 460}, {4, 288, 332}};
  EXPECT_EQ(as_triples(tiles), want);

  std::vector<uint8_t> skip;
  cuda::mark_prefill_tokens(tiles, 588, skip);
  ASSERT_EQ(skip.size(), 588u);
  for (int32_t t = 0; t < 588; ++t) EXPECT_EQ(skip[t], t == 270 ? 0 : 1) << t;

  // The threshold is inclusive; 0 or 1 takes every non-empty sequence, decodes included.
  cuda::plan_prefill_tiles(qs.data(), 5, 17, tiles);
  EXPECT_EQ(tiles.size(), 7u);
  cuda::plan_prefill_tiles(qs.data(), 5, 18, tiles);
  EXPECT_EQ(tiles.size(), 6u);
  for (const PrefillTile& t : tiles) EXPECT_NE(t.seq, 3);
  cuda::plan_prefill_tiles(qs.data(), 5, 0, tiles);
  EXPECT_EQ(tiles.size(), 8u);
  EXPECT_EQ(std::count_if(tiles.begin(), tiles.end(),
                          [](const PrefillTile& t) { return t.seq == 2 && t.q_begin == 270; }),
            1);
  cuda::mark_prefill_tokens(tiles, 588, skip);
  EXPECT_EQ(std::count(skip.begin(), skip.end(), 1), 588);

  // Empty sequences never get a tile; nothing to do gives no tiles and no flags.
  const std::vector<int32_t> empty = {0, 0, 0};
  cuda::plan_prefill_tiles(empty.data(), 2, 0, tiles);
  EXPECT_TRUE(tiles.empty());
  cuda::mark_prefill_tokens(tiles, 0, skip);
  EXPECT_TRUE(skip.empty());
}

TEST(PrefillTilePlan, TilesPartitionEachLongSequence) {
  // Lengths around multiples of the tile: every token of a long sequence in exactly one tile of
  // its own sequence, tiles of at most kPrefillTileTokens.
  std::vector<int32_t> qs = {0};
  const std::vector<int32_t> lengths = {1, 15, 16, 127, 128, 129, 255, 256, 257, 1000, 2048};
  for (int32_t n : lengths) qs.push_back(qs.back() + n);
  const int32_t S = static_cast<int32_t>(lengths.size()), T = qs.back();
  std::vector<PrefillTile> tiles;
  cuda::plan_prefill_tiles(qs.data(), S, 16, tiles);
  std::vector<int32_t> count(T, 0);
  for (const PrefillTile& t : tiles) {
    ASSERT_GE(t.seq, 0);
    ASSERT_LT(t.seq, S);
    EXPECT_GE(t.q_begin, qs[t.seq]);
    EXPECT_LE(t.q_end, qs[t.seq + 1]);
    EXPECT_LT(t.q_begin, t.q_end);
    EXPECT_LE(t.q_end - t.q_begin, cuda::kPrefillTileTokens);
    for (int32_t i = t.q_begin; i < t.q_end; ++i) ++count[i];
  }
  for (int32_t s = 0; s < S; ++s)
    for (int32_t i = qs[s]; i < qs[s + 1]; ++i)
      EXPECT_EQ(count[i], lengths[s] >= 16 ? 1 : 0) << "seq " << s << " token " << i;
  // A sequence's tiles are listed last first, the partial tile (if any) being its first tokens.
  for (size_t i = 1; i < tiles.size(); ++i) {
    if (tiles[i].seq == tiles[i - 1].seq) {
      EXPECT_EQ(tiles[i].q_end, tiles[i - 1].q_begin);
    }
  }
}

// ---- Kernels against float64. ----

struct Seq {
  int32_t first_pos, num_new;
};

// ||out - ref|| / ||ref|| over token t's rows ([num_heads][D] values).
double token_error(const std::vector<float>& out, const std::vector<double>& ref, int32_t t,
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

void check_prefill(int32_t D, int32_t NH, int32_t KVH, KvCacheDtype dtype) {
  SCOPED_TRACE("D=" + std::to_string(D) + " heads " + std::to_string(NH) + "/" +
               std::to_string(KVH) + " " + cuda::kv_cache_dtype_name(dtype));
  const int32_t L = 2, layer = 1, bs = 16;
  // (a) fresh prompt, (b) chunk after a cached prefix, (c) decode, (d) short chunk after a prefix
  // that ends mid-block.
  const std::vector<Seq> seqs = {{0, 200}, {300, 70}, {129, 1}, {45, 17}};
  const int32_t S = static_cast<int32_t>(seqs.size()), max_blocks = 25;  // 370 keys <= 400
  const int32_t num_blocks = S * max_blocks;
  std::vector<int32_t> perm(num_blocks);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), std::mt19937(61 + D + NH));
  const std::vector<int32_t> tables(perm.begin(), perm.end());  // [S][max_blocks]
  const KvCacheShape shape{L, KVH, D, bs, dtype};

  // Every context token's K/V, written through the RoPE + cache write kernel (quantizing for
  // fp8 / int8); the rest of the cache stays poisoned.
  std::vector<int32_t> ctx_pos;
  std::vector<int64_t> ctx_slots;
  for (int32_t s = 0; s < S; ++s)
    for (int32_t p = 0; p < seqs[s].first_pos + seqs[s].num_new; ++p) {
      ctx_pos.push_back(p);
      ctx_slots.push_back(int64_t{tables[s * max_blocks + p / bs]} * bs + p % bs);
    }
  const int32_t N = static_cast<int32_t>(ctx_pos.size());
  const int32_t width = (NH + 2 * KVH) * D;
  std::vector<float> inv_freq(D / 2);
  for (int i = 0; i < D / 2; ++i) inv_freq[i] = static_cast<float>(std::pow(10000.0, -2.0 * i / D));
  DeviceVec<float> dqkv(random_floats(int64_t{N} * width, 62, -2, 2)), dfreq(inv_freq);
  DeviceVec<float> q_scratch(int64_t{N} * NH * D);
  DeviceVec<int32_t> dctx_pos(ctx_pos);
  DeviceVec<int64_t> dctx_slots(ctx_slots);
  DeviceVec<uint8_t> cache(num_blocks * shape.block_bytes());
  cache.poison();  // NaN bf16 / fp8 values and NaN f16 scales wherever nothing is written
  cuda::RopeKvArgs w;
  w.qkv = dqkv.get();
  w.positions = dctx_pos.get();
  w.slot_mapping = dctx_slots.get();
  w.inv_freq = dfreq.get();
  w.num_tokens = N;
  w.num_heads = NH;
  w.layer = layer;
  w.cache = shape;
  w.q_out = q_scratch.get();
  w.kv_cache = cache.get();
  cuda::launch_rope_kv_write(w, 0);
  ASSERT_CUDA(cudaGetLastError());

  // The batch: each sequence's new tokens.
  std::vector<int32_t> positions, seq_of_token, query_start = {0};
  for (int32_t s = 0; s < S; ++s) {
    for (int32_t i = 0; i < seqs[s].num_new; ++i) {
      positions.push_back(seqs[s].first_pos + i);
      seq_of_token.push_back(s);
    }
    query_start.push_back(static_cast<int32_t>(positions.size()));
  }
  const int32_t T = static_cast<int32_t>(positions.size());
  const int64_t row_elems = int64_t{NH} * D;
  const auto q = random_floats(T * row_elems, 63, -2, 2);
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));

  std::vector<PrefillTile> tiles;
  cuda::plan_prefill_tiles(query_start.data(), S, cuda::kPrefillMinTokens, tiles);
  std::vector<uint8_t> skip;
  cuda::mark_prefill_tokens(tiles, T, skip);
  ASSERT_EQ(tiles.size(), 4u);  // 200 = 72 + 128, 70, 17; the decode row is left out
  ASSERT_EQ(skip[200 + 70], 0);

  // float64 reference over the cache's own (dequantized) rows.
  const std::vector<double> ref =
      reference_paged_attention(cache.download(), layout_of(shape), layer, q, NH, scale,
                                seq_of_token, positions, tables, max_blocks);

  DeviceVec<float> dq(q);
  DeviceVec<int32_t> dtables(tables), dpos(positions), dseq(seq_of_token);
  DeviceVec<PrefillTile> dtiles(tiles);
  DeviceVec<uint8_t> dskip(skip);
  DeviceVec<uint16_t> out(T * row_elems);
  cuda::AttentionArgs a;
  a.q = dq.get();
  a.kv_cache = cache.get();
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
  const int32_t max_keys = *std::max_element(positions.begin(), positions.end()) + 1;
  // The per-token kernel over the uncovered tokens, in `splits` pieces of `per` keys.
  auto run_per_token = [&](int32_t splits, int32_t per, DeviceVec<float>& ws) {
    cuda::AttentionArgs b = a;
    b.num_splits = splits;
    b.keys_per_split = per;
    b.partial_out = ws.get();
    b.partial_max_sum = ws.get() + int64_t{splits} * T * NH * D;
    b.skip_token = dskip.get();
    cuda::launch_paged_attention(b, 0);
  };

  // 1. The prefill kernel alone: the tiles' tokens, and nothing else.
  out.poison();
  cuda::launch_paged_prefill_attention(a, dtiles.get(), static_cast<int32_t>(tiles.size()), 0);
  ASSERT_CUDA(cudaGetLastError());
  {
    const std::vector<uint16_t> bits = out.download();
    const std::vector<float> got = from_bf16(bits);
    double worst = 0;
    for (int32_t t = 0; t < T; ++t) {
      if (skip[t]) {
        const double err = token_error(got, ref, t, row_elems);
        worst = std::max(worst, err);
        EXPECT_LT(err, 1e-2) << "prefill kernel, token " << t << " position " << positions[t];
      } else {
        EXPECT_TRUE(all_poison(bits, t, row_elems)) << "prefill kernel wrote token " << t;
      }
    }
    std::printf("  prefill D=%d heads %d/%d %s: worst token rel. error vs float64 %.2e\n", D, NH,
                KVH, cuda::kv_cache_dtype_name(dtype), worst);
  }

  // 2. The per-token kernel with the skip flags, split in pieces of 128 keys (merge kernel too):
  // the other tokens only.
  {
    const int32_t per = 128, splits = (max_keys + per - 1) / per;
    ASSERT_GT(splits, 1);
    DeviceVec<float> ws(cuda::attention_workspace_floats(splits, T, NH, D));
    ws.poison();
    out.poison();
    run_per_token(splits, per, ws);
    ASSERT_CUDA(cudaGetLastError());
    const std::vector<uint16_t> bits = out.download();
    const std::vector<float> got = from_bf16(bits);
    for (int32_t t = 0; t < T; ++t) {
      if (skip[t])
        EXPECT_TRUE(all_poison(bits, t, row_elems)) << "per-token kernel wrote token " << t;
      else
        EXPECT_LT(token_error(got, ref, t, row_elems), 1e-2) << "per-token kernel, token " << t;
    }
  }

  // 3. Both, as the backend launches them (its split choice, then the tiles): the whole batch.
  {
    int32_t splits = 1, per = 32;
    cuda::choose_attention_splits(T, KVH, max_keys, 132, &splits, &per);
    DeviceVec<float> ws(std::max<int64_t>(1, cuda::attention_workspace_floats(splits, T, NH, D)));
    out.poison();
    run_per_token(splits, per, ws);
    cuda::launch_paged_prefill_attention(a, dtiles.get(), static_cast<int32_t>(tiles.size()), 0);
    ASSERT_CUDA(cudaGetLastError());
    const std::vector<float> got = from_bf16(out.download());
    EXPECT_LT(rel_error(got, ref), 1e-2);
    for (int32_t t = 0; t < T; ++t)
      EXPECT_LT(token_error(got, ref, t, row_elems), 1e-2) << "both kernels, token " << t;
  }
}

TEST(CudaAttentionPrefill, MatchesFloat64Bf16) {
  LOOM_REQUIRE_GPU();
  for (int32_t D : {64, 128}) {
    check_prefill(D, 32, 8, KvCacheDtype::kBf16);  // Llama-3.2-1B / 3.1-8B heads
    check_prefill(D, 8, 8, KvCacheDtype::kBf16);   // no grouping
    check_prefill(D, 16, 2, KvCacheDtype::kBf16);  // group of 8
  }
  check_prefill(64, 9, 3, KvCacheDtype::kBf16);  // SmolLM2: a group of 3 splits tokens over CTAs
}

TEST(CudaAttentionPrefill, MatchesFloat64QuantizedCache) {
  LOOM_REQUIRE_GPU();
  for (KvCacheDtype dtype : {KvCacheDtype::kFp8, KvCacheDtype::kInt8})
    for (int32_t D : {64, 128}) {
      check_prefill(D, 32, 8, dtype);
      check_prefill(D, 16, 2, dtype);
    }
}

}  // namespace
}  // namespace loom::testing
