// The HTTP server over a scripted engine: routes, errors, streaming, n > 1, disconnects,
// slow clients, auth, draining.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "server/http_server.h"
#include "unit/server/fake_engine.h"

namespace loom {
namespace {

using nlohmann::json;

class HttpServerTest : public ::testing::Test {
 protected:
  void start(ServerConfig config = {}, int step_ms = 1) {
    engine_ = std::make_unique<testing::FakeEngine>(step_ms);
    config.port = 0;
    config.served_model_name = "smol";
    config.num_http_threads = 32;
    config.max_body_bytes = 4096;
    server_ = std::make_unique<HttpServer>(*engine_, nullptr, config);
    Result<int> port = server_->bind();
    ASSERT_TRUE(port.ok());
    port_ = *port;
    server_->start();
  }
  void TearDown() override {
    if (server_) {
      server_->stop_accepting();
      server_->join();
    }
  }
  httplib::Client client() {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(10, 0);
    return c;
  }
  httplib::Result post(const std::string& path, const std::string& body,
                       httplib::Headers headers = {}) {
    return client().Post(path.c_str(), headers, body, "application/json");
  }
  // Opens a raw TCP connection to the server.
  int connect_raw() {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port_));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    return fd;
  }
  bool wait_for(const std::function<bool()>& cond, int ms) {
    for (int i = 0; i < ms / 10; ++i) {
      if (cond()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return cond();
  }

  std::unique_ptr<testing::FakeEngine> engine_;
  std::unique_ptr<HttpServer> server_;
  int port_ = 0;
};

TEST_F(HttpServerTest, CompletionNonStreaming) {
  start();
  auto res = post("/v1/completions", R"({"model": "smol", "prompt": "abc", "max_tokens": 5})");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  json body = json::parse(res->body);
  EXPECT_EQ(body["choices"][0]["text"], "abcab");
  EXPECT_EQ(body["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(body["usage"]["prompt_tokens"], 3);
  EXPECT_EQ(body["usage"]["completion_tokens"], 5);
  EXPECT_EQ(body["model"], "smol");
}

TEST_F(HttpServerTest, NSamplesGetConsecutiveSeedsAndOneUsageOfThePrompt) {
  start();
  auto res =
      post("/v1/completions", R"({"prompt": ["ab", "xyz"], "max_tokens": 2, "n": 2, "seed": 7})");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  json body = json::parse(res->body);
  ASSERT_EQ(body["choices"].size(), 4u);
  EXPECT_EQ(body["choices"][1]["text"], "ab");
  EXPECT_EQ(body["choices"][2]["text"], "xy");
  EXPECT_EQ(body["choices"][3]["index"], 3);
  EXPECT_EQ(body["usage"]["prompt_tokens"], 5);  // each prompt counted once, not n times
  EXPECT_EQ(body["usage"]["completion_tokens"], 8);
  auto reqs = engine_->requests();
  ASSERT_EQ(reqs.size(), 4u);
  EXPECT_EQ(reqs[0].sampling.seed, 7u);
  EXPECT_EQ(reqs[1].sampling.seed, 8u);
  EXPECT_EQ(reqs[2].sampling.seed, 7u);
  EXPECT_EQ(reqs[1].prompt, reqs[0].prompt);
}

std::vector<json> sse_events(const std::string& body, bool* done) {
  std::vector<json> events;
  *done = false;
  size_t pos = 0;
  while (pos < body.size()) {
    size_t end = body.find("\n\n", pos);
    EXPECT_NE(end, std::string::npos) << "unterminated event";
    if (end == std::string::npos) break;
    std::string ev = body.substr(pos, end - pos);
    EXPECT_EQ(ev.rfind("data: ", 0), 0u) << ev;
    std::string data = ev.substr(6);
    EXPECT_FALSE(*done) << "event after [DONE]";
    if (data == "[DONE]") {
      *done = true;
    } else {
      events.push_back(json::parse(data));
    }
    pos = end + 2;
  }
  return events;
}

TEST_F(HttpServerTest, CompletionStreamingWithUsage) {
  start();
  auto res = post("/v1/completions",
                  R"({"prompt": "hey", "max_tokens": 4, "stream": true, "logprobs": 1,
                      "stream_options": {"include_usage": true}})");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->get_header_value("Content-Type"), "text/event-stream");
  bool done = false;
  auto events = sse_events(res->body, &done);
  EXPECT_TRUE(done);
  std::string text;
  std::string finish;
  for (size_t i = 0; i + 1 < events.size(); ++i) {
    EXPECT_TRUE(events[i]["usage"].is_null());
    text += events[i]["choices"][0]["text"].get<std::string>();
    if (!events[i]["choices"][0]["finish_reason"].is_null())
      finish = events[i]["choices"][0]["finish_reason"];
  }
  EXPECT_EQ(text, "heyh");
  EXPECT_EQ(finish, "length");
  EXPECT_EQ(events[1]["choices"][0]["logprobs"]["text_offset"], (json{1}));  // second token
  EXPECT_EQ(events.back()["choices"], json::array());
  EXPECT_EQ(events.back()["usage"]["completion_tokens"], 4);
}

TEST_F(HttpServerTest, EngineRefusalsMapToStatuses) {
  start();
  engine_->refuse_code = SubmitErrorCode::kQueueFull;
  auto res = post("/v1/completions", R"({"prompt": "x"})");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 429);
  EXPECT_EQ(res->get_header_value("Retry-After"), "1");
  EXPECT_EQ(json::parse(res->body)["error"]["type"], "rate_limit_error");
  engine_->refuse_code = SubmitErrorCode::kTooLong;
  res = post("/v1/completions", R"({"prompt": "x"})");
  EXPECT_EQ(res->status, 400);
  engine_->refuse_code = SubmitErrorCode::kShuttingDown;
  res = post("/v1/completions", R"({"prompt": "x"})");
  EXPECT_EQ(res->status, 503);
}

TEST_F(HttpServerTest, RequestErrors) {
  start();
  auto res = post("/v1/completions", R"({"prompt": "x", "max_tokens": -1})");
  EXPECT_EQ(res->status, 400);
  EXPECT_EQ(json::parse(res->body)["error"]["param"], "max_tokens");
  res = post("/v1/completions", R"({"prompt": "x", "model": "gpt-4"})");
  EXPECT_EQ(res->status, 404);
  EXPECT_EQ(json::parse(res->body)["error"]["code"], "model_not_found");
  // Prompt over the context (64 tokens in the fake).
  res = post("/v1/completions", json{{"prompt", std::string(80, 'a')}}.dump());
  EXPECT_EQ(res->status, 400);
  EXPECT_EQ(json::parse(res->body)["error"]["code"], "context_length_exceeded");
  res = post("/v1/completions", R"({"prompt": "abc", "max_tokens": 62})");
  EXPECT_EQ(res->status, 400);
  EXPECT_EQ(json::parse(res->body)["error"]["param"], "max_tokens");
  // No chat template configured.
  res = post("/v1/chat/completions", R"({"messages": [{"role": "user", "content": "x"}]})");
  EXPECT_EQ(res->status, 400);
  // Unknown route and body too large: JSON errors too.
  auto get = client().Get("/v1/nothing");
  EXPECT_EQ(get->status, 404);
  EXPECT_EQ(json::parse(get->body)["error"]["code"], "unknown_route");
  res = post("/v1/completions", json{{"prompt", std::string(5000, 'a')}}.dump());
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 413);
  EXPECT_EQ(json::parse(res->body)["error"]["code"], "request_too_large");
  // The errors are counted for /metrics.
  get = client().Get("/metrics");
  EXPECT_NE(get->body.find("loom_http_request_errors_total{code=\"413\"} 1"), std::string::npos);
  EXPECT_TRUE(engine_->requests().empty());
}

TEST_F(HttpServerTest, ModelsHealthReady) {
  start();
  auto res = client().Get("/v1/models");
  json body = json::parse(res->body);
  EXPECT_EQ(body["data"][0]["id"], "smol");
  EXPECT_EQ(client().Get("/v1/models/smol")->status, 200);
  EXPECT_EQ(client().Get("/v1/models/other")->status, 404);
  EXPECT_EQ(client().Get("/health")->status, 200);
  EXPECT_EQ(client().Get("/ready")->status, 200);
  server_->begin_drain();
  EXPECT_EQ(client().Get("/ready")->status, 503);
  auto gen = post("/v1/completions", R"({"prompt": "x"})");
  EXPECT_EQ(gen->status, 503);
}

TEST_F(HttpServerTest, ApiKey) {
  ServerConfig config;
  config.api_key = "sk-test";
  start(config);
  EXPECT_EQ(client().Get("/health")->status, 200);
  auto res = client().Get("/v1/models");
  EXPECT_EQ(res->status, 401);
  EXPECT_EQ(json::parse(res->body)["error"]["code"], "invalid_api_key");
  EXPECT_EQ(client().Get("/metrics")->status, 401);
  EXPECT_EQ(post("/v1/completions", R"({"prompt": "x"})")->status, 401);
  EXPECT_EQ(
      post("/v1/completions", R"({"prompt": "x"})", {{"Authorization", "Bearer nope"}})->status,
      401);
  EXPECT_EQ(
      post("/v1/completions", R"({"prompt": "x"})", {{"Authorization", "Bearer sk-test"}})->status,
      200);
}

// Sends a request on a raw socket and returns the socket (response unread).
int send_raw(int fd, const std::string& body) {
  std::string req =
      "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
      "Content-Length: " +
      std::to_string(body.size()) + "\r\n\r\n" + body;
  EXPECT_EQ(::send(fd, req.data(), req.size(), 0), static_cast<ssize_t>(req.size()));
  return fd;
}

TEST_F(HttpServerTest, StreamingClientThatLeavesAbortsItsRequests) {
  start({}, /*step_ms=*/20);
  int fd = send_raw(connect_raw(), R"({"prompt": "abc", "max_tokens": 60, "n": 3, "stream": true,
                                       "ignore_eos": true})");
  char buf[256];
  ASSERT_GT(::recv(fd, buf, sizeof(buf), 0), 0);  // headers / first chunks arrived
  ::close(fd);
  EXPECT_TRUE(wait_for([&] { return engine_->num_aborted() == 3; }, 3000));
}

