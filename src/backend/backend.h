// The one interface between the engine and a device. A backend owns the weights on its device,
// the KV-cache pool (device blocks) and the host swap pool; the block *bookkeeping* lives in kv/.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "backend/forward_batch.h"
#include "core/step.h"
#include "sample/sampler.h"

namespace loom {

struct KvPoolInfo {
  int32_t block_size = 16;        // tokens per block
  int32_t num_device_blocks = 0;  // blocks in the device pool
  int32_t num_host_blocks = 0;    // blocks in the host swap pool
  size_t bytes_per_block = 0;     // all layers, K and V
  std::string dtype;              // "f16", "int8", ...
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  virtual int32_t vocab_size() const = 0;
  virtual KvPoolInfo kv_pool() const = 0;

  // Runs the model over `batch`, writes K/V of every new token into its slot, and returns the
  // logits of the rows in batch.logits_rows into `logits` ([R][vocab_size] floats, row-major).
  virtual void forward(const ForwardBatch& batch, float* logits) = 0;

  // Runs the forward and samples on the device, so that only token ids come back: out[i] gets
  // the token of row batch.logits_rows[i], sampled as sample_token would from rows[i] (whose
  // .logits is ignored). Returns false, doing nothing, when the backend samples on the host (the
  // default): the caller then uses forward() and sample_token.
  virtual bool forward_sample(const ForwardBatch& /*batch*/, std::span<const SampleInput> /*rows*/,
                              std::span<SampleOutput> /*out*/) {
    return false;
  }

  // forward_sample in two halves, so that the caller can plan the next step while the device
  // runs this one. launch_sample enqueues the forward and the sampling of `batch` and returns at
  // once (batch and rows are consumed before it returns; rows that the backend samples on the
  // host, if any, are read again by finish_sample and must stay valid until then).
  // finish_sample waits for the oldest launched step and writes its tokens into `out` (one per
  // row of that launch). Returns false, doing nothing, when the backend samples on the host
  // (the caller then uses forward() and sample_token).
  // With supports_overlap(), two steps may be in flight (launch N, launch N+1, finish N,
  // launch N+2, finish N+1, ...), and a batch may carry pending_tokens, read from the step
  // launched just before it. Otherwise each launch must be finished before the next one and
  // pending_tokens must be empty.
  virtual bool launch_sample(const ForwardBatch& /*batch*/, std::span<const SampleInput> /*rows*/) {
    return false;
  }
  virtual void finish_sample(std::span<SampleOutput> /*out*/) {}
  virtual bool supports_overlap() const { return false; }

  // Block moves requested by the scheduler, done before the forward of the same step.
  virtual void swap_out(std::span<const BlockCopy> copies) = 0;     // device src -> host dst
  virtual void swap_in(std::span<const BlockCopy> copies) = 0;      // host src -> device dst
  virtual void copy_blocks(std::span<const BlockCopy> copies) = 0;  // device -> device
};

}  // namespace loom
