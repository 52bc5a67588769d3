#include "server/http_server.h"

#include <httplib.h>
#include <sys/socket.h>

#include "server/api_error.h"
#include "server/auth.h"
#include "server/connection_monitor.h"
#include "server/openai_response.h"
#include "util/log.h"

namespace loom {

namespace {
constexpr int kListenBacklog = 4096;  // the library's own is 5: a burst of clients would stall
}

class HttpServer::Library : public httplib::Server {
 public:
  // The library listens with a tiny backlog; Linux lets a second listen() raise it.
  void widen_backlog() {
    if (svr_sock_ != INVALID_SOCKET) ::listen(svr_sock_, kListenBacklog);
  }
};

HttpServer::HttpServer(EnginePort& engine, const ChatTemplate* chat_template, ServerConfig config)
    : engine_(engine),
      chat_template_(chat_template),
      config_(std::move(config)),
      api_key_(resolve_api_key(config_.api_key)),
      model_name_(config_.served_model_name.empty() ? "loom" : config_.served_model_name),
      http_(std::make_unique<Library>()) {
  const int32_t threads = std::max(config_.num_http_threads, 8);
  http_->new_task_queue = [threads] {
    return new httplib::ThreadPool(static_cast<size_t>(threads));
  };
  http_->set_tcp_nodelay(true);  // SSE chunks are small: do not hold them back
  http_->set_read_timeout(config_.request_read_timeout);
  http_->set_write_timeout(config_.write_timeout);
  http_->set_keep_alive_timeout(config_.keep_alive_timeout.count());
  http_->set_keep_alive_max_count(static_cast<size_t>(config_.keep_alive_max_requests));
  http_->set_payload_max_length(config_.max_body_bytes);
  install_routes();
}

HttpServer::~HttpServer() {
  stop_accepting();
  join();
}

void HttpServer::send_error(httplib::Response& res, const ApiError& error) {
  res.status = error.status;
  if (error.retry_after_s > 0) res.set_header("Retry-After", std::to_string(error.retry_after_s));
  res.set_content(dump_json(error_json(error)), "application/json");
}

void HttpServer::install_routes() {
  using httplib::Request;
  using httplib::Response;
  using HR = httplib::Server::HandlerResponse;

  http_->set_pre_routing_handler([this](const Request& req, Response& res) {
    if (monitor_) monitor_->touch(req.remote_addr, req.remote_port);
    if (route_needs_auth(req.path) &&
        !bearer_authorized(req.get_header_value("Authorization"), api_key_)) {
      send_error(res, unauthorized());
      return HR::Handled;
    }
    return HR::Unhandled;
  });

  // Every error response passes here: fill in an OpenAI-shaped body where the library answered
  // on its own (unknown route, body too large, unparsable HTTP), and count it.
  http_->set_error_handler(
      httplib::Server::HandlerWithResponse([this](const Request&, Response& res) {
        counters_.count_error(res.status);
        if (!res.body.empty()) return HR::Unhandled;
        send_error(res, error_for_status(res.status, config_.max_body_bytes));
        return HR::Handled;
      }));
  http_->set_exception_handler([this](const Request&, Response& res, std::exception_ptr ep) {
    std::string what = "internal error";
    try {
      if (ep) std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    LOOM_LOG_ERROR("server: handler threw: %s", what.c_str());
    send_error(res, internal_error("Internal error: " + what));
  });

  http_->Get("/health", [](const Request&, Response& res) {
    res.set_content("{\"status\":\"ok\"}", "application/json");
  });
  http_->Get("/ready", [this](const Request&, Response& res) {
    if (draining_.load() || !engine_.accepting()) {
      res.status = 503;
      res.set_content("{\"status\":\"draining\"}", "application/json");
      return;
    }
    res.set_content("{\"status\":\"ready\"}", "application/json");
  });
  auto model_json = [this] {
    return nlohmann::json{{"id", model_name_},
                          {"object", "model"},
                          {"created", unix_time_s()},
                          {"owned_by", "loom"},
                          {"max_model_len", engine_.max_context()}};
  };
  http_->Get("/v1/models", [model_json](const Request&, Response& res) {
    nlohmann::json body{{"object", "list"}, {"data", nlohmann::json::array({model_json()})}};
    res.set_content(dump_json(body), "application/json");
  });
  http_->Get(R"(/v1/models/(.+))", [this, model_json](const Request& req, Response& res) {
    if (req.matches[1] != model_name_) return send_error(res, model_not_found(req.matches[1]));
    res.set_content(dump_json(model_json()), "application/json");
  });
  http_->Get("/metrics", [this](const Request&, Response& res) {
    MetricsContext ctx{model_name_, engine_.kv_block_size()};
    res.set_content(render_prometheus(engine_.metrics(), counters_, ctx),
                    "text/plain; version=0.0.4; charset=utf-8");
  });
  http_->Post("/v1/completions", [this](const Request& req, Response& res) {
    counters_.requests_completions.fetch_add(1);
    handle_generation(ApiKind::kCompletion, req, res);
  });
  http_->Post("/v1/chat/completions", [this](const Request& req, Response& res) {
    counters_.requests_chat.fetch_add(1);
    handle_generation(ApiKind::kChat, req, res);
  });
}

Result<int> HttpServer::bind() {
  if (config_.port == 0) {
    port_ = http_->bind_to_any_port(config_.host);
  } else {
    port_ = http_->bind_to_port(config_.host, config_.port) ? config_.port : -1;
  }
  if (port_ <= 0)
    return make_error("cannot listen on %s:%d (address in use or not available)",
                      config_.host.c_str(), config_.port);
  http_->widen_backlog();
  const auto idle_limit = std::chrono::duration_cast<std::chrono::milliseconds>(
      config_.keep_alive_timeout + config_.request_read_timeout);
  monitor_ = std::make_unique<ConnectionMonitor>(port_, idle_limit);
  return port_;
}

void HttpServer::start() {
  monitor_->start();
  listen_thread_ = std::thread([this] {
    if (!http_->listen_after_bind()) LOOM_LOG_ERROR("server: the listen loop ended with an error");
  });
  // Wait until the accept loop runs, so that a caller that prints "listening" is truthful.
  while (!http_->is_running() && listen_thread_.joinable()) std::this_thread::yield();
}

void HttpServer::begin_drain() {
  draining_.store(true);
}

void HttpServer::stop_accepting() {
  draining_.store(true);
  if (http_->is_running()) http_->stop();
}

void HttpServer::join() {
  if (listen_thread_.joinable()) listen_thread_.join();
  if (monitor_) monitor_->stop();
}

}  // namespace loom
