// The GPU sampler (DeviceSampler, sampling.cu) against loom::sample_token and against scalar
// references written here from sampler.h, on random rows of real vocabulary sizes (49,152 and
// 151,936) with ties, NaN, +-inf and huge values. Output tokens are poisoned before each call and
// the device ids poisoned by the sampler's debug mode, so a row the kernels miss fails.
//
// What must hold:
//   - greedy, with or without penalties and min_tokens masking, and degenerate rows: exactly
//     sample_token's token;
//   - temperature-only draws (with or without min-p): both walk the tokens in id order with the
//     same u, so the tokens are equal, except where u falls within 1e-5 of the cumulative mass
//     at a boundary between the two tokens (float rounding of exp and of the sums);
//   - top-k / top-p / min-p: the GPU's kept set (read from its debug cut and the weights it
//     wrote over the row) equals the reference set exactly, except that a top-p cut whose mass
//     lies within 3e-7 (relative; float weights carry ~1e-7) of the target may end one token
//     earlier or later; the drawn token equals
//     the reference draw over that set in id order (same 1e-5 rule). sample_token walks its set
//     in the order its partial selection leaves, so it is compared in distribution: over 4,096
//     seeds, both samplers' counts against the exact renormalized probabilities must give a
//     chi-square below df + 6 sqrt(2 df) (about six standard deviations; the draws are
//     deterministic, so a pass is a pass forever);
//   - logprobs rows: exactly sample_token's output, logprobs included; their logits untouched.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <numeric>
#include <random>
#include <set>

#include "backend/cuda/device_sampler.cuh"
#include "backend/cuda/sampling.cuh"
#include "cuda/cuda_test_util.h"
#include "sample/sampler.h"

