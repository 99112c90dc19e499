#include "tasks/arith/greedy_score.h"

#include <gtest/gtest.h>

#include <cmath>

namespace spar::arith {
namespace {

TEST(GreedyScoreTest, ScoresOnlyArithmeticQuestions) {
  // "hello" is not a question: skipped. 2 of the 3 questions are answered right.
  const GreedyScore g = ScoreGreedyAnswers({"1+2=", "hello", "10+5=", " 3+3= "},
                                           {"3", "anything", "14", "6 and more"});
  EXPECT_EQ(g.verifiable, 3);
  EXPECT_EQ(g.correct, 2);
  EXPECT_DOUBLE_EQ(g.accuracy, 2.0 / 3.0);
  // The 95% Wilson interval of 2/3 as published tables give it: [0.2077, 0.9385].
  EXPECT_NEAR(g.ci95.lo, 0.2077, 1e-4);
  EXPECT_NEAR(g.ci95.hi, 0.9385, 1e-4);
}

TEST(GreedyScoreTest, NoQuestionsMeansNoAccuracy) {
  const GreedyScore g = ScoreGreedyAnswers({"hello", "world"}, {"1", "2"});
  EXPECT_EQ(g.verifiable, 0);
  EXPECT_EQ(g.accuracy, -1);
  EXPECT_EQ(g.ci95.lo, 0);
  EXPECT_EQ(g.ci95.hi, 1);
}

// Paired on the same prompts: only the discordant ones count (McNemar).
TEST(GreedyScoreTest, ComparesTwoPoliciesPromptByPrompt) {
  const std::vector<std::string> prompts = {"1+1=", "2+2=", "3+3=", "hi", "4+4=", "5+5="};
  const PairedGreedy g = CompareGreedyAnswers(prompts, {"2", "5", "0", "x", "8", "1"},
                                              {"2", "4", "6", "y", "0", "10"});
  EXPECT_EQ(g.verifiable, 5);
  EXPECT_EQ(g.gained, 3);                // 2+2, 3+3, 5+5
  EXPECT_EQ(g.lost, 1);                  // 4+4
  EXPECT_DOUBLE_EQ(g.mcnemar_p, 0.625);  // 2 * (1 + 4) / 16
  // (3 - 1) / 5 = 0.4 -/+ 1.96 sqrt((4/5 - 0.4^2) / 5), the top clipped at 1.
  EXPECT_NEAR(g.diff_ci95.lo, 0.4 - 1.959963984540054 * std::sqrt(0.128), 1e-12);
  EXPECT_DOUBLE_EQ(g.diff_ci95.hi, 1.0);
}

}  // namespace
}  // namespace spar::arith
