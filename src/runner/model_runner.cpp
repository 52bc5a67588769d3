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

void ModelRunner::append_padding_rows(int32_t num_rows, ForwardBatch& b,
                                      std::vector<int32_t>& source_rows) {
  source_rows.clear();
  // Candidates: sampled one-token (decode) sequences, with their logits row index.
  std::vector<std::pair<int32_t, int32_t>> decodes;  // (seq, row)
  for (int32_t s = 0, r = 0; s < b.num_seqs(); ++s) {
    const int32_t last = b.query_start[s + 1] - 1;
    const bool sampled = r < static_cast<int32_t>(b.logits_rows.size()) && b.logits_rows[r] == last;
    if (sampled && last == b.query_start[s]) decodes.emplace_back(s, r);
    if (sampled) ++r;
  }
  if (decodes.empty()) return;
  for (int32_t p = 0; p < num_rows; ++p) {
    const auto [s, row] = decodes[static_cast<size_t>(p) % decodes.size()];
    // The copy recomputes the same token at the same position: it writes the same K/V bytes to
    // the same slot, and costs what a real decode row of that context costs.
    const int32_t t = b.query_start[s];
    b.tokens.push_back(b.tokens[t]);
    b.positions.push_back(b.positions[t]);
    b.slot_mapping.push_back(b.slot_mapping[t]);
    b.query_start.push_back(b.num_tokens());
    b.context_lens.push_back(b.context_lens[s]);
    const size_t from = static_cast<size_t>(s) * b.max_blocks_per_seq;
    for (int32_t k = 0; k < b.max_blocks_per_seq; ++k)
      b.block_tables.push_back(b.block_tables[from + k]);
    b.logits_rows.push_back(b.num_tokens() - 1);
    source_rows.push_back(row);
  }
}

void ModelRunner::execute(const StepPlan& plan, std::span<SampleInput> rows,
                          std::span<SampleOutput> out) {
  launch(plan, rows);
  finish(out);
}

void ModelRunner::mark_pending_tokens(const StepPlan& plan) {
  batch_.pending_tokens.clear();
  for (size_t i = 0; i < plan.seqs.size(); ++i) {
    const int32_t last = batch_.query_start[i + 1] - 1;
    for (int32_t t = batch_.query_start[i]; t <= last; ++t) {
      if (batch_.tokens[t] != kPendingToken) continue;
      auto it = last_rows_.find(plan.seqs[i].id);
      LOOM_CHECK(t == last && it != last_rows_.end(),
                 "seq %lld: token %d is pending but not the last step's sample",
                 static_cast<long long>(plan.seqs[i].id), t);
      batch_.pending_tokens.push_back({t, it->second});
    }
  }
  LOOM_CHECK(batch_.pending_tokens.empty() || backend_.supports_overlap(),
             "pending tokens on a backend without overlapped steps");
}

void ModelRunner::launch(const StepPlan& plan, std::span<SampleInput> rows) {
  if (!plan.swap_out.empty()) backend_.swap_out(plan.swap_out);
  if (!plan.swap_in.empty()) backend_.swap_in(plan.swap_in);
  if (!plan.copies.empty()) backend_.copy_blocks(plan.copies);
  LOOM_CHECK(launched_.size() < 2, "a third step launched");
  Launched l;
  l.num_rows = rows.size();
  if (plan.seqs.empty()) {
    LOOM_CHECK(rows.empty());
    launched_.push_back(std::move(l));
    last_rows_.clear();
    return;
  }
  build_batch(plan, block_size_, batch_);
  const size_t num_rows = batch_.logits_rows.size();
  LOOM_CHECK(rows.size() == num_rows, "%zu rows to sample, %zu inputs", num_rows, rows.size());
  mark_pending_tokens(plan);
  append_padding_rows(plan.num_padding_rows, batch_, padding_sources_);
  std::span<SampleInput> sampled = rows;
  if (!padding_sources_.empty()) {
    // Padding rows are sampled too (as padded static batching does); their tokens are dropped.
    padded_rows_.assign(rows.begin(), rows.end());
    for (int32_t r : padding_sources_) padded_rows_.push_back(rows[r]);
    sampled = padded_rows_;
  }
  l.num_sampled = sampled.size();
  l.on_device = backend_.launch_sample(batch_, sampled);
  if (!l.on_device) {
    l.host_out.assign(sampled.size(), SampleOutput{});
    run_and_sample(sampled, l.host_out);
  }
  last_rows_.clear();
  int32_t r = 0;
  for (const ScheduledSeq& s : plan.seqs)
    if (s.sample) last_rows_[s.id] = r++;
  launched_.push_back(std::move(l));
}

void ModelRunner::finish(std::span<SampleOutput> out) {
  LOOM_CHECK(!launched_.empty(), "finish() without a launched step");
  Launched l = std::move(launched_.front());
  launched_.erase(launched_.begin());
  LOOM_CHECK(out.size() == l.num_rows, "%zu outputs for %zu rows", out.size(), l.num_rows);
  if (l.on_device) {  // every launch is finished, even one without rows (a prefill chunk)
    if (l.num_sampled == l.num_rows) {
      backend_.finish_sample(out);
      return;
    }
    l.host_out.assign(l.num_sampled, SampleOutput{});
    backend_.finish_sample(l.host_out);
  }
  std::move(l.host_out.begin(), l.host_out.begin() + static_cast<std::ptrdiff_t>(l.num_rows),
            out.begin());
}

void ModelRunner::run_and_sample(std::span<SampleInput> rows, std::span<SampleOutput> out) {
  if (backend_.forward_sample(batch_, rows, out)) return;
  logits_.resize(rows.size() * static_cast<size_t>(vocab_size_));
  backend_.forward(batch_, logits_.data());
  for (size_t i = 0; i < rows.size(); ++i) {
    rows[i].logits = logits_.data() + i * vocab_size_;
    rows[i].vocab_size = vocab_size_;
    out[i] = sample_token(rows[i], scratch_);
  }
}

}  // namespace loom
