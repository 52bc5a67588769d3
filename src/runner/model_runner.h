// Turns the scheduler's StepPlan into the backend's flat batch, runs the block moves and the
// forward, and samples one token for every sequence of the plan that wants one.
#pragma once

#include <cstdint>
#include <span>
#include <unordered_map>
#include <vector>

#include "backend/backend.h"
#include "backend/forward_batch.h"
#include "core/step.h"
#include "sample/sampler.h"

namespace loom {

class ModelRunner {
 public:
  explicit ModelRunner(Backend& backend);

  // Flattens `plan` (ScheduledSeq spans must be valid), performs swap_out, swap_in and copies,
  // then the forward, and samples: rows[i] describes the i-th seq of the plan with sample == true
  // (its .logits is filled here), out[i] receives its token (and logprobs when asked). The
  // backend samples on its device when it can (Backend::forward_sample), else the logits come to
  // the host and sample_token runs here.
  void execute(const StepPlan& plan, std::span<SampleInput> rows, std::span<SampleOutput> out);

  // execute() in two halves (Backend::launch_sample): launch() does the block moves and
  // enqueues the forward and the sampling; finish() waits for the oldest launched step and
  // writes its tokens into `out` (rows.size() of its launch). On a backend that samples on the
  // host, launch() does all the work. A plan's kPendingToken inputs (overlapped steps) must be
  // tokens sampled by the step launched just before, and need a backend that
  // supports_overlap(); they become the batch's pending_tokens. Rows sampled on the host must
  // stay valid until finish().
  void launch(const StepPlan& plan, std::span<SampleInput> rows);
  void finish(std::span<SampleOutput> out);
  int32_t vocab_size() const { return vocab_size_; }

  // Exposed for tests: the batch the last execute() ran.
  const ForwardBatch& last_batch() const { return batch_; }
  static void build_batch(const StepPlan& plan, int32_t block_size, ForwardBatch& batch);
  // Padded static batching: appends `num_rows` copies of the batch's sampled decode rows (round
  // robin) as extra one-token sequences; source_rows[i] = the logits row copied by the i-th.
  // Nothing is appended when the batch has no decode row.
  static void append_padding_rows(int32_t num_rows, ForwardBatch& batch,
                                  std::vector<int32_t>& source_rows);

 private:
  Backend& backend_;
  int32_t block_size_;
  int32_t vocab_size_;
  ForwardBatch batch_;
  std::vector<float> logits_;  // [rows][vocab], host sampling only
  SamplerScratch scratch_;
  std::vector<int32_t> padding_sources_;
  std::vector<SampleInput> padded_rows_;
  std::vector<SampleOutput> padded_out_;
  // Launched, unfinished steps, oldest first (at most two).
  struct Launched {
    size_t num_rows = 0;                 // rows of the plan (without padding rows)
    size_t num_sampled = 0;              // rows the backend samples (with padding rows)
    bool on_device = false;              // finish_sample gives the tokens; else host_out has them
    std::vector<SampleOutput> host_out;  // [num_sampled]
  };
  std::vector<Launched> launched_;
  // The sampled rows of the last launched step: sequence -> row (for pending tokens).
  std::unordered_map<SeqId, int32_t> last_rows_;

  void run_and_sample(std::span<SampleInput> rows, std::span<SampleOutput> out);
  void mark_pending_tokens(const StepPlan& plan);
};

}  // namespace loom
