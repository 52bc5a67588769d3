#include "sample/stop_matcher.h"

#include <algorithm>
#include <utility>

namespace loom {

StopMatcher::StopMatcher(std::vector<std::string> stops, bool include_stop_str)
    : stops_(std::move(stops)), include_stop_str_(include_stop_str) {
  stops_.erase(
      std::remove_if(stops_.begin(), stops_.end(), [](const std::string& s) { return s.empty(); }),
      stops_.end());
}

size_t StopMatcher::partial_match_bytes() const {
  const std::string_view text = held_;
  size_t best = 0;
  for (const std::string& stop : stops_) {
    // Proper prefixes only: a whole stop string would have matched already.
    for (size_t len = std::min(text.size(), stop.size() - 1); len > best; --len) {
      if (text.substr(text.size() - len) == std::string_view(stop).substr(0, len)) {
        best = len;
        break;
      }
    }
  }
  return best;
}

StopMatcher::Step StopMatcher::push(std::string_view new_text) {
  Step step;
  if (stopped_) {
    step.stopped = true;
    return step;
  }
  // The held text contains no whole stop string, so any match ends inside the new text: start
  // each search where a match could first end there.
  const size_t old_size = held_.size();
  held_.append(new_text);

  size_t match_pos = std::string::npos;
  size_t match_end = std::string::npos;
  size_t match_len = 0;
  for (const std::string& stop : stops_) {
    const size_t from = old_size + 1 > stop.size() ? old_size + 1 - stop.size() : 0;
    const size_t pos = held_.find(stop, from);  // first occurrence = earliest end for this stop
    if (pos == std::string::npos) continue;
    const size_t end = pos + stop.size();
    if (end < match_end || (end == match_end && pos < match_pos)) {
      match_pos = pos;
      match_end = end;
      match_len = stop.size();
    }
  }

  if (match_pos != std::string::npos) {
    step.emit = held_.substr(0, include_stop_str_ ? match_pos + match_len : match_pos);
    step.stopped = true;
    stopped_ = true;
    held_.clear();
    return step;
  }

  const size_t keep = partial_match_bytes();
  step.emit = held_.substr(0, held_.size() - keep);
  held_.erase(0, held_.size() - keep);
  return step;
}

std::string StopMatcher::flush() {
  std::string out;
  out.swap(held_);
  return out;
}

}  // namespace loom
