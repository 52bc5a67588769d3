#include "backend/cuda/sample_pack.h"

#include <algorithm>
#include <cfloat>

#include "util/check.h"

namespace loom::cuda {

SamplePacker::SamplePacker(int32_t vocab_size) : vocab_size_(vocab_size), slot_(vocab_size, 0) {
  LOOM_CHECK(vocab_size > 0, "SamplePacker: vocab_size %d", vocab_size);
}

// The entry of `token` in the current row (which starts at entries[row_begin]), appended on
// first use; null for an id outside the vocabulary (it has no logit, as in sample_token).
PenaltyEntry* SamplePacker::entry_for(TokenId token, size_t row_begin) {
  if (token < 0 || token >= vocab_size_) return nullptr;
  int32_t& slot = slot_[token];
  if (slot == 0) {
    entries.push_back(PenaltyEntry{token, 0, 0, 0.0f});
    slot = static_cast<int32_t>(entries.size() - row_begin);
  }
  return &entries[row_begin + slot - 1];
}

void SamplePacker::pack(std::span<const SampleInput> rows) {
  params.assign(rows.size(), DeviceSampleParams{});
  entries.clear();
  argmax_rows.clear();
  device_rows.clear();
  host_rows.clear();
  for (size_t i = 0; i < rows.size(); ++i) {
    const SampleInput& in = rows[i];
    LOOM_CHECK(in.params != nullptr, "SamplePacker: row %zu has no params", i);
    LOOM_CHECK(in.vocab_size == vocab_size_, "SamplePacker: row %zu vocab %d, expected %d", i,
               in.vocab_size, vocab_size_);
    const SamplingParams& p = *in.params;
    DeviceSampleParams& d = params[i];
    const int32_t row = static_cast<int32_t>(i);
    if (p.logprobs >= 0) {
      d.kind = kRowOnHost;
      host_rows.push_back(row);
      continue;
    }
    // The conditions under which sample_token applies each processor (sampler.cpp).
    const bool repetition =
        p.repetition_penalty != 1.0f && (!in.prompt.empty() || !in.output.empty());
    const bool presence_frequency =
        (p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f) && !in.output.empty();
    const bool min_tokens = static_cast<int64_t>(in.output.size()) < p.min_tokens &&
                            (!in.eos_ids.empty() || !p.stop_token_ids.empty());
    if (p.greedy() && !repetition && !presence_frequency && !min_tokens) {
      d.kind = kRowArgmax;
      argmax_rows.push_back(row);
      continue;
    }
    d.kind = kRowOnDevice;
    device_rows.push_back(row);
    d.seed = in.seed;
    d.step = in.step;
    d.greedy = p.greedy() ? 1 : 0;
    d.top_k = p.top_k > 0 && p.top_k < vocab_size_ ? p.top_k : 0;
    d.inv_temperature = p.greedy() ? 0.0f : 1.0f / p.temperature;
    d.top_p = p.top_p;
    // Zero weights are never drawn; the best token (w = 1) always is, so a draw never comes up
    // empty once the weights are written (min_p outside [0, 1] or NaN fails validation anyway).
    d.min_w = p.min_p > FLT_TRUE_MIN ? std::min(p.min_p, 1.0f) : FLT_TRUE_MIN;
    d.repetition_penalty = p.repetition_penalty;
    d.presence_penalty = p.presence_penalty;
    d.frequency_penalty = p.frequency_penalty;

    const size_t begin = entries.size();
    if (repetition) {
      for (std::span<const TokenId> part : {in.prompt, in.output}) {
        for (TokenId t : part) {
          if (PenaltyEntry* e = entry_for(t, begin)) e->flags |= kPenaltyRepeat;
        }
      }
    }
    if (presence_frequency) {
      for (TokenId t : in.output) {
        if (PenaltyEntry* e = entry_for(t, begin)) {
          e->flags |= kPenaltyPresenceFrequency;
          ++e->count;
        }
      }
    }
    if (min_tokens) {
      for (std::span<const TokenId> part :
           {in.eos_ids, std::span<const TokenId>(p.stop_token_ids)}) {
        for (TokenId t : part) {
          if (PenaltyEntry* e = entry_for(t, begin)) e->flags |= kPenaltyMask;
        }
      }
    }
    for (size_t e = begin; e < entries.size(); ++e) slot_[entries[e].token] = 0;
    LOOM_CHECK(entries.size() < static_cast<size_t>(INT32_MAX), "SamplePacker: too many entries");
    d.entry_begin = static_cast<int32_t>(begin);
    d.entry_end = static_cast<int32_t>(entries.size());
  }
}

}  // namespace loom::cuda
