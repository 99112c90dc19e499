#include "orchestrator/best_round.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include "common/file_util.h"
#include "orchestrator/run_dir.h"
#include "tests/testing/status_matchers.h"

namespace spar::orchestrator {
namespace {

using ::spar::testing::IsOk;
using ::spar::testing::StatusIs;

const std::vector<RoundEval> kEvals = {
    {1, 0.60, 0.50}, {2, 0.75, 0.55}, {3, 0.75, 0.70}, {4, 0.70, 0.70}};
const RoundEval kBase = BaseRoundEval(0.40);  // pi_0: win rate 0.5 against itself

TEST(BestRoundTest, EachCriterionWithTiesToTheEarlierRound) {
  EXPECT_EQ(*SelectBestRound(kEvals, "win_rate_vs_base", kBase), 2);  // 2 and 3 tie at 0.75
  EXPECT_EQ(*SelectBestRound(kEvals, "", kBase), 2);                  // the default
  EXPECT_EQ(*SelectBestRound(kEvals, "greedy_accuracy", kBase), 3);   // 3 and 4 tie at 0.70
  EXPECT_EQ(*SelectBestRound(kEvals, "last", kBase), 4);
  // Order of the list does not matter.
  std::vector<RoundEval> reversed(kEvals.rbegin(), kEvals.rend());
  EXPECT_EQ(*SelectBestRound(reversed, "win_rate_vs_base", kBase), 2);
  EXPECT_EQ(*SelectBestRound(reversed, "greedy_accuracy", kBase), 3);
  EXPECT_EQ(*SelectBestRound(reversed, "last", kBase), 4);
}

// Issue 24 item 4: when no round beats pi_0, the job's result is pi_0 itself (round 0), not the
// least bad round; "last" is the last round whatever it scored.
TEST(BestRoundTest, WhenNoRoundBeatsPi0TheBestIsPi0) {
  const std::vector<RoundEval> worse = {{1, 0.45, 0.30}, {2, 0.50, 0.40}, {3, 0.38, 0.25}};
  EXPECT_EQ(*SelectBestRound(worse, "win_rate_vs_base", kBase), 0);  // 0.50 only ties pi_0
  EXPECT_EQ(*SelectBestRound(worse, "greedy_accuracy", kBase), 0);   // 0.40 only ties pi_0
  EXPECT_EQ(*SelectBestRound(worse, "last", kBase), 3);
  const std::vector<RoundEval> one_better = {{1, 0.45, 0.30}, {2, 0.52, 0.41}};
  EXPECT_EQ(*SelectBestRound(one_better, "win_rate_vs_base", kBase), 2);
  EXPECT_EQ(*SelectBestRound(one_better, "greedy_accuracy", kBase), 2);
}

TEST(BestRoundTest, NoEvaluatedRoundIsZeroAndUnknownCriterionIsInvalid) {
  EXPECT_EQ(*SelectBestRound({}, "win_rate_vs_base", kBase), 0);
  auto bad = SelectBestRound(kEvals, "loss", kBase);
  EXPECT_THAT(bad, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_NE(bad.status().message().find("eval.select_best"), std::string::npos) << bad.status();
}

// The values compared are the validation split's, never the reported eval prompts'.
TEST(BestRoundTest, ReadsValidationNumbersOfRoundsWhoseEvalIsRecordedAsDone) {
  char tmpl[] = "/tmp/spar_best_XXXXXX";
  const std::string root = mkdtemp(tmpl);
  RunDir dir(root);
  auto write_round = [&](int t, const std::string& stage, double win, double acc) {
    ASSERT_TRUE(MakeDirs(dir.Round(t)).ok());
    ASSERT_TRUE(WriteFileAtomic(dir.Stage(t), stage + "\n").ok());
    // The eval prompts' numbers rank the rounds the other way round.
    ASSERT_TRUE(
        WriteJsonFileAtomic(dir.Eval(t),
                            {{"round", t},
                             {"win_rate_vs_base", 1 - win},
                             {"greedy_accuracy", 1 - acc},
                             {"validation", {{"win_rate_vs_base", win}, {"greedy_accuracy", acc}}}})
            .ok());
  };
  write_round(1, "eval", 0.6, 0.5);
  write_round(2, "eval", 0.8, 0.4);
  write_round(3, "train", 0.9, 0.9);  // eval.json of an eval cut short: not counted yet
  auto evals = ReadRoundEvals(root, 3, /*validation=*/true);
  ASSERT_THAT(evals, IsOk());
  ASSERT_EQ(evals->size(), 2u);
  EXPECT_EQ((*evals)[1].round, 2);
  EXPECT_DOUBLE_EQ((*evals)[1].win_rate_vs_base, 0.8);
  EXPECT_DOUBLE_EQ((*evals)[1].greedy_accuracy, 0.4);
  EXPECT_EQ(*SelectBestRound(*evals, "win_rate_vs_base", kBase), 2);
  EXPECT_EQ(*SelectBestRound(*evals, "greedy_accuracy", kBase), 1);
  // Without a split only the rounds are known ("last").
  auto rounds_only = ReadRoundEvals(root, 3, /*validation=*/false);
  ASSERT_THAT(rounds_only, IsOk());
  ASSERT_EQ(rounds_only->size(), 2u);
  EXPECT_EQ(*SelectBestRound(*rounds_only, "last", kBase), 2);
  // An eval.json without its validation numbers is refused, not read as something else.
  ASSERT_TRUE(WriteJsonFileAtomic(dir.Eval(2), {{"round", 2}, {"win_rate_vs_base", 0.9}}).ok());
  EXPECT_THAT(ReadRoundEvals(root, 3, true), StatusIs(absl::StatusCode::kDataLoss));
  ASSERT_TRUE(RemoveAll(root).ok());
}

}  // namespace
}  // namespace spar::orchestrator
