// OpenAI-shaped errors: {"error": {"message", "type", "param", "code"}} with the HTTP status that
// goes with them. Every refusal the server gives is one of these.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace loom {

struct ApiError {
  int status = 400;       // HTTP status
  std::string message;    // a sentence naming the problem
  std::string type;       // "invalid_request_error", "authentication_error", ...
  std::string param;      // the offending request field; empty = null
  std::string code;       // machine-readable code; empty = null
  int retry_after_s = 0;  // > 0: sent as Retry-After (429, 503)
};

ApiError invalid_request(std::string message, std::string param = "",
                         std::string code = "invalid_value");
ApiError unauthorized();
ApiError not_found(std::string message, std::string code = "not_found");
ApiError model_not_found(const std::string& model);
ApiError body_too_large(size_t max_body_bytes);
ApiError queue_full(std::string message, int retry_after_s);
ApiError shutting_down();
ApiError internal_error(std::string message);
// A generic error for a bare HTTP status (used when the HTTP library refuses on its own).
ApiError error_for_status(int status, size_t max_body_bytes);

nlohmann::json error_json(const ApiError& error);
// JSON text that never throws on bad UTF-8 (invalid bytes become U+FFFD).
std::string dump_json(const nlohmann::json& value);

}  // namespace loom
