#include "tasks/arith/greedy_score.h"

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace spar::arith
