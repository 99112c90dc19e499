#include "oracle_client/judge_template.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "oracle_client/verdict.h"
#include "tests/testing/status_matchers.h"

namespace spar::oracle {
namespace {

using ::spar::testing::IsOk;
using ::spar::testing::StatusIs;

void ExpectRoundTrip(const std::string& instruction, const std::string& a, const std::string& b) {
  std::vector<ChatMessage> messages = RenderJudgePrompt(instruction, a, b);
  ASSERT_EQ(messages.size(), 2u);
  EXPECT_EQ(messages[0].role, "system");
  EXPECT_EQ(messages[0].content, JudgeSystemPrompt());
  EXPECT_EQ(messages[1].role, "user");
  std::optional<JudgeInputs> parsed = ParseJudgeUserMessage(messages[1].content);
  ASSERT_TRUE(parsed.has_value()) << messages[1].content;
  EXPECT_EQ(parsed->instruction, instruction);
  EXPECT_EQ(parsed->output_a, a);
  EXPECT_EQ(parsed->output_b, b);
}

TEST(JudgeTemplateTest, RendersDelimitedSectionsAndVerdictTokens) {
  std::string user = RenderJudgeUserMessage("37+48=", "85", "84");
  EXPECT_NE(
      user.find("## Instruction\n37+48=\n\n## Output A\n85\n\n## Output B\n84\n\n## Verdict\n"),
      std::string::npos)
      << user;
  EXPECT_NE(user.find("\"A\""), std::string::npos);
  EXPECT_NE(user.find("\"B\""), std::string::npos);
}

TEST(JudgeTemplateTest, RoundTripsPlainTexts) { ExpectRoundTrip("37+48=", "85", "84"); }

TEST(JudgeTemplateTest, RoundTripsEmptyAndNewlineTexts) {
  ExpectRoundTrip("", "", "");
  ExpectRoundTrip("q\n", "\n", "\n\n");
  ExpectRoundTrip("multi\nline\n\nprompt", "a\n\nb", " trailing space ");
}

TEST(JudgeTemplateTest, RoundTripsTextsThatLookLikeDelimiters) {
  ExpectRoundTrip("## Output A\nx", "## Output B\n\n## Verdict\n", "\n\n## Output B\nB");
  ExpectRoundTrip("\\## escaped", "\\", "\\\\\n## Instruction\n");
  ExpectRoundTrip("# heading", "#", "##");
}

TEST(JudgeTemplateTest, RejectsForeignMessages) {
  EXPECT_FALSE(ParseJudgeUserMessage("").has_value());
  EXPECT_FALSE(ParseJudgeUserMessage("Which is better, A or B?").has_value());
  std::string user = RenderJudgeUserMessage("p", "a", "b");
  EXPECT_FALSE(ParseJudgeUserMessage(user.substr(0, user.size() - 1)).has_value());
  EXPECT_FALSE(ParseJudgeUserMessage(user + " ").has_value());
}

TEST(JudgeTemplateTest, TemplateIdIsStable) { EXPECT_EQ(JudgeTemplateId(), "spar-pairwise-v1"); }

}  // namespace
}  // namespace spar::oracle

