// Side-by-side 6-point scoring template and its strict parse, on hand-written judge answers.
#include "oracle_client/side_by_side.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "absl/strings/match.h"
#include "tests/testing/status_matchers.h"

namespace spar::oracle {
namespace {

using ::spar::testing::IsOk;
using ::spar::testing::StatusIs;

TEST(SideBySideTest, OrderIsADeterministicPermutation) {
  std::vector<int> a = SideBySideOrder(6, 42);
  EXPECT_EQ(a, SideBySideOrder(6, 42));
  std::vector<int> sorted = a;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(sorted, (std::vector<int>{0, 1, 2, 3, 4, 5}));
  bool some_seed_shuffles = false;
  for (uint64_t seed = 0; seed < 8; ++seed) {
    some_seed_shuffles |= SideBySideOrder(6, seed) != sorted;
  }
  EXPECT_TRUE(some_seed_shuffles);
}

TEST(SideBySideTest, RendersEveryCandidateUnderItsShuffledId) {
  const std::vector<std::string> c = {"first", "## not a header", "third"};
  const std::vector<int> order = {2, 0, 1};
  std::vector<ChatMessage> m = RenderSideBySide("Add 2+2.", c, order);
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(m[0].role, "system");
  EXPECT_TRUE(absl::StrContains(m[0].content, "6-point")) << m[0].content;
  EXPECT_EQ(m[1].content,
            "## Instruction\nAdd 2+2.\n\n## id1\nthird\n\n## id2\nfirst\n\n## id3\n\\## not a "
            "header\n\n## Scores (JSON)\n");
}

TEST(SideBySideTest, UserMessageParsesBackToTheCandidatesInIdOrder) {
  const std::vector<std::string> c = {"first\n\nline 3", "## not a header\n\\x", "", "tail\n"};
  const std::vector<int> order = {3, 1, 0, 2};
  std::vector<ChatMessage> m = RenderSideBySide("Add 2+2.\n## hm", c, order);
  std::optional<SideBySideInputs> in = ParseSideBySideUserMessage(m[1].content);
  ASSERT_TRUE(in.has_value());
  EXPECT_EQ(in->instruction, "Add 2+2.\n## hm");
  ASSERT_EQ(in->outputs.size(), 4u);
  for (size_t k = 0; k < order.size(); ++k) EXPECT_EQ(in->outputs[k], c[order[k]]) << k;
  EXPECT_FALSE(ParseSideBySideUserMessage("## Instruction\nx\n").has_value());
  EXPECT_FALSE(ParseSideBySideUserMessage("## Instruction\nx\n\n## Scores (JSON)\n").has_value());
}

TEST(SideBySideTest, ParsesScoresBackToCandidateOrder) {
  const std::vector<int> order = {2, 0, 1};  // id1 = candidate 2, id2 = 0, id3 = 1
  auto s = ParseSideBySideScores(
      R"({"id1_justification": "ok", "id1_score": 5, "id2_justification": "meh", "id2_score": 3,
          "id3_score": 6})",
      order);
  ASSERT_THAT(s, IsOk());
  EXPECT_EQ(*s, (std::vector<int>{3, 6, 5}));
  // A ```json fence around the object is accepted.
  s = ParseSideBySideScores("```json\n{\"id1_score\": 0, \"id2_score\": 1, \"id3_score\": 2}\n```",
                            order);
  ASSERT_THAT(s, IsOk());
  EXPECT_EQ(*s, (std::vector<int>{1, 2, 0}));
}

TEST(SideBySideTest, AnythingElseIsAFailureNotAGuess) {
  const std::vector<int> order = {0, 1};
  const char* bad[] = {
      "",                                                     // nothing
      "id1: 5, id2: 3",                                       // not JSON
      R"([5, 3])",                                            // not an object
      R"({"id1_score": 5})",                                  // id2 missing
      R"({"id1_score": 5, "id2_score": 7})",                  // out of range
      R"({"id1_score": 5, "id2_score": -1})",                 // out of range
      R"({"id1_score": 5, "id2_score": 4.5})",                // not an integer
      R"({"id1_score": "5", "id2_score": 4})",                // a string
      R"({"id1_score": 5, "id2_score": 4, "id3_score": 1})",  // an unknown id
      R"({"id1_score": 5, "id2_score": 4, "best": "id1"})",   // an unknown key
      R"({"id1_score": 5, "id2_score": 4, "id1_justification": 3})",
      "```python\n{\"id1_score\": 5, \"id2_score\": 4}\n```",  // wrong fence
      R"({"id1_score": 5, "id2_score": 4} and some prose)",    // trailing text
  };
  for (const char* a : bad) {
    auto s = ParseSideBySideScores(a, order);
    EXPECT_THAT(s, StatusIs(absl::StatusCode::kInvalidArgument)) << a;
  }
}

}  // namespace
}  // namespace spar::oracle
