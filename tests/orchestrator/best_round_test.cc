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

TEST(BestRoundTest, EachCriterionWithTiesToTheEarlierRound) {
  EXPECT_EQ(*SelectBestRound(kEvals, "win_rate_vs_base"), 2);  // 2 and 3 tie at 0.75
  EXPECT_EQ(*SelectBestRound(kEvals, ""), 2);                  // the default
  EXPECT_EQ(*SelectBestRound(kEvals, "greedy_accuracy"), 3);   // 3 and 4 tie at 0.70
  EXPECT_EQ(*SelectBestRound(kEvals, "last"), 4);
  // Order of the list does not matter.
  std::vector<RoundEval> reversed(kEvals.rbegin(), kEvals.rend());
  EXPECT_EQ(*SelectBestRound(reversed, "win_rate_vs_base"), 2);
  EXPECT_EQ(*SelectBestRound(reversed, "greedy_accuracy"), 3);
  EXPECT_EQ(*SelectBestRound(reversed, "last"), 4);
}

TEST(BestRoundTest, NoEvaluatedRoundIsZeroAndUnknownCriterionIsInvalid) {
  EXPECT_EQ(*SelectBestRound({}, "win_rate_vs_base"), 0);
  auto bad = SelectBestRound(kEvals, "loss");
  EXPECT_THAT(bad, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_NE(bad.status().message().find("eval.select_best"), std::string::npos) << bad.status();
}

TEST(BestRoundTest, ReadsOnlyRoundsWhoseEvalIsRecordedAsDone) {
  char tmpl[] = "/tmp/spar_best_XXXXXX";
  const std::string root = mkdtemp(tmpl);
  RunDir dir(root);
  auto write_round = [&](int t, const std::string& stage, double win, double acc) {
    ASSERT_TRUE(MakeDirs(dir.Round(t)).ok());
    ASSERT_TRUE(WriteFileAtomic(dir.Stage(t), stage + "\n").ok());
    ASSERT_TRUE(
        WriteJsonFileAtomic(dir.Eval(t),
                            {{"round", t}, {"win_rate_vs_base", win}, {"greedy_accuracy", acc}})
            .ok());
  };
  write_round(1, "eval", 0.6, 0.5);
  write_round(2, "eval", 0.8, 0.4);
  write_round(3, "train", 0.9, 0.9);  // eval.json of an eval cut short: not counted yet
  auto evals = ReadRoundEvals(root, 3);
  ASSERT_THAT(evals, IsOk());
  ASSERT_EQ(evals->size(), 2u);
  EXPECT_EQ((*evals)[1].round, 2);
  EXPECT_DOUBLE_EQ((*evals)[1].win_rate_vs_base, 0.8);
  EXPECT_DOUBLE_EQ((*evals)[1].greedy_accuracy, 0.4);
  EXPECT_EQ(*SelectBestRound(*evals, "win_rate_vs_base"), 2);
  ASSERT_TRUE(WriteFileAtomic(dir.Eval(2), "{\"round\": 2}").ok());
  EXPECT_THAT(ReadRoundEvals(root, 3), StatusIs(absl::StatusCode::kDataLoss));
  ASSERT_TRUE(RemoveAll(root).ok());
}

}  // namespace
}  // namespace spar::orchestrator
