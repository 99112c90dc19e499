#include "common/utf8.h"

#include <gtest/gtest.h>

namespace spar {
namespace {

TEST(Utf8Test, ValidTextIsUnchanged) {
  for (const char* s : {"", "85", "h\xC3\xA9llo", "\xE2\x82\xAC", "\xF0\x9F\x98\x80"}) {
    EXPECT_EQ(SanitizeUtf8(s), s);
  }
}

TEST(Utf8Test, InvalidSequencesAreReplaced) {
  const std::string r = "\xEF\xBF\xBD";
  EXPECT_EQ(SanitizeUtf8("a\xFF"
                         "b"),
            "a" + r + "b");
  EXPECT_EQ(SanitizeUtf8("\xC3"), r);  // truncated 2-byte sequence
  EXPECT_EQ(SanitizeUtf8("\xE2\x82"
                         "x"),
            r + "x");                                  // truncated 3-byte, then ASCII
  EXPECT_EQ(SanitizeUtf8("\xC0\x80"), r + r);          // overlong NUL: two invalid bytes
  EXPECT_EQ(SanitizeUtf8("\xED\xA0\x80"), r + r + r);  // surrogate half
  EXPECT_EQ(SanitizeUtf8("\x80\x80"), r + r);          // stray continuation bytes
}

// The offset of the first ill-formed sequence: a lead byte 0xEF (the replacement character's own
// first byte) followed by ASCII is found where it starts.
TEST(Utf8Test, FirstInvalidIsTheStartOfTheIllFormedSequence) {
  EXPECT_EQ(FirstInvalidUtf8("h\xC3\xA9llo"), absl::string_view::npos);
  EXPECT_EQ(FirstInvalidUtf8("caf\xE9 cr\xE8me"), 3u);
  EXPECT_EQ(FirstInvalidUtf8("ab\xEF"
                             "A"),
            2u);
  EXPECT_EQ(FirstInvalidUtf8("\xE2\x82\xAC\xE2\x82"), 3u);  // a whole euro, then a cut one
}

}  // namespace
}  // namespace spar
