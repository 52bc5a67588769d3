#include "cli/bench_online.h"

#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "cli/bench_report.h"
#include "util/clock.h"

namespace loom::bench {
namespace {

using nlohmann::json;

constexpr int32_t kMaxClientThreads = 2048;
constexpr int64_t kMetricsPollMs = 250;

// Reads a server-sent-event stream of completion chunks and times the ones that carry text.
class StreamReader {
 public:
  StreamReader(RequestRecord& rec, int64_t send_us) : rec_(rec), send_us_(send_us) {}

  // Returns false once the stream is over (an error or [DONE]).
  bool feed(const char* data, size_t len) {
    buffer_.append(data, len);
    size_t start = 0;
    for (size_t nl; (nl = buffer_.find('\n', start)) != std::string::npos; start = nl + 1) {
      std::string line = buffer_.substr(start, nl - start);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (!on_line(line)) {
        buffer_.clear();
        return false;
      }
    }
    buffer_.erase(0, start);
    return true;
  }

  std::string body_seen() const { return raw_.substr(0, 300); }
  bool finished() const { return !finish_reason_.empty(); }
  const std::string& finish_reason() const { return finish_reason_; }
  const std::string& error() const { return error_; }
  int32_t usage_completion_tokens() const { return usage_completion_tokens_; }
  int32_t usage_prompt_tokens() const { return usage_prompt_tokens_; }
  int32_t num_text_chunks() const { return num_text_chunks_; }
  int64_t last_event_us() const { return last_event_us_; }

 private:
  bool on_line(const std::string& line) {
    if (raw_.size() < 300) raw_ += line + "\n";
    if (line.rfind("data:", 0) != 0) return true;
    std::string payload = line.substr(5);
    payload.erase(0, payload.find_first_not_of(' '));
    if (payload == "[DONE]") return false;
    json j = json::parse(payload, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object()) return true;
    const int64_t t = now_us();
    last_event_us_ = t;
    if (j.contains("error")) {
      const json& e = j["error"];
      error_ = e.is_object() ? e.value("message", e.dump()) : e.dump();
      return false;
    }
    if (j.contains("choices") && j["choices"].is_array() && !j["choices"].empty()) {
      const json& c = j["choices"][0];
      std::string text;
      if (c.contains("text") && c["text"].is_string()) {
        text = c["text"].get<std::string>();
      } else if (c.contains("delta") && c["delta"].is_object() && c["delta"].contains("content") &&
                 c["delta"]["content"].is_string()) {
        text = c["delta"]["content"].get<std::string>();
      }
      if (!text.empty()) {
        if (num_text_chunks_ == 0) {
          rec_.ttft_s = (t - send_us_) * 1e-6;
        } else {
          rec_.itl_s.push_back((t - last_text_us_) * 1e-6);
        }
        last_text_us_ = t;
        ++num_text_chunks_;
      }
      if (c.contains("finish_reason") && c["finish_reason"].is_string())
        finish_reason_ = c["finish_reason"].get<std::string>();
    }
    if (j.contains("usage") && j["usage"].is_object()) {
      const json& u = j["usage"];
      usage_completion_tokens_ = u.value("completion_tokens", -1);
      usage_prompt_tokens_ = u.value("prompt_tokens", -1);
    }
    return true;
  }

