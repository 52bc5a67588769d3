// POST /v1/completions and /v1/chat/completions: parse, tokenize, submit, then either collect
// the whole answer or stream it as server-sent events. A client that goes away (a failed write,
// or a closed socket noticed while waiting) aborts all of its engine requests at once.
#include <httplib.h>

#include "server/api_error.h"
#include "server/connection_monitor.h"
#include "server/generation.h"
#include "server/http_server.h"
#include "server/openai_response.h"
#include "server/prompt_builder.h"
#include "server/sse.h"

namespace loom {

namespace {

// How often a waiting handler checks that its client is still there.
constexpr std::chrono::milliseconds kLivenessPoll{50};

// Per-request state shared by the handler and the stream writer (which outlives the handler).
struct GenerationState {
  std::unique_ptr<Generation> gen;
  ResponseMeta meta;
  std::vector<ChoiceState> choices;
  int32_t n = 1;  // samples per prompt: prompt tokens are counted once per prompt
  bool include_usage = false;
  int fd = -1;  // the client's socket, -1 if unknown
  ConnectionMonitor* monitor = nullptr;
  ServerCounters* counters = nullptr;
  const Tokenizer* tokenizer = nullptr;

  ~GenerationState() {
    if (gen) gen->abort_all();
    if (monitor) monitor->end_request(fd);
  }

  Usage usage() const {
    Usage u;
    for (const ChoiceState& c : choices) {
      if (c.index % n == 0) u.prompt_tokens += c.num_prompt_tokens;
      u.completion_tokens += c.num_output_tokens;
    }
    return u;
  }

  bool gone = false;
  void client_gone() {
    gen->abort_all();
    if (!gone) counters->client_disconnects.fetch_add(1);
    gone = true;
  }

