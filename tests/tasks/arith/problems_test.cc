#include "tasks/arith/problems.h"

#include <gtest/gtest.h>

#include <set>

namespace spar::arith {
namespace {

TEST(ArithTaskTest, SplitsAreDisjointAndCoverEverything) {
  auto train = MakeArithProblems(ArithSplit::kTrain, -1, 1);
  auto eval = MakeArithProblems(ArithSplit::kEval, -1, 1);
  EXPECT_EQ(train.size() + eval.size(), 100u * 100u);
  // 1,253 held out: counted by an independent re-implementation of the split hash in Python.
  EXPECT_EQ(eval.size(), static_cast<size_t>(kArithEvalSize));
  EXPECT_EQ(kArithEvalSize, 1253);
  std::set<std::string> train_prompts;
  for (const auto& p : train) train_prompts.insert(p.prompt);
  for (const auto& p : eval) EXPECT_EQ(train_prompts.count(p.prompt), 0u) << p.prompt;
}

// The validation slice (where a job picks its best round) is part of the train side and disjoint
// from the rounds' prompts; 534 counted by the same Python re-implementation of the hash.
TEST(ArithTaskTest, ValidationIsASliceOfTheTrainSideTheRoundsLeaveOut) {
  auto collect = [](ArithSplit split) {
    std::set<std::string> out;
    for (const auto& p : MakeArithProblems(split, -1, 3)) out.insert(p.prompt);
    return out;
  };
  const std::set<std::string> train = collect(ArithSplit::kTrain);
  const std::set<std::string> validation = collect(ArithSplit::kValidation);
  const std::set<std::string> rounds = collect(ArithSplit::kRounds);
  EXPECT_EQ(validation.size(), static_cast<size_t>(kArithValidationSize));
  EXPECT_EQ(kArithValidationSize, 534);
  EXPECT_EQ(validation.size() + rounds.size(), train.size());
  for (const std::string& p : validation) {
    EXPECT_EQ(train.count(p), 1u) << p;
    EXPECT_EQ(rounds.count(p), 0u) << p;
  }
  for (const std::string& p : rounds) EXPECT_EQ(train.count(p), 1u) << p;
}

TEST(ArithTaskTest, SeededOrderIsStableAndAnswersAreRight) {
  auto a = MakeArithProblems(ArithSplit::kEval, 50, 7);
  auto b = MakeArithProblems(ArithSplit::kEval, 50, 7);
  auto c = MakeArithProblems(ArithSplit::kEval, 50, 8);
  ASSERT_EQ(a.size(), 50u);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].prompt, b[i].prompt);
    EXPECT_EQ(a[i].answer, std::to_string(a[i].a + a[i].b));
    EXPECT_EQ(*ArithTruth(a[i].prompt), a[i].a + a[i].b);
  }
  bool differs = false;
  for (size_t i = 0; i < a.size(); ++i) differs |= a[i].prompt != c[i].prompt;
  EXPECT_TRUE(differs);
}

TEST(ArithTaskTest, ParsesPromptsAndAnswers) {
  EXPECT_EQ(*ArithTruth("37+48="), 85);
  EXPECT_EQ(*ArithTruth(" 3 + 4 = "), 7);
  EXPECT_FALSE(ArithTruth("37-48=").has_value());
  EXPECT_FALSE(ArithTruth("a+b=").has_value());
  EXPECT_FALSE(ArithTruth("37+48").has_value());
  EXPECT_EQ(*ParseArithAnswer("85"), 85);
  EXPECT_EQ(*ParseArithAnswer(" 85 apples"), 85);
  EXPECT_EQ(*ParseArithAnswer("-3"), -3);
  EXPECT_FALSE(ParseArithAnswer("x85").has_value());
  EXPECT_FALSE(ParseArithAnswer("").has_value());
  EXPECT_TRUE(ArithCorrect("37+48=", "85"));
  EXPECT_FALSE(ArithCorrect("37+48=", "84"));
}

}  // namespace
}  // namespace spar::arith
