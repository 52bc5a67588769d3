// Optional API-key check: with a key configured, every endpoint but /health needs
// "Authorization: Bearer <key>".
#pragma once

#include <string>
#include <string_view>

namespace loom {

// The key to enforce: the configured one, else the environment variable LOOM_API_KEY, else
// none (empty).
std::string resolve_api_key(const std::string& configured);

// True if `authorization_header` carries `api_key` as a Bearer token (or no key is required).
// The comparison takes the same time wherever the first difference is.
bool bearer_authorized(std::string_view authorization_header, std::string_view api_key);

// /health stays open so that orchestrators can probe liveness without a secret.
bool route_needs_auth(std::string_view path);

}  // namespace loom