namespace loom::testing {
namespace {

using cuda::DeviceSampler;
using cuda::SampleCut;

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr int32_t kSmolVocab = 49152;
constexpr int32_t kQwenVocab = 151936;
constexpr double kBoundaryEps = 1e-5;  // u within this of a boundary: either token is right
constexpr double kTopPEps = 3e-7;      // top-p mass within this (relative) of the target

// ---------------------------------------------------------------------------------------------
// Rows and runs.

struct TestRow {
  const std::vector<float>* logits = nullptr;
  SamplingParams params;
  std::vector<TokenId> prompt, output, eos;
  uint64_t seed = 0;
  int32_t step = 0;
};

SampleInput input_of(const TestRow& r) {
  SampleInput in;
  in.logits = r.logits->data();
  in.vocab_size = static_cast<int32_t>(r.logits->size());
  in.params = &r.params;
  in.prompt = r.prompt;
  in.output = r.output;
  in.eos_ids = r.eos;
  in.seed = r.seed;
  in.step = r.step;
  return in;
}

SampleOutput cpu_sample(const TestRow& r) {
  static SamplerScratch scratch;
  return sample_token(input_of(r), scratch);
}

struct DeviceRun {
  std::vector<SampleOutput> out;
  std::vector<SampleCut> cuts;
  std::vector<float> after;  // [rows][vocab]: the device logits after the call
};

DeviceRun run_device(DeviceSampler& sampler, const std::vector<TestRow>& rows) {
  const size_t V = static_cast<size_t>(sampler.vocab_size());
  std::vector<float> all(rows.size() * V);
  for (size_t i = 0; i < rows.size(); ++i) {
    EXPECT_EQ(rows[i].logits->size(), V);
    std::memcpy(all.data() + i * V, rows[i].logits->data(), V * sizeof(float));
  }
  DeviceVec<float> d(all);
  std::vector<SampleInput> in;
  for (const TestRow& r : rows) {
    in.push_back(input_of(r));
    in.back().logits = nullptr;  // ignored by the device sampler
  }
  DeviceRun run;
  run.out.resize(rows.size());
  for (SampleOutput& o : run.out) {
    o.token = -7;
    o.logprobs.sampled = {-7, 7.0f};
    o.logprobs.top.assign(2, TokenLogprob{-7, 7.0f});
  }
  sampler.set_debug(true);
  sampler.sample(d.get(), in, run.out, 0);
  run.cuts = sampler.cuts();
  run.after = d.download();
  return run;
}

// ---------------------------------------------------------------------------------------------
// Logits. Grid values (multiples of 2^-10) are exact floats whose distinct values are far apart
// compared with rounding, so orders and ties are the same for every exp implementation.

std::vector<float> grid_logits(int32_t V, uint32_t seed, double spread, double lo = -16.0,
                               double hi = 16.0) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> d(0.0, spread);
  std::vector<float> l(V);
  for (float& x : l) x = static_cast<float>(std::round(std::clamp(d(rng), lo, hi) * 1024) / 1024);
  return l;
}

// A bulk plus `spikes` tokens well above it (a small top-k / top-p set), some of them tied.
std::vector<float> peaked_logits(int32_t V, uint32_t seed, int spikes, double height) {
  std::vector<float> l = grid_logits(V, seed, 1.5, -8.0, 8.0);
  std::mt19937 rng(seed + 1);
  for (int k = 0; k < spikes; ++k) {
    const int32_t t = static_cast<int32_t>(rng() % V);
    l[t] = static_cast<float>(height - (k / 2) * 0.25);  // pairs of equal values
  }
  return l;
}

// Few distinct values over the whole row: huge tie groups, and candidates that do not fit in
// shared memory.
std::vector<float> flat_logits(int32_t V, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<float> l(V);
  for (float& x : l) x = static_cast<float>(static_cast<int>(rng() % 129) - 64) / 64.0f;
  return l;
}

// NaN, -inf and huge values sprinkled over a row; +inf too when asked (then only the +inf
// tokens have any weight).
void add_specials(std::vector<float>& l, uint32_t seed, bool pos_inf) {
  std::mt19937 rng(seed);
  const int32_t V = static_cast<int32_t>(l.size());
  for (int k = 0; k < 50; ++k) l[rng() % V] = NAN;
  for (int k = 0; k < 50; ++k) l[rng() % V] = -kInf;
  for (int k = 0; k < 5; ++k) l[rng() % V] = -1e38f;
  if (pos_inf) {
    l[rng() % V] = kInf;
    l[rng() % V] = kInf;
    l[rng() % V] = 1e38f;
  }
}

// ---------------------------------------------------------------------------------------------
// References, written from sampler.h.

bool in_vocab(TokenId t, size_t V) {
  return t >= 0 && static_cast<size_t>(t) < V;
}

// Steps 1-3 with sets and maps.
std::vector<float> processed_logits(const TestRow& r) {
  std::vector<float> l = *r.logits;
  const SamplingParams& p = r.params;
  if (p.repetition_penalty != 1.0f) {
    std::set<TokenId> distinct;
    for (TokenId t : r.prompt)
      if (in_vocab(t, l.size())) distinct.insert(t);
    for (TokenId t : r.output)
      if (in_vocab(t, l.size())) distinct.insert(t);
    for (TokenId t : distinct)
      l[t] = l[t] > 0.0f ? l[t] / p.repetition_penalty : l[t] * p.repetition_penalty;
  }
  if (p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f) {
    std::map<TokenId, int32_t> counts;
    for (TokenId t : r.output)
      if (in_vocab(t, l.size())) ++counts[t];
    for (const auto& [t, n] : counts) {
      const float freq = static_cast<float>(n) * p.frequency_penalty;
      l[t] = l[t] - freq;
      l[t] = l[t] - p.presence_penalty;
    }
  }
  if (static_cast<int64_t>(r.output.size()) < p.min_tokens) {
    for (TokenId t : r.eos)
      if (in_vocab(t, l.size())) l[t] = -kInf;
    for (TokenId t : p.stop_token_ids)
      if (in_vocab(t, l.size())) l[t] = -kInf;
  }
  return l;
}

// Largest value, ties to the lowest index, NaN never; -1 when none is above -inf.
int32_t argmax_of(const std::vector<float>& l) {
  int32_t best = -1;
  for (size_t i = 0; i < l.size(); ++i) {
    if (!(l[i] > -kInf)) continue;
    if (best < 0 || l[i] > l[best]) best = static_cast<int32_t>(i);
  }
  return best;
}

TokenId reference_greedy(const TestRow& r) {
  int32_t t = argmax_of(processed_logits(r));
  if (t < 0) t = argmax_of(*r.logits);
  return t < 0 ? 0 : t;
}

// Weights of the sampled path: z = l * (1 / T) cleaned as sampler.h says, d = z - max z in
// float (as both samplers), w = exp(d) in double. Empty when every z is -inf.
std::vector<double> reference_weights(const std::vector<float>& l, float temperature) {
  const float inv = 1.0f / temperature;
  std::vector<float> z(l.size());
  float m = -kInf;
  for (size_t i = 0; i < l.size(); ++i) {
    float v = l[i] * inv;
    if (std::isnan(v)) v = -kInf;
    if (v > FLT_MAX) v = FLT_MAX;
    z[i] = v;
    m = std::max(m, v);
  }
  if (!(m > -kInf)) return {};
  std::vector<double> w(l.size());
  for (size_t i = 0; i < l.size(); ++i) {
    const float d = z[i] - m;
    w[i] = std::exp(static_cast<double>(d));
  }
  return w;
}

// The top-k / top-p prefix of the order (w descending, ties to the lower id).
struct ReferenceCut {
  std::vector<int32_t> order;  // tokens with w > 0, in that order
  size_t n = 0;                // the prefix top-k and top-p keep
  bool applies = false;        // top-k or top-p cuts anything
  bool close = false;          // the top-p target lies within kTopPEps of a prefix mass
};

ReferenceCut reference_cut(const std::vector<double>& w, const SamplingParams& p) {
  ReferenceCut c;
  for (size_t i = 0; i < w.size(); ++i)
    if (w[i] > 0.0) c.order.push_back(static_cast<int32_t>(i));
  std::sort(c.order.begin(), c.order.end(),
            [&](int32_t a, int32_t b) { return w[a] > w[b] || (w[a] == w[b] && a < b); });
  c.n = c.order.size();
  if (p.top_k > 0 && static_cast<size_t>(p.top_k) < w.size() &&
      static_cast<size_t>(p.top_k) < c.n) {
    c.n = p.top_k;
    c.applies = true;
  }
  if (p.top_p < 1.0f) {
    c.applies = true;
    double mass = 0.0;
    for (size_t j = 0; j < c.n; ++j) mass += w[c.order[j]];
    const double need = (static_cast<double>(p.top_p) - 1e-6) * mass;
    double cum = 0.0;
    size_t j = 0;
    while (j < c.n) {
      cum += w[c.order[j++]];
      if (cum >= need) break;
    }
    c.n = std::max<size_t>(j, 1);
    const double prev = cum - w[c.order[c.n - 1]];
    c.close = std::abs(cum - need) <= kTopPEps * mass || std::abs(prev - need) <= kTopPEps * mass;
  }
  return c;
}

float min_weight(const SamplingParams& p) {
  return std::max(p.min_p, FLT_TRUE_MIN);
}

// The draw over `kept` tokens in id order with u: the first whose running mass exceeds u * total.
int32_t reference_draw(const std::vector<double>& w, const std::vector<char>& kept, double u) {
  double total = 0.0;
  for (size_t i = 0; i < w.size(); ++i)
    if (kept[i]) total += w[i];
  const double target = u * total;
  double cum = 0.0;
  int32_t last = -1;
  for (size_t i = 0; i < w.size(); ++i) {
    if (!kept[i]) continue;
    cum += w[i];
    last = static_cast<int32_t>(i);
    if (cum > target) return last;
  }
  return last;
}

// Whether u lies within kBoundaryEps of the mass between tokens a and b (the cumulative mass
// through the lower one and before the higher one, normalized).
bool near_boundary(const std::vector<double>& w, const std::vector<char>& kept, double u, int32_t a,
                   int32_t b) {
  const int32_t lo = std::min(a, b), hi = std::max(a, b);
  double total = 0.0, through_lo = 0.0, before_hi = 0.0;
  for (size_t i = 0; i < w.size(); ++i) {
    if (!kept[i]) continue;
    total += w[i];
    if (static_cast<int32_t>(i) <= lo) through_lo += w[i];
    if (static_cast<int32_t>(i) < hi) before_hi += w[i];
  }
  return u >= through_lo / total - kBoundaryEps && u <= before_hi / total + kBoundaryEps;
}

// ---------------------------------------------------------------------------------------------
// Checks of one row.

struct Tally {
  int64_t rows = 0, exact = 0, boundary = 0;  // draws: equal to the reference / within rounding
  int64_t cpu_exact = 0, cpu_boundary = 0;    // temperature-only: sample_token's token likewise
  std::map<int32_t, int64_t> paths;           // SamplePath -> rows
};

int64_t rows_on(const Tally& t, int32_t path) {
  const auto it = t.paths.find(path);
  return it == t.paths.end() ? 0 : it->second;
}

void expect_draw(int32_t got, const std::vector<double>& w, const std::vector<char>& kept, double u,
                 int64_t& exact, int64_t& boundary, const std::string& what) {
  ASSERT_TRUE(got >= 0 && static_cast<size_t>(got) < w.size()) << what << " token " << got;
  ASSERT_TRUE(kept[got]) << what << " drew token " << got << " outside the kept set";
  const int32_t want = reference_draw(w, kept, u);
  if (got == want) {
    ++exact;
    return;
  }
  EXPECT_TRUE(near_boundary(w, kept, u, got, want))
      << what << " drew " << got << ", reference " << want << " (u " << u << ")";
  ++boundary;
}

// Checks row i of a device run against the references; w_after: the row's device values.
void check_row(const TestRow& r, const SampleOutput& got, const SampleCut& cut, const float* after,
               Tally& tally, const std::string& what) {
  ++tally.rows;
  tally.paths[cut.path]++;
  const SamplingParams& p = r.params;
  const SampleOutput cpu = cpu_sample(r);
  if (p.logprobs >= 0) {  // sampled on the host: exactly sample_token's output
    EXPECT_EQ(got.token, cpu.token) << what;
    EXPECT_EQ(got.logprobs.sampled.token, cpu.logprobs.sampled.token) << what;
    EXPECT_EQ(got.logprobs.sampled.logprob, cpu.logprobs.sampled.logprob) << what;
    ASSERT_EQ(got.logprobs.top.size(), cpu.logprobs.top.size()) << what;
    for (size_t k = 0; k < cpu.logprobs.top.size(); ++k) {
      EXPECT_EQ(got.logprobs.top[k].token, cpu.logprobs.top[k].token) << what << " top " << k;
      EXPECT_EQ(got.logprobs.top[k].logprob, cpu.logprobs.top[k].logprob) << what;
    }
    const std::vector<float>& l = *r.logits;
    EXPECT_EQ(std::memcmp(after, l.data(), l.size() * sizeof(float)), 0)
        << what << ": a logprobs row's logits were modified";
    return;
  }
  // Device rows carry no logprobs.
  EXPECT_TRUE(got.logprobs.top.empty()) << what;
  EXPECT_EQ(got.logprobs.sampled.token, 0) << what;

  const std::vector<float> l = processed_logits(r);
  if (p.greedy()) {
    EXPECT_EQ(got.token, reference_greedy(r)) << what;
    EXPECT_EQ(got.token, cpu.token) << what;
    return;
  }
  const std::vector<double> w = reference_weights(l, p.temperature);
  if (w.empty()) {  // every scaled logit -inf: the raw argmax
    EXPECT_EQ(got.token, std::max(argmax_of(*r.logits), 0)) << what;
    EXPECT_EQ(got.token, cpu.token) << what;
    EXPECT_EQ(cut.path, cuda::kPathFallback) << what;
    return;
  }
  const double u = sample_uniform(r.seed, r.step);
  const float min_w = min_weight(p);
  const ReferenceCut ref = reference_cut(w, p);
  std::vector<char> ref_kept(w.size(), 0);
  for (size_t j = 0; j < ref.n; ++j) ref_kept[ref.order[j]] = w[ref.order[j]] >= min_w;

  if (!ref.applies) {  // temperature (and min-p) only: id order on both sides
    EXPECT_EQ(cut.path, cuda::kPathNoCut) << what;
    expect_draw(got.token, w, ref_kept, u, tally.exact, tally.boundary, what + " (gpu)");
    expect_draw(cpu.token, w, ref_kept, u, tally.cpu_exact, tally.cpu_boundary, what + " (cpu)");
    return;
  }
  ASSERT_TRUE(cut.path == cuda::kPathShared || cut.path == cuda::kPathGlobal)
      << what << " path " << cut.path;
  // The GPU's kept set, from its cut over the weights it wrote; its weights near the reference.
  std::vector<char> gpu_prefix(w.size(), 0), gpu_kept(w.size(), 0);
  size_t n_gpu = 0;
  for (size_t i = 0; i < w.size(); ++i) {
    const float wi = after[i];
    ASSERT_NEAR(wi, w[i], 1e-6 * w[i] + 1e-30) << what << " weight of " << i;
    if (wi > cut.threshold || (wi == cut.threshold && static_cast<int32_t>(i) <= cut.tie_last)) {
      gpu_prefix[i] = 1;
      gpu_kept[i] = wi >= min_w;
      ++n_gpu;
    }
  }
  // A prefix of the reference order, of the reference length (or one off at a close top-p cut).
  ASSERT_LE(n_gpu, ref.order.size()) << what;
  for (size_t j = 0; j < n_gpu; ++j)
    ASSERT_TRUE(gpu_prefix[ref.order[j]]) << what << " misses the " << j << "th largest";
  if (ref.close) {
    EXPECT_LE(std::max(n_gpu, ref.n) - std::min(n_gpu, ref.n), 1u) << what;
  } else {
    EXPECT_EQ(n_gpu, ref.n) << what;
  }
  expect_draw(got.token, w, gpu_kept, u, tally.exact, tally.boundary, what + " (gpu)");
  // sample_token keeps the same set (its order differs, so only membership is checked).
  if (!ref.close) {
    EXPECT_TRUE(ref_kept[cpu.token]) << what << " cpu token " << cpu.token;
  }
}

// Runs `rows` on the device and checks each one.
Tally check_rows(DeviceSampler& sampler, const std::vector<TestRow>& rows,
                 const std::string& name) {
  const DeviceRun run = run_device(sampler, rows);
  Tally tally;
  const size_t V = static_cast<size_t>(sampler.vocab_size());
  for (size_t i = 0; i < rows.size(); ++i) {
    check_row(rows[i], run.out[i], run.cuts[i], run.after.data() + i * V, tally,
              name + " row " + std::to_string(i));
  }
  return tally;
}

// At most 1% of draws may sit on a boundary (expected: almost none).
void expect_few_boundaries(const Tally& t, const std::string& name) {
  EXPECT_LE(t.boundary * 100, t.rows) << name;
  EXPECT_LE(t.cpu_boundary * 100, t.rows) << name;
}

SamplingParams greedy_params() {
  SamplingParams p;
  p.temperature = 0.0f;
  return p;
}

// ---------------------------------------------------------------------------------------------

TEST(CudaSampling, DeviceUniformEqualsSampleUniformBitForBit) {
  LOOM_REQUIRE_GPU();
  std::mt19937_64 rng(5);
  std::vector<uint64_t> seeds;
  std::vector<int32_t> steps;
  const uint64_t fixed_seeds[] = {0, 1, 2, 0x9E3779B97F4A7C15ull, ~0ull, 1ull << 63};
  const int32_t fixed_steps[] = {0, 1, 2, 1000, INT32_MAX, -1, INT32_MIN};
  for (uint64_t s : fixed_seeds)
    for (int32_t t : fixed_steps) seeds.push_back(s), steps.push_back(t);
  for (int i = 0; i < 100000; ++i) {
    seeds.push_back(i % 2 ? rng() : static_cast<uint64_t>(i / 64));
    steps.push_back(i % 3 ? static_cast<int32_t>(rng()) : i % 64);
  }
  const int32_t n = static_cast<int32_t>(seeds.size());
  DeviceVec<uint64_t> ds(seeds);
  DeviceVec<int32_t> dt(steps);
  DeviceVec<double> out(n);
  out.poison();
  cuda::launch_sample_uniform(ds.get(), dt.get(), n, out.get(), 0);
  const std::vector<double> got = out.download();
  for (int32_t i = 0; i < n; ++i) {
    const double want = sample_uniform(seeds[i], steps[i]);
    ASSERT_EQ(std::memcmp(&got[i], &want, sizeof want), 0)
        << "seed " << seeds[i] << " step " << steps[i] << ": " << got[i] << " vs " << want;
  }
}

TEST(CudaSampling, GreedyMatchesSampleToken) {
  LOOM_REQUIRE_GPU();
  for (int32_t V : {kSmolVocab, kQwenVocab}) {
    std::vector<std::vector<float>> bases;
    for (uint32_t s = 0; s < 6; ++s) bases.push_back(grid_logits(V, 100 + s, 3.0));
    add_specials(bases[1], 1, false);
    add_specials(bases[2], 2, true);                // +inf wins (the first of the two)
    bases[3][V - 1] = 40.0f;                        // the last id
    bases[4][17] = bases[4][V / 2] = 30.0f;         // a tie: the lower id
    bases.push_back(std::vector<float>(V, -kInf));  // degenerate rows: token 0
    bases.push_back(std::vector<float>(V, NAN));
    bases.push_back(std::vector<float>(V, -FLT_MAX));
    bases.back()[9] = -kInf;  // -FLT_MAX at 0 still wins over nothing
    std::vector<TestRow> rows;
    for (const auto& b : bases) {
      TestRow r;
      r.logits = &b;
      r.params = greedy_params();
      rows.push_back(r);
    }
    DeviceSampler sampler(V, 16);
    const DeviceRun run = run_device(sampler, rows);
    for (size_t i = 0; i < rows.size(); ++i) {
      EXPECT_EQ(run.out[i].token, cpu_sample(rows[i]).token) << V << " row " << i;
      EXPECT_EQ(run.out[i].token, reference_greedy(rows[i])) << V << " row " << i;
      EXPECT_EQ(run.cuts[i].path, cuda::kPathArgmax) << i;
    }
    EXPECT_EQ(run.out[3].token, V - 1);
    EXPECT_EQ(run.out[4].token, 17);
    EXPECT_EQ(run.out[6].token, 0);
    EXPECT_EQ(run.out[7].token, 0);
  }
}

// Histories whose tokens hold the top logits, so every penalty changes the answer.
TEST(CudaSampling, GreedyWithEachPenaltyMatchesSampleToken) {
  LOOM_REQUIRE_GPU();
  for (int32_t V : {kSmolVocab, kQwenVocab}) {
    std::vector<std::vector<float>> bases;
    for (uint32_t s = 0; s < 4; ++s) bases.push_back(grid_logits(V, 200 + s, 2.0));
    add_specials(bases[3], 3, false);
    std::mt19937 rng(V);
    std::vector<TestRow> rows;
    int changed = 0;
    for (int i = 0; i < 64; ++i) {
      TestRow r;
      r.logits = &bases[i % bases.size()];
      r.params = greedy_params();
      // The 12 best tokens (some positive, some pushed negative below), plus noise and ids
      // outside the vocabulary.
      std::vector<int32_t> ids(V);
      std::iota(ids.begin(), ids.end(), 0);
      std::partial_sort(ids.begin(), ids.begin() + 12, ids.end(), [&](int32_t a, int32_t b) {
        const float x = (*r.logits)[a], y = (*r.logits)[b];
        return (std::isnan(y) && !std::isnan(x)) || x > y;
      });
      for (int k = 0; k < 12; k += 2) r.prompt.push_back(ids[k]);
      r.prompt.push_back(-4);
      r.prompt.push_back(static_cast<TokenId>(rng() % V));
      for (int k = 1; k < 12; k += 2)
        for (int rep = 0; rep <= k % 3; ++rep) r.output.push_back(ids[k]);
      r.output.push_back(V + 3);
      r.output.push_back(ids[0]);
      switch (i % 6) {
        case 0:
          r.params.repetition_penalty = 1.5f;
          break;
        case 1:
          r.params.repetition_penalty = 0.6f;
          break;
        case 2:
          r.params.presence_penalty = 2.0f;
          break;
        case 3:
          r.params.frequency_penalty = 1.3f;
          break;
        case 4:
          r.params.frequency_penalty = -0.7f, r.params.presence_penalty = -1.0f;
          break;
        default:
          r.params.repetition_penalty = 1.2f;
          r.params.presence_penalty = 0.5f;
          r.params.frequency_penalty = 0.25f;
      }
      TestRow plain = r;
      plain.params = greedy_params();
      if (reference_greedy(r) != reference_greedy(plain)) ++changed;
      rows.push_back(std::move(r));
    }
    EXPECT_GT(changed, 30) << "the penalties should matter";
    DeviceSampler sampler(V, 64);
    const Tally t = check_rows(sampler, rows, "penalties V=" + std::to_string(V));
    EXPECT_EQ(rows_on(t, cuda::kPathGreedy), 64);
  }
}

TEST(CudaSampling, MinTokensMasksEosAndStopIds) {
  LOOM_REQUIRE_GPU();
  const int32_t V = kSmolVocab;
  std::vector<float> base = grid_logits(V, 300, 2.0);
  base[2] = 50.0f;    // eos
  base[77] = 49.0f;   // a stop token id
  base[500] = 48.0f;  // the best unmasked token
  std::vector<TestRow> rows;
  for (int i = 0; i < 24; ++i) {
    TestRow r;
    r.logits = &base;
    r.params = greedy_params();
    r.params.min_tokens = 4;
    r.params.stop_token_ids = {77, V + 1};
    r.eos = {2, -1};
    r.output.assign(i % 6, 1234);  // 0..5 outputs: masked while fewer than 4
    if (i >= 12) {
      r.params.temperature = 0.05f;  // sampled, the same masking
      r.seed = 900 + i;
    }
    rows.push_back(r);
  }
  DeviceSampler sampler(V, 32);
  const DeviceRun run = run_device(sampler, rows);
  Tally t;
  for (size_t i = 0; i < rows.size(); ++i) {
    check_row(rows[i], run.out[i], run.cuts[i], run.after.data() + i * V, t,
              "min_tokens row " + std::to_string(i));
    const bool masked = rows[i].output.size() < 4;
    EXPECT_EQ(run.out[i].token, masked ? 500 : 2) << i;
  }
  // Eos masked but no processor otherwise: still an argmax-kind row once min_tokens is met.
  EXPECT_EQ(run.cuts[4].path, cuda::kPathArgmax);
  EXPECT_EQ(run.cuts[0].path, cuda::kPathGreedy);
}

TEST(CudaSampling, TemperatureDrawsMatchSampleTokenToken) {
  LOOM_REQUIRE_GPU();
  for (int32_t V : {kSmolVocab, kQwenVocab}) {
    std::vector<std::vector<float>> bases;
    bases.push_back(grid_logits(V, 400, 3.0));
    bases.push_back(peaked_logits(V, 401, 30, 12.0));
    bases.push_back(flat_logits(V, 402));
    bases.push_back(grid_logits(V, 403, 1.0));
    add_specials(bases[3], 4, false);
    bases.push_back(grid_logits(V, 404, 2.0));
    add_specials(bases[4], 5, true);  // only the +inf tokens can be drawn
    const float temps[] = {0.3f, 0.7f, 1.0f, 1.6f};
    const float min_ps[] = {0.0f, 0.0f, 0.02f, 0.3f};
    std::vector<TestRow> rows;
    for (int i = 0; i < 256; ++i) {
      TestRow r;
      r.logits = &bases[i % bases.size()];
      r.params.temperature = temps[(i / 5) % 4];
      r.params.min_p = min_ps[(i / 20) % 4];
      r.params.top_k = i % 7 == 0 ? V : 0;  // top_k >= vocab is off
      r.seed = 1000003ull * i + 17;
      r.step = i % 13;
      rows.push_back(r);
    }
    DeviceSampler sampler(V, 256);
    const std::string name = "temperature V=" + std::to_string(V);
    const Tally t = check_rows(sampler, rows, name);
    EXPECT_EQ(rows_on(t, cuda::kPathNoCut), 256) << name;
    expect_few_boundaries(t, name);
  }
}

// Shared-memory candidates (peaked rows) and whole-row bisection (flat rows, ties everywhere),
// top-k cuts inside tie groups, top-p alone and after top-k, min-p on top.
TEST(CudaSampling, TopKTopPMinPKeepTheReferenceSet) {
  LOOM_REQUIRE_GPU();
  for (int32_t V : {kSmolVocab, kQwenVocab}) {
    std::vector<std::vector<float>> bases;
    bases.push_back(peaked_logits(V, 500, 40, 14.0));
    bases.push_back(grid_logits(V, 501, 3.0));  // a few thousand candidates
    bases.push_back(flat_logits(V, 502));       // all of them
    bases.push_back(peaked_logits(V, 503, 8, 6.0));
    add_specials(bases[3], 6, false);
    struct Knobs {
      int32_t top_k;
      float top_p, min_p, temperature;
    };
    const Knobs knobs[] = {
        {1, 1.0f, 0.0f, 1.0f},    {5, 1.0f, 0.0f, 0.7f},     {50, 1.0f, 0.0f, 1.0f},
        {1000, 1.0f, 0.0f, 1.3f}, {20000, 1.0f, 0.0f, 1.0f}, {0, 0.5f, 0.0f, 1.0f},
        {0, 0.9f, 0.0f, 0.8f},    {0, 0.99f, 0.0f, 1.2f},    {50, 0.9f, 0.0f, 1.0f},
        {3000, 0.8f, 0.0f, 1.0f}, {40, 1.0f, 0.05f, 1.0f},   {0, 0.95f, 0.1f, 0.6f},
        {0, 1e-7f, 0.0f, 1.0f},  // top-p below the slack: the single best token
        {7, 0.3f, 0.5f, 2.0f},
    };
    std::vector<TestRow> rows;
    int i = 0;
    for (const Knobs& k : knobs) {
      for (size_t b = 0; b < bases.size(); ++b, ++i) {
        TestRow r;
        r.logits = &bases[b];
        r.params.top_k = k.top_k;
        r.params.top_p = k.top_p;
        r.params.min_p = k.min_p;
        r.params.temperature = k.temperature;
        r.seed = 77 + i;
        r.step = i;
        rows.push_back(r);
      }
    }
    DeviceSampler sampler(V, static_cast<int32_t>(rows.size()));
    const std::string name = "cuts V=" + std::to_string(V);
    const Tally t = check_rows(sampler, rows, name);
    EXPECT_GT(rows_on(t, cuda::kPathShared), 10) << name;
    EXPECT_GT(rows_on(t, cuda::kPathGlobal), 5) << name;
    expect_few_boundaries(t, name);
  }
}

// sample_token walks its kept set in another order than the GPU, so with the same seeds the two
// draw different tokens; their frequencies must both follow the renormalized probabilities.
TEST(CudaSampling, TopKTopPDistributionMatchesSampleToken) {
  LOOM_REQUIRE_GPU();
  const int32_t V = kSmolVocab;
  std::vector<float> base = grid_logits(V, 600, 1.0, -4.0, 4.0);
  // Far above the bulk (whose share of the mass is ~1e-4): the kept sets are 6 or 7 of these,
  // with cuts inside the 17.5 tie group.
  const float top[] = {19.0f, 18.5f, 18.5f, 18.0f, 17.5f, 17.5f,
                       17.5f, 17.0f, 16.5f, 16.0f, 16.0f, 15.0f};
  for (int k = 0; k < 12; ++k) base[(k * 4099 + 11) % V] = top[k];
  struct Knobs {
    int32_t top_k;
    float top_p, min_p;
  };
  for (const Knobs& k : {Knobs{6, 1.0f, 0.0f}, Knobs{0, 0.8f, 0.0f}, Knobs{10, 0.9f, 0.1f}}) {
    SamplingParams p;
    p.temperature = 1.0f;
    p.top_k = k.top_k;
    p.top_p = k.top_p;
    p.min_p = k.min_p;
    const std::vector<double> w = reference_weights(base, 1.0f);
    const ReferenceCut ref = reference_cut(w, p);
    ASSERT_FALSE(ref.close);
    std::vector<int32_t> kept;
    double total = 0.0;
    for (size_t j = 0; j < ref.n; ++j) {
      if (w[ref.order[j]] >= min_weight(p)) kept.push_back(ref.order[j]), total += w[ref.order[j]];
    }
    ASSERT_GE(kept.size(), 3u);
    std::map<int32_t, int64_t> gpu_counts, cpu_counts;
    DeviceSampler sampler(V, 256);
    int64_t draws = 0;
    for (int call = 0; call < 16; ++call) {
      std::vector<TestRow> rows(256);
      for (int i = 0; i < 256; ++i) {
        rows[i].logits = &base;
        rows[i].params = p;
        rows[i].seed = 5000 + 256 * call + i;
        rows[i].step = i % 9;
      }
      const DeviceRun run = run_device(sampler, rows);
      for (int i = 0; i < 256; ++i, ++draws) {
        gpu_counts[run.out[i].token]++;
        cpu_counts[cpu_sample(rows[i]).token]++;
      }
    }
    auto chi_square = [&](const std::map<int32_t, int64_t>& counts, const char* who) {
      int64_t inside = 0;
      double stat = 0.0;
      for (int32_t t : kept) {
        const double expected = draws * w[t] / total;
        const double c = counts.count(t) ? static_cast<double>(counts.at(t)) : 0.0;
        stat += (c - expected) * (c - expected) / expected;
        inside += static_cast<int64_t>(c);
      }
      EXPECT_EQ(inside, draws) << who << " drew outside the kept set";
      const double df = static_cast<double>(kept.size() - 1);
      EXPECT_LT(stat, df + 6.0 * std::sqrt(2.0 * df))
          << who << " chi-square over " << kept.size() << " tokens, top_k " << k.top_k << " top_p "
          << k.top_p;
    };
    chi_square(gpu_counts, "gpu");
    chi_square(cpu_counts, "cpu");
  }
}

TEST(CudaSampling, LogprobsRowsFallBackToSampleTokenInTheSameCall) {
  LOOM_REQUIRE_GPU();
  const int32_t V = kQwenVocab;
  std::vector<std::vector<float>> bases;
  for (uint32_t s = 0; s < 3; ++s) bases.push_back(grid_logits(V, 700 + s, 2.5));
  add_specials(bases[2], 7, false);
  std::vector<TestRow> rows;
  for (int i = 0; i < 12; ++i) {
    TestRow r;
    r.logits = &bases[i % 3];
    r.seed = 31 * i;
    r.step = i;
    r.prompt = {5, 6, 7, 8};
    r.output = {9, 9, 10};
    if (i % 2 == 0) {  // logprobs rows of every flavour
      r.params.logprobs = i % 4 == 0 ? 0 : 5;
      r.params.temperature = i % 3 == 0 ? 0.0f : 0.9f;
      r.params.top_p = i % 6 == 2 ? 0.9f : 1.0f;
      r.params.repetition_penalty = 1.3f;
    } else {
      r.params.temperature = i % 3 == 0 ? 0.0f : 0.8f;
      r.params.top_k = i % 5 == 0 ? 20 : 0;
      r.params.frequency_penalty = 0.5f;
    }
    rows.push_back(r);
  }
  DeviceSampler sampler(V, 12);
  const Tally t = check_rows(sampler, rows, "logprobs");
  EXPECT_EQ(t.rows, 12);
  // Host rows never reach the kernels: their cut stays poisoned.
  const DeviceRun run = run_device(sampler, rows);
  for (int i = 0; i < 12; i += 2) EXPECT_EQ(run.cuts[i].path, -1) << i;
}

TEST(CudaSampling, MixedBatchOf256Rows) {
  LOOM_REQUIRE_GPU();
  const int32_t V = kQwenVocab;
  std::vector<std::vector<float>> bases;
  bases.push_back(grid_logits(V, 800, 3.0));
  bases.push_back(peaked_logits(V, 801, 30, 13.0));
  bases.push_back(flat_logits(V, 802));
  bases.push_back(grid_logits(V, 803, 2.0));
  add_specials(bases[3], 8, false);
  bases.push_back(std::vector<float>(V, -kInf));
  std::mt19937 rng(8);
  std::vector<TestRow> rows;
  for (int i = 0; i < 256; ++i) {
    TestRow r;
    r.logits = &bases[i % (i % 31 == 0 ? 5 : 4)];
    r.seed = rng();
    r.step = i;
    for (int k = 0; k < 20; ++k) r.prompt.push_back(static_cast<TokenId>(rng() % V));
    for (int k = 0; k < i % 9; ++k) r.output.push_back(static_cast<TokenId>(rng() % V));
    r.eos = {static_cast<TokenId>(rng() % V)};
    SamplingParams& p = r.params;
    switch (i % 10) {
      case 0:
        p.temperature = 0.0f;
        break;  // plain argmax
      case 1:
        p.temperature = 0.0f, p.repetition_penalty = 1.4f;
        break;
      case 2:
        p.temperature = 0.0f, p.min_tokens = 5;
        break;
      case 3:
        p.temperature = 0.9f;
        break;
      case 4:
        p.temperature = 0.7f, p.min_p = 0.05f, p.presence_penalty = 0.8f;
        break;
      case 5:
        p.top_k = 40;
        break;
      case 6:
        p.top_p = 0.9f, p.frequency_penalty = 0.3f;
        break;
      case 7:
        p.top_k = 100, p.top_p = 0.8f, p.min_p = 0.02f;
        break;
      case 8:
        p.logprobs = 3, p.top_p = 0.95f;
        break;
      default:
        p.temperature = 1.2f, p.top_k = 5000, p.min_tokens = 3;
        break;
    }
    rows.push_back(r);
  }
  DeviceSampler sampler(V, 256);
  const Tally t = check_rows(sampler, rows, "mixed");
  EXPECT_EQ(t.rows, 256);
  for (int path : {cuda::kPathArgmax, cuda::kPathGreedy, cuda::kPathNoCut, cuda::kPathShared,
                   cuda::kPathGlobal, cuda::kPathFallback})
    EXPECT_GT(rows_on(t, path), 0) << "path " << path;
  expect_few_boundaries(t, "mixed");
}

// Vocabularies that do not split evenly over the warps, down to fewer tokens than a warp.
TEST(CudaSampling, OddAndTinyVocabularies) {
  LOOM_REQUIRE_GPU();
  for (int32_t V : {32001, 1000, 33, 7}) {
    std::vector<std::vector<float>> bases;
    bases.push_back(grid_logits(V, 900 + V, 2.0));
    bases.push_back(flat_logits(V, 901 + V));
    bases.push_back(peaked_logits(V, 902 + V, 4, 10.0));
    std::vector<TestRow> rows;
    for (int i = 0; i < 40; ++i) {
      TestRow r;
      r.logits = &bases[i % 3];
      r.seed = 4242 + i;
      r.step = i;
      r.prompt = {0, static_cast<TokenId>(V - 1)};
      r.output = {static_cast<TokenId>(i % V)};
      r.eos = {static_cast<TokenId>(V / 2)};
      SamplingParams& p = r.params;
      switch (i % 8) {
        case 0:
          p.temperature = 0.0f;
          break;
        case 1:
          p.temperature = 0.0f, p.repetition_penalty = 1.5f, p.min_tokens = 4;
          break;
        case 2:
          p.temperature = 0.8f;
          break;
        case 3:
          p.top_k = 3;
          break;
        case 4:
          p.top_p = 0.7f, p.presence_penalty = 0.5f;
          break;
        case 5:
          p.top_k = V - 1, p.top_p = 0.95f, p.min_p = 0.1f;
          break;
        case 6:
          p.logprobs = 2;
          break;
        default:
          p.top_k = 2, p.min_tokens = 3, p.temperature = 1.5f;
          break;
      }
      rows.push_back(r);
    }
    DeviceSampler sampler(V, 40);
    const std::string name = "vocab " + std::to_string(V);
    const Tally t = check_rows(sampler, rows, name);
    EXPECT_EQ(t.rows, 40) << name;
    expect_few_boundaries(t, name);
  }
}

TEST(CudaSampling, DegenerateRowsFallBackToTheRawArgmax) {
  LOOM_REQUIRE_GPU();
  const int32_t V = kSmolVocab;
  std::vector<std::vector<float>> bases;
  bases.push_back(std::vector<float>(V, -kInf));  // token 0
  bases.push_back(std::vector<float>(V, NAN));    // token 0
  bases.push_back(std::vector<float>(V, -kInf));  // only eos is finite, and it is masked
  bases.back()[321] = 1.5f;
  bases.push_back(std::vector<float>(V, -3e38f));  // finite; z = -inf at temperature 0.1
  bases.back()[4000] = -2.9e38f;
  std::vector<TestRow> rows;
  for (size_t b = 0; b < bases.size(); ++b) {
    for (float temperature : {0.0f, 0.1f, 1.0f}) {
      for (int32_t top_k : {0, 10}) {
        TestRow r;
        r.logits = &bases[b];
        r.params.temperature = temperature;
        r.params.top_k = top_k;
        r.params.min_tokens = 2;
        r.eos = {321};
        r.params.repetition_penalty = 1.1f;  // processors on: a device row
        r.prompt = {4000, 321};
        rows.push_back(r);
      }
    }
  }
  DeviceSampler sampler(V, static_cast<int32_t>(rows.size()));
  const DeviceRun run = run_device(sampler, rows);
  Tally t;
  for (size_t i = 0; i < rows.size(); ++i) {
    check_row(rows[i], run.out[i], run.cuts[i], run.after.data() + i * V, t,
              "degenerate row " + std::to_string(i));
    // Rows 0-17 and the temperature-0.1 rows of the last base have nothing to sample from;
    // the last base at temperature 0 or 1 has finite (penalized) logits and samples normally.
    const bool fallback = i < 18 || i == 20 || i == 21;
    EXPECT_EQ(run.cuts[i].path == cuda::kPathFallback, fallback) << "row " << i;
    if (fallback) {
      EXPECT_EQ(run.out[i].token, i < 12 ? 0 : i < 18 ? 321 : 4000) << "row " << i;
    }
  }
}

}  // namespace
}  // namespace loom::testing