  RequestRecord& rec_;
  int64_t send_us_;
  std::string buffer_, raw_, finish_reason_, error_;
  int32_t usage_completion_tokens_ = -1, usage_prompt_tokens_ = -1, num_text_chunks_ = 0;
  int64_t last_text_us_ = 0, last_event_us_ = 0;
};

httplib::Headers auth_headers(const OnlineTarget& t) {
  httplib::Headers h;
  if (!t.api_key.empty()) h.emplace("Authorization", "Bearer " + t.api_key);
  return h;
}

std::string fetch_metrics(const OnlineTarget& target) {
  httplib::Client cli(target.base_url);
  cli.set_connection_timeout(5);
  cli.set_read_timeout(5);
  auto res = cli.Get("/metrics", auth_headers(target));
  return res && res->status == 200 ? res->body : std::string();
}

double kv_usage(const std::string& metrics) {
  double v = prometheus_value(metrics, "loom_kv_cache_usage_ratio");
  if (std::isnan(v)) v = prometheus_value(metrics, "llamacpp:kv_cache_usage_ratio");
  return v;
}

// One request from send to its last byte; fills `rec`.
void send_one(const OnlineTarget& target, const BenchRequest& b, RequestRecord& rec,
              int64_t start_us, int64_t deadline_us) {
  httplib::Client cli(target.base_url);
  cli.set_connection_timeout(30);
  cli.set_read_timeout(static_cast<time_t>(kStallTimeoutS));
  cli.set_keep_alive(false);
  const int64_t send_us = now_us();
  rec.send_s = (send_us - start_us) * 1e-6;
  StreamReader reader(rec, send_us);
  bool cut_off = false;
  httplib::Request req;
  req.method = "POST";
  req.path = target.endpoint;
  req.headers = auth_headers(target);
  req.headers.emplace("Content-Type", "application/json");
  req.body = completion_body(target, b);
  req.content_receiver = [&](const char* data, size_t len, uint64_t, uint64_t) {
    if (now_us() >= deadline_us) {
      cut_off = true;
      return false;
    }
    return reader.feed(data, len);
  };
  httplib::Response res;
  httplib::Error err = httplib::Error::Success;
  const bool sent = cli.send(req, res, err);
  const int64_t end_us = reader.last_event_us() > 0 ? reader.last_event_us() : now_us();
  rec.output_tokens = reader.usage_completion_tokens() >= 0 ? reader.usage_completion_tokens()
                                                            : reader.num_text_chunks();
  if (reader.usage_prompt_tokens() > 0) rec.prompt_tokens = reader.usage_prompt_tokens();
  if (cut_off) {
    rec.error = "cut off by the time bound";
  } else if (!reader.error().empty()) {
    rec.error = reader.error();
  } else if (res.status != 0 && res.status != 200) {
    rec.error = "HTTP " + std::to_string(res.status) + ": " + reader.body_seen();
  } else if (!sent && err != httplib::Error::Canceled) {
    rec.error = "HTTP client: " + httplib::to_string(err);
  } else if (!reader.finished()) {
    rec.error = "stream ended without a finish reason";
  } else if (reader.finish_reason() != "stop" && reader.finish_reason() != "length") {
    rec.error = "finish reason " + reader.finish_reason();
  } else {
    rec.ok = true;
    rec.e2e_s = (end_us - send_us) * 1e-6;
  }
}

}  // namespace

std::string completion_body(const OnlineTarget& target, const BenchRequest& b) {
  json body = {{"prompt", b.prompt},
               {"max_tokens", b.max_tokens},
               {"temperature", 0.0},
               {"stream", true},
               {"stream_options", {{"include_usage", true}}},
               {"ignore_eos", b.ignore_eos}};
  if (!target.model_name.empty()) body["model"] = target.model_name;
  if (!b.tier.empty()) body["tier"] = b.tier;
  return body.dump();
}

double prometheus_value(const std::string& text, const std::string& name,
                        const std::string& label_part) {
  double sum = 0;
  bool found = false;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#' || line.rfind(name, 0) != 0) continue;
    const size_t after = name.size();
    if (after < line.size() && line[after] != '{' && line[after] != ' ') continue;  // a longer name
    const size_t space = line.rfind(' ');
    if (space == std::string::npos || space < after) continue;
    const std::string labels = line.substr(after, space - after);
    if (!label_part.empty() && labels.find(label_part) == std::string::npos) continue;
    char* end = nullptr;
    const double v = std::strtod(line.c_str() + space + 1, &end);
    if (end == line.c_str() + space + 1) continue;
    sum += v;
    found = true;
  }
  return found ? sum : kNaN;
}

