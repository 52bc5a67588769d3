#include <math_constants.h>

#include <cfloat>
#include <climits>

#include "backend/cuda/sampling.cuh"
#include "sample/uniform.h"

namespace loom::cuda {
namespace {

constexpr int kThreads = 512;  // both kernels: one CTA per row
constexpr int kWarps = kThreads / 32;
constexpr unsigned kFull = 0xffffffffu;
constexpr float kNegInf = -__builtin_huge_valf();

// Thresholds on w = exp(z - max z) for the candidate pass, largest first; the last one keeps
// every token with a nonzero weight, so it always holds the cut.
constexpr int kNumThresholds = 6;
__device__ __forceinline__ float threshold(int j) {
  switch (j) {
    case 0:
      return 1e-1f;
    case 1:
      return 1e-2f;
    case 2:
      return 1e-3f;
    case 3:
      return 1e-4f;
    case 4:
      return 1e-6f;
    default:
      return FLT_TRUE_MIN;
  }
}

constexpr int kProbes = 3;                   // bisection probes per pass: 2 bits per pass
constexpr uint32_t kAboveOne = 0x3F800001u;  // bits of the float after 1.0f: no weight reaches it
constexpr int32_t kWalkMax = 256;            // find_cumulative: elements one warp walks at most
constexpr double kTopPSlack = 1e-6;          // as sample_token
constexpr size_t kCandidateBytes = size_t{kSampleCandidates} * (sizeof(float) + sizeof(int32_t));

// Block-wide scratch of the sampling kernel (~2 KiB).
struct SampleShared {
  double red[2 * kNumThresholds][kWarps];  // block_sum: per-warp partial sums
  double wsum[kWarps];                     // find_cumulative: per-piece sums
  float redf[kWarps];                      // block_max / block_argmax
  int32_t redi[kWarps];
  int32_t found;
};

// Larger value wins, ties to the lower index; NaN never wins (every comparison is false).
__device__ __forceinline__ void better(float& v, int32_t& i, float ov, int32_t oi) {
  if (ov > v || (ov == v && oi < i)) v = ov, i = oi;
}

// Every thread gets (value, index) of the row's largest value, ties to the lowest index, NaN
// never chosen: value -inf when every entry is -inf or NaN (index n when all are NaN).
__device__ void block_argmax(const float* row, int32_t n, float* s_v, int32_t* s_i, float& v,
                             int32_t& idx) {
  v = kNegInf;
  idx = n;
  for (int32_t i = threadIdx.x; i < n; i += kThreads) better(v, idx, row[i], i);
  for (int o = 16; o > 0; o >>= 1)
    better(v, idx, __shfl_xor_sync(kFull, v, o), __shfl_xor_sync(kFull, idx, o));
  if (threadIdx.x % 32 == 0) s_v[threadIdx.x / 32] = v, s_i[threadIdx.x / 32] = idx;
  __syncthreads();
  v = s_v[0];
  idx = s_i[0];
  for (int w = 1; w < kWarps; ++w) better(v, idx, s_v[w], s_i[w]);
  __syncthreads();  // s_v / s_i are reused by the next call
}

// Block-wide max of a value that is never NaN; every thread gets it.
__device__ float block_max(float v, SampleShared& sh) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(kFull, v, o));
  if (threadIdx.x % 32 == 0) sh.redf[threadIdx.x / 32] = v;
  __syncthreads();
  float m = sh.redf[0];
  for (int w = 1; w < kWarps; ++w) m = fmaxf(m, sh.redf[w]);
  __syncthreads();
  return m;
}

// Block-wide sums of N doubles; every thread gets the same bits (one fixed order). sh.red[k][w]
// keeps warp w's partial sum of value k until the next block_sum.
template <int N>
__device__ void block_sum(double (&v)[N], SampleShared& sh) {
  static_assert(N <= 2 * kNumThresholds);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
#pragma unroll
  for (int k = 0; k < N; ++k) {
    double x = v[k];
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(kFull, x, o);
    if (lane == 0) sh.red[k][warp] = x;
  }
  __syncthreads();
#pragma unroll
  for (int k = 0; k < N; ++k) {
    double s = 0.0;
    for (int w = 0; w < kWarps; ++w) s += sh.red[k][w];
    v[k] = s;
  }
  __syncthreads();
}

