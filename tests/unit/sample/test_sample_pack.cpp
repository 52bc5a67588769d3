// The GPU sampler's host side, on the CPU: the row kinds and parameters SamplePacker writes, its
// penalty entries (applied as sample_pack.h defines them, they must give bit for bit the
// logits of a scalar implementation of sampler.h's steps 1-3, and the greedy token of
// sample_token), and the host/device uniform, which must equal loom::sample_uniform.
#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <random>
#include <set>

#include "backend/cuda/sample_pack.h"
#include "sample/uniform.h"
#include "sampler_test_util.h"

namespace loom {
namespace {

using cuda::DeviceSampleParams;
using cuda::PenaltyEntry;
using cuda::SamplePacker;

constexpr float kInf = std::numeric_limits<float>::infinity();

struct Row {
  std::vector<float> logits;
  SamplingParams params;
  std::vector<TokenId> prompt, output, eos;
  uint64_t seed = 0;
  int32_t step = 0;
};

SampleInput input_of(const Row& r) {
  SampleInput in;
  in.logits = nullptr;  // the packer never reads logits
  in.vocab_size = static_cast<int32_t>(r.logits.size());
  in.params = &r.params;
  in.prompt = r.prompt;
  in.output = r.output;
  in.eos_ids = r.eos;
  in.seed = r.seed;
  in.step = r.step;
  return in;
}

std::vector<SampleInput> inputs_of(const std::vector<Row>& rows) {
  std::vector<SampleInput> in;
  for (const Row& r : rows) in.push_back(input_of(r));
  return in;
}

// Steps 1-3 of sampler.h, written from its header comment with sets and maps.
std::vector<float> reference_processed(const Row& r) {
  std::vector<float> l = r.logits;
  const SamplingParams& p = r.params;
  const auto in_vocab = [&](TokenId t) { return t >= 0 && static_cast<size_t>(t) < l.size(); };
  if (p.repetition_penalty != 1.0f) {
    std::set<TokenId> distinct;
    for (TokenId t : r.prompt)
      if (in_vocab(t)) distinct.insert(t);
    for (TokenId t : r.output)
      if (in_vocab(t)) distinct.insert(t);
    for (TokenId t : distinct)
      l[t] = l[t] > 0.0f ? l[t] / p.repetition_penalty : l[t] * p.repetition_penalty;
  }
  std::map<TokenId, int32_t> counts;
  for (TokenId t : r.output)
    if (in_vocab(t)) ++counts[t];
  for (const auto& [t, n] : counts) {
    const float freq = static_cast<float>(n) * p.frequency_penalty;
    l[t] = l[t] - freq;
    l[t] = l[t] - p.presence_penalty;
  }
  if (static_cast<int64_t>(r.output.size()) < p.min_tokens) {
    for (TokenId t : r.eos)
      if (in_vocab(t)) l[t] = -kInf;
    for (TokenId t : p.stop_token_ids)
      if (in_vocab(t)) l[t] = -kInf;
  }
  return l;
}

// The entries of one packed row applied as sample_pack.h defines the flags.
std::vector<float> apply_entries(const Row& r, const DeviceSampleParams& d,
                                 const std::vector<PenaltyEntry>& entries) {
  std::vector<float> l = r.logits;
  for (int32_t e = d.entry_begin; e < d.entry_end; ++e) {
    const PenaltyEntry& en = entries[e];
    float v = l[en.token];
    if (en.flags & cuda::kPenaltyRepeat)
      v = v > 0.0f ? v / d.repetition_penalty : v * d.repetition_penalty;
    if (en.flags & cuda::kPenaltyPresenceFrequency) {
      const float freq = static_cast<float>(en.count) * d.frequency_penalty;
      v = v - freq;
      v = v - d.presence_penalty;
    }
    if (en.flags & cuda::kPenaltyMask) v = -kInf;
    l[en.token] = v;
  }
  return l;
}

bool same_bits(float a, float b) {
  return std::memcmp(&a, &b, sizeof a) == 0;
}

bool same_row(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

TEST(SamplePack, RowKindsFollowWhichProcessorsApply) {
  const int32_t V = 100;
  std::vector<Row> rows(10);
  for (Row& r : rows) {
    r.logits.assign(V, 0.0f);
    r.params.temperature = 0.0f;
    r.prompt = {1, 2, 3};
    r.output = {4, 5};
    r.eos = {7};
  }
  rows[0].params.logprobs = 0;  // host, even greedy
  // rows[1]: plain greedy -> argmax
  rows[2].params.repetition_penalty = 1.2f;  // device
  rows[3].params.repetition_penalty = 1.2f;  // but no history at all -> argmax
  rows[3].prompt.clear();
  rows[3].output.clear();
  rows[4].params.presence_penalty = 0.5f;  // no output yet -> argmax
  rows[4].output.clear();
  rows[5].params.frequency_penalty = -0.5f;  // device
  rows[6].params.min_tokens = 3;             // 2 outputs < 3 -> device
  rows[7].params.min_tokens = 2;             // 2 outputs, not < 2 -> argmax
  rows[8].params.min_tokens = 3;             // nothing to mask -> argmax
  rows[8].eos.clear();
  rows[9].params.temperature = 0.8f;  // sampled -> device
  SamplePacker packer(V);
  const auto in = inputs_of(rows);
  packer.pack(in);
  ASSERT_EQ(packer.params.size(), rows.size());
  EXPECT_EQ(packer.host_rows, (std::vector<int32_t>{0}));
  EXPECT_EQ(packer.argmax_rows, (std::vector<int32_t>{1, 3, 4, 7, 8}));
  EXPECT_EQ(packer.device_rows, (std::vector<int32_t>{2, 5, 6, 9}));
  const std::vector<int32_t> kinds = {cuda::kRowOnHost,   cuda::kRowArgmax, cuda::kRowOnDevice,
                                      cuda::kRowArgmax,   cuda::kRowArgmax, cuda::kRowOnDevice,
                                      cuda::kRowOnDevice, cuda::kRowArgmax, cuda::kRowArgmax,
                                      cuda::kRowOnDevice};
  for (size_t i = 0; i < rows.size(); ++i) EXPECT_EQ(packer.params[i].kind, kinds[i]) << i;
  // Non-device rows carry no entries; a sampled row without penalties none either.
  EXPECT_EQ(packer.params[9].entry_begin, packer.params[9].entry_end);
  EXPECT_EQ(packer.params[9].greedy, 0);
  EXPECT_EQ(packer.params[2].greedy, 1);

  // An empty step packs to nothing.
  packer.pack({});
  EXPECT_TRUE(packer.params.empty() && packer.entries.empty() && packer.device_rows.empty());
}

TEST(SamplePack, ParametersAreNormalizedAsSampleTokenReadsThem) {
  const int32_t V = 1000;
  std::vector<Row> rows(4);
  for (Row& r : rows) r.logits.assign(V, 0.0f);
  rows[0].params.temperature = 0.7f;
  rows[0].params.top_k = 50;
  rows[0].params.top_p = 0.9f;
  rows[0].params.min_p = 0.05f;
  rows[0].seed = 0xDEADBEEFCAFEull;
  rows[0].step = 17;
  rows[1].params.temperature = 1.3f;
  rows[1].params.top_k = V;  // keeps everything: off
  rows[2].params.temperature = 1.0f;
  rows[2].params.top_k = -1;  // off
  rows[3].params.temperature = 0.3f;
  rows[3].params.top_k = V - 1;
  SamplePacker packer(V);
  packer.pack(inputs_of(rows));
  const DeviceSampleParams& a = packer.params[0];
  EXPECT_EQ(a.seed, 0xDEADBEEFCAFEull);
  EXPECT_EQ(a.step, 17);
  EXPECT_EQ(a.top_k, 50);
  EXPECT_TRUE(same_bits(a.inv_temperature, 1.0f / 0.7f));
  EXPECT_EQ(a.top_p, 0.9f);
  EXPECT_EQ(a.min_w, 0.05f);
  EXPECT_EQ(packer.params[1].top_k, 0);
  EXPECT_EQ(packer.params[2].top_k, 0);
  EXPECT_EQ(packer.params[3].top_k, V - 1);
  EXPECT_EQ(packer.params[1].min_w, FLT_TRUE_MIN);  // zero weights are never drawn
  EXPECT_TRUE(same_bits(packer.params[3].inv_temperature, 1.0f / 0.3f));

  // min_p as a weight floor in [FLT_TRUE_MIN, 1], whatever the request held.
  rows[0].params.min_p = 1.0f;
  rows[1].params.min_p = 3.0f;
  rows[2].params.min_p = NAN;
  packer.pack(inputs_of(rows));
  EXPECT_EQ(packer.params[0].min_w, 1.0f);
  EXPECT_EQ(packer.params[1].min_w, 1.0f);
  EXPECT_EQ(packer.params[2].min_w, FLT_TRUE_MIN);
}

// Random histories (repeats, out-of-vocabulary ids, eos inside the output) and every
// combination of processors: the entries must reproduce the reference bit for bit, be distinct
// per row, and give sample_token's greedy token.
TEST(SamplePack, EntriesReproduceTheProcessorsExactly) {
  const int32_t V = 512;
  std::mt19937 rng(7);
  std::uniform_int_distribution<int32_t> tok(-3, V + 2);  // a few ids out of the vocabulary
  std::normal_distribution<float> logit(0.0f, 3.0f);
  std::vector<Row> rows;
  for (int i = 0; i < 96; ++i) {
    Row r;
    r.logits.resize(V);
    for (float& x : r.logits) x = logit(rng);
    r.logits[i % V] = 0.0f;  // a zero logit under repetition_penalty stays zero
    if (i % 11 == 0) r.logits[(i * 7) % V] = NAN;
    if (i % 13 == 0) r.logits[(i * 5) % V] = kInf;
    const int np = i % 5 == 0 ? 0 : 1 + static_cast<int>(rng() % 60);
    const int no = i % 7 == 0 ? 0 : 1 + static_cast<int>(rng() % 40);
    for (int k = 0; k < np; ++k) r.prompt.push_back(tok(rng));
    for (int k = 0; k < no; ++k)
      r.output.push_back(k % 3 == 0 && k > 0 ? r.output[k - 1] : tok(rng));
    r.eos = {static_cast<TokenId>(rng() % V), V + 5};
    if (i % 3 == 0) r.output.push_back(r.eos[0]);
    SamplingParams& p = r.params;
    p.temperature = i % 4 == 0 ? 0.9f : 0.0f;
    const int combo = i % 8;
    if (combo & 1) p.repetition_penalty = i % 16 < 8 ? 1.3f : 0.7f;
    if (combo & 2) p.presence_penalty = i % 6 < 3 ? 0.6f : -0.4f;
    if (combo & 4) p.frequency_penalty = i % 10 < 5 ? 0.35f : -1.1f;
    if (i % 5 == 1) {
      p.min_tokens = static_cast<int32_t>(r.output.size()) + 1;
      p.stop_token_ids = {static_cast<TokenId>(rng() % V), -1};
    }
    rows.push_back(std::move(r));
  }
  SamplePacker packer(V);
  packer.pack(inputs_of(rows));
  int32_t device_rows = 0, changed = 0;
  size_t expected_begin = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    const DeviceSampleParams& d = packer.params[i];
    if (d.kind != cuda::kRowOnDevice) {
      EXPECT_EQ(rows[i].params.temperature, 0.0f);
      EXPECT_TRUE(same_row(reference_processed(rows[i]), rows[i].logits)) << "row " << i;
      continue;
    }
    ++device_rows;
    EXPECT_EQ(static_cast<size_t>(d.entry_begin), expected_begin) << i;  // rows in order
    expected_begin = d.entry_end;
    std::set<TokenId> seen;
    for (int32_t e = d.entry_begin; e < d.entry_end; ++e) {
      const TokenId t = packer.entries[e].token;
      EXPECT_TRUE(t >= 0 && t < V) << t;
      EXPECT_TRUE(seen.insert(t).second) << "row " << i << " repeats token " << t;
    }
    const std::vector<float> want = reference_processed(rows[i]);
    const std::vector<float> got = apply_entries(rows[i], d, packer.entries);
    for (int32_t t = 0; t < V; ++t) {
      ASSERT_TRUE(same_bits(got[t], want[t]))
          << "row " << i << " token " << t << ": " << got[t] << " vs " << want[t];
    }
    if (!same_row(want, rows[i].logits)) ++changed;
    if (rows[i].params.greedy()) {
      SampleInput in = input_of(rows[i]);
      in.logits = rows[i].logits.data();
      SamplerScratch scratch;
      const TokenId cpu = sample_token(in, scratch).token;
      // Argmax of the entries' logits, ties to the lowest id; NaN never wins.
      int32_t best = -1;
      for (int32_t t = 0; t < V; ++t)
        if (!std::isnan(got[t]) && (best < 0 || got[t] > got[best])) best = t;
      EXPECT_EQ(best, cpu) << "row " << i;
    }
  }
  EXPECT_EQ(expected_begin, packer.entries.size());
  EXPECT_GT(device_rows, 60);
  EXPECT_GT(changed, 50);
}

// Seeded outputs must stay reproducible across versions: u's 53 bits for a few (seed, step)
// pairs, computed by a Python transcription of the formula in sample/uniform.h
// (splitmix64's finalizer, 64-bit wrap-around arithmetic).
TEST(SampleUniform, PinnedValuesAndRange) {
  struct Case {
    uint64_t seed;
    int32_t step;
    uint64_t bits;
  };
  const Case cases[] = {{0, 0, 5472374493076210ull},
                        {1, 0, 5352810578253420ull},
                        {0, 1, 4156241908661472ull},
                        {42, 7, 1255790078746087ull},
                        {~0ull, INT32_MAX, 8399176447027754ull},
                        {12345678901234567890ull, -1, 4815769949034271ull}};
  for (const Case& c : cases) {
    EXPECT_EQ(sample_uniform(c.seed, c.step), static_cast<double>(c.bits) * 0x1.0p-53)
        << c.seed << " " << c.step;
  }
  std::mt19937_64 rng(99);
  for (int i = 0; i < 10000; ++i) {
    const double u = sample_uniform(rng(), static_cast<int32_t>(rng()));
    ASSERT_TRUE(u >= 0.0 && u < 1.0);
  }
}

}  // namespace
}  // namespace loom