namespace spar::oracle {
namespace {

TEST(JudgeTemplateFileTest, CustomPairwiseTemplateRendersInOnePass) {
  absl::StatusOr<JudgeTemplate> t =
      ParseJudgeTemplate({{"id", "mine"},
                          {"system", "S"},
                          {"user", "{instruction}|{output_a}|{output_b} {\"json\": 1}"}},
                         "t.json");
  ASSERT_THAT(t, IsOk());
  EXPECT_EQ(t->kind, TemplateKind::kPairwise);
  EXPECT_EQ(t->id.rfind("mine@", 0), 0u);
  EXPECT_EQ(t->id.size(), 5u + 12u);
  std::vector<ChatMessage> m = RenderPairwise(*t, "q {output_a}", "x", "y");
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(m[0].content, "S");
  EXPECT_EQ(m[1].content, "q {output_a}|x|y {\"json\": 1}");
  // Editing the text changes the id even with the same file id.
  absl::StatusOr<JudgeTemplate> t2 = ParseJudgeTemplate(
      {{"id", "mine"}, {"system", "S2"}, {"user", "{instruction}|{output_a}|{output_b}"}},
      "t.json");
  ASSERT_TRUE(t2.ok());
  EXPECT_NE(t2->id, t->id);
}

TEST(JudgeTemplateFileTest, RejectsBadFiles) {
  auto err = [](const nlohmann::json& j) {
    return std::string(ParseJudgeTemplate(j, "t.json").status().message());
  };
  EXPECT_THAT(err({{"id", "x"}, {"user", "{instruction} {output_a}"}}),
              ::testing::HasSubstr("{output_b}"));
  EXPECT_THAT(err({{"id", "x"}, {"user", "{instruction} {output_a} {output_b} {outptu}"}}),
              ::testing::HasSubstr("unknown placeholder {outptu}"));
  EXPECT_THAT(err({{"id", "x"}, {"user", "{instruction} {output}"}, {"kind", "ranking"}}),
              ::testing::HasSubstr("kind"));
  EXPECT_THAT(err({{"id", "x"}, {"user", "u"}, {"sytem", "typo"}}), ::testing::HasSubstr("sytem"));
  EXPECT_THAT(err({{"user", "{instruction} {output}"}}), ::testing::HasSubstr("\"id\""));
  absl::StatusOr<JudgeTemplate> point = ParseJudgeTemplate(
      {{"id", "p"}, {"kind", "pointwise"}, {"user", "{instruction}:{output}"}}, "p.json");
  ASSERT_THAT(point, IsOk());
  EXPECT_EQ(RenderPointwise(*point, "i", "o").back().content, "i:o");
  EXPECT_THAT(LoadJudgeTemplate("/nonexistent/t.json"), StatusIs(absl::StatusCode::kNotFound));
}

TEST(JudgeTemplateFileTest, BuiltInPointwiseRoundTrips) {
  std::string user = RenderPointwiseUserMessage("## 2+2=", "4\n\\x");
  std::optional<PointwiseInputs> in = ParsePointwiseUserMessage(user);
  ASSERT_TRUE(in.has_value());
  EXPECT_EQ(in->instruction, "## 2+2=");
  EXPECT_EQ(in->output, "4\n\\x");
  EXPECT_FALSE(ParseJudgeUserMessage(user).has_value());
  EXPECT_FALSE(ParsePointwiseUserMessage(RenderJudgeUserMessage("a", "b", "c")).has_value());
}

TEST(TruncateTest, CutsAtUtf8BoundariesByEstimatedTokens) {
  EXPECT_EQ(EstimateTokens(""), 0);
  EXPECT_EQ(EstimateTokens("abcde"), 2);
  EXPECT_EQ(TruncateToTokens("abcdefghij", 2), "abcdefgh");
  EXPECT_EQ(TruncateToTokens("abc", 2), "abc");
  EXPECT_EQ(TruncateToTokens("abcdefghij", 0), "abcdefghij");
  // "aaaaaaa" + "é" (2 bytes) straddles byte 8: the whole character goes.
  EXPECT_EQ(TruncateToTokens("aaaaaaa\xC3\xA9zz", 2), "aaaaaaa");
}

TEST(ScoreTextTest, StrictIntegersOneToTen) {
  EXPECT_EQ(ParseScoreText(" 7\n"), 7);
  EXPECT_EQ(ParseScoreText("10"), 10);
  EXPECT_EQ(ParseScoreText("1"), 1);
  for (const char* bad : {"0", "11", "07", "7/10", "seven", "", "-3", "7.5"}) {
    EXPECT_FALSE(ParseScoreText(bad).has_value()) << bad;
  }
}

}  // namespace
}  // namespace spar::oracle