struct Range {
  int32_t begin, end;
};

// Warp `warp`'s piece of [begin, end): kWarps consecutive pieces, each a multiple of 32 long,
// so every pass reads 128 contiguous bytes per warp step and the pieces follow id order.
__device__ __forceinline__ Range warp_piece(int32_t begin, int32_t end, int warp) {
  const int32_t piece = (end - begin + kWarps * 32 - 1) / (kWarps * 32) * 32;
  const int32_t b = min(end, begin + warp * piece);
  return {b, min(end, b + piece)};
}

// z = l / temperature as sample_token computes it: NaN -> -inf, +inf -> FLT_MAX.
__device__ __forceinline__ float scaled_logit(float l, float inv_temperature) {
  const float z = __fmul_rn(l, inv_temperature);
  if (isnan(z)) return kNegInf;
  return z > FLT_MAX ? FLT_MAX : z;
}

__device__ __forceinline__ float weight_of(float l, float inv_temperature, float max_z) {
  return expf(__fsub_rn(scaled_logit(l, inv_temperature), max_z));
}

// Steps 1-3 of sampler.h for one token, with the same float operations (the _rn intrinsics keep
// the compiler from fusing a multiply and a subtraction into one rounding).
__device__ __forceinline__ float processed_logit(float l, const PenaltyEntry& e,
                                                 const DeviceSampleParams& p) {
  if (e.flags & kPenaltyRepeat) {
    l = l > 0.0f ? __fdiv_rn(l, p.repetition_penalty) : __fmul_rn(l, p.repetition_penalty);
  }
  if (e.flags & kPenaltyPresenceFrequency) {
    l = __fsub_rn(l, __fmul_rn(static_cast<float>(e.count), p.frequency_penalty));
    l = __fsub_rn(l, p.presence_penalty);
  }
  if (e.flags & kPenaltyMask) l = kNegInf;
  return l;
}

// The first index i of [0, n) where the running sum f(0) + ... + f(i), in index order, exceeds
// u * total + offset (total = the sum of f over [0, n); f >= 0). When rounding leaves that out
// of reach, the last index with f > 0; -1 when total is 0. Sums are in double. Each level splits
// the range into kWarps pieces (one pass over it, one block step) and keeps the piece where the
// target falls, until one warp walks at most kWalkMax elements with a warp-wide scan. Every
// thread gets the result.
template <class F>
__device__ int32_t find_cumulative(int32_t n, const F& f, double u, double offset,
                                   SampleShared& sh) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  int32_t begin = 0, end = n;
  double before = 0.0;  // the sum of f over [0, begin), as the levels so far added it
  double target = 0.0;
  bool top = true;
  for (;;) {
    const Range r = warp_piece(begin, end, warp);
    double acc = 0.0;
    for (int32_t i = r.begin + lane; i < r.end; i += 32) acc += f(i);
    for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(kFull, acc, o);
    if (lane == 0) sh.wsum[warp] = acc;
    __syncthreads();
    if (top) {
      double total = 0.0;
      for (int w = 0; w < kWarps; ++w) total += sh.wsum[w];
      if (!(total > 0.0)) {
        __syncthreads();
        return -1;
      }
      target = u * total + offset;
      top = false;
    }
    int sel = -1;
    double cum = before;
    for (int w = 0; w < kWarps; ++w) {
      if (cum + sh.wsum[w] > target) {
        sel = w;
        break;
      }
      cum += sh.wsum[w];
    }
    if (sel < 0) {  // rounding left the target at the very top: the last piece with mass
      target = CUDART_INF;
      for (int w = 0; w < kWarps; ++w) {
        if (sh.wsum[w] > 0.0) sel = w;
      }
      cum = before;
      for (int w = 0; w < sel; ++w) cum += sh.wsum[w];
    }
    // sel >= 0: this range holds an f > 0 (the top level has total > 0; a deeper one is a piece
    // the level above chose for its positive sum), so one of its pieces has a positive sum.
    const Range next = warp_piece(begin, end, sel);
    __syncthreads();  // every thread has read wsum before the next level rewrites it
    begin = next.begin;
    end = next.end;
    before = cum;
    if (end - begin <= kWalkMax) break;
  }
  if (warp == 0) {
    double cum = before;
    int32_t found = -1, last = -1;
    for (int32_t base = begin; base < end; base += 32) {
      const int32_t i = base + lane;
      const double v = i < end ? f(i) : 0.0;
      double incl = v;  // inclusive scan over the warp
      for (int o = 1; o < 32; o <<= 1) {
        const double y = __shfl_up_sync(kFull, incl, o);
        if (lane >= o) incl += y;
      }
      const unsigned crossed = __ballot_sync(kFull, v > 0.0 && cum + incl > target);
      const unsigned positive = __ballot_sync(kFull, v > 0.0);
      if (positive != 0) last = base + 31 - __clz(positive);
      if (crossed != 0) {
        found = base + __ffs(crossed) - 1;
        break;
      }
      cum += __shfl_sync(kFull, incl, 31);
    }
    if (lane == 0) sh.found = found >= 0 ? found : last;
  }
  __syncthreads();
  return sh.found;  // rewritten only after the next call's first __syncthreads
}

