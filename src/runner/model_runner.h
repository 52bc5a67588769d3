// Turns the scheduler's StepPlan into the backend's flat batch, runs the block moves and the
// forward, and hands back the logits of the rows to sample.
#pragma once

#include <cstdint>
#include <vector>

#include "backend/backend.h"
#include "backend/forward_batch.h"
#include "core/step.h"

namespace loom {

class ModelRunner {
 public:
  explicit ModelRunner(Backend& backend);

  // Flattens `plan` (ScheduledSeq spans must be valid), performs swap_out, swap_in and copies,
  // then the forward. Returns the logits of the plan's seqs with sample == true, in plan order:
  // [num_sampled][vocab_size], valid until the next call.
  const float* execute(const StepPlan& plan);
  int32_t num_sampled() const { return num_sampled_; }
  int32_t vocab_size() const { return vocab_size_; }

  // Exposed for tests: the batch the last execute() ran.
  const ForwardBatch& last_batch() const { return batch_; }
  static void build_batch(const StepPlan& plan, int32_t block_size, ForwardBatch& batch);

 private:
  Backend& backend_;
  int32_t block_size_;
  int32_t vocab_size_;
  ForwardBatch batch_;
  std::vector<float> logits_;
  int32_t num_sampled_ = 0;
};

}  // namespace loom
