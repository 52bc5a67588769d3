#include "server/auth.h"

#include <cstdlib>

namespace loom {

std::string resolve_api_key(const std::string& configured) {
  if (!configured.empty()) return configured;
  const char* env = std::getenv("LOOM_API_KEY");
  return env != nullptr ? std::string(env) : std::string();
}

namespace {
bool constant_time_equal(std::string_view a, std::string_view b) {
  unsigned diff = a.size() == b.size() ? 0u : 1u;
  for (size_t i = 0; i < a.size(); ++i) {
    unsigned char cb = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= static_cast<unsigned char>(a[i]) ^ cb;
  }
  return diff == 0;
}
}  // namespace

bool bearer_authorized(std::string_view authorization_header, std::string_view api_key) {
  if (api_key.empty()) return true;
  constexpr std::string_view kScheme = "Bearer ";
  if (authorization_header.size() < kScheme.size()) return false;
  // The scheme name is case-insensitive (RFC 7235); the token is not.
  for (size_t i = 0; i < kScheme.size(); ++i) {
    char c = authorization_header[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    char k = kScheme[i];
    if (k >= 'A' && k <= 'Z') k = static_cast<char>(k - 'A' + 'a');
    if (c != k) return false;
  }
  std::string_view token = authorization_header.substr(kScheme.size());
  while (!token.empty() && token.front() == ' ') token.remove_prefix(1);
  while (!token.empty() && token.back() == ' ') token.remove_suffix(1);
  return constant_time_equal(token, api_key);
}

bool route_needs_auth(std::string_view path) {
  return path != "/health";
}

}  // namespace loom
