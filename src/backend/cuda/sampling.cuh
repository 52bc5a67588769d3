// Sampling on the GPU so only token ids cross PCIe: a plain argmax, and the full pipeline of
// sample_token (sample/sampler.h) for rows packed by SamplePacker (sample_pack.h), driven by
// DeviceSampler (device_sampler.cuh).
//
// Greedy rows without penalties or masking go to the plain argmax kernel. Per other row, one
// CTA of 512 threads:
//   1. processors: each PenaltyEntry's logit is rewritten in place with the very float
//      operations of sample_token (no fused multiply-adds), so greedy rows match it exactly;
//   2. greedy: argmax, ties to the lowest id. Otherwise z = l * (1 / temperature) (NaN -> -inf,
//      +inf -> FLT_MAX), max z, w = exp(z - max z);
//   3. without top-k / top-p: one draw over the tokens with w >= min_w in id order, as
//      sample_token does: the same token except when u falls within rounding of a boundary;
//   4. with top-k / top-p: w is written over the row; one pass counts the tokens and their mass
//      above a few fixed thresholds, and when the cut's candidates (w >= the largest threshold
//      that holds the top-k count or the top-p mass) number at most kSampleCandidates they are
//      gathered, in id order, into shared memory. The cut, in the order (w descending, ties to
//      the lower id) that sample_token defines, is then found by bisection over the float bits
//      of w (three probes per pass: at most 16 passes per cut, over the candidates, or over
//      the row when they did not fit), and the r-th tied token by a scan. The kept set equals
//      sample_token's up to rounding (at the top-p boundary, or between weights within an ulp
//      of each other, which exp may order differently); the draw then walks it in id
//      order, where sample_token walks the order its partial selection leaves, so the two
//      agree in distribution, not token for token.
//   5. every token masked (or every z -inf): the argmax of the raw logits, else token 0.
// Nothing sorts the vocabulary. Passes over a row: one for greedy, two for a temperature-only
// draw, three for top-k / top-p when the candidates fit in shared memory, and at most ~37 when
// they do not (top-k and top-p both, on a flat distribution).
#pragma once

#include "backend/cuda/cuda_common.cuh"
#include "backend/cuda/sample_pack.h"

namespace loom::cuda {

// ids[r] = argmax over logits[r][0..vocab) (lowest index on ties); logits f32 [rows][vocab].
void launch_argmax(const float* logits, int32_t num_rows, int32_t vocab, int32_t* ids,
                   cudaStream_t stream);

// Candidates held in shared memory per device row (8 bytes each).
inline constexpr int32_t kSampleCandidates = 8192;

// One step of the GPU sampler. All pointers are device memory.
struct SampleLaunch {
  float* logits = nullptr;  // [rows][vocab] f32; device rows are rewritten (processors, weights)
  int32_t vocab = 0;
  const DeviceSampleParams* params = nullptr;  // [rows]
  PenaltyEntry* entries = nullptr;             // the kernel records each entry's raw logit
  const int32_t* argmax_rows = nullptr;        // [num_argmax] row indices
  int32_t num_argmax = 0;
  const int32_t* device_rows = nullptr;  // [num_device] row indices
  int32_t num_device = 0;
  int32_t* ids = nullptr;     // [rows]: ids[r] written for every argmax and device row
  SampleCut* cuts = nullptr;  // [rows] or null: how each row was sampled (tests)
};

// Once per device before the first launch_sample (sets the kernel's shared-memory limit).
void prepare_sample_kernels();

// At most two launches (argmax rows, device rows), asynchronous on `stream`.
void launch_sample(const SampleLaunch& launch, cudaStream_t stream);

// out[i] = sample_uniform(seeds[i], steps[i]) computed on the device (tests compare the bits).
void launch_sample_uniform(const uint64_t* seeds, const int32_t* steps, int32_t n, double* out,
                           cudaStream_t stream);

}  // namespace loom::cuda