TEST_F(HttpServerTest, NonStreamingClientThatLeavesAbortsItsRequests) {
  start({}, /*step_ms=*/20);
  int fd = send_raw(connect_raw(), R"({"prompt": "abc", "max_tokens": 60, "n": 2})");
  EXPECT_TRUE(wait_for([&] { return engine_->requests().size() == 2; }, 3000));
  ::close(fd);
  EXPECT_TRUE(wait_for([&] { return engine_->num_aborted() == 2; }, 3000));
}

TEST_F(HttpServerTest, SilentAndDribblingClientsAreDisconnected) {
  ServerConfig config;
  config.request_read_timeout = std::chrono::seconds(1);
  config.keep_alive_timeout = std::chrono::seconds(1);
  start(config);
  int silent = connect_raw();
  const std::string partial = "POST /v1/completions HTTP/1.1\r\nHost: x\r\n";
  ::send(silent, partial.data(), 5, 0);
  int dribbler = connect_raw();
  ::send(dribbler, partial.data(), 5, 0);
  auto start_time = std::chrono::steady_clock::now();
  bool dribbler_closed = false;
  // One byte every 300 ms: each read completes within the library's per-read timeout.
  for (size_t i = 5; i < partial.size() && !dribbler_closed; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    if (::send(dribbler, partial.data() + i, 1, MSG_NOSIGNAL) < 0) dribbler_closed = true;
    char c;
    if (::recv(dribbler, &c, 1, MSG_DONTWAIT) == 0) dribbler_closed = true;
  }
  const double elapsed_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_time).count();
  EXPECT_TRUE(dribbler_closed) << "dribbling client still connected after " << elapsed_s << " s";
  EXPECT_LT(elapsed_s, 6.0);
  char c;
  EXPECT_EQ(::recv(silent, &c, 1, 0), 0);  // closed (the read timeout or the monitor)
  ::close(silent);
  ::close(dribbler);
  // The server still serves others.
  EXPECT_EQ(post("/v1/completions", R"({"prompt": "x", "max_tokens": 1})")->status, 200);
}

}  // namespace
}  // namespace loom
