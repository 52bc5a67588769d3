// `loom serve`: the OpenAI-compatible HTTP server over the engine.
#include <cstdio>

#include "cli/commands.h"
#include "cli/engine_options.h"
#include "server/http_server.h"

namespace loom::cli {

void add_serve_command(CLI::App& app) {
  struct Options {
    EngineOptions engine;
    ServerConfig server;
    double drain_s = 30;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("serve", "serve the OpenAI-compatible HTTP API");
  o->engine.add_to(*cmd);
  cmd->add_option("--host", o->server.host, "address to bind (loopback by default)")
      ->capture_default_str();
  cmd->add_option("--port", o->server.port, "port (0 = any free one)")->capture_default_str();
  cmd->add_option("--api-key", o->server.api_key, "require this Bearer key (or LOOM_API_KEY)");
  cmd->add_option("--served-model-name", o->server.served_model_name,
                  "model id the API lists (default: the file's name)");
  cmd->add_option("--drain-timeout", o->drain_s, "seconds to finish running work on SIGTERM")
      ->capture_default_str();
  cmd->callback([o] {
    auto le = load_engine(o->engine);
    if (!le.ok()) {
      std::fprintf(stderr, "loom serve: %s\n", le.error().c_str());
      throw CLI::RuntimeError(1);
    }
    if (o->server.served_model_name.empty()) {
      std::string name = o->engine.model_path;
      while (!name.empty() && name.back() == '/') name.pop_back();
      name = name.substr(name.find_last_of('/') + 1);
      if (name.size() > 5 && name.substr(name.size() - 5) == ".gguf") name.resize(name.size() - 5);
      o->server.served_model_name = name;
    }
    o->server.drain_deadline = std::chrono::milliseconds(static_cast<int64_t>(o->drain_s * 1000));
    LoadedEngine& engine = *le.value();
    engine.engine->start();
    const ChatTemplate* tmpl = engine.chat_template ? &*engine.chat_template : nullptr;
    const int rc = run_server(*engine.engine, tmpl, o->server);
    if (rc != 0) throw CLI::RuntimeError(rc);
  });
}

}  // namespace loom::cli