// The tokens to cut from: w written over the row, or candidates gathered in shared memory (in
// id order). weight(i) and id(i) for i in [0, n).
struct RowWeights {
  const float* w;
  int32_t n;
  __device__ float weight(int32_t i) const { return w[i]; }
  __device__ int32_t id(int32_t i) const { return i; }
};
struct Candidates {
  const float* w;
  const int32_t* ids;
  int32_t n;
  __device__ float weight(int32_t i) const { return w[i]; }
  __device__ int32_t id(int32_t i) const { return ids[i]; }
};

// A prefix of the order (w descending, ties to the lower id): w > t, or w == t and id <= tie_last.
struct Cut {
  float t;
  int32_t tie_last;
  __device__ bool keep(float w, int32_t id) const { return w > t || (w == t && id <= tie_last); }
};

// For each probe p[j]: out[j] = count and out[N + j] = mass (sum of w) of the tokens that `base`
// keeps with w >= p[j]. The same tokens in the same order give the same bits, so the sums are
// monotone in the probe.
template <int N, class Src>
__device__ void probe_sums(const Src& src, const Cut& base, const float (&probe)[N],
                           double (&out)[2 * N], SampleShared& sh) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
#pragma unroll
  for (int k = 0; k < 2 * N; ++k) out[k] = 0.0;
  const Range r = warp_piece(0, src.n, warp);
  for (int32_t i = r.begin + lane; i < r.end; i += 32) {
    const float w = src.weight(i);
    if (!base.keep(w, src.id(i))) continue;
#pragma unroll
    for (int j = 0; j < N; ++j) {
      if (w >= probe[j]) {
        out[j] += 1.0;
        out[N + j] += w;
      }
    }
  }
  block_sum(out, sh);
}

// The shortest prefix of the order, among the tokens `base` keeps, whose count (by_mass false)
// or mass (true) reaches `target` - at least one token. Bisection over the float bits of the
// cut weight t (w >= 0, so the bits order like the values): the largest t whose tokens with
// w >= t reach the target; then the r-th token with w == t in id order completes the prefix.
// count_lo / mass_lo: the sums at bits lo, from probe_sums over the same src and base.
template <class Src>
__device__ Cut find_cut(const Src& src, const Cut& base, bool by_mass, double target, uint32_t lo,
                        double count_lo, double mass_lo, SampleShared& sh) {
  auto reaches = [&](double count, double mass) { return (by_mass ? mass : count) >= target; };
  // Every tie at t kept: base's own tie limit applies when t is base's threshold.
  auto all_ties = [&](float t) { return Cut{t, t == base.t ? base.tie_last : INT_MAX}; };
  if (!reaches(count_lo, mass_lo)) return all_ties(__uint_as_float(lo));  // rounding only
  uint32_t hi = kAboveOne;  // never reaches (for a target > 0)
  double count_hi = 0.0, mass_hi = 0.0;
  while (hi - lo > 1) {
    const uint32_t span = hi - lo;
    uint32_t bits[kProbes];
    float probe[kProbes];
#pragma unroll
    for (int j = 0; j < kProbes; ++j) {
      const uint32_t b =
          lo + static_cast<uint32_t>(static_cast<uint64_t>(span) * (j + 1) / (kProbes + 1));
      bits[j] = b > lo ? b : lo + 1;  // in (lo, hi), ascending
      probe[j] = __uint_as_float(bits[j]);
    }
    double s[2 * kProbes];
    probe_sums(src, base, probe, s, sh);
    bool done = false;
#pragma unroll
    for (int j = 0; j < kProbes; ++j) {
      if (done) continue;
      if (reaches(s[j], s[kProbes + j])) {
        lo = bits[j], count_lo = s[j], mass_lo = s[kProbes + j];
      } else {
        hi = bits[j], count_hi = s[j], mass_hi = s[kProbes + j];
        done = true;
      }
    }
  }
  const float t = __uint_as_float(lo);
  const double ties = count_lo - count_hi;  // kept tokens with w == t
  // How many of the ties (in id order) the prefix needs.
  const double r = by_mass ? ceil((target - mass_hi) / static_cast<double>(t)) : target - count_hi;
  if (ties < 1.0 || !(r < ties)) return all_ties(t);
  const double nth = r < 1.0 ? 1.0 : r;
  const int32_t i = find_cumulative(
      src.n,
      [&](int32_t k) {
        const float w = src.weight(k);
        return w == t && base.keep(w, src.id(k)) ? 1.0 : 0.0;
      },
      0.0, nth - 1.0, sh);
  if (i < 0) return all_ties(t);  // not reached: the counts above say ties >= nth
  return Cut{t, src.id(i)};
}

