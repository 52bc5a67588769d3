#include "runner/model_runner.h"

#include <algorithm>

#include "util/check.h"

namespace loom {

ModelRunner::ModelRunner(Backend& backend)
    : backend_(backend),
      block_size_(backend.kv_pool().block_size),
      vocab_size_(backend.vocab_size()) {}

void ModelRunner::build_batch(const StepPlan& plan, int32_t block_size, ForwardBatch& b) {
  b.tokens.clear();
  b.positions.clear();
  b.query_start.assign(1, 0);
  b.context_lens.clear();
  b.slot_mapping.clear();
  b.logits_rows.clear();
  int32_t max_blocks = 1;
  for (const ScheduledSeq& s : plan.seqs) {
    max_blocks = std::max<int32_t>(max_blocks, static_cast<int32_t>(s.block_table.size()));
  }
  b.max_blocks_per_seq = max_blocks;
  b.block_tables.assign(plan.seqs.size() * static_cast<size_t>(max_blocks), kNoBlock);
  for (size_t i = 0; i < plan.seqs.size(); ++i) {
    const ScheduledSeq& s = plan.seqs[i];
    LOOM_CHECK(
        s.num_new_tokens >= 1 && static_cast<int32_t>(s.new_tokens.size()) == s.num_new_tokens,
        "seq %ld: %d new tokens, span of %zu", static_cast<long>(s.id), s.num_new_tokens,
        s.new_tokens.size());
    const int32_t context = s.start_pos + s.num_new_tokens;
    LOOM_CHECK(static_cast<int64_t>(s.block_table.size()) * block_size >= context,
               "seq %ld: %zu blocks cannot hold %d tokens", static_cast<long>(s.id),
               s.block_table.size(), context);
    std::copy(s.block_table.begin(), s.block_table.end(),
              b.block_tables.begin() + i * static_cast<size_t>(max_blocks));
    for (int32_t j = 0; j < s.num_new_tokens; ++j) {
      const int32_t pos = s.start_pos + j;
      b.tokens.push_back(s.new_tokens[j]);
      b.positions.push_back(pos);
      b.slot_mapping.push_back(static_cast<int64_t>(s.block_table[pos / block_size]) * block_size +
                               pos % block_size);
    }
    b.query_start.push_back(static_cast<int32_t>(b.tokens.size()));
    b.context_lens.push_back(context);
    if (s.sample) b.logits_rows.push_back(static_cast<int32_t>(b.tokens.size()) - 1);
  }
}

const float* ModelRunner::execute(const StepPlan& plan) {
  if (!plan.swap_out.empty()) backend_.swap_out(plan.swap_out);
  if (!plan.swap_in.empty()) backend_.swap_in(plan.swap_in);
  if (!plan.copies.empty()) backend_.copy_blocks(plan.copies);
  num_sampled_ = 0;
  if (plan.seqs.empty()) return nullptr;
  build_batch(plan, block_size_, batch_);
  num_sampled_ = static_cast<int32_t>(batch_.logits_rows.size());
  logits_.resize(static_cast<size_t>(num_sampled_) * vocab_size_);
  backend_.forward(batch_, logits_.data());
  return logits_.data();
}

}  // namespace loom
