#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "sample/stop_matcher.h"

namespace loom {
namespace {

// Feeds `pieces` and returns everything emitted (including a final flush when not stopped).
struct Fed {
  std::string text;
  bool stopped = false;
  int stopped_at = -1;  // index of the piece that stopped
};
Fed feed(StopMatcher& m, const std::vector<std::string>& pieces) {
  Fed r;
  for (size_t i = 0; i < pieces.size(); ++i) {
    StopMatcher::Step s = m.push(pieces[i]);
    r.text += s.emit;
    if (s.stopped && !r.stopped) {
      r.stopped = true;
      r.stopped_at = static_cast<int>(i);
    }
  }
  if (!r.stopped) r.text += m.flush();
  return r;
}

TEST(StopMatcher, NoStopsEmitsEverythingAtOnce) {
  StopMatcher m({}, false);
  auto s = m.push("hello");
  EXPECT_EQ(s.emit, "hello");
  EXPECT_FALSE(s.stopped);
  EXPECT_EQ(m.flush(), "");
}

TEST(StopMatcher, StopInsideOnePiece) {
  StopMatcher m({"END"}, false);
  auto s = m.push("abcENDxyz");
  EXPECT_EQ(s.emit, "abc");
  EXPECT_TRUE(s.stopped);
  EXPECT_EQ(m.flush(), "");
}

TEST(StopMatcher, StopSplitOverTwoAndThreePieces) {
  {
    StopMatcher m({"###"}, false);
    auto s1 = m.push("hi #");
    EXPECT_EQ(s1.emit, "hi ");  // "#" could start the stop string: held back
    EXPECT_FALSE(s1.stopped);
    auto s2 = m.push("##tail");
    EXPECT_EQ(s2.emit, "");
    EXPECT_TRUE(s2.stopped);
  }
  {
    StopMatcher m({"<|end|>"}, false);
    Fed r = feed(m, {"Answer.<", "|en", "d|>", "more"});
    EXPECT_TRUE(r.stopped);
    EXPECT_EQ(r.stopped_at, 2);
    EXPECT_EQ(r.text, "Answer.");
  }
}

TEST(StopMatcher, PartialMatchThatFailsReleasesText) {
  StopMatcher m({"STOP"}, false);
  auto s1 = m.push("go ST");
  EXPECT_EQ(s1.emit, "go ");
  EXPECT_EQ(m.held_bytes(), 2u);
  auto s2 = m.push("O");
  EXPECT_EQ(s2.emit, "");
  auto s3 = m.push("RM");  // "STORM" is not "STOP": all released
  EXPECT_EQ(s3.emit, "STORM");
  EXPECT_FALSE(s3.stopped);
  EXPECT_EQ(m.held_bytes(), 0u);
  // A failed partial that overlaps a new partial: "SST" -> "S" released, "ST" held.
  auto s4 = m.push(" SST");
  EXPECT_EQ(s4.emit, " S");
  EXPECT_EQ(m.flush(), "ST");
}

TEST(StopMatcher, FlushReturnsHeldTextAtEnd) {
  StopMatcher m({"\n\nUser:"}, false);
  Fed r = feed(m, {"Bye", "\n", "\nUs"});  // the sequence ends (EOS) with a partial held
  EXPECT_FALSE(r.stopped);
  EXPECT_EQ(r.text, "Bye\n\nUs");
}

TEST(StopMatcher, OverlappingCandidatesEarliestEndWins) {
  // "ab" completes before "abc" could: stop at "ab" however the text is split.
  for (const auto& pieces :
       std::vector<std::vector<std::string>>{{"xabc"}, {"xa", "bc"}, {"x", "a", "b", "c"}}) {
    StopMatcher m({"abc", "ab"}, true);
    Fed r = feed(m, pieces);
    EXPECT_TRUE(r.stopped);
    EXPECT_EQ(r.text, "xab");
  }
  // "abc" is held while it may still match; "abd" fails it and "ab" is not a stop here.
  StopMatcher m({"abc"}, false);
  EXPECT_EQ(m.push("ab").emit, "");
  EXPECT_EQ(m.push("d").emit, "abd");
  // Same end: the longer (earlier-starting) stop wins.
  StopMatcher m2({"bc", "abc"}, true);
  Fed r = feed(m2, {"zab", "c!"});
  EXPECT_EQ(r.text, "zabc");
}

TEST(StopMatcher, MultipleStopStrings) {
  StopMatcher m({"foo", "bar", "baz"}, false);
  Fed r = feed(m, {"one b", "a", "r two foo"});
  EXPECT_TRUE(r.stopped);
  EXPECT_EQ(r.text, "one ");
  // The one that appears first in the text wins, not the first in the list.
  StopMatcher m2({"zzz", "yy"}, false);
  r = feed(m2, {"ayyzzz"});
  EXPECT_EQ(r.text, "a");
}

TEST(StopMatcher, IncludeStopString) {
  StopMatcher m({"</s>"}, true);
  Fed r = feed(m, {"text</", "s>after"});
  EXPECT_TRUE(r.stopped);
  EXPECT_EQ(r.text, "text</s>");
}

TEST(StopMatcher, Unicode) {
  // Multi-byte stop strings split at character boundaries across pieces; emitted text is always
  // whole characters because held-back tails start where a stop string starts.
  StopMatcher m({"世界"}, false);
  auto s1 = m.push("你好世");
  EXPECT_EQ(s1.emit, "你好");
  auto s2 = m.push("界!");
  EXPECT_TRUE(s2.stopped);
  EXPECT_EQ(s2.emit, "");

  StopMatcher m2({"→ end", "ñ"}, true);
  Fed r = feed(m2, {"a→", " e", "nx ñ tail"});
  EXPECT_TRUE(r.stopped);
  EXPECT_EQ(r.text, "a→ enx ñ");
}

TEST(StopMatcher, AfterStopNothingMore) {
  StopMatcher m({"."}, false);
  EXPECT_TRUE(m.push("a.b").stopped);
  auto s = m.push("more");
  EXPECT_TRUE(s.stopped);
  EXPECT_EQ(s.emit, "");
  EXPECT_EQ(m.flush(), "");
  EXPECT_TRUE(m.stopped());
}

TEST(StopMatcher, EmptyStopStringsAreIgnoredAndEmptyPushesAreHarmless) {
  StopMatcher m({"", "x"}, false);
  EXPECT_EQ(m.push("").emit, "");
  EXPECT_EQ(m.push("ab").emit, "ab");
  EXPECT_TRUE(m.push("cx").stopped);
}

TEST(StopMatcher, SplitsEverywhereGiveTheSameResult) {
  // Every way of cutting the text into two or three pieces gives the same output.
  const std::string text = "say <|im_end|> <|im_start|> then";
  const std::vector<std::string> stops = {"<|im_start|>", "<|im_end|>", "im_e"};
  StopMatcher whole(stops, false);
  const Fed expected = feed(whole, {text});
  ASSERT_TRUE(expected.stopped);
  ASSERT_EQ(expected.text, "say <|");
  for (size_t i = 0; i <= text.size(); ++i) {
    for (size_t j = i; j <= text.size(); ++j) {
      StopMatcher m(stops, false);
      Fed r = feed(m, {text.substr(0, i), text.substr(i, j - i), text.substr(j)});
      EXPECT_TRUE(r.stopped);
      EXPECT_EQ(r.text, expected.text) << i << "," << j;
    }
  }
}

}  // namespace
}  // namespace loom
