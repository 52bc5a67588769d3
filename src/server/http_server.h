// The HTTP front end: routes, limits, auth, and the life cycle (bind, serve, drain, stop).
// One thread per open connection (the library's model); a streaming request holds its
// connection's thread while it reads its RequestStream, never the engine thread.
#pragma once

#include <atomic>
#include <memory>
#include <thread>

#include "server/engine_port.h"
#include "server/prometheus_metrics.h"
#include "server/run_server.h"  // the entry point `loom serve` calls
#include "server/server_config.h"
#include "tokenizer/chat_template.h"
#include "util/result.h"

namespace httplib {
struct Request;
struct Response;
}  // namespace httplib

namespace loom {

class ConnectionMonitor;
struct ApiError;
enum class ApiKind;

class HttpServer {
 public:
  HttpServer(EnginePort& engine, const ChatTemplate* chat_template, ServerConfig config);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  Result<int> bind();  // the bound port (config.port 0 picks a free one)
  void start();        // serves on a background thread
  // Readiness turns 503 and new generation requests get 503; running ones continue.
  void begin_drain();
  void stop_accepting();  // closes the listening socket; open connections finish
  void join();            // waits until every connection has ended
  int port() const { return port_; }
  ServerCounters& counters() { return counters_; }

 private:
  class Library;  // httplib::Server with a larger listen backlog
  void install_routes();
  void handle_generation(ApiKind kind, const httplib::Request& req, httplib::Response& res);
  void send_error(httplib::Response& res, const ApiError& error);

  EnginePort& engine_;
  const ChatTemplate* chat_template_;
  ServerConfig config_;
  std::string api_key_;
  std::string model_name_;
  std::unique_ptr<Library> http_;
  std::unique_ptr<ConnectionMonitor> monitor_;
  ServerCounters counters_;
  std::atomic<bool> draining_{false};
  std::thread listen_thread_;
  int port_ = -1;
};

}  // namespace loom
