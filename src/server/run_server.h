// The entry point `loom serve` calls once the engine runs.
#pragma once

#include "engine/engine.h"
#include "server/server_config.h"
#include "tokenizer/chat_template.h"

namespace loom {

// Serves the OpenAI-compatible API on config.host:config.port until SIGINT or SIGTERM, then
// stops accepting, drains the engine (engine.shutdown(config.drain_deadline): running work
// finishes or is aborted past the deadline) and returns 0. Returns 1 if it cannot listen.
// The engine must already be started. `chat_template` may be null (chat requests then get 400).
// Prints the listening address on stderr when ready.
int run_server(Engine& engine, const ChatTemplate* chat_template, const ServerConfig& config);

}  // namespace loom
