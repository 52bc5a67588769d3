#include "server/api_error.h"

namespace loom {

ApiError invalid_request(std::string message, std::string param, std::string code) {
  return ApiError{
      400, std::move(message), "invalid_request_error", std::move(param), std::move(code), 0};
}

ApiError unauthorized() {
  return ApiError{401,
                  "Incorrect or missing API key: send it as 'Authorization: Bearer <key>'.",
                  "authentication_error",
                  "",
                  "invalid_api_key",
                  0};
}

ApiError not_found(std::string message, std::string code) {
  return ApiError{404, std::move(message), "invalid_request_error", "", std::move(code), 0};
}

ApiError model_not_found(const std::string& model) {
  return ApiError{404,
                  "The model '" + model + "' does not exist on this server.",
                  "invalid_request_error",
                  "model",
                  "model_not_found",
                  0};
}

ApiError body_too_large(size_t max_body_bytes) {
  return ApiError{
      413,
      "Request body is larger than the limit of " + std::to_string(max_body_bytes) + " bytes.",
      "invalid_request_error",
      "",
      "request_too_large",
      0};
}

ApiError queue_full(std::string message, int retry_after_s) {
  return ApiError{429, std::move(message), "rate_limit_error", "", "queue_full", retry_after_s};
}

ApiError shutting_down() {
  return ApiError{503,
                  "The server is shutting down and accepts no new requests.",
                  "service_unavailable",
                  "",
                  "shutting_down",
                  1};
}

ApiError internal_error(std::string message) {
  return ApiError{500, std::move(message), "server_error", "", "internal_error", 0};
}

ApiError error_for_status(int status, size_t max_body_bytes) {
  switch (status) {
    case 400:
      return invalid_request("The request could not be parsed as HTTP.", "", "bad_request");
    case 401:
      return unauthorized();
    case 404:
      return not_found("No such route.", "unknown_route");
    case 405:
      return ApiError{405,
                      "Method not allowed on this route.",
                      "invalid_request_error",
                      "",
                      "method_not_allowed",
                      0};
    case 408:
      return ApiError{408,
                      "The request was not received in time.",
                      "invalid_request_error",
                      "",
                      "request_timeout",
                      0};
    case 413:
      return body_too_large(max_body_bytes);
    case 414:
      return ApiError{
          414, "The request URI is too long.", "invalid_request_error", "", "uri_too_long", 0};
    case 503:
      return shutting_down();
    default:
      break;
  }
  ApiError e = internal_error("HTTP error " + std::to_string(status) + ".");
  e.status = status;
  return e;
}

nlohmann::json error_json(const ApiError& error) {
  using nlohmann::json;
  json inner = {{"message", error.message},
                {"type", error.type},
                {"param", error.param.empty() ? json(nullptr) : json(error.param)},
                {"code", error.code.empty() ? json(nullptr) : json(error.code)}};
  return json{{"error", std::move(inner)}};
}

std::string dump_json(const nlohmann::json& value) {
  return value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace loom
