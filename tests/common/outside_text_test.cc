#include "common/outside_text.h"

#include <string>

#include "common/utf8.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace spar {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

bool IsValidUtf8(const std::string& s) { return SanitizeUtf8(s) == s; }

TEST(JudgeTextTest, RedactsTheKeyBearerTokensAndAuthorizationValues) {
  EXPECT_EQ(RedactSecrets("bad key sk-abc123 (sk-abc123)", "sk-abc123"),
            "bad key <redacted> (<redacted>)");
  EXPECT_EQ(RedactSecrets("got Authorization: Bearer other.Token-9/x= ok", "sk-abc123"),
            "got Authorization: Bearer <redacted> ok");
  EXPECT_EQ(RedactSecrets("{\"authorization\":\"Basic dXNlcjpwdw==\"}", ""),
            "{\"authorization\":\"Basic <redacted>\"}");
  EXPECT_EQ(RedactSecrets("BEARER xyz", ""), "BEARER <redacted>");
  EXPECT_EQ(RedactSecrets("Authorization header missing", ""), "Authorization header missing");
  EXPECT_EQ(RedactSecrets("no secrets here", "sk-abc123"), "no secrets here");
  EXPECT_EQ(RedactKey("the bearer of sk-abc123", "sk-abc123"), "the bearer of <redacted>");
}

TEST(JudgeTextTest, TruncatesOnCharacterBoundaries) {
  std::string euros;
  for (int i = 0; i < 100; ++i) euros += "\xE2\x82\xAC";  // 3 bytes each
  for (size_t n : {0, 1, 2, 3, 4, 199, 200, 201}) {
    std::string cut = TruncateUtf8(euros, n);
    EXPECT_TRUE(IsValidUtf8(cut)) << n;
    EXPECT_LE(cut.size(), n + 3) << n;  // plus "..."
  }
  EXPECT_EQ(TruncateUtf8(euros, 200).size(), 198u + 3u);
  EXPECT_EQ(TruncateUtf8("short", 200), "short");
  EXPECT_EQ(TruncateUtf8("\xF0\x9F\x98\x80"
                         "abc",
                         2),
            "...");  // a 4-byte emoji does not fit
}

TEST(JudgeTextTest, SafeOutsideTextSanitizesRedactsThenCuts) {
  // The key sits across the cut: it is redacted before cutting, so no prefix of it survives.
  std::string raw = std::string(190, 'x') + " sk-abcdefghijklmnop \xFF\xFE";
  std::string safe = SafeOutsideText(raw, "sk-abcdefghijklmnop", 200);
  EXPECT_TRUE(IsValidUtf8(safe));
  EXPECT_THAT(safe, Not(HasSubstr("sk-abc")));
  EXPECT_TRUE(IsValidUtf8(SafeOutsideText("\xC3(\xE2\x82 \xF0\x9F\x98", "", 5)));
}

}  // namespace
}  // namespace spar
