// Stop strings matched across token boundaries on the detokenized text stream.
//
// Text arrives in pieces (one per generated token, whole UTF-8 characters). A stop string may be
// split over several pieces, so the matcher holds back the longest tail of the text that could
// still grow into a stop string and emits the rest at once. On a match it emits the text before
// the stop string (plus the stop string itself when include_stop_str) and reports stopped.
//
// Which match wins: the one that ends first in the stream (what a token-by-token check would see
// first), and among those ending at the same byte the one that starts first (the longer). This
// makes the result independent of how the text is split into pieces: with stops "ab" and "abc",
// the text "abc" stops at "ab" whether it arrives as "a","b","c" or as "abc".
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace loom {

class StopMatcher {
 public:
  // Empty stop strings are ignored (SamplingParams::validate rejects them anyway).
  explicit StopMatcher(std::vector<std::string> stops, bool include_stop_str);

  struct Step {
    std::string emit;      // text that can go to the client now
    bool stopped = false;  // a stop string matched; the sequence ends here
  };

  // Feeds the next piece of text. After a stop, further pushes emit nothing and report stopped.
  Step push(std::string_view new_text);

  // The held-back text, for a sequence that ends for another reason (EOS, length, abort).
  // Empty after a stop.
  std::string flush();

  bool stopped() const { return stopped_; }
  size_t held_bytes() const { return held_.size(); }

 private:
  // Length of the longest suffix of held_ that is a proper prefix of some stop string.
  size_t partial_match_bytes() const;

  std::vector<std::string> stops_;
  bool include_stop_str_ = false;
  bool stopped_ = false;
  std::string held_;  // text received but not emitted yet
};

}  // namespace loom
