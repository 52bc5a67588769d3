#include "server/sse.h"

#include "server/api_error.h"

namespace loom {

std::string sse_event(const nlohmann::json& payload) {
  // dump() never emits a raw newline (they are escaped inside strings), so one data: line holds
  // the whole event.
  std::string out = "data: ";
  out += dump_json(payload);
  out += "\n\n";
  return out;
}

}  // namespace loom
