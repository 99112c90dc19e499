#include "oracle_client/judge_template.h"

#include <string>

#include "gtest/gtest.h"

namespace spar::oracle {
namespace {

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