// Top-k, then top-p over what top-k kept, then min-p and the draw in id order. t_lo: a
// threshold that holds the cut (every token of the top-k / top-p set has w >= t_lo).
template <class Src>
__device__ int32_t cut_and_draw(const Src& src, const DeviceSampleParams& p, bool top_k, bool top_p,
                                double positive_mass, float t_lo, double u, SampleShared& sh,
                                SampleCut& rec) {
  Cut cut{0.0f, -1};  // every token with w > 0
  const uint32_t lo = __float_as_uint(t_lo);
  const float at_lo[1] = {t_lo};
  double s[2];
  if (top_k) {
    probe_sums(src, cut, at_lo, s, sh);
    cut = find_cut(src, cut, /*by_mass=*/false, static_cast<double>(p.top_k), lo, s[0], s[1], sh);
  }
  if (top_p) {
    probe_sums(src, cut, at_lo, s, sh);
    // Top-p renormalizes over what top-k kept (s[1]: every kept token has w >= t_lo), or over
    // the whole row.
    const double mass = top_k ? s[1] : positive_mass;
    const double need = (static_cast<double>(p.top_p) - kTopPSlack) * mass;
    cut = find_cut(src, cut, /*by_mass=*/true, need, lo, s[0], s[1], sh);
  }
  rec.threshold = cut.t;
  rec.tie_last = cut.tie_last;
  const float min_w = p.min_w;
  const int32_t i = find_cumulative(
      src.n,
      [&](int32_t k) {
        const float w = src.weight(k);
        return cut.keep(w, src.id(k)) && w >= min_w ? static_cast<double>(w) : 0.0;
      },
      u, 0.0, sh);
  return i < 0 ? -1 : src.id(i);
}

// Steps 4-5 of sampler.h for a non-greedy row (after the processors). Returns -1 when every
// scaled logit is -inf. cand_w / cand_id: kSampleCandidates entries of shared memory.
__device__ int32_t sample_row(float* row, int32_t vocab, const DeviceSampleParams& p, float* cand_w,
                              int32_t* cand_id, SampleShared& sh, SampleCut& rec) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const Range r = warp_piece(0, vocab, warp);
  const float inv_t = p.inv_temperature;
  float m = kNegInf;
  for (int32_t i = r.begin + lane; i < r.end; i += 32) m = fmaxf(m, scaled_logit(row[i], inv_t));
  m = block_max(m, sh);
  if (!(m > kNegInf)) return -1;
  const double u = sample_uniform_hd(p.seed, p.step);
  const float min_w = p.min_w;
  const bool top_p = p.top_p < 1.0f;
  rec = SampleCut{0.0f, -1, kPathNoCut, 0};
  if (p.top_k == 0 && !top_p) {
    // One draw over the row in id order, weights computed on the fly (nothing is written).
    return find_cumulative(
        vocab,
        [&](int32_t i) {
          const float w = weight_of(row[i], inv_t, m);
          return w >= min_w ? static_cast<double>(w) : 0.0;
        },
        u, 0.0, sh);
  }

  // w over the row, and the count and mass of the tokens at or above each threshold.
  double acc[2 * kNumThresholds];
