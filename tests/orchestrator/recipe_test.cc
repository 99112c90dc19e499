#include "orchestrator/recipe.h"

#include <gtest/gtest.h>

#include "orchestrator/job_spec.h"
#include "tests/testing/status_matchers.h"

namespace spar::orchestrator {
namespace {

using ::spar::testing::StatusIs;

TEST(RecipeTest, BestVsWorstTakesTheExtremes) {
  auto p = BestVsWorstPair("q", {"a", "b", "c"}, {0.5, 0.9, 0.1}, 0.25);
  ASSERT_EQ(p.size(), 1u);
  EXPECT_EQ(p[0].chosen, "b");
  EXPECT_EQ(p[0].rejected, "c");
  EXPECT_TRUE(BestVsWorstPair("q", {"a", "b"}, {0.55, 0.45}, 0.25).empty());  // gap too small
  EXPECT_TRUE(BestVsWorstPair("q", {"a", "a"}, {0.5, 0.5}, 0.0).empty());     // same text
}

TEST(RecipeTest, SppoWinRatesIncludeTheSampleItself) {
  // a > b (0.8), a vs c failed, b > c (1.0); duplicates: none.
  std::vector<PairJudgment> j = {{0, 1, 0.8, true}, {0, 2, 0.0, false}, {1, 2, 1.0, true}};
  auto w = SppoWinRates({"a", "b", "c"}, j);
  EXPECT_NEAR(w[0], (0.8 + 0.5) / 2, 1e-12);        // vs b, itself
  EXPECT_NEAR(w[1], (0.2 + 1.0 + 0.5) / 3, 1e-12);  // vs a, c, itself
  EXPECT_NEAR(w[2], (0.0 + 0.5) / 2, 1e-12);        // vs b, itself
  // Identical texts count 0.5 against each other, and each counts itself.
  auto d = SppoWinRates({"x", "x", "y"}, {{0, 2, 1.0, true}, {1, 2, 1.0, true}});
  EXPECT_NEAR(d[0], (0.5 + 1.0 + 0.5) / 3, 1e-12);
  EXPECT_NEAR(d[2], (0.0 + 0.0 + 0.5) / 3, 1e-12);
  auto p = SppoArgmaxArgminPair("q", {"a", "b", "c"}, w);
  ASSERT_EQ(p.size(), 1u);
  EXPECT_EQ(p[0].chosen, "a");  // 0.65 > 0.567 > 0.25
  EXPECT_EQ(p[0].rejected, "c");
  EXPECT_DOUBLE_EQ(p[0].chosen_win_rate, w[0]);
  EXPECT_DOUBLE_EQ(p[0].rejected_win_rate, w[2]);
  EXPECT_TRUE(SppoArgmaxArgminPair("q", {"a", "b"}, {0.5, 0.5}).empty());  // no preference
  EXPECT_TRUE(SppoArgmaxArgminPair("q", {"a", "a"}, {0.5, 0.5}).empty());  // same text
}

// Automatic negatives (unfinished samples): never the chosen side; the rejected side whatever the
// gap; no pair when every candidate is one.
TEST(RecipeTest, BestVsWorstAndArgmaxArgminWithNegatives) {
  const std::vector<std::string> t = {"a", "b", "c"};
  const std::vector<bool> neg = {true, false, false};
  // "a" has the best value but is a negative; "c" is only 0.1 below "b" (< min_gap).
  auto p = BestVsWorstPair("q", t, {0.9, 0.5, 0.4}, 0.25, neg);
  ASSERT_EQ(p.size(), 1u);
  EXPECT_EQ(p[0].chosen, "b");
  EXPECT_EQ(p[0].rejected, "a");
  p = SppoArgmaxArgminPair("q", t, {0.9, 0.5, 0.4}, neg);
  ASSERT_EQ(p.size(), 1u);
  EXPECT_EQ(p[0].chosen, "b");
  EXPECT_EQ(p[0].rejected, "a");
  // Without negatives the old rules hold.
  p = BestVsWorstPair("q", t, {0.9, 0.5, 0.4}, 0.25, {false, false, false});
  ASSERT_EQ(p.size(), 1u);
  EXPECT_EQ(p[0].chosen, "a");
  EXPECT_EQ(p[0].rejected, "c");
  EXPECT_TRUE(BestVsWorstPair("q", {"a", "b"}, {0.5, 0.5}, 0.25, {true, true}).empty());
  EXPECT_TRUE(SppoArgmaxArgminPair("q", {"a", "b"}, {0.5, 0.5}, {true, true}).empty());
}

TEST(RecipeTest, UnfinishedTextsAreThoseNeverFinished) {
  PromptRound r{
      "1+1=", std::string("2"), {"2", "22", "3", "3", "4"}, {false, false, false, true, true}};
  // "3" also came out finished once.
  EXPECT_EQ(UnfinishedTexts(r, false), (std::set<std::string>{"2", "22"}));
  // A recipe that trains on the gold answer "2" (SPIN, DNO's teacher) treats it as complete.
  EXPECT_EQ(UnfinishedTexts(r, true), std::set<std::string>{"22"});
  r.finished.clear();  // files without the field: all finished
  EXPECT_TRUE(UnfinishedTexts(r, false).empty());
}

TEST(RecipeTest, GoldBeatsTheFirstDifferentSample) {
  auto p = GoldVsSamplePair("1+1=", "2", {"2", "3", "4"});
  ASSERT_EQ(p.size(), 1u);
  EXPECT_EQ(p[0].chosen, "2");
  EXPECT_EQ(p[0].rejected, "3");
  EXPECT_TRUE(GoldVsSamplePair("1+1=", "2", {"2", "2"}).empty());
}

TEST(RecipeTest, MixSelectionIsDeterministicAndSized) {
  auto a = MixSelection(100, 0.3, 9);
  auto b = MixSelection(100, 0.3, 9);
  EXPECT_EQ(a, b);
  EXPECT_EQ(a.size(), 30u);
  EXPECT_NE(a, MixSelection(100, 0.3, 10));
  EXPECT_EQ(MixSelection(10, 1.0, 1).size(), 10u);
  EXPECT_TRUE(MixSelection(10, 0.0, 1).empty());
}

TEST(RecipeTest, RecipesByAlgorithm) {
  for (const char* algo : {"dno", "dpo", "spin"}) {
    v1::JobSpec s;
    s.set_algorithm(algo);
    auto r = MakeRecipe(WithDefaults(s));
    ASSERT_TRUE(r.ok()) << algo;
    EXPECT_EQ((*r)->name(), algo);
  }
  v1::JobSpec spin;
  spin.set_algorithm("spin");
  auto r = MakeRecipe(WithDefaults(spin));
  EXPECT_TRUE((*r)->PairsToJudge({"p", "g", {"a", "b"}}).empty());  // SPIN needs no judge
  EXPECT_EQ((*r)->MixPrevious(), std::vector<double>{1.0});         // reuses round t-1's pairs
  EXPECT_EQ(WithDefaults(spin).pairs().policy(), "gold_vs_sample");
  v1::JobSpec bad;
  bad.set_algorithm("ppo");
  EXPECT_THAT(MakeRecipe(bad), StatusIs(absl::StatusCode::kInvalidArgument));
}

// brain / rrhf: every pair judged; each sample's reward its SPPO win rate among the samples;
// rrhf leaves out a prompt whose samples all tie.
TEST(RecipeTest, ListwiseRewardsAreTheSamplesWinRates) {
  for (const char* algo : {"brain", "rrhf"}) {
    v1::JobSpec s;
    s.set_algorithm(algo);
    auto r = MakeRecipe(WithDefaults(s));
    ASSERT_TRUE(r.ok()) << algo;
    EXPECT_EQ((*r)->name(), algo);
    EXPECT_TRUE((*r)->Listwise());
    const PromptRound round{"1+2=", "3", {"3", "4", "3", "5"}, {}};
    EXPECT_EQ((*r)->PairsToJudge(round).size(), 5u);  // texts 0 and 2 are equal
    // "3" beats "4" and "5"; "4" ties "5"; equal texts are not judged (they tie).
    const std::vector<PairJudgment> j = {{0, 1, 1.0, true},
                                         {0, 3, 1.0, true},
                                         {1, 2, 0.0, true},
                                         {1, 3, 0.5, true},
                                         {2, 3, 1.0, true}};
    const std::vector<double> rewards = (*r)->GroupRewards(round, j);
    ASSERT_EQ(rewards.size(), 4u);
    // (0.5 self + 1 + 0.5 + 1) / 4, (0.5 + 0 + 0 + 0.5) / 4
    EXPECT_DOUBLE_EQ(rewards[0], 0.75);
    EXPECT_DOUBLE_EQ(rewards[1], 0.25);
    EXPECT_DOUBLE_EQ(rewards[2], 0.75);
    EXPECT_DOUBLE_EQ(rewards[3], 0.25);
    EXPECT_TRUE((*r)->BuildPairs(round, j).empty());
    const std::vector<PairJudgment> ties = {{0, 1, 0.5, true},
                                            {0, 3, 0.5, true},
                                            {1, 2, 0.5, true},
                                            {1, 3, 0.5, true},
                                            {2, 3, 0.5, true}};
    EXPECT_EQ((*r)->GroupRewards(round, ties).size(), std::string(algo) == "rrhf" ? 0u : 4u);
  }
}

// With a reward-model oracle the judgments carry r(x, y): a listwise group's rewards are those
// (identical texts share one; an unfinished sample, never judged, takes the lowest), not win
// rates. A judgment without rewards (a chat judge) keeps win rates.
TEST(RecipeTest, ListwiseRewardsAreTheRewardModelsWhenTheOracleIsOne) {
  v1::JobSpec s;
  s.set_algorithm("brain");
  auto r = MakeRecipe(WithDefaults(s));
  ASSERT_TRUE(r.ok());
  const PromptRound round{"1+2=", "3", {"3", "4", "3", "5"}, {true, true, true, true}};
  const std::vector<PairJudgment> j = {{0, 1, 0.99, true, 5.0, -0.7},
                                       {0, 3, 0.99, true, 5.0, -1.1},
                                       {1, 2, 0.01, true, -0.7, 5.0},
                                       {1, 3, 0.6, true, -0.7, -1.1},
                                       {2, 3, 0.99, true, 5.0, -1.1}};
  EXPECT_EQ((*r)->GroupRewards(round, j), (std::vector<double>{5.0, -0.7, 5.0, -1.1}));
  const PromptRound cut{"1+2=", "3", {"3", "4", "3", "5"}, {true, true, true, false}};
  const std::vector<PairJudgment> judged = {j[0], j[2]};  // the unfinished "5" is not judged
  EXPECT_EQ((*r)->GroupRewards(cut, judged), (std::vector<double>{5.0, -0.7, 5.0, -0.7}));
  std::vector<PairJudgment> mixed = j;
  mixed[4].reward_i.reset();
  mixed[4].reward_j.reset();
  // Win rates: (0.5 self + 0.99 + 0.5 equal text + 0.99) / 4.
  EXPECT_DOUBLE_EQ((*r)->GroupRewards(round, mixed)[0], 0.745);
}

}  // namespace
}  // namespace spar::orchestrator
