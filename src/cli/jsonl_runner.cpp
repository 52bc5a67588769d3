#include "cli/jsonl_runner.h"

#include <chrono>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "server/openai_request.h"
#include "server/prompt_builder.h"
#include "util/clock.h"

namespace loom::cli {
namespace {

struct Job {
  nlohmann::json id;
  std::optional<Request> request;  // nullopt once submitted or refused
  std::shared_ptr<RequestStream> stream;
  std::string text;
  nlohmann::json result;  // set when done
};

// Parses one line into an engine request, with the same rules as the HTTP API.
std::variant<Request, std::string> parse_line(const std::string& line, const LoadedEngine& le) {
  nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return std::string("not a JSON object");
  const bool chat = j.contains("messages");
  ProtocolLimits limits;
  limits.vocab_size = le.tokenizer->vocab_size();
  ParseResult parsed = parse_api_request(chat ? ApiKind::kChat : ApiKind::kCompletion, j, limits);
  if (auto* err = std::get_if<ApiError>(&parsed)) return err->message;
  const ApiRequest& api = std::get<ApiRequest>(parsed);
  PromptContext context;
  context.tokenizer = le.tokenizer.get();
  context.chat_template = le.chat_template ? &*le.chat_template : nullptr;
  context.max_context = le.engine->config().scheduler.max_model_len;
  auto built = build_engine_requests(api, context, "line");
  if (auto* err = std::get_if<ApiError>(&built)) return err->message;
  auto& requests = std::get<std::vector<Request>>(built);
  if (requests.size() != 1) return std::string("each line takes one prompt and n = 1");
  return std::move(requests[0]);
}

void print_progress(size_t done, size_t total, int64_t tokens, int64_t start_us) {
  const double elapsed = (now_us() - start_us) * 1e-6;
  const double tps = elapsed > 0 ? tokens / elapsed : 0;
  const double eta = done > 0 ? elapsed * (total - done) / done : 0;
  const int width = 30;
  const int filled = total > 0 ? static_cast<int>(width * done / total) : width;
  std::fprintf(stderr, "\r[%.*s%*s] %zu/%zu requests, %.0f tok/s, ETA %.0fs   ", filled,
               "==============================", width - filled, "", done, total, tps, eta);
}

}  // namespace

int run_jsonl(const std::string& input_path, const std::string& output_path, LoadedEngine& le) {
  std::ifstream in(input_path);
  if (!in) {
    std::fprintf(stderr, "loom generate: cannot read %s\n", input_path.c_str());
    return 1;
  }
  std::vector<Job> jobs;
  std::string line;
  size_t line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    Job job;
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    job.id = (!j.is_discarded() && j.is_object() && j.contains("id")) ? j["id"]
                                                                      : nlohmann::json(line_no);
    auto parsed = parse_line(line, le);
    if (auto* err = std::get_if<std::string>(&parsed)) {
      job.result = {{"id", job.id}, {"error", "line " + std::to_string(line_no) + ": " + *err}};
    } else {
      job.request = std::move(std::get<Request>(parsed));
    }
    jobs.push_back(std::move(job));
  }
  std::ofstream out(output_path);
  if (!out) {
    std::fprintf(stderr, "loom generate: cannot write %s\n", output_path.c_str());
    return 1;
  }

  le.engine->start();
  const int64_t start = now_us();
  size_t next_submit = 0, done = 0, next_write = 0;
  int64_t tokens = 0, last_print = 0;
  for (const Job& j : jobs) done += j.result.is_null() ? 0 : 1;
  while (done < jobs.size()) {
    // Submit in order while the queue takes them (a full queue is back-pressure, not an error).
    for (; next_submit < jobs.size(); ++next_submit) {
      Job& job = jobs[next_submit];
      if (!job.request) continue;
      SubmitResult r = le.engine->submit(*job.request);
      if (r.code == SubmitErrorCode::kQueueFull) break;
      job.request.reset();
      if (!r.ok()) {
        job.result = {{"id", job.id}, {"error", r.error}};
        ++done;
        continue;
      }
      job.stream = r.stream;
    }
    bool progressed = false;
    for (size_t i = 0; i < next_submit; ++i) {
      Job& job = jobs[i];
      if (!job.stream) continue;
      while (auto d = job.stream->next(std::chrono::milliseconds(0))) {
        progressed = true;
        job.text += d->new_text;
        tokens += static_cast<int64_t>(d->new_tokens.size());
        if (!d->finish) continue;
        const RequestTimings& t = d->timings;
        auto ms = [](int64_t a, int64_t b) { return a > 0 && b > 0 ? (b - a) / 1000.0 : 0.0; };
        job.result = {{"id", job.id},
                      {"text", job.text},
                      {"finish_reason", finish_reason_name(*d->finish)},
                      {"prompt_tokens", d->num_prompt_tokens},
                      {"completion_tokens", d->num_output_tokens},
                      {"cached_prompt_tokens", d->num_cached_prompt_tokens},
                      {"timings",
                       {{"queue_ms", ms(t.arrival_us, t.first_scheduled_us)},
                        {"ttft_ms", ms(t.arrival_us, t.first_token_us)},
                        {"decode_ms", ms(t.first_token_us, t.finished_us)},
                        {"e2e_ms", ms(t.arrival_us, t.finished_us)}}}};
        if (!d->error.empty()) job.result["error"] = d->error;
        job.stream.reset();
        ++done;
        break;
      }
    }
    for (; next_write < jobs.size() && !jobs[next_write].result.is_null(); ++next_write) {
      out << jobs[next_write].result.dump() << '\n';
      jobs[next_write].result = nlohmann::json::object();  // written; keep "done" state
    }
    if (now_us() - last_print > 200000) {
      print_progress(done, jobs.size(), tokens, start);
      last_print = now_us();
    }
    if (!progressed) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  for (; next_write < jobs.size(); ++next_write) out << jobs[next_write].result.dump() << '\n';
  print_progress(done, jobs.size(), tokens, start);
  std::fputc('\n', stderr);
  le.engine->shutdown(std::chrono::milliseconds(0));
  return 0;
}

}  // namespace loom::cli
