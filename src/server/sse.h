// Server-sent events framing as the OpenAI streaming API uses it: one JSON object per event,
// "data: <json>\n\n", and a final "data: [DONE]\n\n".
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace loom {

std::string sse_event(const nlohmann::json& payload);
inline std::string sse_done() {
  return "data: [DONE]\n\n";
}

}  // namespace loom
