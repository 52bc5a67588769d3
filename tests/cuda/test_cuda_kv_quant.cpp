// The fp8 (e4m3) and int8 GPU KV caches (backend/cuda/kv_cache_format.h).
//
//  - Layout and names, on the host (no GPU needed).
//  - The fused RoPE + K/V write into a quantized cache, read back and dequantized by the scalar
//    decoders and layout arithmetic of this file (independent of the kernels and of the format
//    header), against the CPU RoPE reference; every byte the write must not touch stays poisoned.
//  - Paged attention over fp8 / int8 caches: tightly against a float64 reference over the very
//    values the cache holds (dequantized here), which shows the kernel reads the format right;
//    loosely against the same attention over a bf16 cache written from the same inputs.
//  - Swap and copy-on-write move quantized blocks (values and scales) byte for byte.
//  - End to end on the HF random Llamas (LOOM_HF_RANDOM_DIR): logits close to the bf16 cache's,
//    and ~1.94x the blocks in the same bytes.
//  - An accuracy measurement on a real model (LOOM_GPU_ACCURACY_MODEL, a Llama GGUF), as
//    tests/e2e/test_kv_quant.cpp measures the CPU formats; printed as "KVQ-GPU" lines.
#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <sstream>

#include "backend/cpu/ops.h"
#include "backend/cuda/attention.cuh"
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/kv_swap.cuh"
#include "backend/cuda/rope_kv.cuh"
#include "cuda/backend_checks.h"
#include "cuda/cuda_test_util.h"
#include "cuda/hf_random_models.h"
#include "cuda/kv_cache_reference.h"
#include "e2e/model_fixture.h"
#include "tokenizer/tokenizer.h"

