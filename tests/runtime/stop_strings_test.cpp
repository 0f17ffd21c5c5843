// StopStrings: text before the first stop string passes, nothing of a stop string is ever shown, and a
// tail that could still start one is held back only as long as it could.
#include <gtest/gtest.h>

#include "runtime/stop_strings.h"

namespace lamina {
namespace {

// Feeds `pieces` and returns what was shown, flushing at the end unless stopped.
std::string feed(StopStrings& s, const std::vector<std::string>& pieces) {
    std::string out;
    for (const auto& p : pieces) out += s.push(p);
    if (!s.stopped()) out += s.flush();
    return out;
}

TEST(StopStrings, StopsBeforeTheFirstMatchAcrossPieces) {
    StopStrings s({"\nUser:", "###"});
    EXPECT_EQ(feed(s, {"Hello", " there\nUs", "er: next"}), "Hello there");
    EXPECT_TRUE(s.stopped());
    EXPECT_EQ(s.push("more"), "");
}

TEST(StopStrings, EarliestOfSeveralWins) {
    StopStrings s({"cd", "b"});
    EXPECT_EQ(feed(s, {"abcd"}), "a");
}

TEST(StopStrings, HoldsBackOnlyWhatCouldStillMatch) {
    StopStrings s({"STOP"});
    EXPECT_EQ(s.push("abc ST"), "abc ");  // "ST" may begin STOP
    EXPECT_EQ(s.push("X"), "STX");         // now it cannot
    EXPECT_EQ(s.push("S"), "");
    EXPECT_EQ(s.flush(), "S");             // generation ended: the held tail is text
    EXPECT_FALSE(s.stopped());
}

TEST(StopStrings, NoStopsPassEverything) {
    StopStrings s({"", ""});
    EXPECT_TRUE(s.empty());
    EXPECT_EQ(feed(s, {"a", "b"}), "ab");
}

TEST(StopStrings, StopAtTheVeryStart) {
    StopStrings s({"x"});
    EXPECT_EQ(feed(s, {"xyz"}), "");
    EXPECT_TRUE(s.stopped());
}

}  // namespace
}  // namespace lamina
