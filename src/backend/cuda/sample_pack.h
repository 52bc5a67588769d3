// The per-step inputs of the GPU sampler (sampling.cu), packed on the host from the rows'
// SampleInputs: one parameter record per row and, only for rows that need penalties or
// min_tokens masking, a compressed list of the tokens whose logits change. Free of CUDA headers,
// so the packing is tested on the CPU (tests/unit/sample/test_sample_pack.cpp).
//
// Rows fall into three kinds:
//   host    params->logprobs >= 0: sampled by loom::sample_token on a host copy of the row;
//   argmax  greedy with no penalty or masking in effect: a plain argmax of the raw row;
//   device  everything else: processors, then greedy or temperature / top-k / top-p / min-p.
// Only device rows walk their history here (prompt + output for repetition_penalty, output for
// presence / frequency, eos + stop ids under min_tokens); every other row costs O(1).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "sample/sampler.h"

namespace loom::cuda {

enum SampleRowKind : int32_t { kRowOnHost = 0, kRowArgmax = 1, kRowOnDevice = 2 };

// What happens to one token's logit before sampling, in the order of sampler.h's pipeline.
enum PenaltyFlag : uint32_t {
  kPenaltyRepeat = 1,             // in prompt or output: l > 0 ? l / r : l * r
  kPenaltyPresenceFrequency = 2,  // in output: l -= count * frequency; l -= presence
  kPenaltyMask = 4,               // eos or stop id under min_tokens: l = -inf
};

// One row's parameters as the kernel reads them (56 bytes, 8-byte aligned).
struct DeviceSampleParams {
  uint64_t seed = 0;
  int32_t step = 0;
  int32_t kind = kRowOnHost;     // SampleRowKind
  int32_t greedy = 0;            // 1: argmax after the processors (device rows)
  int32_t top_k = 0;             // in (0, vocab), or 0 when off
  float inv_temperature = 0.0f;  // 1.0f / temperature, as sample_token computes it
  float top_p = 1.0f;            // < 1: on
  float min_w = 0.0f;            // min_p in [FLT_TRUE_MIN, 1]: weights below it are never drawn
  float repetition_penalty = 1.0f;
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  int32_t entry_begin = 0;  // this row's PenaltyEntry range [entry_begin, entry_end)
  int32_t entry_end = 0;
};
static_assert(sizeof(DeviceSampleParams) == 56);

// One distinct token of a device row whose logit a processor changes (16 bytes).
struct PenaltyEntry {
  int32_t token = 0;  // in [0, vocab)
  int32_t count = 0;  // occurrences in the output (for the frequency penalty)
  uint32_t flags = 0;
  float raw = 0.0f;  // written by the kernel: the logit before the processors
};
static_assert(sizeof(PenaltyEntry) == 16);

// Debug record of how a device row was sampled (tests read it). Kept tokens: weight w (written
// over the row's logits on paths kCutShared and kCutGlobal) with w > threshold, or w == threshold
// and id <= tie_last; of those, the draw uses the ones with w >= min_w.
enum SamplePath : int32_t {
  kPathArgmax = 0,    // argmax row
  kPathGreedy = 1,    // greedy after the processors
  kPathNoCut = 2,     // draw over every token with w >= min_w (no top-k / top-p cut)
  kPathShared = 3,    // top-k / top-p cut found among candidates held in shared memory
  kPathGlobal = 4,    // top-k / top-p cut found by bisection over the whole row
  kPathFallback = 5,  // every token masked: argmax of the raw logits
};
struct SampleCut {
  float threshold = 0.0f;
  int32_t tie_last = -1;
  int32_t path = kPathArgmax;
  int32_t num_candidates = 0;  // tokens held for the cut (kPathShared / kPathGlobal)
};

// Packs a step's rows; reusable, so that the hot path does not allocate once the vectors have
// grown. Contents are valid until the next pack().
class SamplePacker {
 public:
  explicit SamplePacker(int32_t vocab_size);

  // Fills the members below from rows (their .logits is not read). Aborts (LOOM_CHECK) when a
  // row's params is null or its vocab_size differs from the packer's.
  void pack(std::span<const SampleInput> rows);

  std::vector<DeviceSampleParams> params;  // [rows]
  std::vector<PenaltyEntry> entries;       // device rows' entries, row after row
  std::vector<int32_t> argmax_rows;        // row indices of each kind, ascending
  std::vector<int32_t> device_rows;
  std::vector<int32_t> host_rows;

 private:
  PenaltyEntry* entry_for(TokenId token, size_t row_begin);

  int32_t vocab_size_;
  std::vector<int32_t> slot_;  // [vocab] index + 1 into entries for the row being packed, or 0
};

}  // namespace loom::cuda
