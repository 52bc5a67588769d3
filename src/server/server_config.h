// Settings of the HTTP front end; `loom serve` fills them from its flags.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

namespace loom {

struct ServerConfig {
  std::string host = "127.0.0.1";  // loopback unless told otherwise
  int port = 8080;                 // 0 = any free port (the bound one is printed)
  std::string api_key;             // empty: LOOM_API_KEY from the environment, else no auth
  std::string served_model_name;   // the id /v1/models lists and requests must name
  size_t max_body_bytes = 4u << 20;
  int32_t max_n = 16;        // samples per prompt
  int32_t max_prompts = 64;  // prompts in one completions request
  int32_t max_stop_strings = 8;
  int32_t max_stop_string_bytes = 256;
  int32_t max_tokens_limit = 0;  // cap on max_tokens; 0 = the model's context
  int32_t max_logprobs = 20;     // top alternatives per token
  // Threads of the HTTP pool: one per open connection (a streaming request holds one).
  int32_t num_http_threads = 1100;
  // Slow or silent clients: a request (headers and body) must arrive within this long after the
  // connection opens or the previous response ends (plus keep_alive_timeout when idle).
  std::chrono::seconds request_read_timeout{10};
  std::chrono::seconds keep_alive_timeout{5};
  int32_t keep_alive_max_requests = 1000;
  std::chrono::seconds write_timeout{10};  // a reader that takes nothing for this long is dropped
  int retry_after_s = 1;                   // sent with 429
  std::chrono::milliseconds drain_deadline{30000};
};

}  // namespace loom
