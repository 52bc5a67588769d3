#include "server/run_server.h"

#include <signal.h>
#include <sys/resource.h>

#include <atomic>
#include <cstdio>
#include <thread>

#include "server/engine_port.h"
#include "server/http_server.h"

namespace loom {

namespace {

// Forwards to a real Engine.
class EngineAdapter final : public EnginePort {
 public:
  explicit EngineAdapter(Engine& engine) : engine_(engine) {}
  SubmitResult submit(Request request) override { return engine_.submit(std::move(request)); }
  void abort(SeqId id) override { engine_.abort(id); }
  bool accepting() const override { return engine_.accepting(); }
  EngineMetrics& metrics() override { return engine_.metrics(); }
  const Tokenizer& tokenizer() const override { return engine_.tokenizer(); }
  int32_t max_context() const override { return engine_.model_config().max_context; }
  int32_t kv_block_size() const override { return engine_.kv_pool().block_size; }

 private:
  Engine& engine_;
};

volatile sig_atomic_t g_stop_signal = 0;

void on_stop_signal(int sig) {
  g_stop_signal = sig;
}

// Each open connection costs one descriptor (two while a handler looks it up): lift the soft
// limit to the hard one so that a thousand clients fit.
void raise_fd_limit() {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
  }
}

}  // namespace

int run_server(Engine& engine, const ChatTemplate* chat_template, const ServerConfig& config) {
  raise_fd_limit();
  // A client that vanishes mid-write must fail the write, not kill the process.
  signal(SIGPIPE, SIG_IGN);

  EngineAdapter port(engine);
  HttpServer server(port, chat_template, config);
  Result<int> bound = server.bind();
  if (!bound.ok()) {
    std::fprintf(stderr, "loom: %s\n", bound.error().c_str());
    return 1;
  }

  g_stop_signal = 0;
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  struct sigaction old_int {
  }, old_term{};
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);

  server.start();
  std::fprintf(stderr, "loom: listening on http://%s:%d\n", config.host.c_str(), *bound);
  std::fflush(stderr);

  while (g_stop_signal == 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));

  std::fprintf(stderr, "loom: signal %d, draining (deadline %lld ms)\n",
               static_cast<int>(g_stop_signal),
               static_cast<long long>(config.drain_deadline.count()));
  server.begin_drain();
  server.stop_accepting();
  engine.shutdown(config.drain_deadline);  // every stream gets its final delta
  server.join();
  sigaction(SIGINT, &old_int, nullptr);
  sigaction(SIGTERM, &old_term, nullptr);
  std::fprintf(stderr, "loom: stopped\n");
  return 0;
}

}  // namespace loom
