#include "engine/output_processor.h"

#include <algorithm>

namespace loom {

SeqOutput::SeqOutput(std::shared_ptr<RequestStream> stream, const Tokenizer& tokenizer,
                     const SamplingParams& params, uint64_t seed)
    : stream_(std::move(stream)),
      tokenizer_(tokenizer),
      params_(params),
      seed_(seed),
      decoder_(tokenizer, /*skip_special=*/true),
      stop_matcher_(params.stop, params.include_stop_str_in_output) {}

std::optional<FinishReason> SeqOutput::on_token(TokenId token, const TokenLogprobs* logprobs,
                                                int32_t num_output_tokens, int32_t num_total_tokens,
                                                int32_t max_model_len, RequestOutput& delta) {
  delta.new_tokens.push_back(token);
  if (logprobs != nullptr) delta.new_logprobs.push_back(*logprobs);
  const auto& stop_ids = params_.stop_token_ids;
  const bool is_stop_token = std::find(stop_ids.begin(), stop_ids.end(), token) != stop_ids.end();
  const auto& eos = tokenizer_.eos_ids();
  const bool is_eos = !params_.ignore_eos && std::find(eos.begin(), eos.end(), token) != eos.end();
  if (is_stop_token || is_eos) return FinishReason::kStop;  // the token's text is not emitted

  StopMatcher::Step step = stop_matcher_.push(decoder_.push(token));
  delta.new_text += step.emit;
  if (step.stopped) {
    stopped_by_string_ = true;
    return FinishReason::kStop;
  }
  if (num_output_tokens >= params_.max_tokens || num_total_tokens >= max_model_len)
    return FinishReason::kLength;
  return std::nullopt;
}

void SeqOutput::flush(RequestOutput& delta) {
  if (stopped_by_string_) return;
  StopMatcher::Step step = stop_matcher_.push(decoder_.flush());
  delta.new_text += step.emit;
  if (!step.stopped) delta.new_text += stop_matcher_.flush();
}

}  // namespace loom