#pragma unroll
  for (int j = 0; j < 2 * kNumThresholds; ++j) acc[j] = 0.0;
  for (int32_t i = r.begin + lane; i < r.end; i += 32) {
    const float w = weight_of(row[i], inv_t, m);
    row[i] = w;
#pragma unroll
    for (int j = 0; j < kNumThresholds; ++j) {
      if (w >= threshold(j)) {
        acc[j] += 1.0;
        acc[kNumThresholds + j] += w;
      }
    }
  }
  block_sum(acc, sh);  // sh.red[j][w]: warp w's count at threshold j, read by the gather below
  const double positive_mass = acc[2 * kNumThresholds - 1];
  // Top-k keeps every token when no more than k have a nonzero weight.
  const bool top_k = p.top_k > 0 && acc[kNumThresholds - 1] > static_cast<double>(p.top_k);
  if (!top_k && !top_p) {
    return find_cumulative(
        vocab,
        [&](int32_t i) {
          const float w = row[i];
          return w >= min_w ? static_cast<double>(w) : 0.0;
        },
        u, 0.0, sh);
  }
  // The largest threshold whose tokens hold the top-k count, or the top-p mass.
  const double need = (static_cast<double>(p.top_p) - kTopPSlack) * positive_mass;
  int j_sel = kNumThresholds - 1;
  double num = acc[kNumThresholds - 1];
#pragma unroll
  for (int j = kNumThresholds - 1; j >= 0; --j) {
    if (top_k ? acc[j] >= static_cast<double>(p.top_k) : acc[kNumThresholds + j] >= need) {
      j_sel = j;
      num = acc[j];
    }
  }
  const float t_lo = threshold(j_sel);
  rec.num_candidates = static_cast<int32_t>(num);
  if (num <= static_cast<double>(kSampleCandidates)) {
    // Gather the tokens with w >= t_lo in id order: each warp writes its piece after the
    // candidates of the warps before it (the counts pass 2 left in sh.red).
    int32_t at = 0;
    for (int w = 0; w < warp; ++w) at += static_cast<int32_t>(sh.red[j_sel][w]);
    for (int32_t base = r.begin; base < r.end; base += 32) {
      const int32_t i = base + lane;
      const float w = i < r.end ? row[i] : 0.0f;
      const bool take = i < r.end && w >= t_lo;
      const unsigned ballot = __ballot_sync(kFull, take);
      if (take) {
        const int32_t k = at + __popc(ballot & ((1u << lane) - 1u));
        cand_w[k] = w;
        cand_id[k] = i;
      }
      at += __popc(ballot);
    }
    __syncthreads();
    rec.path = kPathShared;
    return cut_and_draw(Candidates{cand_w, cand_id, static_cast<int32_t>(num)}, p, top_k, top_p,
                        positive_mass, t_lo, u, sh, rec);
  }
  rec.path = kPathGlobal;
  return cut_and_draw(RowWeights{row, vocab}, p, top_k, top_p, positive_mass, t_lo, u, sh, rec);
}

__global__ void __launch_bounds__(kThreads)
    argmax_rows_kernel(const float* __restrict__ logits, int32_t vocab,
                       const int32_t* __restrict__ rows, int32_t* __restrict__ ids,
                       SampleCut* __restrict__ cuts) {
  __shared__ float s_v[kWarps];
  __shared__ int32_t s_i[kWarps];
  const int32_t r = rows == nullptr ? static_cast<int32_t>(blockIdx.x) : rows[blockIdx.x];
  float v;
  int32_t idx;
  block_argmax(logits + static_cast<int64_t>(r) * vocab, vocab, s_v, s_i, v, idx);
  if (threadIdx.x == 0) {
    ids[r] = v > kNegInf ? idx : 0;  // every logit -inf or NaN: token 0, as sample_token
    if (cuts != nullptr) cuts[r] = SampleCut{0.0f, -1, kPathArgmax, 0};
  }
}

