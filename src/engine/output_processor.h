// Turns each sampled token of one sequence into a client delta: stop-token and EOS checks,
// incremental detokenization (never half a UTF-8 character), stop strings across token
// boundaries, and the length limits. Runs on the engine thread.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "core/request.h"
#include "engine/request_stream.h"
#include "sample/stop_matcher.h"
#include "tokenizer/tokenizer.h"

namespace loom {

class SeqOutput {
 public:
  SeqOutput(std::shared_ptr<RequestStream> stream, const Tokenizer& tokenizer,
            const SamplingParams& params, uint64_t seed);

  uint64_t seed() const { return seed_; }
  RequestStream& stream() { return *stream_; }

  // Accounts for one new token (already appended to the sequence). Returns the finish reason if
  // the sequence must stop here. The delta is accumulated into `delta`.
  std::optional<FinishReason> on_token(TokenId token, const TokenLogprobs* logprobs,
                                       int32_t num_output_tokens, int32_t num_total_tokens,
                                       int32_t max_model_len, RequestOutput& delta);
  // Releases text held back by the decoder and the stop matcher when the sequence ends for a
  // reason other than a stop string.
  void flush(RequestOutput& delta);

  int64_t last_token_us = 0;
  bool first_scheduled_recorded = false;

 private:
  std::shared_ptr<RequestStream> stream_;
  const Tokenizer& tokenizer_;
  const SamplingParams& params_;
  uint64_t seed_;
  IncrementalDecoder decoder_;
  StopMatcher stop_matcher_;
  bool stopped_by_string_ = false;
};

}  // namespace loom