  // Folds one delta into its choice.
  void apply(const Generation::Delta& d) {
    ChoiceState& c = choices[static_cast<size_t>(d.choice)];
    const RequestOutput& o = d.output;
    c.text += o.new_text;
    c.tokens.insert(c.tokens.end(), o.new_tokens.begin(), o.new_tokens.end());
    c.logprobs.insert(c.logprobs.end(), o.new_logprobs.begin(), o.new_logprobs.end());
    if (o.num_prompt_tokens > 0) c.num_prompt_tokens = o.num_prompt_tokens;
    c.num_output_tokens = std::max(c.num_output_tokens, o.num_output_tokens);
    if (o.finish) {
      c.finish = o.finish;
      c.error = o.error;
    }
  }
};

// Streams every delta as it arrives. Returns false when the client is gone.
bool stream_all(GenerationState& st, httplib::DataSink& sink) {
  auto write = [&](const std::string& data) {
    if (sink.write(data.data(), data.size())) return true;
    st.client_gone();
    return false;
  };
  if (st.meta.kind == ApiKind::kChat) {
    // OpenAI opens each choice with a chunk naming the role.
    for (const ChoiceState& c : st.choices) {
      ChunkDelta first{c.index, "", true, nullptr, 0, std::nullopt};
      if (!write(sse_event(build_chunk(st.meta, first, st.include_usage, *st.tokenizer))))
        return false;
    }
  }
  std::vector<int64_t> bytes_sent(st.choices.size(), 0);  // completions logprobs text_offset
  auto last_check = std::chrono::steady_clock::now();
  while (!st.gen->finished()) {
    std::optional<Generation::Delta> d = st.gen->next(kLivenessPoll);
    const auto now = std::chrono::steady_clock::now();
    if (!d || now - last_check >= kLivenessPoll) {
      last_check = now;
      if (ConnectionMonitor::peer_closed(st.fd)) {
        st.client_gone();
        return false;
      }
    }
    if (!d) continue;
    st.apply(*d);
    const RequestOutput& o = d->output;
    const auto idx = static_cast<size_t>(d->choice);
    if (!o.new_text.empty() || !o.new_logprobs.empty()) {
      ChunkDelta delta{d->choice,       o.new_text,      false,
                       &o.new_logprobs, bytes_sent[idx], std::nullopt};
      for (const auto& lp : o.new_logprobs)
        bytes_sent[idx] += static_cast<int64_t>(st.tokenizer->token_bytes(lp.sampled.token).size());
      if (!write(sse_event(build_chunk(st.meta, delta, st.include_usage, *st.tokenizer))))
        return false;
    }
    if (o.finish) {
      if (*o.finish == FinishReason::kError) {
        if (!write(sse_event(error_json(
                internal_error(o.error.empty() ? "The engine failed on this request." : o.error)))))
          return false;
        continue;
      }
      ChunkDelta last{d->choice, "", false, nullptr, 0, o.finish};
      if (!write(sse_event(build_chunk(st.meta, last, st.include_usage, *st.tokenizer))))
        return false;
    }
  }
  if (st.include_usage && !write(sse_event(build_usage_chunk(st.meta, st.usage())))) return false;
  if (!write(sse_done())) return false;
  sink.done();
  return true;
}

}  // namespace

void HttpServer::handle_generation(ApiKind kind, const httplib::Request& req,
                                   httplib::Response& res) {
  if (draining_.load()) return send_error(res, shutting_down());
  const Tokenizer& tokenizer = engine_.tokenizer();
  ProtocolLimits limits;
  limits.vocab_size = tokenizer.vocab_size();
  limits.max_n = config_.max_n;
  limits.max_prompts = config_.max_prompts;
  limits.max_stop_strings = config_.max_stop_strings;
  limits.max_stop_string_bytes = config_.max_stop_string_bytes;
  limits.max_logprobs = config_.max_logprobs;
  limits.max_tokens_limit =
      config_.max_tokens_limit > 0 ? config_.max_tokens_limit : engine_.max_context();

  ParseResult parsed = parse_api_request(kind, req.body, limits);
  if (auto* e = std::get_if<ApiError>(&parsed)) return send_error(res, *e);
  ApiRequest& api = std::get<ApiRequest>(parsed);
  if (!api.model.empty() && api.model != model_name_)
    return send_error(res, model_not_found(api.model));

  auto st = std::make_shared<GenerationState>();
  st->meta = ResponseMeta{kind, make_response_id(kind), unix_time_s(), model_name_, api.logprobs};
  PromptContext pctx{&tokenizer, chat_template_, engine_.max_context(), config_.max_tokens_limit};
  auto built = build_engine_requests(api, pctx, st->meta.id);
  if (auto* e = std::get_if<ApiError>(&built)) return send_error(res, *e);
  std::vector<Request>& requests = std::get<std::vector<Request>>(built);

  auto started = Generation::start(engine_, std::move(requests), config_.retry_after_s);
  if (auto* e = std::get_if<ApiError>(&started)) return send_error(res, *e);
  st->gen = std::move(std::get<std::unique_ptr<Generation>>(started));
  st->n = api.n;
  st->include_usage = api.include_usage;
  st->tokenizer = &tokenizer;
  st->counters = &counters_;
  st->choices.resize(static_cast<size_t>(st->gen->size()));
  for (size_t i = 0; i < st->choices.size(); ++i) st->choices[i].index = static_cast<int32_t>(i);
  st->monitor = monitor_.get();
  st->fd = monitor_ ? monitor_->begin_request(req.remote_addr, req.remote_port) : -1;

  if (api.stream) {
    res.set_header("Cache-Control", "no-cache");
    res.set_header("X-Accel-Buffering", "no");
    res.set_chunked_content_provider(
        "text/event-stream",
        [st](size_t /*offset*/, httplib::DataSink& sink) { return stream_all(*st, sink); },
        [st](bool success) {
          // The stream ended early (a failed write, a closed socket): the client left.
          if (!success && !st->gen->finished()) st->client_gone();
          st->gen->abort_all();
        });
    return;
  }

  auto last_check = std::chrono::steady_clock::now();
  while (!st->gen->finished()) {
    std::optional<Generation::Delta> d = st->gen->next(kLivenessPoll);
    if (d) st->apply(*d);
    const auto now = std::chrono::steady_clock::now();
    if (d && now - last_check < kLivenessPoll) continue;
    last_check = now;
    if (ConnectionMonitor::peer_closed(st->fd)) {
      st->client_gone();
      res.status = 499;  // nobody reads it: the client closed the connection
      return;
    }
  }
  for (const ChoiceState& c : st->choices) {
    if (c.finish == FinishReason::kError)
      return send_error(
          res, internal_error(c.error.empty() ? "The engine failed on this request." : c.error));
  }
  res.set_content(dump_json(build_response(st->meta, st->choices, st->usage(), tokenizer)),
                  "application/json");
}

}  // namespace loom