// One CTA per device row. Dynamic shared memory: kSampleCandidates weights, then their ids.
__global__ void __launch_bounds__(kThreads, 2)
    sample_rows_kernel(float* logits, int32_t vocab, const DeviceSampleParams* __restrict__ params,
                       PenaltyEntry* entries, const int32_t* __restrict__ rows,
                       int32_t* __restrict__ ids, SampleCut* __restrict__ cuts) {
  extern __shared__ float4 sample_smem[];
  __shared__ SampleShared sh;
  float* cand_w = reinterpret_cast<float*>(sample_smem);
  int32_t* cand_id = reinterpret_cast<int32_t*>(cand_w + kSampleCandidates);
  const int32_t r = rows[blockIdx.x];
  const DeviceSampleParams p = params[r];
  float* row = logits + static_cast<int64_t>(r) * vocab;

  // Steps 1-3: the packer made the entries distinct, so each logit has one writer.
  for (int32_t e = p.entry_begin + threadIdx.x; e < p.entry_end; e += kThreads) {
    PenaltyEntry& en = entries[e];
    const float raw = row[en.token];
    en.raw = raw;
    row[en.token] = processed_logit(raw, en, p);
  }
  __syncthreads();

  SampleCut rec{0.0f, -1, kPathGreedy, 0};
  int32_t token;
  if (p.greedy) {
    float v;
    int32_t idx;
    block_argmax(row, vocab, sh.redf, sh.redi, v, idx);
    token = v > kNegInf ? idx : -1;
  } else {
    token = sample_row(row, vocab, p, cand_w, cand_id, sh, rec);
  }
  if (token < 0) {
    // Every token masked: the argmax of the raw logits. The row still holds logits here (w is
    // written only once max z is finite, and then a token is always drawn); put the entries'
    // raw values back.
    for (int32_t e = p.entry_begin + threadIdx.x; e < p.entry_end; e += kThreads)
      row[entries[e].token] = entries[e].raw;
    __syncthreads();
    float v;
    int32_t idx;
    block_argmax(row, vocab, sh.redf, sh.redi, v, idx);
    token = v > kNegInf ? idx : 0;
    rec = SampleCut{0.0f, -1, kPathFallback, 0};
  }
  if (threadIdx.x == 0) {
    ids[r] = token;
    if (cuts != nullptr) cuts[r] = rec;
  }
}

__global__ void uniform_kernel(const uint64_t* __restrict__ seeds,
                               const int32_t* __restrict__ steps, int32_t n,
                               double* __restrict__ out) {
  const int32_t i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = sample_uniform_hd(seeds[i], steps[i]);
}

}  // namespace

void launch_argmax(const float* logits, int32_t num_rows, int32_t vocab, int32_t* ids,
                   cudaStream_t stream) {
  if (num_rows == 0) return;
  argmax_rows_kernel<<<num_rows, kThreads, 0, stream>>>(logits, vocab, nullptr, ids, nullptr);
  LOOM_CUDA_CHECK_LAUNCH();
}

void prepare_sample_kernels() {
  LOOM_CUDA_CHECK(cudaFuncSetAttribute(sample_rows_kernel,
                                       cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       static_cast<int>(kCandidateBytes)));
}

void launch_sample(const SampleLaunch& a, cudaStream_t stream) {
  LOOM_CHECK(a.vocab > 0, "launch_sample: vocab %d", a.vocab);
  if (a.num_argmax > 0) {
    argmax_rows_kernel<<<a.num_argmax, kThreads, 0, stream>>>(a.logits, a.vocab, a.argmax_rows,
                                                              a.ids, a.cuts);
    LOOM_CUDA_CHECK_LAUNCH();
  }
  if (a.num_device > 0) {
    sample_rows_kernel<<<a.num_device, kThreads, kCandidateBytes, stream>>>(
        a.logits, a.vocab, a.params, a.entries, a.device_rows, a.ids, a.cuts);
    LOOM_CUDA_CHECK_LAUNCH();
  }
}

void launch_sample_uniform(const uint64_t* seeds, const int32_t* steps, int32_t n, double* out,
                           cudaStream_t stream) {
  if (n == 0) return;
  uniform_kernel<<<ceil_div(n, 256), 256, 0, stream>>>(seeds, steps, n, out);
  LOOM_CUDA_CHECK_LAUNCH();
}

}  // namespace loom::cuda
