// Sampling of a step's logits rows on the GPU (sampling.cuh), so that only token ids cross PCIe
// for ordinary requests. Same semantics as loom::sample_token (sample/sampler.h) for every row:
//   - greedy rows and penalized / min_tokens rows pick exactly sample_token's token;
//   - temperature-only draws (with min-p) walk the same id order with the same u, so they pick
//     its token except when u falls within float rounding of a boundary between two tokens;
//   - top-k / top-p rows keep the same set (up to rounding at the top-p boundary) and draw from
//     it with the same probabilities, walking it in id order (not sample_token's order), so
//     they agree in distribution rather than token for token;
//   - rows that ask for logprobs are sampled by sample_token itself on a host copy of the row.
//
// One call: pack the rows on the host (SamplePacker; only penalized rows walk their history),
// one upload of one pinned staging buffer, at most two kernel launches, one download of the ids
// (plus one row copy per logprobs row), one stream synchronisation.
#pragma once

#include <span>
#include <vector>

#include "backend/cuda/cuda_common.cuh"
#include "backend/cuda/sample_pack.h"
#include "sample/sampler.h"

namespace loom::cuda {

class DeviceSampler {
 public:
  // Allocates the device and pinned buffers for max_rows rows (the penalty list and the logprobs
  // rows' copies grow on demand; a growth synchronises the device once). Call on the device
  // that holds the logits.
  DeviceSampler(int32_t vocab_size, int32_t max_rows);
  ~DeviceSampler();
  DeviceSampler(const DeviceSampler&) = delete;
  DeviceSampler& operator=(const DeviceSampler&) = delete;

  // logits: device pointer, [rows.size()][vocab] f32, ordered on `stream`; rows that are not
  // sampled on the host may be modified in place. rows[i] is the SampleInput of row i (its
  // .logits is ignored). Fills out[i].token for every row; rows whose params->logprobs >= 0 are
  // sampled on the host instead: their logits row is copied back and loom::sample_token runs on
  // it (which also fills out[i].logprobs); the other rows get empty logprobs. Synchronises the
  // stream before returning.
  void sample(float* logits, std::span<const SampleInput> rows, std::span<SampleOutput> out,
              cudaStream_t stream);

  // Tests: when on, every call first poisons the device ids (so a row the kernels miss fails)
  // and records how each row was sampled (cuts()[i], row i of the last call).
  void set_debug(bool on) { debug_ = on; }
  const std::vector<SampleCut>& cuts() const { return cuts_; }

  int32_t vocab_size() const { return vocab_; }
  int32_t max_rows() const { return max_rows_; }

 private:
  void ensure_stage(size_t bytes);
  void ensure_host_rows(size_t rows);

  int32_t vocab_;
  int32_t max_rows_;
  SamplePacker packer_;
  SamplerScratch scratch_;  // logprobs rows, on the host

  // Staging: params, argmax rows, device rows, entries (16-byte aligned sections).
  uint8_t* stage_host_ = nullptr;  // pinned
  uint8_t* stage_dev_ = nullptr;
  size_t stage_capacity_ = 0;
  int32_t* ids_dev_ = nullptr;     // [max_rows]
  int32_t* ids_host_ = nullptr;    // pinned [max_rows]
  SampleCut* cuts_dev_ = nullptr;  // [max_rows]
  float* rows_host_ = nullptr;     // pinned [rows_capacity_][vocab]: logprobs rows
  size_t rows_capacity_ = 0;

  bool debug_ = false;
  std::vector<SampleCut> cuts_;
};

}  // namespace loom::cuda