Result<DriveResult> run_online(const OnlineTarget& target,
                               const std::vector<BenchRequest>& workload,
                               const DriveOptions& options) {
  {
    httplib::Client cli(target.base_url);
    if (!cli.is_valid()) return make_error("cannot use the URL '%s'", target.base_url.c_str());
    cli.set_connection_timeout(10);
    auto res = cli.Get("/v1/models", auth_headers(target));
    if (!res) {
      return make_error("%s does not answer: %s", target.base_url.c_str(),
                        httplib::to_string(res.error()).c_str());
    }
  }
  const std::string metrics0 = fetch_metrics(target);

  DriveResult result;
  std::vector<RequestRecord> records(workload.size());
  std::vector<char> sent(workload.size(), 0);
  std::atomic<size_t> next{0}, num_done{0};
  std::atomic<int64_t> tokens{0};
  std::atomic<bool> running{true};
  const int64_t start_us = now_us();
  const int64_t deadline_us = options.max_duration_s > 0
                                  ? start_us + static_cast<int64_t>(options.max_duration_s * 1e6)
                                  : INT64_MAX;
  size_t num_clients = workload.size();
  if (options.max_concurrency > 0)
    num_clients = std::min(num_clients, static_cast<size_t>(options.max_concurrency));
  num_clients = std::min(num_clients, static_cast<size_t>(kMaxClientThreads));

  std::atomic<int64_t> last_end_us{start_us};
  std::vector<std::thread> clients;
  for (size_t c = 0; c < num_clients; ++c) {
    clients.emplace_back([&] {
      for (size_t i; (i = next.fetch_add(1)) < workload.size();) {
        const int64_t at_us = start_us + static_cast<int64_t>(workload[i].arrival_s * 1e6);
        if (at_us >= deadline_us) break;
        const int64_t wait = at_us - now_us();
        if (wait > 0) std::this_thread::sleep_for(std::chrono::microseconds(wait));
        records[i].group = workload[i].group;
        records[i].prompt_tokens = static_cast<int32_t>(workload[i].prompt.size());
        sent[i] = 1;
        send_one(target, workload[i], records[i], start_us, deadline_us);
        tokens += records[i].output_tokens;
        ++num_done;
        const int64_t end = now_us();
        int64_t prev = last_end_us.load();
        while (end > prev && !last_end_us.compare_exchange_weak(prev, end)) {
        }
      }
    });
  }
  double peak_kv = kNaN;
  std::thread sampler([&] {
    int64_t last_print_us = 0;
    while (running.load()) {
      const double kv = kv_usage(fetch_metrics(target));
      if (!std::isnan(kv)) peak_kv = std::isnan(peak_kv) ? kv : std::max(peak_kv, kv);
      const int64_t now = now_us();
      if (options.progress && now - last_print_us > 500000) {
        print_bench_progress(num_done.load(), workload.size(), tokens.load(),
                             (now - start_us) * 1e-6);
        last_print_us = now;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(kMetricsPollMs));
    }
  });
  for (std::thread& t : clients) t.join();
  running = false;
  sampler.join();
  const int64_t end_us = std::min(last_end_us.load(), deadline_us);
  if (options.progress) {
    print_bench_progress(num_done.load(), workload.size(), tokens.load(),
                         (end_us - start_us) * 1e-6);
    std::fputc('\n', stderr);
  }
  for (size_t i = 0; i < workload.size(); ++i) {
    if (sent[i]) {
      result.records.push_back(std::move(records[i]));
    } else {
      ++result.num_not_sent;
    }
  }
  result.duration_s = (end_us - start_us) * 1e-6;

  const std::string metrics1 = fetch_metrics(target);
  auto delta = [&](const char* name, const char* label) -> int64_t {
    const double a = prometheus_value(metrics0, name, label),
                 b = prometheus_value(metrics1, name, label);
    return std::isnan(a) || std::isnan(b) ? -1 : static_cast<int64_t>(std::llround(b - a));
  };
  result.server.preemptions_swap = delta("loom_preemptions_total", "mechanism=\"swap\"");
  result.server.preemptions_recompute = delta("loom_preemptions_total", "mechanism=\"recompute\"");
  result.server.prefix_cache_query_tokens = delta("loom_prefix_cache_queried_tokens_total", "");
  result.server.prefix_cache_hit_tokens = delta("loom_prefix_cache_hit_tokens_total", "");
  result.server.iterations = delta("loom_engine_iterations_total", "");
  result.server.peak_kv_usage = peak_kv;
  return result;
}

}  // namespace loom::bench