namespace loom::testing {
namespace {

using cuda::KvCacheDtype;
using cuda::KvCacheShape;
constexpr KvCacheDtype kQuantized[] = {KvCacheDtype::kFp8, KvCacheDtype::kInt8};
constexpr KvCacheDtype kAllDtypes[] = {KvCacheDtype::kBf16, KvCacheDtype::kFp8,
                                       KvCacheDtype::kInt8};

const char* name(KvCacheDtype d) {
  return cuda::kv_cache_dtype_name(d);
}

// ---- Layout and names. ----

TEST(CudaKvQuant, LayoutAndNames) {
  // Llama-3.2-1B: 16 layers, 8 KV heads, head_dim 64, 16-token blocks.
  for (KvCacheDtype d : kAllDtypes) {
    const KvCacheShape s{16, 8, 64, 16, d};
    EXPECT_EQ(s.block_bytes(), layout_of(s).block_bytes()) << name(d);
    EXPECT_EQ(s.block_bytes() % 16, 0) << name(d);
  }
  EXPECT_EQ((KvCacheShape{16, 8, 64, 16, KvCacheDtype::kBf16}.block_bytes()), 524288);
  EXPECT_EQ((KvCacheShape{16, 8, 64, 16, KvCacheDtype::kFp8}.block_bytes()), 270336);
  EXPECT_EQ((KvCacheShape{16, 8, 64, 16, KvCacheDtype::kInt8}.block_bytes()), 270336);
  // Padding: 2 rows of 64 values + 2 scales = 132 bytes -> 144.
  EXPECT_EQ((KvCacheShape{1, 1, 64, 1, KvCacheDtype::kFp8}.block_bytes()), 144);
  // The offsets the kernels use are the documented ones.
  for (KvCacheDtype d : kAllDtypes) {
    const KvCacheShape s{3, 2, 128, 5, d};
    const KvLayout lay = layout_of(s);
    for (int64_t b : {0, 7})
      for (int32_t l = 0; l < 3; ++l)
        for (int32_t kv = 0; kv < 2; ++kv)
          for (int32_t h = 0; h < 2; ++h)
            for (int32_t slot : {0, 4}) {
              EXPECT_EQ(s.value_byte_offset(b, l, kv, h, slot), lay.value_at(b, l, kv, h, slot));
              if (d != KvCacheDtype::kBf16) {
                EXPECT_EQ(s.scale_byte_offset(b, l, kv, h, slot), lay.scale_at(b, l, kv, h, slot));
              } else {
                EXPECT_EQ(s.offset(b, l, kv, h, slot) * 2, lay.value_at(b, l, kv, h, slot));
              }
            }
  }
  for (const char* n : {"bf16", "f16", "auto"})
    EXPECT_EQ(cuda::parse_kv_cache_dtype(n).value(), KvCacheDtype::kBf16) << n;
  EXPECT_EQ(cuda::parse_kv_cache_dtype("fp8").value(), KvCacheDtype::kFp8);
  EXPECT_EQ(cuda::parse_kv_cache_dtype("int8").value(), KvCacheDtype::kInt8);
  auto int4 = cuda::parse_kv_cache_dtype("int4");
  ASSERT_FALSE(int4.ok());
  EXPECT_NE(int4.error().find("CPU only"), std::string::npos) << int4.error();
  EXPECT_FALSE(cuda::parse_kv_cache_dtype("fp16x").ok());
  EXPECT_STREQ(name(KvCacheDtype::kBf16), "bf16");
  EXPECT_STREQ(name(KvCacheDtype::kFp8), "fp8");
  EXPECT_STREQ(name(KvCacheDtype::kInt8), "int8");
  // The decoders themselves.
  EXPECT_EQ(e4m3_to_float(0x7e), 448.0f);
  EXPECT_EQ(e4m3_to_float(0x01), std::ldexp(1.0f, -9));
  EXPECT_EQ(e4m3_to_float(0x38), 1.0f);
  EXPECT_EQ(e4m3_to_float(0xb8), -1.0f);
  EXPECT_TRUE(std::isnan(e4m3_to_float(0xff)));
  EXPECT_EQ(half_bits_to_float(0x3c00), 1.0f);
  EXPECT_EQ(half_bits_to_float(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(half_bits_to_float(0xc000), -2.0f);
}

// ---- The quantizing K/V write. ----

// Unwritten bytes are poisoned with a pattern the writer can never produce: fp8 0xFF is NaN
// (values are converted with saturation to finite), int8 0x80 is -128 (outside [-127, 127]); as
// f16 scales, 0xFFFF is NaN and 0x8080 negative (a written scale is >= 0).
uint8_t poison_byte(KvCacheDtype d) {
  return d == KvCacheDtype::kInt8 ? 0x80 : 0xFF;
}

// Per-value error bounds of the formats, in the units of x (scale s = the row's stored scale):
//   int8: |deq - x| <= s / 2 (round to nearest; the scale was rounded up, so nothing clamps).
//   fp8 e4m3: half an ulp of x / s: 3 mantissa bits give 2^-4 |x| for normal values; among the
//   subnormals (|x / s| < 2^-6) the ulp is 2^-9, so s * 2^-9 absolute covers them (a full ulp).
// Plus a slack of 1e-4 of the row's absmax for f32 differences between the GPU's RoPE (sincosf,
// fused multiply-adds) and the CPU reference's.
double value_bound(KvCacheDtype d, double x, double scale, double absmax) {
  const double slack = 1e-4 * absmax;
  if (d == KvCacheDtype::kInt8) return scale / 2 + slack;
  return std::ldexp(std::fabs(x), -4) + std::ldexp(scale, -9) + slack;
}

void check_rope_kv_quant(KvCacheDtype dtype, RopeStyle style, int32_t D, bool with_bias) {
  SCOPED_TRACE(std::string(name(dtype)) + " D=" + std::to_string(D) +
               (style == RopeStyle::kNeox ? " neox" : " interleaved") +
               (with_bias ? " bias" : " no bias"));
  const int32_t T = 7, NH = 4, KVH = 2, L = 2, layer = 1, bs = 16, blocks = 4;
  ModelConfig mc;
  mc.head_dim = D;
  mc.rope_theta = 10000.0f;
  mc.rope_style = style;
  const int32_t width = (NH + 2 * KVH) * D;
  // Rows of very different magnitudes (a subnormal f16 scale at 0.01), and a zero row (token 6:
  // without bias its K and V rows are all zeros).
  const float magnitude[T] = {1.0f, 0.01f, 30.0f, 1.0f, 0.2f, 5.0f, 0.0f};
  auto qkv = random_floats(T * width, 40 + D);
  for (int t = 0; t < T; ++t)
    for (int i = 0; i < width; ++i) qkv[t * width + i] *= magnitude[t];
  auto bias = random_floats(width, 41, -0.1f, 0.1f);
  std::vector<int32_t> pos = {0, 1, 17, 300, 4095, 31, 5};
  std::vector<int64_t> slots = {0, 5, 16, 63, 33, 18, 47};
  std::vector<float> inv_freq(D / 2);
  for (int i = 0; i < D / 2; ++i) inv_freq[i] = static_cast<float>(std::pow(10000.0, -2.0 * i / D));
  const KvCacheShape shape{L, KVH, D, bs, dtype};
  const KvLayout lay = layout_of(shape);
  DeviceVec<float> dqkv(qkv), dbias(bias), dfreq(inv_freq), q(T * NH * D);
  DeviceVec<int32_t> dpos(pos);
  DeviceVec<int64_t> dslots(slots);
  DeviceVec<uint8_t> cache(blocks * lay.block_bytes());
  q.poison();
  ASSERT_CUDA(cudaMemset(cache.get(), poison_byte(dtype), blocks * lay.block_bytes()));
  cuda::RopeKvArgs a;
  a.qkv = dqkv.get();
  a.bias = with_bias ? dbias.get() : nullptr;
  a.positions = dpos.get();
  a.slot_mapping = dslots.get();
  a.inv_freq = dfreq.get();
  a.num_tokens = T;
  a.num_heads = NH;
  a.neox = style == RopeStyle::kNeox;
  a.layer = layer;
  a.cache = shape;
  a.q_out = q.get();
  a.kv_cache = cache.get();
  cuda::launch_rope_kv_write(a, 0);
  ASSERT_CUDA(cudaGetLastError());

  // Reference: bias, then the CPU RopeTables rotation.
  std::vector<float> ref(qkv);
  if (with_bias)
    for (int t = 0; t < T; ++t)
      for (int i = 0; i < width; ++i) ref[t * width + i] += bias[i];
  cpu::RopeTables rope(mc);
  rope.prepare(pos.data(), T);
  for (int t = 0; t < T; ++t) rope.apply(ref.data() + t * width, t, NH + KVH);
  std::vector<float> ref_q;
  for (int t = 0; t < T; ++t)
    ref_q.insert(ref_q.end(), ref.begin() + t * width, ref.begin() + t * width + NH * D);
  EXPECT_LT(rel_error(q.download(), ref_q), 1e-5);

  const std::vector<uint8_t> got = cache.download();
  std::vector<bool> written(got.size(), false);
  const double qmax = dtype == KvCacheDtype::kFp8 ? 448.0 : 127.0;
  int checked_rows = 0;
  for (int t = 0; t < T; ++t) {
    const int64_t blk = slots[t] / bs;
    const int32_t off = static_cast<int32_t>(slots[t] % bs);
    for (int kv = 0; kv < 2; ++kv)
      for (int h = 0; h < KVH; ++h) {
        SCOPED_TRACE("token " + std::to_string(t) + (kv ? " V" : " K") + " head " +
                     std::to_string(h));
        const float* x = ref.data() + t * width + (NH + kv * KVH + h) * D;
        double absmax = 0;
        for (int d = 0; d < D; ++d) absmax = std::max(absmax, std::fabs(double(x[d])));
        const int64_t vat = lay.value_at(blk, layer, kv, h, off);
        const int64_t sat = lay.scale_at(blk, layer, kv, h, off);
        for (int64_t i = 0; i < D; ++i) written[vat + i] = true;
        written[sat] = written[sat + 1] = true;
        uint16_t scale_bits;
        std::memcpy(&scale_bits, got.data() + sat, 2);
        float scale = 0;
        const std::vector<float> deq = read_row(got, lay, blk, layer, kv, h, off, &scale);
        ASSERT_TRUE(std::isfinite(scale) && !(scale_bits & 0x8000)) << "scale bits " << scale_bits;
        if (absmax == 0) {  // zero row: scale 0, values 0
          EXPECT_EQ(scale_bits, 0);
          for (int d = 0; d < D; ++d) EXPECT_EQ(deq[d], 0.0f) << d;
          ++checked_rows;
          continue;
        }
        // scale = absmax / qmax rounded up to f16: never below (nothing saturates), at most one
        // f16 step above (2^-10 relative, or 2^-24 among f16 subnormals).
        const double exact = absmax / qmax;
        EXPECT_GE(scale, exact * (1 - 1e-5)) << "absmax " << absmax;
        EXPECT_LE(scale, exact * (1 + std::ldexp(1.0, -10)) * (1 + 1e-5) + std::ldexp(1.0, -24))
            << "absmax " << absmax;
        for (int d = 0; d < D; ++d) {
          const uint8_t byte = got[vat + d];
          ASSERT_NE(byte, poison_byte(dtype)) << "value " << d << " not written";
          if (dtype == KvCacheDtype::kFp8) {
            ASSERT_NE(byte & 0x7f, 0x7f) << "NaN at " << d;
          }
          EXPECT_LE(std::fabs(deq[d] - x[d]), value_bound(dtype, x[d], scale, absmax))
              << "d " << d << ": x " << x[d] << " stored " << deq[d] << " scale " << scale;
        }
        ++checked_rows;
      }
  }
  EXPECT_EQ(checked_rows, T * 2 * KVH);
  // Nothing else was touched: other layers, other slots, the padding.
  int64_t touched = 0;
  for (size_t i = 0; i < got.size(); ++i)
    if (!written[i] && got[i] != poison_byte(dtype)) ++touched;
  EXPECT_EQ(touched, 0) << "bytes outside the written rows and scales changed";
}

TEST(CudaKvQuant, RopeKvWriteQuantizesEachRow) {
  LOOM_REQUIRE_GPU();
  for (KvCacheDtype d : kQuantized) {
    for (int32_t D : {64, 128}) {
      check_rope_kv_quant(d, RopeStyle::kNeox, D, true);
      check_rope_kv_quant(d, RopeStyle::kNeox, D, false);
    }
    check_rope_kv_quant(d, RopeStyle::kInterleaved, 64, true);
  }
}

// ---- Attention over quantized caches. ----

struct Seq {
  int32_t first_pos, num_new;
};

// A ragged batch of a fresh prefill, a chunk over a cached prefix and two decodes (one long
// enough for 6 context splits), over the cache of each dtype, every context row written by the
// rope_kv kernel from the same inputs. Returns nothing; checks:
//   - every dtype against a float64 attention over the values its cache holds (read back and
//     dequantized here): rel. error < 5e-3 (the bf16 output's rounding is ~1.5e-3);
//   - fp8 / int8 against the bf16 cache's output: rel. error < 0.1 (fp8) / 0.03 (int8). Inputs
//     are uniform in [-2, 2]: e4m3 keeps ~2.6% RMS relative error per value (3 mantissa bits),
//     which reaches the output through V directly and through K via the scores (~3% each,
//     ~4.5% together); int8 rows (step absmax / 127) give ~0.7%.
void check_attention_quant(int32_t D, int32_t NH, int32_t KVH, bool one_split) {
  SCOPED_TRACE("D=" + std::to_string(D) + " NH=" + std::to_string(NH) +
               " KVH=" + std::to_string(KVH) + (one_split ? " one split" : " split"));
  const int32_t L = 2, layer = 1, bs = 16;
  const std::vector<Seq> seqs = {{0, 37}, {60, 5}, {700, 1}, {129, 1}};
  const int32_t max_blocks = 50, S = static_cast<int32_t>(seqs.size());
  const int32_t num_blocks = S * max_blocks;
  std::vector<int32_t> perm(num_blocks);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), std::mt19937(52));
  const std::vector<int32_t> tables(perm.begin(), perm.end());  // [S][max_blocks]

  // Every context token of every sequence, written through rope_kv (K rotated, V as is).
  std::vector<int32_t> ctx_pos;
  std::vector<int64_t> ctx_slots;
  for (int32_t s = 0; s < S; ++s)
    for (int32_t p = 0; p < seqs[s].first_pos + seqs[s].num_new; ++p) {
      ctx_pos.push_back(p);
      ctx_slots.push_back(int64_t{tables[s * max_blocks + p / bs]} * bs + p % bs);
    }
  const int32_t N = static_cast<int32_t>(ctx_pos.size());
  const int32_t width = (NH + 2 * KVH) * D;
  auto qkv = random_floats(int64_t{N} * width, 53, -2, 2);
  std::vector<float> inv_freq(D / 2);
  for (int i = 0; i < D / 2; ++i) inv_freq[i] = static_cast<float>(std::pow(10000.0, -2.0 * i / D));
  DeviceVec<float> dqkv(qkv), dfreq(inv_freq), q_scratch(int64_t{N} * NH * D);
  DeviceVec<int32_t> dctx_pos(ctx_pos);
  DeviceVec<int64_t> dctx_slots(ctx_slots);

  // The queries: the new tokens of each sequence.
  std::vector<int32_t> positions, seq_of_token;
  for (int32_t s = 0; s < S; ++s)
    for (int32_t i = 0; i < seqs[s].num_new; ++i) {
      positions.push_back(seqs[s].first_pos + i);
      seq_of_token.push_back(s);
    }
  const int32_t T = static_cast<int32_t>(positions.size());
  auto q = random_floats(T * NH * D, 54, -2, 2);
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  const int32_t max_keys = *std::max_element(positions.begin(), positions.end()) + 1;
  int32_t splits = 1, per = (max_keys + 31) / 32 * 32;
  if (!one_split) {
    per = 128;  // the decode at position 700 runs in 6 parallel splits, merged after
    splits = (max_keys + per - 1) / per;
  }
  DeviceVec<float> dq(q);
  DeviceVec<int32_t> dtables(tables), dpos(positions), dseq(seq_of_token);

  std::vector<std::vector<float>> outs;
  for (KvCacheDtype dtype : kAllDtypes) {
    SCOPED_TRACE(name(dtype));
    const KvCacheShape shape{L, KVH, D, bs, dtype};
    const KvLayout lay = layout_of(shape);
    DeviceVec<uint8_t> cache(num_blocks * lay.block_bytes());
    cache.poison();  // NaN values (fp8, bf16) and NaN scales (f16 0xFFFF) where not written
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

    DeviceVec<float> ws(std::max<int64_t>(1, cuda::attention_workspace_floats(splits, T, NH, D)));
    DeviceVec<uint16_t> out(T * NH * D);
    out.poison();
    ws.poison();
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
    a.num_splits = splits;
    a.keys_per_split = per;
    a.partial_out = ws.get();
    a.partial_max_sum = ws.get() + int64_t{splits} * T * NH * D;
    a.out = out.as<cuda::bf16>();
    cuda::launch_paged_attention(a, 0);
    ASSERT_CUDA(cudaGetLastError());
    outs.push_back(from_bf16(out.download()));

    // float64 reference over the cache's own (dequantized) rows.
    const std::vector<double> ref = reference_paged_attention(
        cache.download(), lay, layer, q, NH, scale, seq_of_token, positions, tables, max_blocks);
    const double err = rel_error(outs.back(), ref);
    std::printf(
        "  attention D=%d heads %d/%d %s, %s cache: rel. error vs float64 over its values "
        "%.2e\n",
        D, NH, KVH, one_split ? "one split" : "6 splits", name(dtype), err);
    EXPECT_LT(err, 5e-3);
  }
  for (size_t i = 1; i < outs.size(); ++i) {
    const KvCacheDtype d = kAllDtypes[i];
    const double err = rel_error(outs[i], outs[0]);
    std::printf("  attention D=%d heads %d/%d %s: %s vs bf16 cache rel. error %.2e\n", D, NH, KVH,
                one_split ? "one split" : "6 splits", name(d), err);
    EXPECT_LT(err, d == KvCacheDtype::kFp8 ? 0.1 : 0.03) << name(d);
  }
}

TEST(CudaKvQuant, PagedAttentionReadsQuantizedRows) {
  LOOM_REQUIRE_GPU();
  for (bool one : {true, false}) {
    check_attention_quant(64, 9, 3, one);   // SmolLM2 heads
    check_attention_quant(64, 32, 8, one);  // Llama-3.2-1B heads
    check_attention_quant(128, 8, 1, one);  // group of 8
    check_attention_quant(128, 4, 4, one);  // no grouping
  }
}

// ---- Swap and copy-on-write of quantized blocks. ----

std::vector<uint8_t> random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

TEST(CudaKvQuant, SwapPoolMovesQuantizedBlocksExactly) {
  LOOM_REQUIRE_GPU();
  for (KvCacheDtype d : kQuantized) {
    SCOPED_TRACE(name(d));
    const KvCacheShape shape{4, 2, 64, 16, d};
    const size_t bb = static_cast<size_t>(shape.block_bytes());
    ASSERT_EQ(bb, 16896u);  // 4 layers x 2 x 2 heads x 16 rows x (64 + 2)
    const int32_t num_device = 8;
    const auto original = random_bytes(num_device * bb, 60);
    DeviceVec<uint8_t> pool(original);
    cuda::KvSwapPool swap(bb, 6);
    const std::vector<BlockCopy> out = {{1, 0}, {2, 1}, {5, 4}};
    swap.swap_out(out, pool.get(), num_device, 0);
    ASSERT_CUDA(cudaDeviceSynchronize());
    for (const BlockCopy& c : out)
      EXPECT_EQ(0, std::memcmp(swap.host_block(c.dst), original.data() + c.src * bb, bb))
          << c.src << " -> host " << c.dst;
    // Clobber the device pool, swap back into other blocks: exactly those blocks change.
    const auto clobber = random_bytes(num_device * bb, 61);
    pool.upload(clobber);
    const std::vector<BlockCopy> in = {{0, 6}, {1, 7}, {4, 0}};
    swap.swap_in(in, pool.get(), num_device, 0);
    ASSERT_CUDA(cudaDeviceSynchronize());
    auto expected = clobber;
    std::memcpy(expected.data() + 6 * bb, original.data() + 1 * bb, bb);
    std::memcpy(expected.data() + 7 * bb, original.data() + 2 * bb, bb);
    std::memcpy(expected.data() + 0 * bb, original.data() + 5 * bb, bb);
    EXPECT_TRUE(pool.download() == expected);
  }
}

constexpr int32_t kBlockSize = 16;

std::unique_ptr<Backend> dummy_backend(KvCacheDtype dtype) {
  CudaBackendOptions o = test_backend_options(kBlockSize);
  o.kv_cache_dtype = dtype;
  return dummy_cuda_backend(small_llama_config(), o);
}

// The backend's pool: its dtype, exact block bytes, and twice the blocks of bf16 in the budget.
TEST(CudaKvQuant, BackendPoolSizesFromBlockBytes) {
  LOOM_REQUIRE_GPU();
  const ModelConfig c = small_llama_config();
  auto bf16 = dummy_backend(KvCacheDtype::kBf16);
  ASSERT_TRUE(bf16);
  const KvPoolInfo ref = bf16->kv_pool();
  EXPECT_EQ(ref.dtype, "bf16");
  for (KvCacheDtype d : kQuantized) {
    auto b = dummy_backend(d);
    ASSERT_TRUE(b);
    const KvPoolInfo info = b->kv_pool();
    EXPECT_EQ(info.dtype, name(d));
    EXPECT_EQ(
        info.bytes_per_block,
        static_cast<size_t>(
            KvCacheShape{c.num_layers, c.num_kv_heads, c.head_dim, kBlockSize, d}.block_bytes()));
    const double ratio = double(info.num_device_blocks) / ref.num_device_blocks;
    std::printf("  %s: %d device blocks of %zu bytes (bf16: %d of %zu), %.3fx; swap %d (%d)\n",
                name(d), info.num_device_blocks, info.bytes_per_block, ref.num_device_blocks,
                ref.bytes_per_block, ratio, info.num_host_blocks, ref.num_host_blocks);
    EXPECT_GE(ratio, 1.9);
    EXPECT_GE(double(info.num_host_blocks) / ref.num_host_blocks, 1.9);
  }
}

TEST(CudaKvQuant, BackendSwapRoundTripIsExact) {
  LOOM_REQUIRE_GPU();
  for (KvCacheDtype d : kQuantized) {
    SCOPED_TRACE(name(d));
    auto b = dummy_backend(d);
    ASSERT_TRUE(b);
    expect_swap_round_trip_exact(*b, kBlockSize);
  }
}

TEST(CudaKvQuant, BackendCopyBlocksIsExact) {
  LOOM_REQUIRE_GPU();
  for (KvCacheDtype d : kQuantized) {
    SCOPED_TRACE(name(d));
    auto b = dummy_backend(d);
    ASSERT_TRUE(b);
    const int32_t V = b->vocab_size();
    ManualSeq ref = seq(random_tokens(20, 6, V), 0, 2);
    std::vector<float> lr(V), lc(V);
    b->forward(make_batch({&ref}, {19}, kBlockSize), lr.data());
    // Clobber the destination blocks first, so a copy that missed the scales would show.
    ManualSeq other = seq(random_tokens(32, 7, V), 30, 2);
    b->forward(make_batch({&other}, {32}, kBlockSize), lc.data());
    const std::vector<BlockCopy> cow = {{0, 30}, {1, 31}};
    b->copy_blocks(cow);
    ManualSeq copy = ref;
    copy.blocks = {30, 31};
    b->forward(make_batch({&ref}, {1}, kBlockSize), lr.data());
    std::fill(lc.begin(), lc.end(), NAN);
    b->forward(make_batch({&copy}, {1}, kBlockSize), lc.data());
    EXPECT_EQ(lr, lc);
  }
}

// ---- End to end on the HF random Llamas. ----

// First-step logits of fp8 / int8 caches against the bf16 cache's (cosine > 0.98 / 0.99), then 8
// decode steps fed HF's greedy tokens (the decodes read the prompt's quantized rows), and the
// pool's capacity in the same kv_cache_bytes (>= 1.9x the blocks).
TEST(CudaKvQuant, RandomLlamaLogitsCloseToBf16Cache) {
  LOOM_REQUIRE_GPU();
  const char* dir = hf_random_dir();
  if (!dir) GTEST_SKIP() << "LOOM_HF_RANDOM_DIR not set (scripts/gpu_test.sh sets it)";
  for (const HfRandomModel& m : open_hf_random_models(dir)) {
    SCOPED_TRACE(m.dir);
    const nlohmann::json& g = m.golden;
    const std::shared_ptr<const ModelFile>& mf = m.file;
    const auto prompt = g["prompt_ids"].get<std::vector<TokenId>>();
    const auto hf_ids = g["greedy_ids"].get<std::vector<TokenId>>();
    constexpr int32_t kDecodes = 8;
    ASSERT_GE(hf_ids.size(), static_cast<size_t>(kDecodes));

    std::vector<std::vector<float>> logits_of;  // per dtype: [1 + kDecodes][V]
    std::vector<int32_t> blocks_of;
    int32_t V = 0;
    for (KvCacheDtype d : kAllDtypes) {
      CudaBackendOptions o;
      o.block_size = kBlockSize;
      o.kv_cache_bytes = size_t{256} << 20;
      o.max_num_batched_tokens = 512;
      o.kv_cache_dtype = d;
      auto created = create_cuda_backend(mf, o);
      ASSERT_TRUE(created.ok()) << created.error();
      auto& b = created.value();
      V = b->vocab_size();
      blocks_of.push_back(b->kv_pool().num_device_blocks);
      const int32_t blocks =
          (static_cast<int32_t>(prompt.size()) + kDecodes + kBlockSize) / kBlockSize;
      ManualSeq s = seq(prompt, 0, blocks);
      std::vector<float> all((1 + kDecodes) * static_cast<size_t>(V), NAN);
      b->forward(make_batch({&s}, {static_cast<int32_t>(prompt.size())}, kBlockSize), all.data());
      for (int32_t i = 0; i < kDecodes; ++i) {
        s.tokens.push_back(hf_ids[i]);
        b->forward(make_batch({&s}, {1}, kBlockSize), all.data() + (1 + i) * size_t(V));
      }
      logits_of.push_back(std::move(all));
    }
    for (size_t i = 1; i < logits_of.size(); ++i) {
      const KvCacheDtype d = kAllDtypes[i];
      const double first = cosine(logits_of[i].data(), logits_of[0].data(), V);
      double worst = first;
      for (int32_t k = 1; k <= kDecodes; ++k)
        worst = std::min(worst, cosine(logits_of[i].data() + k * size_t(V),
                                       logits_of[0].data() + k * size_t(V), V));
      const double ratio = double(blocks_of[i]) / blocks_of[0];
      std::printf(
          "  %s: %s cache vs bf16: first-step logits cosine %.6f, worst of %d decodes "
          "%.6f; %d blocks vs %d (%.3fx)\n",
          std::filesystem::path(m.dir).filename().c_str(), name(d), first, kDecodes, worst,
          blocks_of[i], blocks_of[0], ratio);
      const double bound = d == KvCacheDtype::kFp8 ? 0.98 : 0.99;
      EXPECT_GT(first, bound) << name(d);
      EXPECT_GT(worst, bound) << name(d);
      EXPECT_GE(ratio, 1.9) << name(d);
    }
  }
}

// ---- Accuracy on a real model (LOOM_GPU_ACCURACY_MODEL). ----
//
// The measurement of tests/e2e/test_kv_quant.cpp on the GPU: the golden prompts
// (tests/golden/model_outputs/golden.json; their text, encoded by the model's own tokenizer),
// 64-token greedy continuations with the bf16 cache as the reference;
//   - teacher-forced agreement: the bf16 continuation fed to the quantized cache's model, each
//     of the 64 next-token argmaxes compared (one early difference does not hide the rest);
//   - first divergence of the free-running greedy continuation (64 = never);
//   - perplexity over tests/golden/text/river_town.txt.
// Fails only on gross breakage: int8 agreement < 90%, fp8 < 85%.

constexpr int32_t kContinuation = 64;

struct Prompt {
  std::string name;
  std::vector<TokenId> ids;
};

int32_t argmax(const float* logits, int32_t vocab) {
  return top_ids(logits, vocab, 1)[0];
}

std::vector<ManualSeq> seqs_for(const std::vector<std::vector<TokenId>>& token_lists,
                                int32_t extra_tokens) {
  std::vector<ManualSeq> seqs(token_lists.size());
  BlockId next = 0;
  for (size_t i = 0; i < token_lists.size(); ++i) {
    seqs[i].tokens = token_lists[i];
    const int32_t n = static_cast<int32_t>(token_lists[i].size()) + extra_tokens;
    for (int32_t b = 0; b < (n + kBlockSize - 1) / kBlockSize; ++b)
      seqs[i].blocks.push_back(next++);
  }
  return seqs;
}

std::vector<std::vector<TokenId>> greedy(Backend& backend, const std::vector<Prompt>& prompts) {
  std::vector<std::vector<TokenId>> lists;
  for (const Prompt& p : prompts) lists.push_back(p.ids);
  std::vector<ManualSeq> seqs = seqs_for(lists, kContinuation);
  std::vector<ManualSeq*> ptrs;
  std::vector<int32_t> counts;
  for (ManualSeq& s : seqs) {
    ptrs.push_back(&s);
    counts.push_back(static_cast<int32_t>(s.tokens.size()));
  }
  const int32_t vocab = backend.vocab_size();
  std::vector<float> logits(seqs.size() * vocab);
  std::vector<std::vector<TokenId>> out(seqs.size());
  for (int32_t step = 0; step < kContinuation; ++step) {
    backend.forward(make_batch(ptrs, counts, kBlockSize), logits.data());
    for (size_t i = 0; i < seqs.size(); ++i) {
      const TokenId t = argmax(logits.data() + i * vocab, vocab);
      out[i].push_back(t);
      seqs[i].tokens.push_back(t);
      counts[i] = 1;
    }
  }
  return out;
}

// Logits of every row of `tokens` fed as one sequence in prefill chunks of 128 (so later chunks
// read the earlier ones from the cache): row p predicts token p + 1.
std::vector<float> all_logits(Backend& backend, const std::vector<TokenId>& tokens) {
  const int32_t vocab = backend.vocab_size();
  std::vector<ManualSeq> seqs = seqs_for({tokens}, 0);
  std::vector<float> out(tokens.size() * vocab);
  const int32_t n = static_cast<int32_t>(tokens.size());
  for (int32_t start = 0; start < n; start += 128) {
    const int32_t count = std::min(128, n - start);
    ForwardBatch b = make_batch({&seqs[0]}, {count}, kBlockSize);
    b.logits_rows.clear();
    for (int32_t r = 0; r < count; ++r) b.logits_rows.push_back(r);
    backend.forward(b, out.data() + static_cast<size_t>(start) * vocab);
  }
  return out;
}

int32_t teacher_forced_matches(Backend& backend, const Prompt& p,
                               const std::vector<TokenId>& reference) {
  std::vector<TokenId> tokens = p.ids;
  tokens.insert(tokens.end(), reference.begin(), reference.end() - 1);
  const std::vector<float> logits = all_logits(backend, tokens);
  const int32_t vocab = backend.vocab_size();
  int32_t matches = 0;
  for (int32_t j = 0; j < kContinuation; ++j) {
    const size_t row = p.ids.size() - 1 + j;
    matches += argmax(logits.data() + row * vocab, vocab) == reference[j];
  }
  return matches;
}

double perplexity(Backend& backend, const std::vector<TokenId>& tokens) {
  const std::vector<float> logits = all_logits(backend, tokens);
  const int32_t vocab = backend.vocab_size();
  double nll = 0;
  for (size_t p = 0; p + 1 < tokens.size(); ++p) {
    const float* row = logits.data() + p * vocab;
    double mx = row[0];
    for (int32_t i = 1; i < vocab; ++i) mx = std::max(mx, static_cast<double>(row[i]));
    double sum = 0;
    for (int32_t i = 0; i < vocab; ++i) sum += std::exp(row[i] - mx);
    nll += std::log(sum) + mx - row[tokens[p + 1]];
  }
  return std::exp(nll / static_cast<double>(tokens.size() - 1));
}

TEST(CudaKvQuantAccuracy, RealModelAgainstBf16Cache) {
  const char* path = std::getenv("LOOM_GPU_ACCURACY_MODEL");
  if (!path || !*path)
    GTEST_SKIP() << "LOOM_GPU_ACCURACY_MODEL not set (a Llama-architecture GGUF file)";
  LOOM_REQUIRE_GPU();
  auto opened = ModelFile::open(path);
  ASSERT_TRUE(opened.ok()) << opened.error();
  std::shared_ptr<const ModelFile> mf(std::move(opened).value());
  auto tok = Tokenizer::create(mf->tokenizer_spec());
  ASSERT_TRUE(tok.ok()) << tok.error();
  const std::unique_ptr<Tokenizer> tokenizer = std::move(tok).value();

  std::vector<Prompt> prompts;
  const nlohmann::json index = golden_index();
  for (const auto& p : index["prompts"])
    prompts.push_back(
        {p["name"].get<std::string>(),
         tokenizer->encode(p["prompt"].get<std::string>(), true, p["parse_special"].get<bool>())});
  ASSERT_FALSE(prompts.empty());
  std::ifstream f(std::string(LOOM_SOURCE_DIR) + "/tests/golden/text/river_town.txt");
  std::stringstream ss;
  ss << f.rdbuf();
  ASSERT_GT(ss.str().size(), 2000u);
  const std::vector<TokenId> passage = tokenizer->encode(ss.str(), true, false);

  auto make = [&](KvCacheDtype d) {
    CudaBackendOptions o;
    o.block_size = kBlockSize;
    o.kv_cache_bytes = size_t{1} << 30;
    o.swap_space_bytes = 0;
    o.max_num_batched_tokens = 1024;
    o.max_num_seqs = 16;
    o.kv_cache_dtype = d;
    auto b = create_cuda_backend(mf, o);
    EXPECT_TRUE(b.ok()) << b.error();
    return b.ok() ? std::move(b).value() : nullptr;
  };
  const std::string model_name = std::filesystem::path(path).filename().string();
  std::vector<std::vector<TokenId>> reference;
  double ppl_bf16 = 0;
  {
    auto bf16 = make(KvCacheDtype::kBf16);
    ASSERT_TRUE(bf16);
    reference = greedy(*bf16, prompts);
    ppl_bf16 = perplexity(*bf16, passage);
    // On the GPU, prefill and decode run different product shapes, so teacher forcing need not
    // reproduce the free-running continuation exactly even with the bf16 cache: printed.
    int32_t self = 0;
    for (size_t i = 0; i < prompts.size(); ++i)
      self += teacher_forced_matches(*bf16, prompts[i], reference[i]);
    std::printf(
        "KVQ-GPU %s: %zu prompts x %d tokens, perplexity over %zu tokens of "
        "river_town.txt\n",
        model_name.c_str(), prompts.size(), kContinuation, passage.size());
    std::printf(
        "KVQ-GPU | dtype | bytes/token | teacher-forced | mean first div. | free-running "
        "| perplexity\n");
    const ModelConfig& c = mf->config();
    const KvCacheShape shape{c.num_layers, c.num_kv_heads, c.head_dim, kBlockSize,
                             KvCacheDtype::kBf16};
    std::printf(
        "KVQ-GPU | bf16  | %11.0f | %5.1f%% (self) | -               | -            "
        "| %.4f\n",
        double(shape.block_bytes()) / kBlockSize, 100.0 * self / (kContinuation * prompts.size()),
        ppl_bf16);
  }
  for (KvCacheDtype d : kQuantized) {
    auto backend = make(d);
    ASSERT_TRUE(backend);
    const auto continuation = greedy(*backend, prompts);
    int32_t forced = 0, free_matches = 0, total = 0;
    double divergence_sum = 0;
    std::string per_prompt;
    for (size_t i = 0; i < prompts.size(); ++i) {
      const int32_t m = teacher_forced_matches(*backend, prompts[i], reference[i]);
      int32_t first_divergence = kContinuation;
      for (int32_t j = 0; j < kContinuation; ++j) {
        if (continuation[i][j] == reference[i][j]) ++free_matches;
        if (continuation[i][j] != reference[i][j] && first_divergence == kContinuation)
          first_divergence = j;
      }
      per_prompt +=
          " " + prompts[i].name + " " + std::to_string(m) + "/" + std::to_string(first_divergence);
      forced += m;
      divergence_sum += first_divergence;
      total += kContinuation;
    }
    const double agreement = static_cast<double>(forced) / total;
    const double ppl = perplexity(*backend, passage);
    const ModelConfig& c = mf->config();
    const KvCacheShape shape{c.num_layers, c.num_kv_heads, c.head_dim, kBlockSize, d};
    std::printf("KVQ-GPU | %-5s | %11.0f | %13.1f%% | %15.1f | %11.1f%% | %.4f (%+.2f%%)\n",
                name(d), double(shape.block_bytes()) / kBlockSize, 100.0 * agreement,
                divergence_sum / prompts.size(), 100.0 * free_matches / total, ppl,
                100.0 * (ppl / ppl_bf16 - 1.0));
    std::printf("KVQ-GPU   %s per prompt (teacher-forced / first divergence):%s\n", name(d),
                per_prompt.c_str());
    EXPECT_GE(agreement, d == KvCacheDtype::kInt8 ? 0.90 : 0.85) << name(d);
    EXPECT_TRUE(std::isfinite(ppl)) << name(d);
  }
}

}  // namespace
}  // namespace loom::testing
