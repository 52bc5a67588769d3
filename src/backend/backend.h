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

  // Block moves requested by the scheduler, done before the forward of the same step.
  virtual void swap_out(std::span<const BlockCopy> copies) = 0;     // device src -> host dst
  virtual void swap_in(std::span<const BlockCopy> copies) = 0;      // host src -> device dst
  virtual void copy_blocks(std::span<const BlockCopy> copies) = 0;  // device -> device
};

}  // namespace loom
